package importer

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression is the outer format of a tar archive, detected from its first
// bytes.
type Compression string

// The compressions DetectCompression recognises.
const (
	// None is an uncompressed tar archive.
	None Compression = "tar"
	// Gzip is gzip (RFC 1952), possibly several concatenated members.
	Gzip Compression = "gzip"
	// Bzip2 is bzip2, possibly several concatenated streams.
	Bzip2 Compression = "bzip2"
	// Xz is xz (LZMA2), possibly several concatenated streams.
	Xz Compression = "xz"
	// Zstd is Zstandard, possibly several frames.
	Zstd Compression = "zstd"
)

// Magic numbers at the start of each format.
var (
	magicGzip = []byte{0x1f, 0x8b}
	magicBz2  = []byte("BZh")
	magicXz   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// tarBlock is the tar header size; DetectCompression needs this many bytes
// to recognise an uncompressed archive.
const tarBlock = 512

// ErrNotTar is wrapped by errors about input that is neither a tar archive
// nor one of the supported compressions.
var ErrNotTar = errors.New("not a tar archive")

// DetectCompression identifies the format from the first bytes of a file
// (give it at least 512 bytes when available; fewer is fine for compressed
// input). Detection looks only at magic numbers, never at a file name: gzip
// (1f 8b), bzip2 ("BZh" + block size digit), xz (fd "7zXZ" 00), zstd
// (28 b5 2f fd, or a skippable frame 5x 2a 4d 18), and an uncompressed tar by
// its header checksum (plus "ustar" magic when present). Anything else is an
// error wrapping ErrNotTar that says what the bytes look like.
func DetectCompression(head []byte) (Compression, error) {
	switch {
	case bytes.HasPrefix(head, magicGzip):
		return Gzip, nil
	case bytes.HasPrefix(head, magicBz2) && len(head) > 3 && head[3] >= '1' && head[3] <= '9':
		return Bzip2, nil
	case bytes.HasPrefix(head, magicXz):
		return Xz, nil
	case bytes.HasPrefix(head, magicZstd):
		return Zstd, nil
	case len(head) >= 4 && head[0]&0xf0 == 0x50 && head[1] == 0x2a && head[2] == 0x4d && head[3] == 0x18:
		return Zstd, nil // zstd skippable frame
	}
	if len(head) >= tarBlock {
		if err := checkTarHeader(head[:tarBlock]); err != nil {
			return "", err
		}
		return None, nil
	}
	return "", fmt.Errorf("%w: %d bytes is too short for a tar header and no compression magic matches (first bytes % x)", ErrNotTar, len(head), head[:min(len(head), 8)])
}

// checkTarHeader verifies that block is a plausible tar header: a non-empty
// name and a correct header checksum. It returns an error wrapping ErrNotTar
// otherwise.
func checkTarHeader(block []byte) error {
	if bytes.Equal(block, make([]byte, tarBlock)) {
		return fmt.Errorf("%w: the first 512-byte block is all zeros (an empty archive or not a tar)", ErrNotTar)
	}
	if what := sniff(block); what != "" {
		return fmt.Errorf("%w: the data looks like %s", ErrNotTar, what)
	}
	// Checksum field: 8 bytes at 148, octal, terminated by NUL or space.
	field := bytes.TrimRight(bytes.Trim(block[148:156], " \x00"), " \x00")
	if len(field) == 0 {
		return fmt.Errorf("%w: header checksum field is empty", ErrNotTar)
	}
	var want int64
	for _, c := range field {
		if c < '0' || c > '7' {
			return fmt.Errorf("%w: header checksum field %q is not octal (first bytes % x)", ErrNotTar, block[148:156], block[:8])
		}
		want = want*8 + int64(c-'0')
	}
	var unsigned, signed int64
	for i, c := range block {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	if want != unsigned && want != signed {
		return fmt.Errorf("%w: header checksum %d does not match the computed %d", ErrNotTar, want, unsigned)
	}
	return nil
}

// sniff names a few formats that are commonly passed by mistake.
func sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("QFI\xfb")):
		return "a qcow2 image"
	case len(b) >= 1082 && b[1080] == 0x53 && b[1081] == 0xef:
		return "an ext2/3/4 file system image"
	case bytes.HasPrefix(b, []byte("PK\x03\x04")):
		return "a zip archive"
	case bytes.HasPrefix(b, []byte("\x04\x22\x4d\x18")):
		return "an lz4 stream (unsupported)"
	case bytes.HasPrefix(b, []byte("070701")), bytes.HasPrefix(b, []byte("070702")):
		return "a cpio archive"
	case bytes.HasPrefix(b, []byte("!<arch>")):
		return "an ar archive (a .deb?)"
	}
	return ""
}

// Decompress detects the compression of r and returns a reader of the
// decompressed data, which is checked to start with a tar header. Close the
// returned reader to release decoder resources (it does not close r).
func Decompress(r io.Reader) (io.ReadCloser, Compression, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(tarBlock)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, "", err
	}
	c, err := DetectCompression(head)
	if err != nil {
		return nil, "", err
	}
	var dr io.ReadCloser
	switch c {
	case None:
		return io.NopCloser(br), c, nil
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, c, fmt.Errorf("gzip: %w", err)
		}
		dr = &gzipTail{zr: zr}
	case Bzip2:
		dr = io.NopCloser(bzip2.NewReader(br))
	case Xz:
		zr, err := xz.NewReader(br)
		if err != nil {
			return nil, c, fmt.Errorf("xz: %w", err)
		}
		dr = io.NopCloser(zr)
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(1<<31), zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, c, fmt.Errorf("zstd: %w", err)
		}
		dr = zstdCloser{zr}
	}
	// Check the decompressed data is a tar archive before anyone relies on it.
	dbr := bufio.NewReaderSize(&labelErr{r: dr, c: c}, 64<<10)
	head, err = dbr.Peek(tarBlock)
	if err != nil && !errors.Is(err, io.EOF) {
		dr.Close()
		return nil, c, err
	}
	if len(head) < tarBlock {
		dr.Close()
		return nil, c, fmt.Errorf("%w: the %s data decompresses to only %d bytes", ErrNotTar, c, len(head))
	}
	if err := checkTarHeader(head); err != nil {
		dr.Close()
		return nil, c, fmt.Errorf("decompressed %s data: %w", c, err)
	}
	return struct {
		io.Reader
		io.Closer
	}{dbr, dr}, c, nil
}

// gzipTail ends the stream cleanly at trailing garbage after at least one
// complete gzip member, as gzip(1) does ("trailing garbage ignored"); tape
// blocking and some tools pad .tar.gz files with zeros.
type gzipTail struct {
	zr *gzip.Reader
	n  int64
}

func (g *gzipTail) Read(p []byte) (int, error) {
	n, err := g.zr.Read(p)
	g.n += int64(n)
	if errors.Is(err, gzip.ErrHeader) && g.n > 0 {
		err = io.EOF
	}
	return n, err
}

func (g *gzipTail) Close() error { return g.zr.Close() }

// zstdCloser adapts zstd.Decoder.Close (no error) to io.Closer.
type zstdCloser struct{ *zstd.Decoder }

func (z zstdCloser) Close() error { z.Decoder.Close(); return nil }

// labelErr prefixes decompression errors with the format name.
type labelErr struct {
	r io.Reader
	c Compression
}

func (l *labelErr) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	if err != nil && err != io.EOF {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%s data is truncated: %w", l.c, err)
		} else {
			err = fmt.Errorf("corrupt %s data: %w", l.c, err)
		}
	}
	return n, err
}
