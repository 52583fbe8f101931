package qcow2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

type discardWriterAt struct{}

func (discardWriterAt) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

// memFile is an input image in memory (see openSource).
type memFile struct {
	*bytes.Reader
	name string
}

func (m *memFile) Close() error { return nil }
func (m *memFile) Name() string { return m.name }

// Per-exec bounds of FuzzOpen, so that it spends its time on new inputs
// rather than on decompressing megabytes of one: reads only where clusters
// are at most fuzzMaxCluster (larger ones are still opened and mapped), a
// full conversion only of images up to fuzzMaxConvert.
const (
	fuzzMaxCluster = 64 << 10
	fuzzMaxConvert = 256 << 10
	fuzzReadSize   = 4 << 10
	// fuzzMaxInput bounds the input (a base and patches): longer ones are
	// passed over, so that no new input costs the minimiser more than a
	// few seconds.
	fuzzMaxInput = 512
)

// fuzzImage builds FuzzOpen's image from its input: data[0] picks a base
// (0: empty, else one of bases), the rest is patches, each a big-endian
// 16-bit offset, a length byte and that many bytes written there (the image
// grows with zeros as needed); length 0 truncates the image at the offset.
// Inputs stay a few dozen bytes where the images are kilobytes: Go's
// minimiser, quadratic in the input's length, then takes milliseconds
// instead of its minute per new input, and mutations land in the header
// and tables of a valid image rather than anywhere.
func fuzzImage(bases [][]byte, data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	var img []byte
	if i := int(data[0]) % (len(bases) + 1); i > 0 {
		img = append(img, bases[i-1]...)
	}
	for p := data[1:]; len(p) >= 3; {
		off, n := int(p[0])<<8|int(p[1]), int(p[2])
		p = p[3:]
		if n == 0 {
			img = img[:min(off, len(img))]
			continue
		}
		n = min(n, len(p))
		if end := off + n; end > len(img) {
			img = append(img, make([]byte, end-len(img))...)
		}
		copy(img[off:], p[:n])
		p = p[n:]
	}
	return img
}

// fuzzPatch encodes one patch of fuzzImage.
func fuzzPatch(off int, b []byte) []byte {
	return append([]byte{byte(off >> 8), byte(off), byte(len(b))}, b...)
}

// FuzzOpen feeds arbitrary images (header, extensions, L1/L2 tables,
// compressed clusters; built by fuzzImage from the checked-in images in
// testdata and patches) and checks that Open, ReadAt, Extents and WriteRaw
// return errors rather than panicking or hanging. The image is read from
// memory (no file write per exec); its backing files, if any, from a
// directory holding the base seed.
func FuzzOpen(f *testing.F) {
	names, _ := filepath.Glob("testdata/*.qcow2")
	if len(names) == 0 {
		f.Fatal("no seed images in testdata")
	}
	var bases [][]byte
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		bases = append(bases, b)
		i := byte(len(bases))
		f.Add([]byte{i})
		f.Add(append([]byte{i}, fuzzPatch(112, nil)...))                                     // the header only
		f.Add(append([]byte{i}, fuzzPatch(24, []byte{0, 0, 1, 0, 0, 0, 0, 0})...))           // larger virtual size
		f.Add(append([]byte{i}, fuzzPatch(4, []byte{0, 0, 0, 2})...))                        // as version 2
		f.Add(append([]byte{i}, fuzzPatch(20, []byte{16})...))                               // 64 KiB clusters
		f.Add(append(append([]byte{i}, fuzzPatch(40, []byte{0, 0, 0, 0, 0, 0, 0x30, 0})...), // L1 moved
			fuzzPatch(0x3000, []byte{0x80, 0, 0, 0, 0, 0, 2, 0})...))
	}
	f.Add(append([]byte{0}, fuzzPatch(0, bases[0][:112])...)) // a header alone, on no base
	dir := f.TempDir()
	// The overlay seed refers to this backing file by a relative name.
	base, err := os.ReadFile("testdata/v3-512.qcow2")
	if err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "v3-512.qcow2"), base, 0o644); err != nil {
		f.Fatal(err)
	}
	path := filepath.Join(dir, "fuzz.qcow2")
	buf := make([]byte, fuzzReadSize)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > fuzzMaxInput {
			return
		}
		raw := fuzzImage(bases, data)
		img, err := openSource(path, &memFile{bytes.NewReader(raw), path}, int64(len(raw)), Options{MaxBackingDepth: 4})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) && !errors.Is(err, os.ErrNotExist) {
				// Other OS errors (permission, not a regular file) are fine
				// but must carry a message.
				if err.Error() == "" {
					t.Fatalf("empty error")
				}
			}
			return
		}
		defer img.Close()
		size := img.Size()
		if img.ClusterSize() <= fuzzMaxCluster {
			for _, off := range []int64{0, 64 << 10, 192 << 10, size - 100, size / 2} {
				if off < 0 || off >= size {
					continue
				}
				n, err := img.ReadAt(buf, off)
				if err != nil && err != io.EOF {
					return
				}
				if n > len(buf) || (n < len(buf) && off+int64(n) != size) {
					t.Fatalf("ReadAt(%d) = %d bytes of %d, size %d", off, n, len(buf), size)
				}
			}
		}
		count := 0
		for e, err := range img.Extents(0, 4<<20) {
			if err != nil {
				break
			}
			if e.Length <= 0 {
				t.Fatalf("empty extent %+v", e)
			}
			if count++; count > 100000 {
				t.Fatalf("too many extents")
			}
		}
		if size <= fuzzMaxConvert && img.ClusterSize() <= fuzzMaxCluster {
			_ = img.WriteRaw(context.Background(), discardWriterAt{}, ConvertOptions{Workers: 1, ChunkSize: 64 << 10})
		}
	})
}

// TestFuzzImage checks fuzzImage's patches: the inputs FuzzOpen's seeds
// use must build the images they say.
func TestFuzzImage(t *testing.T) {
	bases := [][]byte{[]byte("abcdef")}
	for _, tc := range []struct {
		in   []byte
		want string
	}{
		{nil, ""},
		{[]byte{0}, ""},
		{[]byte{1}, "abcdef"},
		{append([]byte{1}, fuzzPatch(2, []byte("XY"))...), "abXYef"},
		{append([]byte{1}, fuzzPatch(8, []byte("Z"))...), "abcdef\x00\x00Z"},
		{append([]byte{1}, fuzzPatch(3, nil)...), "abc"},
		{append([]byte{2}, fuzzPatch(0, []byte("new"))...), "new"},
		{[]byte{1, 0, 1, 9, 'q'}, "aqcdef"}, // a length beyond the input: what is there
	} {
		if got := string(fuzzImage(bases, tc.in)); got != tc.want {
			t.Errorf("fuzzImage(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestFuzzSeedsSane checks that the header variants the fuzz seeds use
// behave as expected (a larger virtual size than the L1 table covers is
// refused).
func TestFuzzSeedsSane(t *testing.T) {
	b, err := os.ReadFile("testdata/v3-512.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "big.qcow2")
	os.WriteFile(p, patch(b, 24, uint64(1<<40)), 0o644)
	if _, err := Open(p); !errors.Is(err, ErrCorrupt) {
		t.Errorf("virtual size beyond L1: err = %v", err)
	}
}
