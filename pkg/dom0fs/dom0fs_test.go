package dom0fs

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// conformance runs the same checks against every FS implementation.
func conformance(t *testing.T, fsys FS) {
	t.Helper()
	if err := fsys.MkdirAll("/var/lib/xen/images", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := fsys.WriteFile("/etc/xen/a.cfg", []byte("name = \"a\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fsys.WriteFile("/etc/xen/a.cfg", []byte("name = \"b\"\n"), 0o644); err != nil {
		t.Fatal("replace:", err)
	}
	if got, err := fsys.ReadFile("/etc/xen/a.cfg"); err != nil || string(got) != "name = \"b\"\n" {
		t.Errorf("ReadFile = %q, %v", got, err)
	}
	src := filepath.Join(t.TempDir(), "disk.img")
	f, _ := os.Create(src)
	f.WriteAt([]byte("data"), 1<<20)
	f.Close()
	if err := fsys.CopyFile("/var/lib/xen/images/a.img", src, 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := fsys.Lstat("/var/lib/xen/images/a.img"); err != nil || st.Size != 1<<20+4 || !st.Mode.IsRegular() {
		t.Errorf("Lstat = %+v, %v", st, err)
	}
	for i := 0; i < 2; i++ { // replacing a link works too
		if err := fsys.Symlink("../a.cfg", "/etc/xen/auto/a.cfg"); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := fsys.Readlink("/etc/xen/auto/a.cfg"); err != nil || got != "../a.cfg" {
		t.Errorf("Readlink = %q, %v", got, err)
	}
	if st, err := fsys.Lstat("/etc/xen/auto/a.cfg"); err != nil || st.Mode&fs.ModeSymlink == 0 {
		t.Errorf("Lstat link = %+v, %v", st, err)
	}
	if err := fsys.Remove("/etc/xen/auto/a.cfg"); err != nil {
		t.Fatal(err)
	}
	if _, err := fsys.Lstat("/etc/xen/auto/a.cfg"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Remove: %v", err)
	}
	for _, bad := range []string{"etc/x", "/etc/../x", "/etc//x", "/a\nb"} {
		if err := fsys.WriteFile(bad, nil, 0o644); err == nil {
			t.Errorf("WriteFile(%q) accepted", bad)
		}
	}
	if err := fsys.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDirConformance(t *testing.T) {
	root := filepath.Join(t.TempDir(), "rootfs")
	fsys, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, fsys)
	if matches, _ := filepath.Glob(filepath.Join(root, "etc/xen/.*tmp*")); len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}

func TestExt4Conformance(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian package e2fsprogs): %v", tool, err)
		}
	}
	img := filepath.Join(t.TempDir(), "dom0.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, "32M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	fsys, err := Open(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := fsys.(*Ext4); !ok {
		t.Fatalf("Open(image) = %T, want *Ext4", fsys)
	}
	conformance(t, fsys)
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
}

func TestOpenRejectsOther(t *testing.T) {
	p := filepath.Join(t.TempDir(), "notext4")
	os.WriteFile(p, make([]byte, 4096), 0o644)
	if _, err := Open(p); err == nil {
		t.Error("Open accepted a file that is not ext4")
	}
}
