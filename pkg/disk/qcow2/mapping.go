package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"runtime"
	"syscall"
)

// runKind says how the bytes of a run are obtained.
type runKind uint8

const (
	runZero       runKind = iota // reads as zeros
	runData                      // bytes at f[host : host+n]
	runCompressed                // bytes [host, host+n) of a compressed cluster
)

// run is a piece of the virtual disk with a uniform source.
type run struct {
	off, n   int64
	kind     runKind
	f        source // runData: file to read
	fileSize int64  // runData: bytes past it read as zero
	host     int64  // runData: file offset of off; runCompressed: offset in cluster
	img      *Image // runCompressed: owning image
	desc     uint64 // runCompressed: L2 entry
}

// merger coalesces adjacent runs with the same source and passes them on.
type merger struct {
	pending run
	has     bool
	fn      func(run) error
}

func (m *merger) add(r run) error {
	if r.n <= 0 {
		return nil
	}
	if m.has {
		p := &m.pending
		if p.off+p.n == r.off && p.kind == r.kind && (r.kind == runZero ||
			(r.kind == runData && p.f == r.f && p.host+p.n == r.host)) {
			p.n += r.n
			return nil
		}
		if err := m.fn(m.pending); err != nil {
			return err
		}
	}
	m.pending, m.has = r, true
	return nil
}

func (m *merger) flush() error {
	if !m.has {
		return nil
	}
	m.has = false
	return m.fn(m.pending)
}

// walk reports the runs covering [off, off+n) of l, merged, to fn.
func walk(l layer, off, n int64, fn func(run) error) error {
	m := &merger{fn: fn}
	if err := l.mapRange(off, n, m); err != nil {
		return err
	}
	return m.flush()
}

// l2Table returns the decoded L2 table for L1 index i, or nil if the L1
// entry is unallocated.
func (img *Image) l2Table(i int64) ([]uint64, error) {
	e := img.l1[i]
	off := int64(e & l1OffsetMask)
	if off == 0 {
		return nil, nil
	}
	l1Off := int64(img.hdr.L1TableOffset) + i*8
	if off&(img.clusterSize-1) != 0 {
		return nil, img.errf(ErrCorrupt, l1Off, "L1 entry %d: L2 table offset %#x is not aligned to the cluster size %d", i, off, img.clusterSize)
	}
	if off >= img.fileSize || off+img.clusterSize > img.fileSize {
		return nil, img.errf(ErrCorrupt, l1Off, "L1 entry %d: L2 table at %#x extends beyond the end of the file (%d bytes)", i, off, img.fileSize)
	}
	img.l2mu.Lock()
	t, ok := img.l2cache[off]
	img.l2mu.Unlock()
	if ok {
		return t, nil
	}
	raw := make([]byte, img.clusterSize)
	if _, err := img.f.ReadAt(raw, off); err != nil {
		return nil, &Error{Path: img.path, Offset: off, Msg: "reading L2 table", Err: err}
	}
	t = make([]uint64, img.clusterSize/8)
	for j := range t {
		t[j] = binary.BigEndian.Uint64(raw[j*8:])
	}
	img.l2mu.Lock()
	if len(img.l2cache) >= img.l2max {
		for k := range img.l2cache { // evict an arbitrary table
			delete(img.l2cache, k)
			break
		}
	}
	img.l2cache[off] = t
	img.l2mu.Unlock()
	return t, nil
}

func (img *Image) mapRange(off, n int64, m *merger) error {
	cs := img.clusterSize
	end := off + n
	for off < end {
		vc := off >> img.clusterBits
		l1i := vc >> img.l2Bits
		spanEnd := min(end, (l1i+1)<<(img.l2Bits+img.clusterBits))
		t, err := img.l2Table(l1i)
		if err != nil {
			return err
		}
		if t == nil {
			if err := img.unallocated(off, spanEnd-off, m); err != nil {
				return err
			}
			off = spanEnd
			continue
		}
		for off < spanEnd {
			l2i := (off >> img.clusterBits) & (1<<img.l2Bits - 1)
			e := t[l2i]
			in := off & (cs - 1)
			k := min(cs-in, spanEnd-off)
			switch {
			case e&l2Compressed != 0:
				err = m.add(run{off: off, n: k, kind: runCompressed, img: img, desc: e, host: in})
			case e&l2ZeroFlag != 0:
				if img.hdr.Version < 3 {
					return img.errf(ErrCorrupt, int64(img.l1[l1i]&l1OffsetMask)+l2i*8, "zero cluster flag in a version 2 image (virtual offset %#x)", off)
				}
				err = m.add(run{off: off, n: k, kind: runZero})
			case e&l2OffsetMask == 0:
				err = img.unallocated(off, k, m)
			default:
				host := int64(e & l2OffsetMask)
				entryOff := int64(img.l1[l1i]&l1OffsetMask) + l2i*8
				if host&(cs-1) != 0 {
					return img.errf(ErrCorrupt, entryOff, "data cluster offset %#x is not aligned to the cluster size %d (virtual offset %#x)", host, cs, off)
				}
				if host >= img.fileSize {
					return img.errf(ErrCorrupt, entryOff, "data cluster at %#x is beyond the end of the file (%d bytes) (virtual offset %#x)", host, img.fileSize, off)
				}
				err = m.add(run{off: off, n: k, kind: runData, f: img.f, fileSize: img.fileSize, host: host + in})
			}
			if err != nil {
				return err
			}
			off += k
		}
	}
	return nil
}

// unallocated maps a range not allocated in img: from the backing file
// where it has data, zeros elsewhere.
func (img *Image) unallocated(off, n int64, m *merger) error {
	if img.backing != nil {
		if bs := img.backing.size(); off < bs {
			k := min(n, bs-off)
			if err := img.backing.mapRange(off, k, m); err != nil {
				return err
			}
			off, n = off+k, n-k
		}
	}
	return m.add(run{off: off, n: n, kind: runZero})
}

// Linux lseek whence values for sparse files.
const (
	seekData = 3
	seekHole = 4
)

func (r *rawLayer) mapRange(off, n int64, m *merger) error {
	end := off + n
	if runtime.GOOS != "linux" {
		return m.add(run{off: off, n: n, kind: runData, f: r.f, fileSize: r.sz, host: off})
	}
	for off < end {
		d, err := r.f.Seek(off, seekData)
		if err != nil {
			if errors.Is(err, syscall.ENXIO) { // no data after off
				return m.add(run{off: off, n: end - off, kind: runZero})
			}
			// SEEK_DATA unsupported: everything is data.
			return m.add(run{off: off, n: end - off, kind: runData, f: r.f, fileSize: r.sz, host: off})
		}
		if d < off { // nonsense answer; do not loop
			d = off
		}
		d = min(d, end)
		if err := m.add(run{off: off, n: d - off, kind: runZero}); err != nil {
			return err
		}
		if d >= end {
			return nil
		}
		h, err := r.f.Seek(d, seekHole)
		if err != nil || h <= d {
			h = end
		}
		h = min(h, end)
		if err := m.add(run{off: d, n: h - d, kind: runData, f: r.f, fileSize: r.sz, host: d}); err != nil {
			return err
		}
		off = h
	}
	return nil
}

// ExtentKind classifies a range of the virtual disk.
type ExtentKind uint8

const (
	// ExtentZero ranges read as zeros without reading any data: zero
	// clusters, unallocated clusters with no backing data, holes of a raw
	// backing file. A converter may leave them as holes.
	ExtentZero ExtentKind = iota
	// ExtentData ranges are backed by data clusters (possibly compressed)
	// of the image or of a backing file. The data may still be all zeros.
	ExtentData
)

// String returns "zero" or "data".
func (k ExtentKind) String() string {
	switch k {
	case ExtentZero:
		return "zero"
	case ExtentData:
		return "data"
	}
	return fmt.Sprintf("ExtentKind(%d)", uint8(k))
}

// Extent is a maximal range of the virtual disk with one ExtentKind.
type Extent struct {
	Offset, Length int64
	Kind           ExtentKind
}

// Extents enumerates, in order, the extents covering [off, off+length) of
// the virtual disk (clipped to Size), resolving the backing chain. Adjacent
// extents of the same kind are merged. On error the sequence yields a zero
// Extent with the error and stops.
func (img *Image) Extents(off, length int64) iter.Seq2[Extent, error] {
	return func(yield func(Extent, error) bool) {
		if off < 0 || length < 0 {
			yield(Extent{}, fmt.Errorf("qcow2: %s: negative extent range %d+%d", img.path, off, length))
			return
		}
		if off >= img.Size() {
			return
		}
		length = min(length, img.Size()-off)
		var cur Extent
		have := false
		stop := errors.New("stop")
		err := walk(img, off, length, func(r run) error {
			k := ExtentData
			if r.kind == runZero {
				k = ExtentZero
			}
			if have && cur.Kind == k && cur.Offset+cur.Length == r.off {
				cur.Length += r.n
				return nil
			}
			if have && !yield(cur, nil) {
				return stop
			}
			cur, have = Extent{Offset: r.off, Length: r.n, Kind: k}, true
			return nil
		})
		if err == stop {
			return
		}
		if err != nil {
			yield(Extent{}, err)
			return
		}
		if have {
			yield(cur, nil)
		}
	}
}

// ReadAt implements io.ReaderAt on the virtual disk. Reads past Size
// return io.EOF.
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("qcow2: %s: negative offset %d", img.path, off)
	}
	if off >= img.Size() {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := min(int64(len(p)), img.Size()-off)
	base := off
	err := walk(img, off, n, func(r run) error {
		return fillRun(r, p[r.off-base:r.off-base+r.n], nil)
	})
	if err != nil {
		return 0, err
	}
	if n < int64(len(p)) {
		return int(n), io.EOF
	}
	return int(n), nil
}

// fillRun writes the bytes of r into dst (len(dst) == r.n). scratch, if not
// nil, is a reusable cluster buffer for compressed runs.
func fillRun(r run, dst []byte, scratch *clusterScratch) error {
	switch r.kind {
	case runZero:
		clear(dst)
	case runData:
		avail := max(0, min(int64(len(dst)), r.fileSize-r.host))
		n := 0
		if avail > 0 {
			var err error
			n, err = r.f.ReadAt(dst[:avail], r.host)
			if err != nil && err != io.EOF {
				return &Error{Path: r.f.Name(), Offset: r.host + int64(n), Msg: "reading data", Err: err}
			}
		}
		clear(dst[n:]) // past the end of the file reads as zeros
	case runCompressed:
		return r.img.readCompressed(r, dst, scratch)
	}
	return nil
}
