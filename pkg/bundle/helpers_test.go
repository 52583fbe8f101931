package bundle_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/internal/testutil"

	"github.com/vxn-dev/vxn/pkg/xenbundle"
)

func needTool(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (Debian package %s): %v", name, pkg, err)
	}
}

// fixture is a Yocto-like build: DEPLOY_DIR_IMAGE and UNPACKDIR.
type fixture struct {
	root, deploy, unpack, cache string
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, p string, data []byte) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, data, 0o644))
}

// pattern returns n deterministic bytes.
func pattern(seed string, n int) []byte {
	out := make([]byte, 0, n)
	h := sha256.Sum256([]byte(seed))
	for len(out) < n {
		out = append(out, h[:]...)
		h = sha256.Sum256(h[:])
	}
	return out[:n]
}

// newFixture builds deploy and unpack dirs with fixed content: two guest
// root disks (opaque bytes: they are copied, never parsed), the shared
// kernel behind a stable link, a vendor kernel, a custom config and the
// "third-party" Alpine-style minirootfs tarball.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{root: root, deploy: filepath.Join(root, "deploy"), unpack: filepath.Join(root, "unpack"), cache: filepath.Join(root, "cache")}
	writeFile(t, filepath.Join(f.deploy, "xen-guest-image-minimal-qemux86-64.rootfs-20241111222814.ext4"), pattern("minimal", 256<<10))
	must(t, os.Symlink("xen-guest-image-minimal-qemux86-64.rootfs-20241111222814.ext4", filepath.Join(f.deploy, "xen-guest-image-minimal-qemux86-64.ext4")))
	writeFile(t, filepath.Join(f.deploy, "vendor-rootfs.ext4"), pattern("vendor", 128<<10))
	writeFile(t, filepath.Join(f.deploy, "win-qemux86-64.ext4"), pattern("hvm", 64<<10))
	writeFile(t, filepath.Join(f.deploy, "bzImage--6.10.11-r0-qemux86-64.bin"), pattern("kernel", 10<<10))
	must(t, os.Symlink("bzImage--6.10.11-r0-qemux86-64.bin", filepath.Join(f.deploy, "bzImage")))
	writeFile(t, filepath.Join(f.deploy, "vendor-kernel"), pattern("vendor kernel", 9<<10))
	cfg, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "examples", "spec", "my-custom-guest.cfg"))
	must(t, err)
	writeFile(t, filepath.Join(f.unpack, "my-custom-guest.cfg"), cfg)
	writeFile(t, filepath.Join(f.unpack, "alpine-minirootfs-3.23.3-x86_64.tar.gz"), alpineTarball(t))
	return f
}

// alpineTarball is shaped like Alpine's minirootfs: entries under ./, a
// busybox with /bin/sh as a symlink to it, and /sbin/init dangling (no
// openrc), which is why the example boots with init=/bin/sh.
func alpineTarball(t testing.TB) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	mt := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	ents := []tar.Header{
		{Name: "./", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./bin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755},
		{Name: "./bin/sh", Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox", Mode: 0o777},
		{Name: "./etc/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./etc/os-release", Typeflag: tar.TypeReg, Mode: 0o644},
		{Name: "./etc/shadow", Typeflag: tar.TypeReg, Mode: 0o640, Gid: 42},
		{Name: "./sbin/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "./sbin/init", Typeflag: tar.TypeSymlink, Linkname: "/sbin/openrc", Mode: 0o777},
		{Name: "./tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
	}
	bodies := map[string][]byte{"./bin/busybox": pattern("busybox", 20<<10), "./etc/os-release": []byte("NAME=\"Alpine Linux\"\nID=alpine\n"), "./etc/shadow": []byte("root:*::0:::::\n")}
	for _, h := range ents {
		h.ModTime = mt
		h.Size = int64(len(bodies[h.Name]))
		must(t, tw.WriteHeader(&h))
		_, err := tw.Write(bodies[h.Name])
		must(t, err)
	}
	must(t, tw.Close())
	must(t, gz.Close())
	return buf.Bytes()
}

// cli runs xenbundle with args and returns stdout and stderr; want0 says
// whether exit status 0 is expected.
func cli(t testing.TB, want0 bool, args ...string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := xenbundle.Main(args, &out, &errb)
	if (code == 0) != want0 {
		t.Fatalf("xenbundle %s: exit %d (want success=%v)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want0, out.String(), errb.String())
	}
	return out.String(), errb.String()
}

// treeDump describes the Dom0 guest layout under root (/etc/xen and
// /var/lib/xen): every entry with type, mode, size and sha256, link
// targets, and config text.
func treeDump(t testing.TB, root string) string {
	t.Helper()
	var lines []string
	for _, top := range []string{"etc/xen", "var/lib/xen"} {
		base := filepath.Join(root, top)
		err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			info, err := os.Lstat(p)
			if err != nil {
				return err
			}
			switch {
			case info.Mode()&fs.ModeSymlink != 0:
				target, _ := os.Readlink(p)
				lines = append(lines, fmt.Sprintf("/%s -> %s", rel, target))
			case info.IsDir():
				lines = append(lines, fmt.Sprintf("/%s/ %04o", rel, info.Mode().Perm()))
			default:
				data, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				sum := sha256.Sum256(data)
				lines = append(lines, fmt.Sprintf("/%s %04o %d %s", rel, info.Mode().Perm(), info.Size(), hex.EncodeToString(sum[:8])))
				if strings.HasSuffix(p, ".cfg") {
					lines = append(lines, "  | "+strings.ReplaceAll(strings.TrimRight(string(data), "\n"), "\n", "\n  | "))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("dump %s: %v", base, err)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// arMembers reads a Unix ar archive (the .deb container) into its members.
func arMembers(t testing.TB, data []byte) map[string][]byte {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("!<arch>\n")) {
		t.Fatalf("not an ar archive")
	}
	out := map[string][]byte{}
	r := data[8:]
	for len(r) >= 60 {
		hdr := r[:60]
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		var size int
		fmt.Sscanf(strings.TrimSpace(string(hdr[48:58])), "%d", &size)
		r = r[60:]
		if size > len(r) {
			t.Fatalf("ar member %s truncated", name)
		}
		out[name] = r[:size]
		r = r[size:]
		if size%2 == 1 && len(r) > 0 {
			r = r[1:]
		}
	}
	return out
}

// tarGzMembers returns the entries of a tar.gz: a dpkg-deb -c style
// listing (single-spaced) and the file contents.
func tarGzMembers(t testing.TB, data []byte) ([]string, map[string][]byte) {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	must(t, err)
	tr := tar.NewReader(gz)
	var listing []string
	files := map[string][]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		mode := fs.FileMode(h.Mode).Perm()
		typ := "-"
		switch h.Typeflag {
		case tar.TypeDir:
			typ = "d"
		case tar.TypeSymlink:
			typ = "l"
		}
		listing = append(listing, fmt.Sprintf("%s%s %s/%s %d %s %s", typ, mode.String()[1:], h.Uname, h.Gname, h.Size, h.ModTime.UTC().Format("2006-01-02 15:04"), h.Name))
		body, err := io.ReadAll(tr)
		must(t, err)
		files[h.Name] = body
	}
	return listing, files
}
