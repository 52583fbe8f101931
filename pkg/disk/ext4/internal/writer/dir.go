package writer

import (
	"fmt"
	"sort"
)

// Directory block geometry.
const (
	dirTailSize  = 12 // the checksum "entry" ending a leaf block
	leafSpace    = BlockSize - dirTailSize
	dxRootOffset = 32 // dx entries after ".", ".." and dx_root_info
	dxNodeOffset = 8  // dx entries after an empty dirent
	dxTailSize   = 8  // dt_reserved, dt_checksum
	dxRootLimit  = (BlockSize - dxRootOffset - dxTailSize) / 8
	dxNodeLimit  = (BlockSize - dxNodeOffset - dxTailSize) / 8
)

// dent is a directory entry to write.
type dent struct {
	name string
	ino  uint32
	ft   uint8
	hash uint32
}

func recLen(name string) int { return (8 + len(name) + 3) &^ 3 }

// entries returns the live entries of d (without "." and "..").
func (w *Writer) entries(d *dirNode) []dent {
	out := make([]dent, 0, len(d.index))
	for i, ino := range d.inos {
		if ino != 0 {
			out = append(out, dent{name: d.names[i], ino: ino, ft: fileType(w.inodes[ino].mode)})
		}
	}
	return out
}

// dirWriter renders a directory's blocks and hands each to emit in
// logical order.
type dirWriter struct {
	w     *Writer
	iseed uint32
	buf   []byte
	emit  func([]byte) error
}

// putDirent writes one entry at off with the given record length.
func putDirent(b []byte, off int, ino uint32, rec int, name string, ft uint8) {
	le.PutUint32(b[off:], ino)
	le.PutUint16(b[off+4:], uint16(rec))
	b[off+6] = uint8(len(name))
	b[off+7] = ft
	copy(b[off+8:], name)
}

// finishLeaf adds the checksum tail to a leaf block.
func (dw *dirWriter) finishLeaf(b []byte) {
	t := b[leafSpace:]
	le.PutUint32(t[0:], 0)
	le.PutUint16(t[4:], dirTailSize)
	t[6] = 0
	t[7] = dirTailFT
	le.PutUint32(t[8:], crc32c(dw.iseed, b[:leafSpace]))
}

// leaves packs entries into leaf blocks in order and emits them; it
// returns the index of the first entry of every leaf.
func (dw *dirWriter) leaves(ents []dent, first []int, minBlocks int) error {
	emitted := 0
	for li, start := range first {
		end := len(ents)
		if li+1 < len(first) {
			end = first[li+1]
		}
		b := dw.buf
		clear(b)
		off := 0
		for i := start; i < end; i++ {
			rec := recLen(ents[i].name)
			if i == end-1 {
				rec = leafSpace - off
			}
			putDirent(b, off, ents[i].ino, rec, ents[i].name, ents[i].ft)
			off += rec
		}
		if start == end {
			putDirent(b, 0, 0, leafSpace, "", 0)
		}
		dw.finishLeaf(b)
		if err := dw.emit(b); err != nil {
			return err
		}
		emitted++
	}
	for ; emitted < minBlocks; emitted++ {
		b := dw.buf
		clear(b)
		putDirent(b, 0, 0, leafSpace, "", 0)
		dw.finishLeaf(b)
		if err := dw.emit(b); err != nil {
			return err
		}
	}
	return nil
}

// pack splits entries into leaves of at most leafSpace bytes, returning
// the index of each leaf's first entry.
func pack(ents []dent, used int) []int {
	first := []int{0}
	for i := range ents {
		rec := recLen(ents[i].name)
		if used+rec > leafSpace {
			first = append(first, i)
			used = 0
		}
		used += rec
	}
	return first
}

// writeDir renders directory d: a linear directory when its entries fit in
// one block, else an htree (dir_index) of a root block, an optional level
// of index nodes and leaves sorted by name hash. It returns whether the
// directory is indexed.
func (dw *dirWriter) writeDir(d *dirNode, ents []dent, seed [4]uint32) (bool, error) {
	dots := []dent{{name: ".", ino: d.ino, ft: ftDir}, {name: "..", ino: d.parent, ft: ftDir}}
	used := recLen(".") + recLen("..")
	linear := used
	for i := range ents {
		linear += recLen(ents[i].name)
	}
	if linear <= leafSpace || d.minBlocks > 1 && len(pack(ents, used)) <= d.minBlocks {
		all := append(dots, ents...)
		return false, dw.leaves(all, pack(all, 0), d.minBlocks)
	}
	for i := range ents {
		ents[i].hash = dirHash([]byte(ents[i].name), seed)
	}
	sort.Slice(ents, func(i, j int) bool {
		if ents[i].hash != ents[j].hash {
			return ents[i].hash < ents[j].hash
		}
		return ents[i].name < ents[j].name
	})
	first := pack(ents, 0)
	nleaves := len(first)
	// Index entries for the leaves: the first hash of each leaf, with the
	// low bit set when a run of equal hashes continues from the previous
	// leaf.
	type dx struct{ hash, block uint32 }
	idx := make([]dx, nleaves)
	nodes := 0
	if nleaves > dxRootLimit {
		nodes = (nleaves + dxNodeLimit - 1) / dxNodeLimit
		if nodes > dxRootLimit {
			return false, fmt.Errorf("directory with %d entries needs more than two htree levels", len(ents))
		}
	}
	for i, f := range first {
		h := ents[f].hash
		if i > 0 && ents[f-1].hash == h {
			h |= 1
		}
		idx[i] = dx{h, uint32(1 + nodes + i)}
	}
	putDx := func(b []byte, off, limit int, es []dx) {
		le.PutUint16(b[off:], uint16(limit))
		le.PutUint16(b[off+2:], uint16(len(es)))
		le.PutUint32(b[off+4:], es[0].block)
		for i := 1; i < len(es); i++ {
			le.PutUint32(b[off+8*i:], es[i].hash)
			le.PutUint32(b[off+8*i+4:], es[i].block)
		}
		t := off + 8*limit
		le.PutUint32(b[t:], 0)
		c := crc32c(dw.iseed, b[:off+8*len(es)])
		c = crc32c(c, b[t:t+4])
		c = crc32c(c, []byte{0, 0, 0, 0})
		le.PutUint32(b[t+4:], c)
	}
	// Root block.
	b := dw.buf
	clear(b)
	putDirent(b, 0, d.ino, 12, ".", ftDir)
	putDirent(b, 12, d.parent, BlockSize-12, "..", ftDir)
	b[24+4] = hashHalfMD4
	b[24+5] = 8 // info length
	rootEnts := idx
	if nodes > 0 {
		b[24+6] = 1 // one level of index nodes
		rootEnts = make([]dx, nodes)
		for n := 0; n < nodes; n++ {
			rootEnts[n] = dx{idx[n*dxNodeLimit].hash, uint32(1 + n)}
		}
	}
	putDx(b, dxRootOffset, dxRootLimit, rootEnts)
	if err := dw.emit(b); err != nil {
		return false, err
	}
	for n := 0; n < nodes; n++ {
		b := dw.buf
		clear(b)
		putDirent(b, 0, 0, BlockSize, "", 0)
		putDx(b, dxNodeOffset, dxNodeLimit, idx[n*dxNodeLimit:min((n+1)*dxNodeLimit, nleaves)])
		if err := dw.emit(b); err != nil {
			return false, err
		}
	}
	return true, dw.leaves(ents, first, 0)
}
