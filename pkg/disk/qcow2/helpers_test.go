package qcow2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// needQemu skips the test when qemu-img or qemu-io is not installed.
func needQemu(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"qemu-img", "qemu-io"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed (apt-get install qemu-utils): %v", tool, err)
		}
	}
}

// sh runs a command and fails the test with its output on error.
func sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sha256File(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// allocatedBytes returns the bytes allocated on disk for path.
func allocatedBytes(t testing.TB, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return -1
	}
	return sys.Blocks * 512
}

// textBlock returns n bytes of compressible text.
func textBlock(rng *rand.Rand, n int) []byte {
	words := []string{"qcow2", "cluster", "xen", "guest", "bundle", "layer", "zero", "backing", "refcount", "image"}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		if rng.IntN(8) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// writeMixedRaw writes a raw image of size bytes: random data, text,
// explicit zeros, scattered small writes and holes. scale is the number of
// bytes per region.
func writeMixedRaw(t testing.TB, path string, size, scale int64, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	random := func(n int64) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	write := func(b []byte, off int64) {
		if off+int64(len(b)) > size {
			b = b[:size-off]
		}
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	off := int64(0)
	write(random(scale), off) // random
	off += scale
	write(textBlock(rng, int(2*scale)), off) // compressible
	off += 2 * scale
	write(make([]byte, scale/2), off) // explicit zeros
	off += scale / 2
	for range 64 { // scattered 4 KiB writes
		o := off + rng.Int64N(max(1, size-off-4096))
		write(random(4096)[:max(1, rng.IntN(4096))], o&^511)
	}
	write(random(scale/16), size-scale/16) // tail
}

// repoShared returns the shared reference folder (../shared next to the
// module root), or skips.
func repoShared(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skipf("skipping: no go.mod above the test directory")
		}
		dir = parent
	}
	shared := filepath.Join(dir, "..", "shared")
	if _, err := os.Stat(shared); err != nil {
		t.Skipf("skipping: shared reference folder absent: %v", err)
	}
	return shared
}

// checkAgainstQemu converts img with qemu-img and with ConvertToRaw and
// compares contents, sparseness, ReadAt and Extents.
func checkAgainstQemu(t *testing.T, img string, opts Options) {
	t.Helper()
	dir := t.TempDir()
	want := filepath.Join(dir, "qemu.raw")
	got := filepath.Join(dir, "go.raw")
	sh(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", img, want)
	if err := ConvertToRawOptions(context.Background(), img, got, ConvertOptions{Open: opts}); err != nil {
		t.Fatalf("ConvertToRaw: %v", err)
	}
	ws, gs := sha256File(t, want), sha256File(t, got)
	if ws != gs {
		t.Errorf("sha256 differs: qemu-img %s, ours %s", ws, gs)
	}
	wst, _ := os.Stat(want)
	gst, _ := os.Stat(got)
	if wst.Size() != gst.Size() {
		t.Errorf("size: qemu-img %d, ours %d", wst.Size(), gst.Size())
	}
	wa, ga := allocatedBytes(t, want), allocatedBytes(t, got)
	if ga > wa+64<<10 {
		t.Errorf("output less sparse than qemu-img's: ours %d bytes allocated, qemu-img %d", ga, wa)
	}
	t.Logf("allocated: ours %d, qemu-img %d; size %d", ga, wa, gst.Size())

	raw, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	im, err := OpenOptions(img, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if im.Size() != int64(len(raw)) {
		t.Fatalf("Size() = %d, want %d", im.Size(), len(raw))
	}
	// ReadAt at odd offsets and lengths.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		if len(raw) == 0 {
			break
		}
		off := rng.Int64N(int64(len(raw)))
		n := rng.IntN(3*int(im.ClusterSize()) + 100)
		p := make([]byte, n)
		m, err := im.ReadAt(p, off)
		wantN := min(int64(n), int64(len(raw))-off)
		if int64(m) != wantN || (err != nil && !(err == io.EOF && wantN < int64(n))) {
			t.Fatalf("ReadAt(%d, %d) = %d, %v; want %d", n, off, m, err, wantN)
		}
		if !bytes.Equal(p[:m], raw[off:off+int64(m)]) {
			t.Fatalf("ReadAt(%d, %d) data differs", n, off)
		}
	}
	// Extents tile the disk and zero extents read as zeros.
	next := int64(0)
	for e, err := range im.Extents(0, im.Size()) {
		if err != nil {
			t.Fatalf("Extents: %v", err)
		}
		if e.Offset != next || e.Length <= 0 {
			t.Fatalf("Extents: got %+v, want offset %d", e, next)
		}
		if e.Kind == ExtentZero && !allZero(raw[e.Offset:e.Offset+e.Length]) {
			t.Fatalf("Extents: zero extent %+v has data", e)
		}
		next = e.Offset + e.Length
	}
	if next != im.Size() {
		t.Fatalf("Extents end at %d, want %d", next, im.Size())
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
