package sparse

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// region is a piece of data written at an offset of a test file.
type region struct {
	off  int64
	data []byte
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeLayout(t testing.TB, path string, size int64, regions []region) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for _, r := range regions {
		if _, err := f.WriteAt(r.data, r.off); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCopy(t *testing.T) {
	tests := []struct {
		name    string
		size    int64
		regions func(t *testing.T) []region
		// maxAlloc is the most the copy may allocate (sparse copies only).
		maxAlloc int64
	}{
		{"empty", 0, func(*testing.T) []region { return nil }, 0},
		{"all hole", 64 * mib, func(*testing.T) []region { return nil }, 0},
		{"all data", 3*mib + 17, func(t *testing.T) []region { return []region{{0, randBytes(t, 3*mib+17)}} }, 3*mib + 2*BlockSize},
		{"hole in middle", 16 * mib, func(t *testing.T) []region {
			return []region{{0, randBytes(t, mib)}, {15 * mib, randBytes(t, mib)}}
		}, 2*mib + 2*BlockSize},
		{"trailing hole", 8 * mib, func(t *testing.T) []region { return []region{{0, randBytes(t, 100)}} }, 2 * BlockSize},
		{"leading hole unaligned data", 8*mib + 3, func(t *testing.T) []region {
			return []region{{5*mib + 1234, randBytes(t, 10000)}, {8*mib - 2, []byte{1, 2, 3, 4, 5}}}
		}, 6 * BlockSize},
		{"explicit zeros become holes", 8 * mib, func(t *testing.T) []region {
			return []region{{0, make([]byte, 8*mib)}, {4 * mib, []byte("x")}}
		}, 2 * BlockSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			src, dst := filepath.Join(dir, "src.img"), filepath.Join(dir, "out", "dst.img")
			if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			writeLayout(t, src, tc.size, tc.regions(t))
			if err := os.Chmod(src, 0o640); err != nil {
				t.Fatal(err)
			}
			st, err := CopyStats(context.Background(), src, dst)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(src)
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("content differs (len got %d want %d)", len(got), len(want))
			}
			fi, _ := os.Stat(dst)
			if fi.Size() != tc.size || st.Size != tc.size {
				t.Errorf("size = %d (stats %d), want %d", fi.Size(), st.Size, tc.size)
			}
			if fi.Mode().Perm() != 0o640 {
				t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
			}
			alloc, err := Allocated(dst)
			if err != nil {
				t.Fatal(err)
			}
			if st.Method == Sparse && alloc > tc.maxAlloc {
				t.Errorf("destination allocates %d bytes, want <= %d (not sparse)", alloc, tc.maxAlloc)
			}
			if st.Method == Sparse && st.Written > tc.maxAlloc {
				t.Errorf("wrote %d bytes, want <= %d", st.Written, tc.maxAlloc)
			}
			// No temporary files left behind.
			ents, _ := os.ReadDir(filepath.Dir(dst))
			if len(ents) != 1 {
				t.Errorf("destination dir holds %d entries, want 1", len(ents))
			}
		})
	}
}

func TestCopyErrors(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	writeLayout(t, src, 4*mib, []region{{0, []byte("data")}})
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		src     string
		dst     string
		wantErr string
	}{
		{"missing source", context.Background(), filepath.Join(dir, "nope"), filepath.Join(dir, "d1"), "no such file"},
		{"source is a directory", context.Background(), dir, filepath.Join(dir, "d2"), "not a regular file"},
		{"missing destination dir", context.Background(), src, filepath.Join(dir, "no", "d3"), "no such file"},
		{"canceled", canceled, src, filepath.Join(dir, "d4"), "context canceled"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := CopyStats(tc.ctx, tc.src, tc.dst)
			if st.Method == Reflink && tc.name == "canceled" {
				t.Skipf("reflink copies finish without checking the context: %v", st.Method)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
			}
			if _, serr := os.Stat(tc.dst); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("destination exists after failed copy: %v", serr)
			}
		})
	}
	// Only src remains in dir: no temp files leaked.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("leftover files: %v", names)
	}
}

func TestCopyReflink(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeLayout(t, a, mib, []region{{0, []byte("hello")}})
	fa, _ := os.Open(a)
	fb, _ := os.Create(b)
	probe := unix.IoctlFileClone(int(fb.Fd()), int(fa.Fd()))
	fa.Close()
	fb.Close()
	if probe != nil {
		t.Skipf("file system of %s has no reflink support: %v", dir, probe)
	}
	st, err := CopyStats(context.Background(), a, filepath.Join(dir, "c"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Method != Reflink {
		t.Errorf("method = %s, want reflink", st.Method)
	}
}

func TestExtend(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	writeLayout(t, p, 10, []region{{0, []byte("0123456789")}})
	if err := Extend(p, 5); err == nil || !strings.Contains(err.Error(), "smaller") {
		t.Errorf("shrinking: err = %v", err)
	}
	if err := Extend(p, 8*mib); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Size() != 8*mib {
		t.Errorf("size = %d", fi.Size())
	}
	if a, _ := Allocated(p); a > 2*BlockSize {
		t.Errorf("extension allocated %d bytes", a)
	}
}

// BenchmarkCopy compares Copy with `cp --sparse=always` on a 256 MiB image
// holding 32 MiB of data, 16 MiB of explicit zeros and holes.
func BenchmarkCopy(b *testing.B) {
	cp, err := exec.LookPath("cp")
	if err != nil {
		b.Skipf("reference tool cp not found: %v", err)
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "src.img")
	var regions []region
	for i := range 32 {
		regions = append(regions, region{int64(i) * 8 * mib, randBytes(b, mib)})
	}
	regions = append(regions, region{100*mib + 4096, make([]byte, 16*mib)})
	writeLayout(b, src, 256*mib, regions)
	var ours, ref time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		if err := Copy(context.Background(), src, filepath.Join(dir, "ours.img")); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)
		b.StopTimer()
		t0 = time.Now()
		if out, err := exec.Command(cp, "--sparse=always", "--reflink=auto", src, filepath.Join(dir, "ref.img")).CombinedOutput(); err != nil {
			b.Fatalf("cp: %v: %s", err, out)
		}
		ref += time.Since(t0)
		b.StartTimer()
	}
	b.ReportMetric(float64(ours)/float64(ref), "ours/cp")
	a1, _ := Allocated(filepath.Join(dir, "ours.img"))
	a2, _ := Allocated(filepath.Join(dir, "ref.img"))
	b.Logf("time ours/cp = %.2f; allocated ours %d KiB, cp %d KiB", float64(ours)/float64(ref), a1>>10, a2>>10)
}
