package xenbundle

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// repoRoot walks up to the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			t.Fatal("go.mod not found")
		}
		d = p
	}
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (Debian package e2fsprogs): %v", name, err)
	}
}

// fixture builds a deploy dir and an unpack dir like a Yocto build's.
func fixture(t *testing.T) (deploy, unpack string) {
	t.Helper()
	needTool(t, "mkfs.ext4")
	root := t.TempDir()
	deploy = filepath.Join(root, "deploy")
	unpack = filepath.Join(root, "unpack")
	for _, d := range []string{deploy, unpack, filepath.Join(unpack, "alpine-rootfs", "bin"), filepath.Join(root, "guestroot", "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "guestroot", "etc", "hostname"), "guest\n")
	write(filepath.Join(unpack, "alpine-rootfs", "bin", "sh"), "#!/bin/true\n")
	mk := func(name string) {
		out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", filepath.Join(root, "guestroot"), filepath.Join(deploy, name), "8M").CombinedOutput()
		if err != nil {
			t.Fatalf("mkfs.ext4: %v\n%s", err, out)
		}
	}
	// Yocto deploys timestamped files behind stable links.
	mk("xen-guest-image-minimal-qemux86-64.rootfs-20241111222814.ext4")
	if err := os.Symlink("xen-guest-image-minimal-qemux86-64.rootfs-20241111222814.ext4", filepath.Join(deploy, "xen-guest-image-minimal-qemux86-64.ext4")); err != nil {
		t.Fatal(err)
	}
	mk("vendor-rootfs.ext4")
	write(filepath.Join(deploy, "bzImage--6.10.11-r0-qemux86-64.bin"), "shared kernel\n")
	if err := os.Symlink("bzImage--6.10.11-r0-qemux86-64.bin", filepath.Join(deploy, "bzImage")); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(deploy, "vendor-kernel"), "vendor kernel\n")
	cfg, err := os.ReadFile(filepath.Join(repoRoot(t), "examples", "spec", "my-custom-guest.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(unpack, "my-custom-guest.cfg"), string(cfg))
	return deploy, unpack
}

// dump describes a Dom0 tree: every entry with its type, and the content
// of text files under /etc.
func dump(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	var texts []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			lines = append(lines, fmt.Sprintf("/%s -> %s", rel, target))
		case info.IsDir():
			lines = append(lines, fmt.Sprintf("/%s/", rel))
		default:
			lines = append(lines, fmt.Sprintf("/%s %04o %d", rel, info.Mode().Perm(), info.Size()))
			if strings.HasPrefix(rel, "etc/") {
				data, _ := os.ReadFile(p)
				texts = append(texts, fmt.Sprintf("--- /%s\n%s", rel, data))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n\n" + strings.Join(texts, "")
}

func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return out.String(), errb.String(), code
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	p := filepath.Join("testdata", "golden", name)
	if *update {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update)", err, t.Name())
	}
	if string(want) != got {
		t.Errorf("%s differs from golden file %s:\n--- want\n%s\n--- got\n%s", name, p, want, got)
	}
}

// TestSpecExamples runs every local.conf example of the spec through
// install and compares the resulting Dom0 tree and configs with golden
// files; a second run must change nothing.
func TestSpecExamples(t *testing.T) {
	examples, err := filepath.Glob(filepath.Join(repoRoot(t), "examples", "spec", "*.conf"))
	if err != nil || len(examples) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	deploy, unpack := fixture(t)
	cache := t.TempDir()
	for _, ex := range examples {
		name := strings.TrimSuffix(filepath.Base(ex), ".conf")
		t.Run(name, func(t *testing.T) {
			rootfs := filepath.Join(t.TempDir(), "rootfs")
			args := []string{"install", "--conf", ex, "--deploy-dir", deploy, "--unpackdir", unpack, "--machine", "qemux86-64", "--rootfs", rootfs, "--cache-dir", cache, "-q"}
			data, _ := os.ReadFile(ex)
			if strings.Contains(string(data), "XEN_GUEST_BUNDLES") {
				args = append(args, "--list", "XEN_GUEST_BUNDLES")
			}
			out, errOut, code := run(t, args...)
			if code != 0 {
				t.Fatalf("install failed (%d): %s%s", code, out, errOut)
			}
			first := dump(t, rootfs)
			golden(t, name+".tree", first)
			out, errOut, code = run(t, args...)
			if code != 0 {
				t.Fatalf("second install failed (%d): %s%s", code, out, errOut)
			}
			if second := dump(t, rootfs); second != first {
				t.Errorf("second run changed the tree:\n%s\nvs\n%s", first, second)
			}
		})
	}
}
