package writer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sort"
)

// Params are the finishing touches of a file system.
type Params struct {
	// Label is the volume label (at most 16 bytes).
	Label string
	// Time is the superblock time and the time of directories that were
	// created as parents without an entry of their own (Unix seconds).
	Time int64
	// NoJournal leaves the journal out.
	NoJournal bool
}

// NeedError reports that the content does not fit in the fixed size.
type NeedError struct {
	NeedBlocks uint64 // the smallest file system that holds the content
	Path       string // the first entry past the end, else the last one with data
}

// Error implements error.
func (e *NeedError) Error() string {
	return fmt.Sprintf("the content needs a file system of at least %d blocks", e.NeedBlocks)
}

// Result describes the finished file system.
type Result struct {
	Blocks  uint64 // file system size in blocks
	Inodes  uint64
	Journal uint64 // journal blocks (0: none)
	UUID    [16]byte
}

// geometry is one candidate layout.
type geometry struct {
	blocks, groups, ipg, gdt, journal uint64
}

// ErrAutoTooLarge is returned when automatic sizing would pass 1 TiB.
var ErrAutoTooLarge = errors.New("automatic sizing is limited to 1 TiB; give an explicit size")

// geometryFor computes the geometry of an s-block file system with a
// journal of j blocks; ok is false when the inodes cannot fit.
func (w *Writer) geometryFor(s, j uint64) (geometry, bool) {
	g := geometry{blocks: s, journal: j}
	g.groups = groupsFor(s)
	g.gdt = gdtBlocks(g.groups)
	// A last group holding a backup must have room for it and a little more.
	last := g.groups - 1
	if g.groups > 1 && hasBackup(last) && s-last*blocksPerGroup < 1+g.gdt+16 {
		g.blocks = last * blocksPerGroup
		g.groups--
		g.gdt = gdtBlocks(g.groups)
	}
	used := uint64(len(w.inodes) - 1)
	want := w.cfg.Inodes
	if want == 0 {
		want = max(used+used/4+64, g.blocks*BlockSize/16384)
	}
	ipg := (want + g.groups - 1) / g.groups
	ipg = max((ipg+inodesPerBlock-1)/inodesPerBlock*inodesPerBlock, inodesPerBlock)
	if ipg > maxInodesPerGroup {
		if w.cfg.Inodes > 0 {
			return g, false
		}
		ipg = maxInodesPerGroup
	}
	if g.groups*ipg > 1<<32-1 {
		ipg = (1<<32 - 1) / g.groups / inodesPerBlock * inodesPerBlock
	}
	g.ipg = ipg
	return g, g.groups*ipg >= used
}

// state saved around a layout trial.
type saved struct {
	cursor         uint64
	freed, patches int
}

func (w *Writer) save() saved { return saved{w.cursor, len(w.freed), len(w.patches)} }

func (w *Writer) restore(s saved) {
	w.cursor = s.cursor
	w.freed = w.freed[:s.freed]
	w.patches = w.patches[:s.patches]
}

// placement is where a layout put the group metadata.
type placement struct {
	bbitmap, ibitmap, itable []uint64
}

// layout allocates group metadata, directories and the journal after the
// data. With w.dry set nothing is written. It returns the end of the used
// blocks.
func (w *Writer) layout(g geometry, seed [4]uint32, csumSeed uint32, pl *placement) (uint64, error) {
	itb := g.ipg / inodesPerBlock
	pl.bbitmap = make([]uint64, g.groups)
	pl.ibitmap = make([]uint64, g.groups)
	pl.itable = make([]uint64, g.groups)
	const flex = 1 << logGroupsPerFlex
	for fg := uint64(0); fg < g.groups; fg += flex {
		end := min(fg+flex, g.groups)
		for i := fg; i < end; i++ {
			b, err := w.allocOne()
			if err != nil {
				return 0, err
			}
			pl.bbitmap[i] = b
		}
		for i := fg; i < end; i++ {
			b, err := w.allocOne()
			if err != nil {
				return 0, err
			}
			pl.ibitmap[i] = b
		}
		for i := fg; i < end; i++ {
			b, err := w.takeContig(itb)
			if err != nil {
				return 0, err
			}
			pl.itable[i] = b
		}
	}
	// Directories.
	dw := &dirWriter{w: w, buf: make([]byte, BlockSize)}
	for _, d := range w.dirs {
		if d.index == nil {
			continue // removed
		}
		in := &w.inodes[d.ino]
		in.flags &^= flagIndex | flagExtents
		in.blocks = 0
		if in.xblock != 0 {
			in.blocks = 1
		}
		var exts []extent
		var lblk uint64
		dw.iseed = inodeSeed(csumSeed, d.ino)
		dw.emit = func(b []byte) error {
			p, _, err := w.take(1)
			if err != nil {
				return err
			}
			if err := w.writeAt(b, p); err != nil {
				return err
			}
			appendExtent(&exts, lblk, p, 1)
			lblk++
			return nil
		}
		indexed, err := dw.writeDir(d, w.entries(d), seed)
		if err != nil {
			return 0, fmt.Errorf("directory inode %d: %w", d.ino, err)
		}
		if err := w.setExtents(d.ino, exts); err != nil {
			return 0, err
		}
		in = &w.inodes[d.ino]
		in.size = lblk * BlockSize
		if indexed {
			in.flags |= flagIndex
		}
	}
	// The journal.
	j := &w.inodes[journalIno]
	*j = inode{dir: -1}
	if g.journal > 0 {
		var exts []extent
		for l := uint64(0); l < g.journal; {
			p, got, err := w.take(g.journal - l)
			if err != nil {
				return 0, err
			}
			appendExtent(&exts, l, p, got)
			l += got
		}
		w.journalStart = exts[0].p
		j.mode = sIFREG | 0o600
		j.state = stateUsed
		j.links = 1
		j.size = g.journal * BlockSize
		if err := w.setExtents(journalIno, exts); err != nil {
			return 0, err
		}
	}
	return w.cursor, nil
}

func inodeSeed(csumSeed, ino uint32) uint32 {
	var b [4]byte
	le.PutUint32(b[:], ino)
	c := crc32c(csumSeed, b[:])
	return crc32c(c, []byte{0, 0, 0, 0}) // generation 0
}

// fits tries geometry g: a dry layout, restored afterwards.
func (w *Writer) fits(g geometry, seed [4]uint32) (uint64, error) {
	s := w.save()
	w.dry = true
	var pl placement
	end, err := w.layout(g, seed, 0, &pl)
	w.dry = false
	w.restore(s)
	return end, err
}

// journalFor returns the journal size for an s-block file system.
func journalFor(s uint64, none bool) uint64 {
	if none {
		return 0
	}
	return defaultJournalBlocks(s)
}

// Finish lays out and writes all metadata. size is the file system size
// in blocks (0: automatic, see AutoBlocks); the result reports the size
// chosen.
func (w *Writer) Finish(p Params) (*Result, error) {
	w.finishing = true
	for i := range w.inodes {
		in := &w.inodes[i]
		if in.state&stateImplicit != 0 {
			t := Timestamp{Sec: p.Time}
			in.atime, in.ctime, in.mtime, in.crtime = t, t, t, t
		}
	}
	sum := w.h.Sum(nil)
	var uuid [16]byte
	copy(uuid[:], sum[:16])
	uuid[6] = uuid[6]&0x0f | 0x50 // name-based (SHA) UUID, version 5
	uuid[8] = uuid[8]&0x3f | 0x80 // RFC 4122 variant
	var seed [4]uint32
	for i := range seed {
		seed[i] = le.Uint32(sum[16+4*i:])
	}
	var g geometry
	if w.cfg.SizeBlocks > 0 {
		var err error
		g, err = w.fixedGeometry(seed, p.NoJournal)
		if err != nil {
			return nil, err
		}
	} else {
		var err error
		g, err = w.autoGeometry(seed, p.NoJournal)
		if err != nil {
			return nil, err
		}
	}
	csumSeed := crc32c(^uint32(0), uuid[:])
	var pl placement
	if _, err := w.layout(g, seed, csumSeed, &pl); err != nil {
		return nil, err
	}
	if w.cursor > g.blocks {
		return nil, fmt.Errorf("internal error: layout ends at block %d past the file system's %d", w.cursor, g.blocks)
	}
	if err := w.writeMetadata(g, &pl, uuid, seed, csumSeed, p); err != nil {
		return nil, err
	}
	return &Result{Blocks: g.blocks, Inodes: g.groups * g.ipg, Journal: g.journal, UUID: uuid}, nil
}

// fixedGeometry fits the content in the configured size, shrinking the
// journal (down to jbd2's minimum, then none) when space is tight.
func (w *Writer) fixedGeometry(seed [4]uint32, noJournal bool) (geometry, error) {
	s := w.cfg.SizeBlocks
	if !w.over {
		for j := journalFor(s, noJournal); ; j /= 2 {
			if j < minJournalBlocks {
				j = 0
			}
			g, ok := w.geometryFor(s, j)
			if ok {
				end, err := w.fits(g, seed)
				if err != nil {
					return g, err
				}
				if end <= g.blocks {
					return g, nil
				}
			}
			if j == 0 {
				break
			}
		}
	}
	need, err := w.minimum(seed)
	if err != nil {
		return geometry{}, err
	}
	path := w.overAt
	if path == "" {
		path = w.lastData // the data fit, the metadata after it did not
	}
	return geometry{}, &NeedError{NeedBlocks: need, Path: path}
}

// minimum finds the smallest size that holds the content (journal left
// out), by growing a candidate until the layout fits.
func (w *Writer) minimum(seed [4]uint32) (uint64, error) {
	s := w.cursor + 16
	for i := 0; i < 200; i++ {
		if s > maxBlocks {
			break
		}
		g, ok := w.geometryFor(s, 0)
		if ok && g.blocks == s {
			end, err := w.fits(g, seed)
			if err != nil {
				return 0, err
			}
			if end <= s {
				return s, nil
			}
			s = max(end, s+1)
			continue
		}
		// Not enough inodes or a dropped last group: grow by a group.
		s = s + blocksPerGroup/4
	}
	return 0, fmt.Errorf("the content does not fit in any file system of up to %d blocks", uint64(maxBlocks))
}

// autoGeometry picks the automatic size: the blocks in use (data,
// directories, metadata and journal) plus 10 % plus 16 MiB, rounded up to
// a whole MiB.
func (w *Writer) autoGeometry(seed [4]uint32, noJournal bool) (geometry, error) {
	round := func(n uint64) uint64 { return (n + 255) / 256 * 256 }
	grow := func(used uint64) uint64 { return round(used + used/10 + (16<<20)/BlockSize) }
	s := grow(w.cursor)
	for i := 0; i < 100; i++ {
		if s > 1<<28 {
			return geometry{}, ErrAutoTooLarge
		}
		g, ok := w.geometryFor(s, journalFor(s, noJournal))
		if g.gdt > w.gdtRes {
			return geometry{}, ErrAutoTooLarge
		}
		if !ok {
			s += blocksPerGroup / 4
			continue
		}
		end, err := w.fits(g, seed)
		if err != nil {
			return geometry{}, err
		}
		if want := grow(end); want > s || end > g.blocks {
			s = max(want, s+256)
			continue
		}
		if g.blocks != s {
			// The last group was dropped: keep the size whole.
			s += 256
			continue
		}
		return g, nil
	}
	return geometry{}, errors.New("automatic sizing did not settle")
}

// writeMetadata writes inode tables, bitmaps, descriptors, the journal
// superblock, the superblock and its backups, and the checksums of blocks
// written before the seed was known.
func (w *Writer) writeMetadata(g geometry, pl *placement, uuid [16]byte, seed [4]uint32, csumSeed uint32, p Params) error {
	// Directory link counts: 2 + subdirectories (1 past 65000: dir_nlink).
	for _, d := range w.dirs {
		if d.index == nil {
			continue
		}
		n := uint32(2)
		for _, c := range d.inos {
			if c != 0 && w.inodes[c].mode&sIFMT == sIFDIR {
				n++
			}
		}
		if n > 65000 {
			n = 1
		}
		w.inodes[d.ino].links = n
	}
	if g.journal > 0 {
		j := &w.inodes[journalIno]
		t := Timestamp{Sec: p.Time}
		j.atime, j.ctime, j.mtime, j.crtime = t, t, t, t
		jsb := make([]byte, BlockSize)
		be := binary.BigEndian
		be.PutUint32(jsb[0:], jbd2Magic)
		be.PutUint32(jsb[4:], jbd2SuperV2)
		be.PutUint32(jsb[0xc:], BlockSize)
		be.PutUint32(jsb[0x10:], uint32(g.journal))
		be.PutUint32(jsb[0x14:], 1) // first log block
		be.PutUint32(jsb[0x18:], 1) // first expected transaction
		copy(jsb[0x30:], uuid[:])
		be.PutUint32(jsb[0x40:], 1) // users
		if err := w.writeAt(jsb, w.journalStart); err != nil {
			return err
		}
	}
	// Freed spans, sorted, for the block bitmaps.
	sort.Slice(w.freed, func(i, j int) bool { return w.freed[i].start < w.freed[j].start })
	isFreed := func(b uint64) bool {
		i := sort.Search(len(w.freed), func(i int) bool { return w.freed[i].start+w.freed[i].n > b })
		return i < len(w.freed) && w.freed[i].start <= b
	}
	// Checksums of extent and xattr blocks written while streaming.
	blk := make([]byte, BlockSize)
	for _, pt := range w.patches {
		if isFreed(pt.block) {
			continue
		}
		if _, err := w.f.ReadAt(blk, int64(pt.block)*BlockSize); err != nil {
			return fmt.Errorf("read back block %d: %w", pt.block, err)
		}
		if pt.ino == 0 {
			le.PutUint32(blk[16:], 0)
			var b8 [8]byte
			le.PutUint64(b8[:], pt.block)
			c := crc32c(csumSeed, b8[:])
			le.PutUint32(blk[16:], crc32c(c, blk))
		} else {
			max := int(le.Uint16(blk[4:]))
			if max != extentsPerBlock {
				return fmt.Errorf("internal error: block %d is not an extent block", pt.block)
			}
			t := 12 + 12*max
			le.PutUint32(blk[t:], crc32c(inodeSeed(csumSeed, pt.ino), blk[:t]))
		}
		if err := w.writeAt(blk, pt.block); err != nil {
			return err
		}
	}

	gdt := make([]byte, g.gdt*BlockSize)
	var freeBlocks, freeInodes uint64
	bm := make([]byte, BlockSize)
	itable := make([]byte, (g.ipg/inodesPerBlock)*BlockSize)
	fi := 0 // first freed span that may touch the current group
	for grp := uint64(0); grp < g.groups; grp++ {
		gs := grp * blocksPerGroup
		ge := min(gs+blocksPerGroup, g.blocks)
		// Block bitmap.
		clear(bm)
		setBits := func(from, to uint64) { fillBits(bm, max(from, gs)-gs, min(max(to, gs), ge)-gs, true) }
		clearBits := func(from, to uint64) { fillBits(bm, max(from, gs)-gs, min(max(to, gs), ge)-gs, false) }
		setBits(gs, w.cursor)
		if hasBackup(grp) {
			if gs < w.cursor {
				clearBits(gs+1+g.gdt, gs+1+w.gdtRes)
			}
			setBits(gs, gs+1+g.gdt)
		}
		for fi < len(w.freed) && w.freed[fi].start+w.freed[fi].n <= gs {
			fi++
		}
		for k := fi; k < len(w.freed) && w.freed[k].start < ge; k++ {
			clearBits(w.freed[k].start, w.freed[k].start+w.freed[k].n)
		}
		used := 0
		for _, c := range bm {
			used += bits.OnesCount8(c)
		}
		gFree := (ge - gs) - uint64(used)
		// Padding past the end of the file system.
		fillBits(bm, ge-gs, blocksPerGroup, true)
		bbCsum := crc32c(csumSeed, bm)
		if err := w.writeAt(bm, pl.bbitmap[grp]); err != nil {
			return err
		}
		// Inode table and bitmap.
		clear(bm)
		clear(itable)
		var gFreeIno, dirs, lastUsed uint64
		for k := uint64(0); k < g.ipg; k++ {
			ino := grp*g.ipg + k + 1
			var in *inode
			if ino < uint64(len(w.inodes)) && w.inodes[ino].state&stateUsed != 0 {
				in = &w.inodes[ino]
			}
			if in == nil && ino >= firstIno {
				gFreeIno++
				continue
			}
			bm[k/8] |= 1 << (k % 8)
			lastUsed = k + 1
			if in == nil {
				continue
			}
			if in.mode&sIFMT == sIFDIR {
				dirs++
			}
			w.encodeInode(itable[k*InodeSize:(k+1)*InodeSize], uint32(ino), in, csumSeed)
		}
		fillBits(bm, g.ipg, maxInodesPerGroup, true)
		ibCsum := crc32c(csumSeed, bm[:g.ipg/8])
		if err := w.writeAt(bm, pl.ibitmap[grp]); err != nil {
			return err
		}
		for k := uint64(0); k*BlockSize < uint64(len(itable)); k++ {
			b := itable[k*BlockSize : (k+1)*BlockSize]
			if k*inodesPerBlock < lastUsed {
				if err := w.writeAt(b, pl.itable[grp]+k); err != nil {
					return err
				}
			}
		}
		// Group descriptor.
		d := gdt[grp*descSize : (grp+1)*descSize]
		le.PutUint32(d[0:], uint32(pl.bbitmap[grp]))
		le.PutUint32(d[4:], uint32(pl.ibitmap[grp]))
		le.PutUint32(d[8:], uint32(pl.itable[grp]))
		le.PutUint16(d[0xc:], uint16(gFree))
		le.PutUint16(d[0xe:], uint16(gFreeIno))
		le.PutUint16(d[0x10:], uint16(dirs))
		le.PutUint16(d[0x12:], bgInodeZeroed)
		le.PutUint16(d[0x18:], uint16(bbCsum))
		le.PutUint16(d[0x1a:], uint16(ibCsum))
		le.PutUint16(d[0x1c:], uint16(g.ipg-lastUsed))
		var g4 [4]byte
		le.PutUint32(g4[:], uint32(grp))
		c := crc32c(csumSeed, g4[:])
		c = crc32c(c, d[:0x1e])
		c = crc32c(c, []byte{0, 0}) // the checksum field itself
		le.PutUint16(d[0x1e:], uint16(c))
		freeBlocks += gFree
		freeInodes += gFreeIno
	}
	sb := w.superblock(g, uuid, seed, p, freeBlocks, freeInodes)
	for grp := uint64(0); grp < g.groups; grp++ {
		if !hasBackup(grp) {
			continue
		}
		le.PutUint16(sb[0x5a:], uint16(grp))
		le.PutUint32(sb[0x3fc:], crc32c(^uint32(0), sb[:0x3fc]))
		blk0 := make([]byte, BlockSize)
		if grp == 0 {
			copy(blk0[1024:], sb)
		} else {
			copy(blk0, sb)
		}
		if err := w.writeAt(blk0, grp*blocksPerGroup); err != nil {
			return err
		}
		if err := w.writeAt(gdt, grp*blocksPerGroup+1); err != nil {
			return err
		}
	}
	return nil
}

// fillBits sets or clears bits [from, to) of bm.
func fillBits(bm []byte, from, to uint64, set bool) {
	for b := from; b < to; {
		if b%8 == 0 && to-b >= 8 {
			n := (to - b) / 8
			v := byte(0)
			if set {
				v = 0xff
			}
			for i := b / 8; i < b/8+n; i++ {
				bm[i] = v
			}
			b += 8 * n
			continue
		}
		if set {
			bm[b/8] |= 1 << (b % 8)
		} else {
			bm[b/8] &^= 1 << (b % 8)
		}
		b++
	}
}

// superblock encodes the primary superblock (checksum set by the caller).
func (w *Writer) superblock(g geometry, uuid [16]byte, seed [4]uint32, p Params, freeBlocks, freeInodes uint64) []byte {
	sb := make([]byte, 1024)
	t := uint32(p.Time)
	le.PutUint32(sb[0x0:], uint32(g.groups*g.ipg))
	le.PutUint32(sb[0x4:], uint32(g.blocks))
	le.PutUint32(sb[0xc:], uint32(freeBlocks))
	le.PutUint32(sb[0x10:], uint32(freeInodes))
	le.PutUint32(sb[0x14:], 0) // first data block
	le.PutUint32(sb[0x18:], 2) // 1024 << 2 = 4096
	le.PutUint32(sb[0x1c:], 2)
	le.PutUint32(sb[0x20:], blocksPerGroup)
	le.PutUint32(sb[0x24:], blocksPerGroup)
	le.PutUint32(sb[0x28:], uint32(g.ipg))
	le.PutUint32(sb[0x30:], t) // write time
	le.PutUint16(sb[0x36:], 0xffff)
	le.PutUint16(sb[0x38:], sbMagic)
	le.PutUint16(sb[0x3a:], 1) // clean
	le.PutUint16(sb[0x3c:], 1) // errors: continue
	le.PutUint32(sb[0x40:], t) // last check
	le.PutUint32(sb[0x4c:], 1) // dynamic revision
	le.PutUint32(sb[0x54:], firstIno)
	le.PutUint16(sb[0x58:], InodeSize)
	compat := uint32(compatExtAttr | compatDirIndex)
	if g.journal > 0 {
		compat |= compatHasJournal
	}
	le.PutUint32(sb[0x5c:], compat)
	le.PutUint32(sb[0x60:], incompatFiletype|incompatExtents|incompatFlexBG)
	le.PutUint32(sb[0x64:], roCompatSparseSuper|roCompatLargeFile|roCompatHugeFile|roCompatDirNlink|roCompatExtraIsize|roCompatMetadataCsum)
	copy(sb[0x68:], uuid[:])
	copy(sb[0x78:0x88], p.Label)
	for i, s := range seed {
		le.PutUint32(sb[0xec+4*i:], s)
	}
	sb[0xfc] = hashHalfMD4
	le.PutUint32(sb[0x100:], 0x4|0x8) // default mount options: user_xattr, acl
	le.PutUint32(sb[0x108:], t)       // mkfs time
	if g.journal > 0 {
		le.PutUint32(sb[0xe0:], journalIno)
		sb[0xfd] = 1 // s_jnl_blocks holds a copy of the journal's i_block
		j := &w.inodes[journalIno]
		copy(sb[0x10c:], j.iblock[:])
		le.PutUint32(sb[0x10c+60:], uint32(j.size>>32))
		le.PutUint32(sb[0x10c+64:], uint32(j.size))
	}
	le.PutUint16(sb[0x15c:], extraIsize)
	le.PutUint16(sb[0x15e:], extraIsize)
	le.PutUint32(sb[0x160:], flagsSignedH)
	sb[0x174] = logGroupsPerFlex
	sb[0x175] = 1 // checksum type: crc32c
	return sb
}

// encodeInode writes in as inode number ino into dst (256 bytes).
func (w *Writer) encodeInode(dst []byte, ino uint32, in *inode, csumSeed uint32) {
	le.PutUint16(dst[0x0:], in.mode)
	le.PutUint16(dst[0x2:], uint16(in.uid))
	le.PutUint32(dst[0x4:], uint32(in.size))
	at, atx := in.atime.encode()
	ct, ctx := in.ctime.encode()
	mt, mtx := in.mtime.encode()
	cr, crx := in.crtime.encode()
	le.PutUint32(dst[0x8:], at)
	le.PutUint32(dst[0xc:], ct)
	le.PutUint32(dst[0x10:], mt)
	le.PutUint16(dst[0x18:], uint16(in.gid))
	le.PutUint16(dst[0x1a:], uint16(in.links))
	sectors := in.blocks * (BlockSize / 512)
	le.PutUint32(dst[0x1c:], uint32(sectors))
	le.PutUint32(dst[0x20:], in.flags)
	copy(dst[0x28:0x64], in.iblock[:])
	le.PutUint32(dst[0x68:], in.xblock)
	le.PutUint32(dst[0x6c:], uint32(in.size>>32))
	le.PutUint16(dst[0x74:], uint16(sectors>>32))
	le.PutUint16(dst[0x78:], uint16(in.uid>>16))
	le.PutUint16(dst[0x7a:], uint16(in.gid>>16))
	le.PutUint16(dst[0x80:], extraIsize)
	le.PutUint32(dst[0x84:], ctx)
	le.PutUint32(dst[0x88:], mtx)
	le.PutUint32(dst[0x8c:], atx)
	le.PutUint32(dst[0x90:], cr)
	le.PutUint32(dst[0x94:], crx)
	if in.xinline != nil {
		copy(dst[128+extraIsize:], in.xinline)
	}
	c := crc32c(inodeSeed(csumSeed, ino), dst)
	le.PutUint16(dst[0x7c:], uint16(c))
	le.PutUint16(dst[0x82:], uint16(c>>16))
}
