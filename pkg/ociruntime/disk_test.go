package ociruntime

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
)

func openImage(t *testing.T, p string) (*ext4.Image, error) {
	t.Helper()
	return ext4.OpenImage(p)
}

func TestBuildDiskCopies(t *testing.T) {
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"etc", "bin", "data", "lnk-parent"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	write(t, filepath.Join(rootfs, "etc", "hosts"), "image\n")
	write(t, filepath.Join(rootfs, "bin", "sh"), "sh\n")
	os.Symlink("/etc", filepath.Join(rootfs, "etcl"))
	srcDir := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(srcDir, "sub"), 0o755)
	write(t, filepath.Join(srcDir, "sub", "f"), "from host\n")
	write(t, filepath.Join(dir, "hosts"), "engine\n")
	copies := []Copy{
		{Source: filepath.Join(dir, "hosts"), Dest: "/etc/hosts"},
		{Source: srcDir, Dest: "/data"},
		{Source: srcDir, Dest: "/new/deep"},
		{Source: filepath.Join(dir, "hosts"), Dest: "/etcl/x"},    // parent is a symlink
		{Source: filepath.Join(dir, "hosts"), Dest: "/bin"},       // file over a directory
		{Source: filepath.Join(dir, "missing"), Dest: "/missing"}, // no source
	}
	out := filepath.Join(dir, "out", "c.ext4")
	res, err := BuildDisk(context.Background(), DiskRequest{RootFS: rootfs, Copies: copies, Out: out, CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	if res.Path != out || res.Cached {
		t.Errorf("result %+v", res)
	}
	w := strings.Join(res.Warnings, "\n")
	for _, s := range []string{"/etcl/x not copied", "/bin not copied", "/missing not copied"} {
		if !strings.Contains(w, s) {
			t.Errorf("warnings lack %q:\n%s", s, w)
		}
	}
	if fsck, err := exec.LookPath("e2fsck"); err == nil {
		if b, err := exec.Command(fsck, "-fn", out).CombinedOutput(); err != nil {
			t.Errorf("e2fsck: %v\n%s", err, b)
		}
	} else {
		t.Log("e2fsck not installed: file system not checked")
	}
	im, err := ext4.OpenImage(out)
	if err != nil {
		t.Skipf("cannot inspect the image: %v", err)
	}
	for p, want := range map[string]string{"etc/hosts": "engine\n", "data/sub/f": "from host\n", "new/deep/sub/f": "from host\n", "bin/sh": "sh\n"} {
		got, err := im.ReadFile(p)
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", p, got, err, want)
		}
	}
}

func TestBuildDiskBounds(t *testing.T) {
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	os.MkdirAll(rootfs, 0o755)
	big := filepath.Join(dir, "big")
	write(t, big, strings.Repeat("x", 64<<10))
	old := MaxCopyBytes
	MaxCopyBytes = 32 << 10
	defer func() { MaxCopyBytes = old }()
	res, err := BuildDisk(context.Background(), DiskRequest{RootFS: rootfs, Copies: []Copy{{Source: big, Dest: "/big"}}, Out: filepath.Join(dir, "o.ext4")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "exceed") {
		t.Errorf("warnings %q", res.Warnings)
	}
	if _, err := BuildDisk(context.Background(), DiskRequest{RootFS: filepath.Join(dir, "nope"), Out: filepath.Join(dir, "o2.ext4")}); err == nil {
		t.Error("missing rootfs accepted")
	}
}

func TestOverlayOptions(t *testing.T) {
	mi := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
100 22 0:50 / /run/containerd/io.containerd.runtime.v2.task/default/c1/rootfs rw,relatime - overlay overlay rw,lowerdir=/s/2/fs:/s/1/fs,upperdir=/s/3/fs,workdir=/s/3/work
101 22 0:51 / /with\040space rw - overlay overlay rw,lowerdir=/a\,b:/c
102 22 0:52 / /notoverlay rw - tmpfs tmpfs rw
`
	o, ok := overlayOptions(strings.NewReader(mi), "/run/containerd/io.containerd.runtime.v2.task/default/c1/rootfs")
	if !ok || !strings.Contains(o, "lowerdir=/s/2/fs:/s/1/fs") {
		t.Errorf("overlay %q %v", o, ok)
	}
	if o, ok := overlayOptions(strings.NewReader(mi), "/with space"); !ok || splitOptions(o)[1] != "lowerdir=/a,b:/c" {
		t.Errorf("escaped: %q %v %q", o, ok, splitOptions(o))
	}
	if _, ok := overlayOptions(strings.NewReader(mi), "/notoverlay"); ok {
		t.Error("tmpfs taken for an overlay")
	}
	if _, ok := overlayOptions(strings.NewReader("garbage\n- - -\n"), "/"); ok {
		t.Error("garbage parsed")
	}
}

// FuzzOverlayOptions: the mountinfo parser never panics.
func FuzzOverlayOptions(f *testing.F) {
	f.Add("100 22 0:50 / /r rw - overlay overlay rw,lowerdir=/a:/b,upperdir=/u\n", "/r")
	f.Fuzz(func(t *testing.T, mi, mp string) {
		o, _ := overlayOptions(strings.NewReader(mi), mp)
		splitOptions(o)
		unescapeMount(mp)
	})
}

// busyboxRootfs lays out a busybox image's tree (the binary and a hard link
// per applet, as docker.io/library/busybox has) from the host's busybox.
func busyboxRootfs(tb testing.TB) string {
	tb.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		tb.Skip("busybox not installed: no busybox rootfs to convert")
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		tb.Skipf("busybox --list: %v", err)
	}
	root := filepath.Join(tb.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "tmp", "root", "var/spool/mail", "home", "usr/sbin"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		tb.Fatal(err)
	}
	main := filepath.Join(root, "bin", "busybox")
	if err := os.WriteFile(main, data, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			os.Link(main, filepath.Join(root, "bin", a))
		}
	}
	write(tb, filepath.Join(root, "etc", "passwd"), "root:x:0:0:root:/root:/bin/sh\n")
	return root
}

// TestBusyboxDiskTime measures the per-container conversion of a busybox
// rootfs (the create-time cost of bundles that cannot use the cache).
func TestBusyboxDiskTime(t *testing.T) {
	root := busyboxRootfs(t)
	out := filepath.Join(t.TempDir(), "bb.ext4")
	res, err := BuildDisk(context.Background(), DiskRequest{RootFS: root, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(out)
	t.Logf("busybox rootfs -> %s in %v (%d MiB apparent)", out, res.Took, fi.Size()>>20)
}
