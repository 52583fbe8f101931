package qcow2

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"runtime"
	"sync"

	"compress/flate"
	"github.com/klauspost/compress/zstd"
)

// clusterScratch holds reusable buffers for decompressing clusters and
// remembers the last decompressed cluster, so that consecutive partial reads
// of one compressed cluster decompress it once. It is not safe for
// concurrent use; each goroutine has its own.
type clusterScratch struct {
	img   *Image
	desc  uint64
	valid bool
	out   []byte // decompressed cluster
	in    []byte // compressed bytes
	br    bytes.Reader
	fr    io.ReadCloser // flate reader, reset per cluster
}

func (img *Image) readCompressed(r run, dst []byte, s *clusterScratch) error {
	if s == nil {
		if v, ok := img.scratch.Get().(*clusterScratch); ok {
			s = v
		} else {
			s = new(clusterScratch)
		}
		defer img.scratch.Put(s)
	}
	if !s.valid || s.img != img || s.desc != r.desc {
		s.valid = false
		if err := img.decompress(r.desc, s); err != nil {
			return err
		}
		s.img, s.desc, s.valid = img, r.desc, true
	}
	copy(dst, s.out[r.host:r.host+int64(len(dst))])
	return nil
}

// compressedLocation decodes a compressed cluster descriptor into the file
// offset and the maximum length of the compressed data.
func (img *Image) compressedLocation(desc uint64) (off, size int64) {
	x := 62 - (img.clusterBits - 8)
	off = int64(desc & (1<<x - 1))
	nsec := int64((desc>>x)&(1<<(img.clusterBits-8)-1)) + 1
	return off, nsec*512 - off&511
}

// decompress decodes the compressed cluster desc into s.out[:clusterSize].
func (img *Image) decompress(desc uint64, s *clusterScratch) error {
	cs := img.clusterSize
	if int64(cap(s.out)) < cs {
		s.out = make([]byte, cs)
	}
	s.out = s.out[:cs]
	coff, csize := img.compressedLocation(desc)
	if coff >= img.fileSize {
		return img.errf(ErrCorrupt, coff, "compressed cluster (descriptor %#x) starts beyond the end of the file (%d bytes)", desc, img.fileSize)
	}
	// Data past the end of the file reads as zeros, as in QEMU; it is
	// simply not handed to the decompressor.
	avail := min(csize, img.fileSize-coff)
	if int64(cap(s.in)) < avail {
		s.in = make([]byte, avail)
	}
	in := s.in[:avail]
	if n, err := img.f.ReadAt(in, coff); err != nil && !(err == io.EOF && int64(n) == avail) {
		return &Error{Path: img.path, Offset: coff + int64(n), Msg: "reading compressed cluster", Err: err}
	}
	switch img.hdr.CompressionType {
	case compressionDeflate:
		s.br.Reset(in)
		if s.fr == nil {
			s.fr = flate.NewReader(&s.br)
		} else if err := s.fr.(flate.Resetter).Reset(&s.br, nil); err != nil {
			return img.errf(ErrCorrupt, coff, "deflate: %v", err)
		}
		if _, err := io.ReadFull(s.fr, s.out); err != nil {
			return img.errf(ErrCorrupt, coff, "compressed cluster (%d bytes, deflate) does not decode to %d bytes: %v", csize, cs, err)
		}
	case compressionZstd:
		fl, err := zstdFrameLen(in)
		if err != nil {
			return img.errf(ErrCorrupt, coff, "compressed cluster (%d bytes, zstd): %v", csize, err)
		}
		dec, err := img.zstdDecoder()
		if err != nil {
			return err
		}
		got, err := dec.DecodeAll(in[:fl], s.out[:0])
		if err != nil {
			return img.errf(ErrCorrupt, coff, "compressed cluster (%d bytes, zstd): %v", fl, err)
		}
		if int64(len(got)) != cs {
			return img.errf(ErrCorrupt, coff, "compressed cluster (%d bytes, zstd) decodes to %d bytes, want %d", fl, len(got), cs)
		}
		if &got[0] != &s.out[0] {
			copy(s.out, got)
		}
	default:
		return img.errf(ErrUnsupported, 104, "compression_type %d", img.hdr.CompressionType)
	}
	return nil
}

// zstdDecoder returns the package-wide zstd decoder, created on first use.
// DecodeAll is safe for concurrent use; its memory is bounded by
// maxZstdMemory whatever a frame header claims.
func (img *Image) zstdDecoder() (*zstd.Decoder, error) {
	zstdOnce.Do(func() {
		zstdDec, zstdErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithDecoderMaxMemory(maxZstdMemory))
	})
	if zstdErr != nil {
		return nil, &Error{Path: img.path, Offset: -1, Msg: "creating zstd decoder", Err: zstdErr}
	}
	return zstdDec, nil
}

// maxZstdMemory bounds what the zstd decoder may allocate for one frame:
// twice the largest cluster plus slack.
const maxZstdMemory = 2<<maxClusterBits + 1<<20

var (
	zstdOnce sync.Once
	zstdDec  *zstd.Decoder
	zstdErr  error
)

// zstdFrameLen returns the length of the zstd frame at the start of b
// (RFC 8878 section 3.1.1), so that the bytes after it (the start of the
// next compressed cluster, or padding) are not taken for another frame.
func zstdFrameLen(b []byte) (int, error) {
	const frameMagic = 0xFD2FB528
	if len(b) < 5 {
		return 0, fmt.Errorf("%d bytes is too short for a zstd frame", len(b))
	}
	if m := binary.LittleEndian.Uint32(b); m != frameMagic {
		return 0, fmt.Errorf("zstd frame magic is %#08x, want %#08x", m, frameMagic)
	}
	fhd := b[4]
	if fhd&0x08 != 0 {
		return 0, fmt.Errorf("zstd frame header reserved bit set")
	}
	single := fhd>>5&1 == 1
	pos := 5
	if !single {
		pos++ // window descriptor
	}
	pos += [4]int{0, 1, 2, 4}[fhd&3] // dictionary ID
	fcs := [4]int{0, 2, 4, 8}[fhd>>6]
	if fcs == 0 && single {
		fcs = 1
	}
	pos += fcs
	for {
		if pos+3 > len(b) {
			return 0, fmt.Errorf("zstd frame truncated at byte %d (block header)", pos)
		}
		bh := int(b[pos]) | int(b[pos+1])<<8 | int(b[pos+2])<<16
		pos += 3
		size := bh >> 3
		switch bh >> 1 & 3 {
		case 0, 2: // raw, compressed
			pos += size
		case 1: // RLE
			pos++
		case 3:
			return 0, fmt.Errorf("zstd block at byte %d has reserved type 3", pos-3)
		}
		if pos > len(b) {
			return 0, fmt.Errorf("zstd frame truncated: block ends at byte %d of %d", pos, len(b))
		}
		if bh&1 == 1 {
			break
		}
	}
	if fhd>>2&1 == 1 {
		pos += 4 // content checksum
		if pos > len(b) {
			return 0, fmt.Errorf("zstd frame truncated in the checksum")
		}
	}
	return pos, nil
}
