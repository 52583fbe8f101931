package qcow2

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

type discardWriterAt struct{}

func (discardWriterAt) WriteAt(p []byte, off int64) (int, error) { return len(p), nil }

// FuzzOpen feeds arbitrary bytes as an image (header, extensions, L1/L2
// tables, compressed clusters) and checks that Open, ReadAt, Extents and
// WriteRaw return errors rather than panicking or hanging. The seed corpus
// is the checked-in images in testdata plus header variants.
func FuzzOpen(f *testing.F) {
	names, _ := filepath.Glob("testdata/*.qcow2")
	if len(names) == 0 {
		f.Fatal("no seed images in testdata")
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		if len(b) > 112 {
			f.Add(b[:112])
			f.Add(patch(b, 24, uint64(1<<40))) // larger virtual size
			f.Add(patch(b, 4, uint32(2)))      // as version 2
		}
	}
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
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		img, err := OpenOptions(path, Options{MaxBackingDepth: 4})
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
		buf := make([]byte, 64<<10)
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
		if size <= 4<<20 {
			_ = img.WriteRaw(context.Background(), discardWriterAt{}, ConvertOptions{Workers: 1, ChunkSize: 64 << 10})
		}
	})
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
