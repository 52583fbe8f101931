package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxn-dev/vxn/pkg/debpkg"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"
)

// cachedKernel returns the vmlinuz and lib/modules/<release> of a Debian
// kernel package extracted by pkg/hostimage into .cache.
func cachedKernel(t testing.TB) (vmlinuz, modDir string) {
	cache, err := debpkg.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	k, _ := filepath.Glob(filepath.Join(cache, "root/linux-image-*/boot/vmlinuz-*"))
	m, _ := filepath.Glob(filepath.Join(cache, "root/linux-image-*/lib/modules/*"))
	if len(k) == 0 || len(m) == 0 {
		msg := fmt.Sprintf("no extracted Debian kernel under %s (build the host image once: VXN_BUILD_IMAGE=1 go test ./pkg/hostimage)", filepath.Join(cache, "root"))
		if os.Getenv("VXN_E2E") == "1" {
			t.Fatal(msg) // the boot test was asked for: a missing kernel is a failure
		}
		t.Skip(msg)
	}
	return k[0], m[0]
}

// readArchive parses the initramfs as the kernel does: an uncompressed
// cpio head, zero padding, then a gzip-compressed cpio. It checks that the
// file does not start as gzip (libxenguest would gunzip it into guest
// memory).
func readArchive(t *testing.T, b []byte) map[string]cpio.Record {
	t.Helper()
	if bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
		t.Fatal("initramfs starts with a gzip header")
	}
	end := bytes.Index(b, []byte("TRAILER!!!\x00"))
	if end < 0 {
		t.Fatal("no uncompressed cpio head")
	}
	end += len("TRAILER!!!\x00")
	head := b[:end]
	for end < len(b) && b[end] == 0 {
		end++
	}
	zr, err := gzip.NewReader(bytes.NewReader(b[end:]))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]cpio.Record{}
	for _, part := range [][]byte{head, raw} {
		recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(part)))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if _, dup := out[r.Name]; dup {
				t.Errorf("duplicate record %s", r.Name)
			}
			if r.Mode&cpio.S_IFMT == cpio.S_IFDIR && &part[0] != &head[0] {
				t.Errorf("directory %s after the head", r.Name)
			}
			out[r.Name] = r
		}
	}
	return out
}

func content(t *testing.T, r cpio.Record) []byte {
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWriteNoModules(t *testing.T) {
	init := []byte("\x7fELF fake init")
	var a, b bytes.Buffer
	info, err := Write(&a, Options{Init: init})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Write(&b, Options{Init: init}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two builds differ")
	}
	if info.Compressed != int64(a.Len()) || info.Raw <= 0 {
		t.Errorf("info %+v, written %d", info, a.Len())
	}
	recs := readArchive(t, a.Bytes())
	tests := []struct {
		name string
		mode uint64
		perm uint64
	}{
		{".", cpio.S_IFDIR, 0o755},
		{"dev", cpio.S_IFDIR, 0o755},
		{"proc", cpio.S_IFDIR, 0o755},
		{"dev/console", cpio.S_IFCHR, 0o600},
		{"dev/null", cpio.S_IFCHR, 0o666},
		{"init", cpio.S_IFREG, 0o755},
		{"sbin/poweroff", cpio.S_IFLNK, 0o777},
	}
	for _, tc := range tests {
		r, ok := recs[tc.name]
		if !ok {
			t.Errorf("%s missing", tc.name)
			continue
		}
		if r.Mode&cpio.S_IFMT != tc.mode || r.Mode&0o7777 != tc.perm {
			t.Errorf("%s: mode %o, want %o|%o", tc.name, r.Mode, tc.mode, tc.perm)
		}
		if r.MTime != 0 || r.UID != 0 {
			t.Errorf("%s: not reproducible: %+v", tc.name, r.Info)
		}
	}
	if c := recs["dev/console"]; c.Rmajor != 5 || c.Rminor != 1 {
		t.Errorf("console %d:%d", c.Rmajor, c.Rminor)
	}
	if got := content(t, recs["init"]); !bytes.Equal(got, init) {
		t.Errorf("init content %q", got)
	}
	if _, err := Write(io.Discard, Options{}); err == nil {
		t.Error("no init accepted")
	}
}

func TestWriteModules(t *testing.T) {
	_, modDir := cachedKernel(t)
	var b bytes.Buffer
	info, err := Write(&b, Options{Init: []byte("x"), ModDir: modDir, Modules: QEMUModules})
	if err != nil {
		t.Fatal(err)
	}
	recs := readArchive(t, b.Bytes())
	rel := filepath.Base(modDir)
	order := string(content(t, recs["lib/modules/"+rel+"/vxn.modules"]))
	lines := strings.Fields(order)
	pos := map[string]int{}
	for i, l := range lines {
		pos[filepath.Base(l)] = i
		if _, ok := recs["lib/modules/"+rel+"/"+l]; !ok {
			t.Errorf("%s listed but not in the archive", l)
		}
	}
	for _, pair := range [][2]string{{"crc16.ko", "ext4.ko"}, {"jbd2.ko", "ext4.ko"}, {"mbcache.ko", "ext4.ko"}, {"crc32c_generic.ko", "ext4.ko"}} {
		if a, ok := pos[pair[0]]; ok && a > pos[pair[1]] {
			t.Errorf("%s after %s: %v", pair[0], pair[1], lines)
		}
	}
	for _, m := range []string{"ext4.ko", "overlay.ko", "virtio_blk.ko"} {
		if _, ok := pos[m]; !ok {
			t.Errorf("%s not in load order %v (builtin %v)", m, lines, info.Builtin)
		}
	}
	t.Logf("modules %v builtin %v; %d bytes raw, %d gzipped", lines, info.Builtin, info.Raw, info.Compressed)
	if _, err := Write(io.Discard, Options{Init: []byte("x"), ModDir: modDir, Modules: []string{"no_such_mod"}}); err == nil || !strings.Contains(err.Error(), "no_such_mod") {
		t.Errorf("missing module err %v", err)
	}
}

// TestArchive: explicit 0755 parents, the device nodes, the uncompressed
// head, and an archive the cpio tool reads.
func TestArchive(t *testing.T) {
	a := NewArchive()
	a.File("bin/busybox", []byte("BB"), 0o755)
	a.Symlink("bin/sh", "busybox")
	a.File("lib/modules/k/kernel/a.ko", []byte("ko"), 0o644)
	var b bytes.Buffer
	sz, err := a.Write(&b, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	if sz.Written != int64(b.Len()) || sz.Raw <= 0 {
		t.Errorf("sizes %+v for %d bytes written", sz, b.Len())
	}
	recs := readArchive(t, b.Bytes())
	for _, n := range []string{".", "dev", "dev/console", "dev/null", "bin", "bin/busybox", "bin/sh",
		"lib", "lib/modules", "lib/modules/k", "lib/modules/k/kernel", "lib/modules/k/kernel/a.ko"} {
		r, ok := recs[n]
		if !ok {
			t.Errorf("record %s missing", n)
			continue
		}
		if r.Info.Mode&cpio.S_IFMT == cpio.S_IFDIR && r.Info.Mode&0o777 != 0o755 {
			t.Errorf("directory %s has mode %o", n, r.Info.Mode&0o777)
		}
	}
	if got := string(content(t, recs["bin/busybox"])); got != "BB" {
		t.Errorf("bin/busybox = %q", got)
	}
	var c bytes.Buffer
	if _, err := a.Write(&c, gzip.BestSpeed); err != nil || !bytes.Equal(b.Bytes(), c.Bytes()) {
		t.Errorf("a second write differs (err %v)", err)
	}
}
