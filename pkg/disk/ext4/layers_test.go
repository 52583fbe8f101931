package ext4_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
	"github.com/vxn-dev/vxn/pkg/hostimage"
	"github.com/vxn-dev/vxn/pkg/imagestore"
	"github.com/vxn-dev/vxn/pkg/tarsafe"
)

type lent struct {
	name, body, link string
	typ              byte
}

func layer(t *testing.T, ents ...lent) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		switch e.typ {
		case tar.TypeReg:
			h.Size = int64(len(e.body))
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return static.NewLayer(buf.Bytes(), types.DockerUncompressedLayer)
}

// TestLayersToDisk runs the image store's disk path (Flatten, then
// tarsafe.Sanitize, then FromTar) on layers where an upper layer rewrites a
// lower layer's file through a directory symlink, and where a file's data
// is replaced by a later layer: the last version must win.
func TestLayersToDisk(t *testing.T) {
	for _, tool := range []string{"e2fsck", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not installed (Debian package e2fsprogs): %v", tool, err)
		}
	}
	big := strings.Repeat("lower layer data ", 10000)
	layers := []v1.Layer{
		layer(t,
			lent{name: "usr/", typ: tar.TypeDir},
			lent{name: "usr/lib/", typ: tar.TypeDir},
			lent{name: "usr/lib/libfoo.so", typ: tar.TypeReg, body: big},
			lent{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
			lent{name: "etc/", typ: tar.TypeDir},
			lent{name: "etc/os-release", typ: tar.TypeReg, body: big},
		),
		// No "lib/" entry: a directory entry would replace the symlink.
		layer(t,
			lent{name: "lib/libfoo.so", typ: tar.TypeReg, body: "upper libfoo"},
			lent{name: "etc/os-release", typ: tar.TypeReg, body: "upper os-release"},
		),
	}
	ctx := context.Background()
	flat := imagestore.Flatten(ctx, layers)
	defer flat.Close()
	clean := tarsafe.Sanitize(ctx, flat, tarsafe.Options{Source: "test layers"})
	defer clean.Close()
	img := filepath.Join(t.TempDir(), "layers.img")
	if err := ext4.FromTar(ctx, clean, img, ext4.Options{Label: "layers"}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil || strings.Contains(string(out), "?") {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	for p, want := range map[string]string{"/usr/lib/libfoo.so": "upper libfoo", "/etc/os-release": "upper os-release"} {
		out, err := exec.Command("debugfs", "-R", "cat "+p, img).Output()
		if err != nil || string(out) != want {
			t.Errorf("%s: %.80q %v, want %q", p, out, err, want)
		}
	}
	if out, _ := exec.Command("debugfs", "-R", "stat /lib", img).Output(); !strings.Contains(string(out), `Fast link dest: "usr/lib"`) {
		t.Errorf("/lib is no longer the symlink:\n%.300s", out)
	}
}

// TestHostimageMakeExt4 checks hostimage.MakeExt4 (the Dom0 root) now that
// it uses FromDir: e2fsck clean, label, the inode count it asks for, free
// space for extraMB, and owners, modes and device nodes read back.
func TestHostimageMakeExt4(t *testing.T) {
	for _, tool := range []string{"e2fsck", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not installed (Debian package e2fsprogs): %v", tool, err)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", "etc/xen", "tmp", "dev"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777|os.ModeSticky)
	os.WriteFile(filepath.Join(root, "bin/busybox"), bytes.Repeat([]byte{0x7f}, 100000), 0o755)
	os.Symlink("busybox", filepath.Join(root, "bin/sh"))
	os.WriteFile(filepath.Join(root, "etc/xen/xl.conf"), []byte("autoballoon=0\n"), 0o644)
	if os.Geteuid() == 0 {
		if err := syscall.Mknod(filepath.Join(root, "dev/console"), syscall.S_IFCHR|0o600, 5<<8|1); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "dom0.img")
	if err := hostimage.MakeExt4(context.Background(), root, img, "dom0root", 64); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil || strings.Contains(string(out), "?") {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	stats, _ := exec.Command("debugfs", "-R", "stats", img).Output()
	s := string(stats)
	var inodes, free int64
	fmt.Sscanf(s[strings.Index(s, "Inode count:")+len("Inode count:"):], "%d", &inodes)
	fmt.Sscanf(s[strings.Index(s, "Free blocks:")+len("Free blocks:"):], "%d", &free)
	if !strings.Contains(s, "Filesystem volume name:   dom0root") || inodes < 4096+64*16 || free*4096 < 64<<20 || !strings.Contains(s, "has_journal") {
		t.Errorf("superblock: %d inodes, %d free blocks:\n%.1500s", inodes, free, s)
	}
	checks := map[string]string{"/tmp": "Mode:  01777", "/bin/busybox": "Mode:  0755", "/bin/sh": `Fast link dest: "busybox"`}
	if os.Geteuid() == 0 {
		checks["/dev/console"] = "Device major/minor number: 05:01"
	}
	for p, want := range checks {
		if out, _ := exec.Command("debugfs", "-R", "stat "+p, img).Output(); !strings.Contains(string(out), want) {
			t.Errorf("%s: want %q in\n%.600s", p, want, out)
		}
	}
}
