package xenbundle

// Regression tests of issue 11, "Hostile and interrupted inputs", at the
// command line: each case failed (or succeeded where it must not) before
// the fix.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/internal/testutil"
)

// qcow2WithBacking writes to path the qcow2 overlay seed of pkg/disk/qcow2
// with its backing file name and format replaced (format "" drops the
// backing format extension).
func qcow2WithBacking(t *testing.T, path, name, format string) {
	t.Helper()
	ov, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "pkg", "disk", "qcow2", "testdata", "overlay-512.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	const fmtExt, nameOff = 112, 136 // see pkg/disk/qcow2/backing_test.go
	if binary.BigEndian.Uint64(ov[8:]) != nameOff {
		t.Fatal("overlay seed layout changed")
	}
	c := bytes.Clone(ov)
	clear(c[nameOff:512])
	copy(c[nameOff:], name)
	binary.BigEndian.PutUint32(c[16:], uint32(len(name)))
	if format == "" {
		binary.BigEndian.PutUint32(c[fmtExt:], 0x12345678)
	} else {
		binary.BigEndian.PutUint32(c[fmtExt+4:], uint32(len(format)))
		clear(c[fmtExt+8 : fmtExt+16])
		copy(c[fmtExt+8:], format)
	}
	if err := os.WriteFile(path, c, 0o644); err != nil {
		t.Fatal(err)
	}
}

// copySeed copies the qcow2 base seed (the overlay's backing file) to dir.
func copySeed(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "pkg", "disk", "qcow2", "testdata", "v3-512.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "v3-512.qcow2")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestImportQcow2BackingConfined: a qcow2 whose backing file is a host file
// (absolute, "../" escape, no format) used to import successfully with the
// host file's bytes at the start of the disk.
func TestImportQcow2BackingConfined(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "src")
	other := filepath.Join(root, "other")
	os.MkdirAll(src, 0o755)
	os.MkdirAll(other, 0o755)
	secret := filepath.Join(other, "shadow")
	os.WriteFile(secret, []byte("root:$6$host-secret:19000:0:99999:7:::\n"), 0o600)
	copySeed(t, src)
	base := copySeed(t, other)

	rel, _ := filepath.Rel(src, secret)
	for _, tc := range []struct{ name, backing, format, want string }{
		{"absolute", secret, "raw", "is an absolute name"},
		{"etc", "/etc/passwd", "raw", "is an absolute name"},
		{"dot-dot", rel, "raw", "outside the allowed directory"},
		{"deep dot-dot", strings.Repeat("../", 20) + "etc/passwd", "raw", "outside the allowed directory"},
		{"no format", "v3-512.qcow2", "", "has no backing format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := filepath.Join(src, "disk.qcow2")
			qcow2WithBacking(t, img, tc.backing, tc.format)
			out := filepath.Join(t.TempDir(), "disk.img")
			_, errOut, code := run(t, "import", "--type", "qcow2", "--source", img, "--output", out)
			if code == 0 {
				b, _ := os.ReadFile(out)
				t.Fatalf("import succeeded; the disk starts %q", b[:min(len(b), 40)])
			}
			for _, w := range []string{tc.want, img, tc.backing, "backing file refused", "XEN_GUEST_SOURCE_BACKING_DIR", "--backing-dir"} {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
				t.Errorf("output directory not empty: %v", ents)
			}
		})
	}

	// An explicit directory allows a backing file there, by absolute or
	// relative name.
	for _, name := range []string{base, "../other/v3-512.qcow2"} {
		img := filepath.Join(src, "allowed.qcow2")
		qcow2WithBacking(t, img, name, "qcow2")
		out := filepath.Join(t.TempDir(), "disk.img")
		if _, errOut, code := run(t, "import", "--type", "qcow2", "--source", img, "--output", out); code == 0 || !strings.Contains(errOut, "outside the allowed directory") && !strings.Contains(errOut, "absolute name") {
			t.Fatalf("%s without --backing-dir: code %d: %s", name, code, errOut)
		}
		if _, errOut, code := run(t, "import", "--type", "qcow2", "--source", img, "--output", out, "--backing-dir", other); code != 0 {
			t.Fatalf("%s with --backing-dir: %s", name, errOut)
		}
	}
	if _, errOut, code := run(t, "import", "--type", "raw", "--source", base, "--output", filepath.Join(root, "x.img"), "--backing-dir", other); code == 0 || !strings.Contains(errOut, "--backing-dir applies to --type qcow2") {
		t.Errorf("--backing-dir with raw: code %d: %s", code, errOut)
	}
}

// TestInstallQcow2BackingConfined: the bundling path (conf varflag and
// manifest field) follows the same rule, and XEN_GUEST_SOURCE_BACKING_DIR
// / source.backingDir allow another directory.
func TestInstallQcow2BackingConfined(t *testing.T) {
	root := t.TempDir()
	src := filepath.Join(root, "src")
	other := filepath.Join(root, "other")
	os.MkdirAll(src, 0o755)
	os.MkdirAll(other, 0o755)
	copySeed(t, other)
	img := filepath.Join(src, "disk.qcow2")
	qcow2WithBacking(t, img, "../other/v3-512.qcow2", "qcow2")

	conf := func(extra string) string {
		p := filepath.Join(t.TempDir(), "local.conf")
		os.WriteFile(p, []byte("BUNDLED_XEN_GUESTS = \"q\"\nXEN_GUEST_TYPE[q] = \"hvm\"\nXEN_GUEST_SOURCE_TYPE[q] = \"qcow2\"\nXEN_GUEST_SOURCE_FILE[q] = \""+img+"\"\n"+extra), 0o644)
		return p
	}
	rootfs := filepath.Join(root, "rootfs")
	args := func(in ...string) []string {
		return append(append([]string{"install"}, in...), "--rootfs", rootfs, "--cache-dir", filepath.Join(root, "cache"), "-q")
	}
	_, errOut, code := run(t, args("--conf", conf(""))...)
	if code == 0 {
		t.Fatal("install followed a backing file outside the source's directory")
	}
	for _, w := range []string{`guest "q"`, "XEN_GUEST_SOURCE_FILE[q]", "outside the allowed directory", "XEN_GUEST_SOURCE_BACKING_DIR[q]"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
	if _, err := os.Stat(rootfs); err == nil {
		t.Error("rootfs written despite the refusal")
	}
	if _, errOut, code := run(t, args("--conf", conf("XEN_GUEST_SOURCE_BACKING_DIR[q] = \""+other+"\"\n"))...); code != 0 {
		t.Fatalf("install with XEN_GUEST_SOURCE_BACKING_DIR: %s", errOut)
	}
	if _, err := os.Stat(filepath.Join(rootfs, "var/lib/xen/images/q.img")); err != nil {
		t.Fatal(err)
	}
	// The varflag is for qcow2 sources only.
	_, errOut, code = run(t, args("--conf", conf("XEN_GUEST_SOURCE_BACKING_DIR[q] = \""+other+"\"\nXEN_GUEST_SOURCE_TYPE[q] = \"raw\"\n"))...)
	if code == 0 || !strings.Contains(errOut, "XEN_GUEST_SOURCE_BACKING_DIR[q]: applies to qcow2 sources only") {
		t.Errorf("backing dir on a raw source: code %d: %s", code, errOut)
	}

	// The manifest field, relative to the manifest.
	man := filepath.Join(root, "guests.yaml")
	os.WriteFile(man, []byte("apiVersion: xenbundle/v1\nguests:\n  - name: q\n    type: hvm\n    source:\n      type: qcow2\n      file: src/disk.qcow2\n      backingDir: other\n"), 0o644)
	rootfs2 := filepath.Join(root, "rootfs2")
	if _, errOut, code := run(t, "install", "--manifest", man, "--rootfs", rootfs2, "--cache-dir", filepath.Join(root, "cache"), "-q"); code != 0 {
		t.Fatalf("manifest with backingDir: %s", errOut)
	}
	os.WriteFile(man, []byte("apiVersion: xenbundle/v1\nguests:\n  - name: q\n    type: hvm\n    source:\n      type: qcow2\n      file: src/disk.qcow2\n"), 0o644)
	if _, errOut, code := run(t, "install", "--manifest", man, "--rootfs", filepath.Join(root, "rootfs3"), "--cache-dir", filepath.Join(root, "cache"), "-q"); code == 0 || !strings.Contains(errOut, "outside the allowed directory") {
		t.Fatalf("manifest without backingDir: code %d: %s", code, errOut)
	}
}

// buildXenbundle builds cmd/xenbundle into the test's temporary directory.
func buildXenbundle(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "xenbundle")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/xenbundle")
	cmd.Dir = testutil.RepoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/xenbundle: %v\n%s", err, out)
	}
	return bin
}

// interruptAfter starts the built xenbundle with args, sends SIGINT after
// delay (once the command is busy) and checks that it exits within two
// seconds with a failure status, and that outDir holds nothing but keep.
func interruptAfter(t *testing.T, bin string, delay time.Duration, outDir string, keep []string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.Env = append(os.Environ(), "XENBUNDLE_CACHE="+filepath.Join(outDir, "cache"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		t.Fatalf("xenbundle %s ended before the interrupt (%v):\n%s", strings.Join(args, " "), err, stderr.String())
	case <-time.After(delay):
	}
	cmd.Process.Signal(syscall.SIGINT)
	sent := time.Now()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("exit status 0 after SIGINT")
		}
		t.Logf("exited %v after SIGINT: %v: %s", time.Since(sent).Round(time.Millisecond), err, strings.TrimSpace(stderr.String()))
	case <-time.After(2 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("xenbundle %s still running 2 s after SIGINT:\n%s", strings.Join(args, " "), stderr.String())
	}
	var left []string
	filepath.WalkDir(outDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !slices.Contains(keep, p) {
			left = append(left, p)
		}
		return nil
	})
	if len(left) > 0 {
		t.Errorf("files left after the interrupt: %v", left)
	}
}

// TestInterruptImport: SIGINT ends an import within a second or two, in
// each long loop, with no temporary left. Before, the size estimate (no
// --size) of a tiny archive declaring a huge sparse file ran for minutes
// and ignored SIGINT and SIGTERM.
func TestInterruptImport(t *testing.T) {
	if testing.Short() {
		t.Skip("builds cmd/xenbundle")
	}
	bin := buildXenbundle(t)
	t.Run("estimate of a tar.zst bomb", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "zeros.tar.zst")
		os.WriteFile(src, testutil.ZstdZeroTar("zeros", 1<<40), 0o644)
		interruptAfter(t, bin, 1500*time.Millisecond, dir, []string{src}, "import", "--type", "rootfs_tar", "--source", src, "--output", filepath.Join(dir, "out", "g.img"))
	})
	t.Run("sparse tar written to ext4", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "sparse.tar")
		os.WriteFile(src, testutil.PAXSparseTar("big", 100<<30, []testutil.SparseFragment{{Offset: 0, Data: []byte("x")}}), 0o644)
		interruptAfter(t, bin, 1500*time.Millisecond, dir, []string{src}, "import", "--type", "rootfs_tar", "--source", src, "--output", filepath.Join(dir, "out", "g.img"), "--size", "110000")
	})
	t.Run("qcow2 convert", func(t *testing.T) {
		dir := t.TempDir()
		src := filepath.Join(dir, "bomb.qcow2")
		os.WriteFile(src, testutil.Qcow2ZeroBomb(256<<30), 0o644)
		interruptAfter(t, bin, 1500*time.Millisecond, dir, []string{src}, "import", "--type", "qcow2", "--source", src, "--output", filepath.Join(dir, "out", "g.img"))
	})
}

// TestStaleTemporaries: after a kill -9 during install, temporaries
// (.<guest>.img.tmp-N in the Dom0 tree, .<hash>.img.tmp-N in the import
// cache) stayed forever and shipped in the image; plan now lists them and
// the next install removes them, and only them.
func TestStaleTemporaries(t *testing.T) {
	deploy, unpack := fixture(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "local.conf")
	os.WriteFile(conf, []byte("BUNDLED_XEN_GUESTS = \"my-vendor-guest\"\nXEN_GUEST_ROOTFS[my-vendor-guest] = \"vendor-rootfs.ext4\"\n"), 0o644)
	rootfs, cache := filepath.Join(dir, "rootfs"), filepath.Join(dir, "cache")
	args := []string{"--conf", conf, "--deploy-dir", deploy, "--unpackdir", unpack, "--rootfs", rootfs, "--cache-dir", cache}
	if _, errOut, code := run(t, append([]string{"install", "-q"}, args...)...); code != 0 {
		t.Fatal(errOut)
	}
	stale := []string{
		filepath.Join(rootfs, "var/lib/xen/images/.my-vendor-guest.img.tmp-4242"),
		filepath.Join(rootfs, "var/lib/xen/images/.my-vendor-guest.img.tmp-1a2b3c4d5e6f"),
		filepath.Join(rootfs, "etc/xen/.my-vendor-guest.cfg.tmp-77"),
		filepath.Join(cache, "images", ".0123abcd.img.tmp-9f8e7d6c5b4a"),
	}
	kept := []string{
		filepath.Join(rootfs, "var/lib/xen/images/notes.tmp"),
		filepath.Join(rootfs, "var/lib/xen/images/.hidden"),
		filepath.Join(rootfs, "var/lib/xen/images/.x.tmp-not-hex"),
		filepath.Join(rootfs, "etc/.passwd.tmp-1"), // not a directory install writes
	}
	os.MkdirAll(filepath.Join(cache, "images"), 0o755)
	for _, p := range append(append([]string{}, stale...), kept...) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := run(t, append([]string{"plan", "--show-configs=false"}, args...)...)
	if code != 0 {
		t.Fatal(errOut)
	}
	for _, p := range stale {
		if !strings.Contains(out, "remove  "+p) {
			t.Errorf("plan does not list %s:\n%s", p, out)
		}
	}
	for _, p := range kept {
		if strings.Contains(out, p) {
			t.Errorf("plan lists %s, not a temporary of ours", p)
		}
	}
	if _, errOut, code := run(t, append([]string{"install", "-q"}, args...)...); code != 0 {
		t.Fatal(errOut)
	}
	for _, p := range stale {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("install left %s", p)
		}
	}
	for _, p := range kept {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("install removed %s: %v", p, err)
		}
	}
	if out, _, _ := run(t, append([]string{"plan", "--show-configs=false"}, args...)...); strings.Contains(out, "stale temporaries") {
		t.Errorf("plan still lists stale temporaries:\n%s", out)
	}
}

// TestSmallHostileInputs: XEN_GUEST_DISKS with blanks after commas (split
// into broken specs, error without file:line) and a rootfs_dir source that
// is a symlink to the tree (failed with "cannot replace a directory with a
// file" and an empty name).
func TestSmallHostileInputs(t *testing.T) {
	deploy, unpack := fixture(t)
	dir := t.TempDir()
	write := func(body string) string {
		p := filepath.Join(dir, "local.conf")
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	args := func(conf, rootfs string) []string {
		return []string{"install", "-q", "--conf", conf, "--deploy-dir", deploy, "--unpackdir", unpack, "--rootfs", rootfs, "--cache-dir", filepath.Join(dir, "cache")}
	}
	base := "BUNDLED_XEN_GUESTS = \"my-vendor-guest\"\nXEN_GUEST_ROOTFS[my-vendor-guest] = \"vendor-rootfs.ext4\"\n"
	rootfs := filepath.Join(dir, "r1")
	if _, errOut, code := run(t, args(write(base+"XEN_GUEST_DISKS[my-vendor-guest] = \"phy:/dev/sdb, xvdb, w\"\n"), rootfs)...); code != 0 {
		t.Fatalf("disk spec with blanks after commas: %s", errOut)
	}
	cfg, _ := os.ReadFile(filepath.Join(rootfs, "etc/xen/my-vendor-guest.cfg"))
	if !strings.Contains(string(cfg), "phy:/dev/sdb,xvdb,w") {
		t.Errorf("config lacks the disk:\n%s", cfg)
	}
	_, errOut, code := run(t, args(write(base+"XEN_GUEST_DISKS[my-vendor-guest] = \"phy:/dev/sdb,xvdb,w file:/x.img,xvdc,bogus-mode\"\n"), filepath.Join(dir, "r2"))...)
	if code == 0 || !strings.Contains(errOut, "local.conf:3") || !strings.Contains(errOut, "XEN_GUEST_DISKS[my-vendor-guest]") || !strings.Contains(errOut, "file:/x.img,xvdc,bogus-mode") {
		t.Errorf("bad disk spec: code %d: %s", code, errOut)
	}

	// A rootfs_dir source given as a symlink to the tree.
	link := filepath.Join(dir, "tree-link")
	if err := os.Symlink(filepath.Join(unpack, "alpine-rootfs"), link); err != nil {
		t.Fatal(err)
	}
	conf := write("BUNDLED_XEN_GUESTS = \"a\"\nXEN_GUEST_TYPE[a] = \"hvm\"\nXEN_GUEST_SOURCE_TYPE[a] = \"rootfs_dir\"\nXEN_GUEST_SOURCE_FILE[a] = \"" + link + "\"\n")
	if _, errOut, code := run(t, args(conf, filepath.Join(dir, "r3"))...); code != 0 {
		t.Fatalf("symlinked source directory: %s", errOut)
	}
}

// TestGuestFilesOutsideDeployDir: XEN_GUEST_KERNEL, XEN_GUEST_RAMDISK and
// XEN_GUEST_ROOTFS outside DEPLOY_DIR_IMAGE and UNPACKDIR (directly or
// through a symlink in the deploy dir) used to be copied into the Dom0 tree
// without a word, /etc/shadow-like private files included (issue 11 item 6).
func TestGuestFilesOutsideDeployDir(t *testing.T) {
	deploy, unpack := fixture(t)
	dir := t.TempDir()
	outside := filepath.Join(dir, "outside")
	os.MkdirAll(outside, 0o755)
	kernel := filepath.Join(outside, "kernel")
	secret := filepath.Join(outside, "shadow")
	os.WriteFile(kernel, []byte("an outside kernel\n"), 0o644)
	os.WriteFile(secret, []byte("root:$6$host-secret:19000:0:99999:7:::\n"), 0o600)
	if err := os.Symlink(secret, filepath.Join(deploy, "sneaky")); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "local.conf")
	n := 0
	cmd := func(verb, extra string, flags ...string) []string {
		n++
		os.WriteFile(conf, []byte("BUNDLED_XEN_GUESTS = \"my-vendor-guest\"\nXEN_GUEST_ROOTFS[my-vendor-guest] = \"vendor-rootfs.ext4\"\n"+extra), 0o644)
		args := []string{verb, "--conf", conf, "--deploy-dir", deploy, "--unpackdir", unpack, "--cache-dir", filepath.Join(dir, "cache")}
		if verb == "install" {
			args = append(args, "-q", "--rootfs", filepath.Join(dir, fmt.Sprintf("r%d", n)))
		}
		return append(args, flags...)
	}

	// Readable by others: a warning naming guest, setting and file.
	for _, verb := range []string{"plan", "install"} {
		_, errOut, code := run(t, cmd(verb, "XEN_GUEST_KERNEL[my-vendor-guest] = \""+kernel+"\"\n")...)
		if code != 0 {
			t.Fatalf("%s with an outside kernel: %s", verb, errOut)
		}
		for _, w := range []string{"warning:", `guest "my-vendor-guest"`, "XEN_GUEST_KERNEL[my-vendor-guest]", kernel, "outside DEPLOY_DIR_IMAGE"} {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr lacks %q:\n%s", verb, w, errOut)
			}
		}
	}
	// Inside the deploy dir: no warning.
	if _, errOut, code := run(t, cmd("plan", "XEN_GUEST_KERNEL[my-vendor-guest] = \"vendor-kernel\"\n")...); code != 0 || strings.Contains(errOut, "outside") {
		t.Errorf("kernel in the deploy dir: code %d, stderr %s", code, errOut)
	}

	// Private: refused, naming the setting, the file and the flag; nothing
	// written. A symlink in the deploy dir to it is no way around.
	for _, tc := range []struct{ setting, extra string }{
		{"XEN_GUEST_RAMDISK[my-vendor-guest]", "XEN_GUEST_KERNEL[my-vendor-guest] = \"vendor-kernel\"\nXEN_GUEST_RAMDISK[my-vendor-guest] = \"" + secret + "\"\n"},
		{"XEN_GUEST_KERNEL[my-vendor-guest]", "XEN_GUEST_KERNEL[my-vendor-guest] = \"sneaky\"\n"},
	} {
		for _, verb := range []string{"plan", "install"} {
			args := cmd(verb, tc.extra)
			_, errOut, code := run(t, args...)
			if code == 0 {
				t.Fatalf("%s %s = a private file outside: accepted", verb, tc.setting)
			}
			for _, w := range []string{tc.setting, secret, "not readable by others", "--allow-private-files"} {
				if !strings.Contains(errOut, w) {
					t.Errorf("%s %s: error lacks %q:\n%s", verb, tc.setting, w, errOut)
				}
			}
			if verb == "install" {
				if _, err := os.Stat(args[len(args)-1]); err == nil {
					t.Errorf("install refused but wrote %s", args[len(args)-1])
				}
			}
			args = append(args, "--allow-private-files")
			if _, errOut, code := run(t, args...); code != 0 || !strings.Contains(errOut, tc.setting) {
				t.Errorf("%s %s with --allow-private-files: code %d:\n%s", verb, tc.setting, code, errOut)
			}
		}
	}
}
