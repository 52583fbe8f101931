package ext4

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestImageEdit(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "dom0.img")
	base := mkTar(t, []tarEnt{
		dirE("tmp", 0o1777),
		dirE("etc", 0o755),
		{hdr: tarHdrReg("etc/old", 0o600), data: []byte("old contents")},
	})
	if err := FromTar(context.Background(), bytes.NewReader(base), img, Options{}); err != nil {
		t.Fatal(err)
	}
	im, err := OpenImage(img)
	if err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(1500000000, 0)
	im.Epoch = &epoch

	// A sparse host file and a small one.
	sparse := filepath.Join(dir, "sparse.bin")
	f, _ := os.Create(sparse)
	f.WriteAt([]byte("start"), 0)
	f.WriteAt([]byte("end"), 8<<20)
	f.Close()
	small := filepath.Join(dir, "small.txt")
	os.WriteFile(small, []byte("new contents\n"), 0o644)

	err = im.Batch(func(b *Batch) {
		b.MkdirAll("/etc/xen/auto dir", 0o700)
		b.MkdirAll("/tmp/sub", 0o755) // /tmp exists: its sticky mode must stay
		b.WriteFile("/etc/xen/auto dir/guest.cfg", small, 0o640, 1000, 1001)
		b.WriteFile("/etc/old", small, 0o644, 0, 0) // replace an existing file
		b.WriteFile("/var/lib/big.img", sparse, 0o600, 0, 0)
		b.Symlink("/etc/xen/auto dir/guest.cfg", "/etc/guest.cfg")
	})
	if err == nil || !strings.Contains(err.Error(), "/var/lib/big.img") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("writing into a missing directory: want one error naming it, got %v", err)
	}
	// Nothing of the failed batch ran.
	if _, err := im.Stat("/etc/xen"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("failed batch was partly applied: %v", err)
	}
	if err := im.Batch(func(b *Batch) {
		b.MkdirAll("/etc/xen/auto dir", 0o700)
		b.MkdirAll("/tmp/sub", 0o755) // /tmp exists: its sticky mode must stay
		b.WriteFile("/etc/xen/auto dir/guest.cfg", small, 0o640, 1000, 1001)
		b.WriteFile("/etc/old", small, 0o644, 0, 0) // replace an existing file
		b.Symlink("/etc/xen/auto dir/guest.cfg", "/etc/guest.cfg")
	}); err != nil {
		t.Fatal(err)
	}
	if err := im.MkdirAll("/var/lib", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := im.WriteFile("/var/lib/big.img", sparse, 0o600, 0, 0); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)

	for p, want := range map[string]fs.FileMode{
		"/tmp":                        fs.ModeDir | fs.ModeSticky | 0o777,
		"/tmp/sub":                    fs.ModeDir | 0o755,
		"/etc/xen":                    fs.ModeDir | 0o755,
		"/etc/xen/auto dir":           fs.ModeDir | 0o700,
		"/etc/xen/auto dir/guest.cfg": 0o640,
		"/etc/old":                    0o644,
		"/etc/guest.cfg":              fs.ModeSymlink | 0o777,
	} {
		fi, err := im.Stat(p)
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v err %v, want %v", p, fi.Mode(), err, want)
		}
	}
	fi, _ := im.Stat("/etc/xen/auto dir/guest.cfg")
	if fi.UID != 1000 || fi.GID != 1001 || fi.Links != 1 || !fi.ModTime().Equal(epoch) {
		t.Errorf("guest.cfg: %+v mtime %v", fi, fi.ModTime())
	}
	got, err := im.ReadFile("/etc/old")
	if err != nil || string(got) != "new contents\n" {
		t.Errorf("replaced file: %q %v", got, err)
	}
	got, err = im.ReadFile("/var/lib/big.img")
	want, _ := os.ReadFile(sparse)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("sparse file round trip: %d bytes, %v", len(got), err)
	}
	if out := debugfsR(t, img, "stat /var/lib/big.img"); !strings.Contains(out, "Blockcount: 16") {
		t.Errorf("sparse file should occupy 2 blocks:\n%s", out)
	}
	names, err := im.ReadDir("/etc")
	if err != nil || strings.Join(names, ",") != "guest.cfg,old,xen" {
		t.Errorf("ReadDir /etc: %v %v (temporary names must be gone)", names, err)
	}
	if err := im.Remove("/etc/guest.cfg"); err != nil {
		t.Error(err)
	}
	if err := im.Remove("/tmp/sub"); err != nil {
		t.Error(err)
	}
	if err := im.Remove("/etc/xen"); err == nil {
		t.Error("removing a non-empty directory succeeded")
	}
	if _, err := im.Stat("/etc/guest.cfg"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removed file: want ErrNotExist, got %v", err)
	}
	if err := im.Remove("/nope"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Remove missing: %v", err)
	}
	if err := im.MkdirAll("/bad\"name", 0o755); err == nil {
		t.Error("path with a double quote accepted")
	}
	if err := im.Symlink("x", "/a\nb"); err == nil {
		t.Error("path with a newline accepted")
	}
	fsck(t, img)
}

func TestOpenImageErrors(t *testing.T) {
	needTools(t)
	p := filepath.Join(t.TempDir(), "junk")
	os.WriteFile(p, make([]byte, 4096), 0o644)
	if _, err := OpenImage(p); err == nil || !strings.Contains(err.Error(), "magic") {
		t.Errorf("junk file: %v", err)
	}
	if _, err := OpenImage(p + ".missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestMkfsImageEdit checks Image against an image made by mkfs.ext4 (with a
// journal and metadata_csum).
func TestMkfsImageEdit(t *testing.T) {
	needTools(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skipf("skipping: mkfs.ext4 not installed (Debian package e2fsprogs): %v", err)
	}
	img := filepath.Join(t.TempDir(), "m.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v\n%s", err, out)
	}
	im, err := OpenImage(img)
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "f")
	os.WriteFile(src, []byte("x"), 0o644)
	if err := im.Batch(func(b *Batch) {
		b.MkdirAll("/a/b/c", 0o750)
		b.WriteFile("/a/b/c/f", src, 0o600, 5, 5)
		b.WriteFile("/a/b/c/f", src, 0o644, 6, 6)
	}); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	fi, err := im.Stat("/a/b/c/f")
	if err != nil || fi.UID != 6 || fi.Mode() != 0o644 {
		t.Errorf("stat: %+v %v", fi, err)
	}
}
