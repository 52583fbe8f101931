package writer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// readerSource is where a regular file's data comes from. An *os.File is
// read with SEEK_DATA/SEEK_HOLE so that the holes of a sparse source file
// are skipped without reading them.
type readerSource = io.Reader

// extent maps n file blocks from logical block l to physical block p.
type extent struct {
	l, p uint64
	n    uint64
}

var zeroBlock [BlockSize]byte

// take hands out up to n contiguous blocks at the cursor, stepping over
// the superblock and descriptor backups at the start of backup groups.
func (w *Writer) take(n uint64) (start, got uint64, err error) {
	c := w.cursor
	g := c / blocksPerGroup
	if c%blocksPerGroup == 0 && hasBackup(g) {
		c += 1 + w.gdtRes
	}
	limit := nextBackup(g) * blocksPerGroup
	got = min(n, limit-c)
	if c+got > maxBlocks {
		return 0, 0, fmt.Errorf("the content needs more than %d blocks, the most a file system without the 64bit feature has", uint64(maxBlocks))
	}
	w.cursor = c + got
	if !w.finishing {
		w.lastData = w.cur
	}
	if !w.finishing && w.cfg.SizeBlocks > 0 && w.cursor > w.cfg.SizeBlocks && !w.over {
		w.over = true
		w.overAt = w.cur
	}
	return c, got, nil
}

// takeContig hands out exactly n contiguous blocks; blocks skipped to find
// them stay free.
func (w *Writer) takeContig(n uint64) (uint64, error) {
	for {
		start, got, err := w.take(n)
		if err != nil {
			return 0, err
		}
		if got == n {
			return start, nil
		}
		w.freed = append(w.freed, span{start, got})
	}
}

// allocOne hands out one block.
func (w *Writer) allocOne() (uint64, error) {
	b, _, err := w.take(1)
	return b, err
}

// writeAt writes whole blocks at block b (nothing once past a fixed size).
func (w *Writer) writeAt(p []byte, b uint64) error {
	if w.over || w.dry {
		return nil
	}
	if _, err := w.f.WriteAt(p, int64(b)*BlockSize); err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	return nil
}

// free returns blocks to the free space and punches them out of the image.
func (w *Writer) free(s span) {
	if s.n == 0 {
		return
	}
	w.freed = append(w.freed, s)
	if !w.over {
		// Best effort: a file system without hole punching keeps the bytes.
		_ = unix.Fallocate(int(w.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(s.start)*BlockSize, int64(s.n)*BlockSize)
	}
}

func (w *Writer) dataBuf() []byte {
	if w.buf == nil {
		w.buf = make([]byte, 1<<20)
	}
	return w.buf
}

// writeFile copies size bytes of data into new blocks of ino, leaving
// all-zero blocks as holes, and builds the file's extent tree.
func (w *Writer) writeFile(ino uint32, r io.Reader, size int64) error {
	var exts []extent
	var err error
	if size > 0 {
		if f, ok := r.(*os.File); ok {
			exts, err = w.copySparse(f, size)
		} else {
			exts, err = w.copyStream(r, size)
		}
		if err != nil {
			return err
		}
	}
	w.inodes[ino].size = uint64(size)
	return w.setExtents(ino, exts)
}

func (w *Writer) copyStream(r io.Reader, size int64) ([]extent, error) {
	if r == nil {
		return nil, errors.New("no data for a non-empty file")
	}
	var exts []extent
	buf := w.dataBuf()
	var lblk uint64
	var done int64
	for done < size {
		n := int(min(int64(len(buf)), size-done))
		m, err := io.ReadFull(r, buf[:n])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, fmt.Errorf("short file data: got %d of %d bytes", done+int64(m), size)
			}
			return nil, err
		}
		nb := (n + BlockSize - 1) / BlockSize
		clear(buf[n : nb*BlockSize])
		if err := w.putBlocks(&exts, lblk, buf[:nb*BlockSize]); err != nil {
			return nil, err
		}
		lblk += uint64(nb)
		done += int64(n)
	}
	return exts, nil
}

// copySparse reads only the data segments of a host file.
func (w *Writer) copySparse(f *os.File, size int64) ([]extent, error) {
	var exts []extent
	buf := w.dataBuf()
	fd := int(f.Fd())
	pos := int64(0)
	for pos < size {
		data, err := unix.Seek(fd, pos, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		hole := size
		if err != nil {
			data = pos
		} else if h, err := unix.Seek(fd, data, unix.SEEK_HOLE); err == nil {
			hole = min(h, size)
		}
		data &^= BlockSize - 1
		if data >= size {
			break
		}
		if hole <= data {
			hole = min(data+BlockSize, size)
		}
		for off := data; off < hole; {
			n := int(min(int64(len(buf)), hole-off))
			m, err := f.ReadAt(buf[:n], off)
			if m < n {
				if err == nil || errors.Is(err, io.EOF) {
					return nil, fmt.Errorf("short file data: the file shrank below %d bytes while being read", size)
				}
				return nil, err
			}
			nb := (n + BlockSize - 1) / BlockSize
			clear(buf[n : nb*BlockSize])
			if err := w.putBlocks(&exts, uint64(off/BlockSize), buf[:nb*BlockSize]); err != nil {
				return nil, err
			}
			off += int64(n)
		}
		pos = (hole + BlockSize - 1) &^ (BlockSize - 1)
	}
	return exts, nil
}

// putBlocks writes the non-zero blocks of p (file blocks from lblk on).
func (w *Writer) putBlocks(exts *[]extent, lblk uint64, p []byte) error {
	nb := len(p) / BlockSize
	for i := 0; i < nb; {
		if bytes.Equal(p[i*BlockSize:(i+1)*BlockSize], zeroBlock[:]) {
			i++
			continue
		}
		j := i + 1
		for j < nb && !bytes.Equal(p[j*BlockSize:(j+1)*BlockSize], zeroBlock[:]) {
			j++
		}
		if err := w.writeRun(exts, lblk+uint64(i), p[i*BlockSize:j*BlockSize]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// writeRun writes p at newly allocated blocks as file blocks l onwards.
func (w *Writer) writeRun(exts *[]extent, l uint64, p []byte) error {
	if l+uint64(len(p)/BlockSize) > maxBlocks {
		return fmt.Errorf("file longer than ext4's %d blocks", uint64(maxBlocks))
	}
	var lb [8]byte
	for len(p) > 0 {
		start, got, err := w.take(uint64(len(p) / BlockSize))
		if err != nil {
			return err
		}
		chunk := p[:got*BlockSize]
		if err := w.writeAt(chunk, start); err != nil {
			return err
		}
		le.PutUint64(lb[:], l)
		w.h.Write(lb[:])
		w.h.Write(chunk)
		appendExtent(exts, l, start, got)
		l += got
		p = p[got*BlockSize:]
	}
	return nil
}

// appendExtent adds blocks to an extent list, merging with the last
// extent where both the file and the disk positions continue it.
func appendExtent(exts *[]extent, l, p, n uint64) {
	e := *exts
	if k := len(e); k > 0 {
		last := &e[k-1]
		if last.l+last.n == l && last.p+last.n == p && last.n < maxExtentLen {
			add := min(n, maxExtentLen-last.n)
			last.n += add
			l, p, n = l+add, p+add, n-add
		}
	}
	for n > 0 {
		add := min(n, maxExtentLen)
		e = append(e, extent{l, p, add})
		l, p, n = l+add, p+add, n-add
	}
	*exts = e
}

// writeBlocks stores p (whole blocks) as the only data of ino.
func (w *Writer) writeBlocks(ino uint32, p []byte) error {
	var exts []extent
	for l := uint64(0); len(p) > 0; {
		start, got, err := w.take(uint64(len(p) / BlockSize))
		if err != nil {
			return err
		}
		if err := w.writeAt(p[:got*BlockSize], start); err != nil {
			return err
		}
		appendExtent(&exts, l, start, got)
		l += got
		p = p[got*BlockSize:]
	}
	return w.setExtents(ino, exts)
}

const (
	extentsPerBlock = (BlockSize - 12) / 12
	extentsInInode  = 4
)

// setExtents records the data blocks of ino and writes its extent tree:
// up to four extents in the inode, else full leaf blocks and as many
// index levels as needed.
func (w *Writer) setExtents(ino uint32, exts []extent) error {
	in := &w.inodes[ino]
	in.flags |= flagExtents
	for _, e := range exts {
		in.blocks += e.n
	}
	type entry struct{ l, p, n uint64 } // n == 0: index entry
	level := make([]entry, len(exts))
	for i, e := range exts {
		level[i] = entry{e.l, e.p, e.n}
	}
	depth := 0
	encode := func(dst []byte, es []entry, max int, depth int) {
		le.PutUint16(dst[0:], extentMagic)
		le.PutUint16(dst[2:], uint16(len(es)))
		le.PutUint16(dst[4:], uint16(max))
		le.PutUint16(dst[6:], uint16(depth))
		le.PutUint32(dst[8:], 0)
		for i, e := range es {
			x := dst[12+12*i:]
			le.PutUint32(x[0:], uint32(e.l))
			if depth == 0 {
				le.PutUint16(x[4:], uint16(e.n))
				le.PutUint16(x[6:], uint16(e.p>>32))
				le.PutUint32(x[8:], uint32(e.p))
			} else {
				le.PutUint32(x[4:], uint32(e.p))
				le.PutUint16(x[8:], uint16(e.p>>32))
				le.PutUint16(x[10:], 0)
			}
		}
	}
	for len(level) > extentsInInode {
		var up []entry
		for i := 0; i < len(level); i += extentsPerBlock {
			chunk := level[i:min(i+extentsPerBlock, len(level))]
			b, err := w.allocOne()
			if err != nil {
				return err
			}
			buf := w.blk
			clear(buf)
			encode(buf, chunk, extentsPerBlock, depth)
			if err := w.writeAt(buf, b); err != nil {
				return err
			}
			w.patches = append(w.patches, patch{block: b, ino: ino})
			in = &w.inodes[ino]
			in.blocks++
			up = append(up, entry{l: chunk[0].l, p: b})
		}
		level = up
		depth++
	}
	clear(in.iblock[:])
	encode(in.iblock[:], level, extentsInInode, depth)
	return nil
}

// fileSpans lists the blocks an extent-mapped inode uses: data and tree.
func (w *Writer) fileSpans(ino uint32) []span {
	var out []span
	var walk func(node []byte, depth int)
	walk = func(node []byte, depth int) {
		if len(node) < 12 || le.Uint16(node) != extentMagic {
			return
		}
		n := int(le.Uint16(node[2:]))
		for i := 0; i < n && 12+12*i+12 <= len(node); i++ {
			x := node[12+12*i:]
			if le.Uint16(node[6:]) == 0 {
				out = append(out, span{uint64(le.Uint16(x[6:]))<<32 | uint64(le.Uint32(x[8:])), uint64(le.Uint16(x[4:]))})
				continue
			}
			b := uint64(le.Uint16(x[8:]))<<32 | uint64(le.Uint32(x[4:]))
			out = append(out, span{b, 1})
			if depth > 8 {
				continue
			}
			child := make([]byte, BlockSize)
			if _, err := w.f.ReadAt(child, int64(b)*BlockSize); err == nil {
				walk(child, depth+1)
			}
		}
	}
	in := w.inodes[ino]
	walk(in.iblock[:], 0)
	return out
}
