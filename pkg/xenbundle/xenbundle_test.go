package xenbundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite golden files")

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
	cfg, err := os.ReadFile(filepath.Join(testutil.RepoRoot(t), "examples", "spec", "my-custom-guest.cfg"))
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
	examples, err := filepath.Glob(filepath.Join(testutil.RepoRoot(t), "examples", "spec", "*.conf"))
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
			imgs, _ := filepath.Glob(filepath.Join(rootfs, "var/lib/xen/images/*.img"))
			for _, img := range imgs {
				if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
					t.Errorf("e2fsck -fn %s: %v\n%s", filepath.Base(img), err, out)
				}
			}
		})
	}
}

// TestBadInputsWriteNothing checks that every kind of bad input gives an
// error naming guest, setting and file, and leaves the target untouched.
func TestBadInputsWriteNothing(t *testing.T) {
	deploy, unpack := fixture(t)
	tests := []struct {
		name string
		conf string
		want []string
	}{
		{"missing rootfs", `BUNDLED_XEN_GUESTS = "nosuch"`,
			[]string{`guest "nosuch": rootfs image not found`, "nosuch-qemux86-64.ext4", "nosuch-qemux86-64.rootfs.ext4"}},
		{"unknown tag", `BUNDLED_XEN_GUESTS = "xen-guest-image-minimal:autostrat"`,
			[]string{`unknown tag "autostrat" (valid tags: autostart, external)`, "local.conf:1"}},
		{"duplicate", `BUNDLED_XEN_GUESTS = "xen-guest-image-minimal xen-guest-image-minimal:autostart"`,
			[]string{"listed more than once"}},
		{"duplicate domain name", "BUNDLED_XEN_GUESTS = \"xen-guest-image-minimal my-vendor-guest\"\nXEN_GUEST_ROOTFS[my-vendor-guest] = \"vendor-rootfs.ext4\"\nXEN_GUEST_NAME[my-vendor-guest] = \"xen-guest-image-minimal\"",
			[]string{`domain name "xen-guest-image-minimal" is also used by guest "xen-guest-image-minimal"`}},
		{"missing custom config", "BUNDLED_XEN_GUESTS = \"xen-guest-image-minimal\"\nXEN_GUEST_CONFIG_FILE[xen-guest-image-minimal] = \"${UNPACKDIR}/gone.cfg\"",
			[]string{"custom config file not found", "XEN_GUEST_CONFIG_FILE[xen-guest-image-minimal]", "gone.cfg"}},
		{"unknown import type", "BUNDLED_XEN_GUESTS = \"a\"\nXEN_GUEST_SOURCE_TYPE[a] = \"vmdk\"\nXEN_GUEST_SOURCE_FILE[a] = \"alpine-rootfs\"",
			[]string{`guest "a"`, "XEN_GUEST_SOURCE_TYPE[a]", "vmdk", "rootfs_dir"}},
		{"missing source", "BUNDLED_XEN_GUESTS = \"a\"\nXEN_GUEST_SOURCE_TYPE[a] = \"rootfs_dir\"\nXEN_GUEST_SOURCE_FILE[a] = \"nope\"",
			[]string{"import source not found", "XEN_GUEST_SOURCE_FILE[a]", "nope"}},
		{"image too small", "BUNDLED_XEN_GUESTS = \"a\"\nXEN_GUEST_SOURCE_TYPE[a] = \"raw\"\nXEN_GUEST_SOURCE_FILE[a] = \"${DEPLOY_DIR_IMAGE}/vendor-rootfs.ext4\"\nXEN_GUEST_IMAGE_SIZE[a] = \"1\"",
			[]string{`guest "a"`, "XEN_GUEST_IMAGE_SIZE"}},
		{"bad memory", "BUNDLED_XEN_GUESTS = \"xen-guest-image-minimal\"\nXEN_GUEST_MEMORY[xen-guest-image-minimal] = \"512M\"",
			[]string{`XEN_GUEST_MEMORY[xen-guest-image-minimal]: value "512M" is not a whole number`, "local.conf:2"}},
		{"quote in extra", "BUNDLED_XEN_GUESTS = \"xen-guest-image-minimal\"\nXEN_GUEST_EXTRA[xen-guest-image-minimal] = \"console=hvc0 x='1'\"",
			[]string{"XEN_GUEST_EXTRA[xen-guest-image-minimal]", "contains a quote"}},
		{"python expansion", "BUNDLED_XEN_GUESTS = \"${@d.getVar('X')}\"",
			[]string{"local.conf:1:", "not supported"}},
		{"syntax error", "BUNDLED_XEN_GUESTS = \"a\nXEN_GUEST_MEMORY[a = \"1\"",
			[]string{"local.conf:"}},
		{"missing kernel", "BUNDLED_XEN_GUESTS = \"xen-guest-image-minimal\"\nXEN_GUEST_KERNEL[xen-guest-image-minimal] = \"zImage-missing\"",
			[]string{"kernel not found", "XEN_GUEST_KERNEL[xen-guest-image-minimal]", "unpack/zImage-missing", "deploy/zImage-missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			conf := filepath.Join(dir, "local.conf")
			if err := os.WriteFile(conf, []byte(tt.conf+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			rootfs := filepath.Join(dir, "rootfs")
			os.MkdirAll(rootfs, 0o755)
			out, errOut, code := run(t, "install", "--conf", conf, "--deploy-dir", deploy, "--unpackdir", unpack, "--rootfs", rootfs, "--cache-dir", filepath.Join(dir, "cache"))
			if code == 0 {
				t.Fatalf("install succeeded on bad input:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if entries, _ := os.ReadDir(rootfs); len(entries) != 0 {
				t.Errorf("rootfs was written to: %v", entries)
			}
		})
	}
}

// TestInstallIntoExt4Image bundles into an ext4 Dom0 image without
// mounting it and checks the result with debugfs and e2fsck.
func TestInstallIntoExt4Image(t *testing.T) {
	needTool(t, "debugfs")
	needTool(t, "e2fsck")
	deploy, unpack := fixture(t)
	dir := t.TempDir()
	skel := filepath.Join(dir, "skel", "etc", "xen")
	os.MkdirAll(skel, 0o755)
	os.WriteFile(filepath.Join(skel, "xl.conf"), []byte("# xl.conf\n"), 0o644)
	img := filepath.Join(dir, "dom0.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", filepath.Join(dir, "skel"), img, "64M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	conf := filepath.Join(testutil.RepoRoot(t), "examples", "spec", "08-image-append.conf")
	args := []string{"install", "--conf", conf, "--deploy-dir", deploy, "--unpackdir", unpack, "--rootfs", img, "--cache-dir", filepath.Join(dir, "cache")}
	for i := 0; i < 2; i++ {
		if out, errOut, code := run(t, args...); code != 0 {
			t.Fatalf("install %d into ext4 failed: %s%s", i, out, errOut)
		}
	}
	ls, err := exec.Command("debugfs", "-R", "ls -l /var/lib/xen/images", img).CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"xen-guest-image-minimal.img", "my-vendor-guest.img", "bzImage", "vendor-kernel"} {
		if !strings.Contains(string(ls), w) {
			t.Errorf("image lacks /var/lib/xen/images/%s:\n%s", w, ls)
		}
	}
	cfg, _ := exec.Command("debugfs", "-R", "cat /etc/xen/xen-guest-image-minimal.cfg", img).Output()
	if !strings.Contains(string(cfg), `target=/var/lib/xen/images/xen-guest-image-minimal.img`) {
		t.Errorf("config in image:\n%s", cfg)
	}
	link, _ := exec.Command("debugfs", "-R", "stat /etc/xen/auto/xen-guest-image-minimal.cfg", img).Output()
	if !strings.Contains(string(link), `Fast link dest: "../xen-guest-image-minimal.cfg"`) {
		t.Errorf("autostart link in image:\n%s", link)
	}
	if xl, _ := exec.Command("debugfs", "-R", "cat /etc/xen/xl.conf", img).Output(); string(xl) != "# xl.conf\n" {
		t.Errorf("existing file changed: %q", xl)
	}
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil {
		t.Errorf("e2fsck -fn: %v\n%s", err, out)
	}
}

// TestPlanWritesNothingAndJSON checks plan output and that it writes nothing.
func TestPlanWritesNothingAndJSON(t *testing.T) {
	deploy, unpack := fixture(t)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	conf := filepath.Join(testutil.RepoRoot(t), "examples", "spec", "07-alpine-bundle.conf")
	out, errOut, code := run(t, "plan", "--conf", conf, "--list", "XEN_GUEST_BUNDLES", "--deploy-dir", deploy, "--unpackdir", unpack, "--rootfs", rootfs, "--json")
	if code != 0 {
		t.Fatalf("plan: %s", errOut)
	}
	var p struct {
		Actions []struct{ Kind, Path string }
		Checks  []struct{ Guest, What, Result string }
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("plan --json: %v\n%s", err, out)
	}
	paths := map[string]string{}
	for _, a := range p.Actions {
		paths[a.Path] = a.Kind
	}
	for path, kind := range map[string]string{"/var/lib/xen/images/alpine.img": "import", "/etc/xen/alpine.cfg": "config", "/etc/xen/auto/alpine.cfg": "symlink", "/var/lib/xen/images/bzImage": "copy"} {
		if paths[path] != kind {
			t.Errorf("plan lacks %s %s: %v", kind, path, paths)
		}
	}
	if len(p.Checks) < 4 {
		t.Errorf("plan lists only %d checks", len(p.Checks))
	}
	if _, err := os.Stat(rootfs); err == nil {
		t.Error("plan created the rootfs")
	}
	out, _, code = run(t, "plan", "--conf", conf, "--list", "XEN_GUEST_BUNDLES", "--deploy-dir", deploy, "--unpackdir", unpack, "--host-memory", "512", "--dom0-memory", "512")
	if code != 0 || !strings.Contains(out, "import  /var/lib/xen/images/alpine.img") {
		t.Errorf("plan text output:\n%s", out)
	}
}

func TestMemoryWarning(t *testing.T) {
	deploy, unpack := fixture(t)
	conf := filepath.Join(testutil.RepoRoot(t), "examples", "spec", "04-varflags.conf")
	_, errOut, code := run(t, "plan", "--conf", conf, "--deploy-dir", deploy, "--unpackdir", unpack, "--host-memory", "1024", "--dom0-memory", "512")
	if code != 0 {
		t.Fatalf("plan failed: %s", errOut)
	}
	if !strings.Contains(errOut, "warning: autostart guests need 1024 MB (xen-guest-image-minimal=1024) but only 512 MB are free after Dom0 (host 1024 MB - dom0 512 MB)") {
		t.Errorf("no memory warning: %s", errOut)
	}
}

// TestManifestMatchesConf checks that the YAML front-end and the bitbake
// front-end give byte-identical trees for the same guests.
func TestManifestMatchesConf(t *testing.T) {
	deploy, unpack := fixture(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "local.conf")
	os.WriteFile(conf, []byte(`BUNDLED_XEN_GUESTS = "xen-guest-image-minimal:autostart my-vendor-guest:external alpine:autostart:external"
XEN_GUEST_ROOTFS[my-vendor-guest] = "vendor-rootfs.ext4"
XEN_GUEST_KERNEL[my-vendor-guest] = "vendor-kernel"
XEN_GUEST_SOURCE_TYPE[alpine] = "rootfs_dir"
XEN_GUEST_SOURCE_FILE[alpine] = "alpine-rootfs"
XEN_GUEST_IMAGE_SIZE[alpine] = "128"
XEN_GUEST_MEMORY[alpine] = "256"
XEN_GUEST_EXTRA[alpine] = "root=/dev/xvda ro console=hvc0 init=/bin/sh"
`), 0o644)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	common := []string{"--deploy-dir", deploy, "--unpackdir", unpack, "--cache-dir", filepath.Join(dir, "cache"), "-q"}
	if _, e, c := run(t, append([]string{"install", "--conf", conf, "--rootfs", a}, common...)...); c != 0 {
		t.Fatal(e)
	}
	manifest := filepath.Join(testutil.RepoRoot(t), "examples", "manifest", "guests.yaml")
	if _, e, c := run(t, append([]string{"install", "--manifest", manifest, "--rootfs", b}, common...)...); c != 0 {
		t.Fatal(e)
	}
	if da, db := dump(t, a), dump(t, b); da != db {
		t.Errorf("manifest tree differs from conf tree:\n%s\nvs\n%s", da, db)
	}
}

// TestReproducibleImport checks that the same inputs give byte-identical
// ext4 images, even when file times differ, under SOURCE_DATE_EPOCH.
func TestReproducibleImport(t *testing.T) {
	_, unpack := fixture(t)
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	dir := t.TempDir()
	src := filepath.Join(unpack, "alpine-rootfs")
	var sums []string
	for i := 0; i < 2; i++ {
		now := time.Now().Add(time.Duration(i) * time.Hour)
		os.Chtimes(filepath.Join(src, "bin", "sh"), now, now)
		out := filepath.Join(dir, fmt.Sprint(i), "guest.img")
		os.MkdirAll(filepath.Dir(out), 0o755)
		if _, e, c := run(t, "import", "--type", "rootfs_dir", "--source", src, "--output", out, "--size", "16"); c != 0 {
			t.Fatal(e)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		sums = append(sums, fmt.Sprintf("%x", sha256.Sum256(data)))
		if o, err := exec.Command("e2fsck", "-fn", out).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn %s: %v\n%s", out, err, o)
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("images differ: %s vs %s", sums[0], sums[1])
	}
}

// TestCustomImportType declares an import type in the configuration and
// checks it is really called, and that its declared tools are checked
// before any work.
func TestCustomImportType(t *testing.T) {
	deploy, unpack := fixture(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "import-fake")
	os.WriteFile(script, []byte("#!/bin/sh\n# SOURCE OUTPUT SIZE_MB\nset -e\ncp \"$1\" \"$2\"\ntruncate -s \"${3}M\" \"$2\"\n"), 0o755)
	write := func(tools string) string {
		conf := filepath.Join(dir, "local.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf(`BUNDLED_XEN_GUESTS = "v"
XEN_GUEST_SOURCE_TYPE[v] = "fake"
XEN_GUEST_SOURCE_FILE[v] = "${DEPLOY_DIR_IMAGE}/vendor-kernel"
XEN_GUEST_IMAGE_SIZE[v] = "2"
XEN_GUEST_IMPORT_COMMAND_fake = "%s"
XEN_GUEST_IMPORT_TOOLS_fake = "%s"
`, script, tools)), 0o644)
		return conf
	}
	rootfs := filepath.Join(dir, "rootfs")
	args := func(conf string) []string {
		return []string{"install", "--conf", conf, "--deploy-dir", deploy, "--unpackdir", unpack, "--rootfs", rootfs, "--cache-dir", filepath.Join(dir, "cache"), "-q"}
	}
	_, errOut, code := run(t, args(write("sh no-such-tool-xyz:xyz-utils"))...)
	if code == 0 || !strings.Contains(errOut, "no-such-tool-xyz") || !strings.Contains(errOut, "xyz-utils") {
		t.Fatalf("missing tool not reported (code %d): %s", code, errOut)
	}
	if _, err := os.Stat(rootfs); err == nil {
		t.Error("rootfs written despite a missing tool")
	}
	if _, errOut, code = run(t, args(write("sh"))...); code != 0 {
		t.Fatalf("custom import failed: %s", errOut)
	}
	st, err := os.Stat(filepath.Join(rootfs, "var/lib/xen/images/v.img"))
	if err != nil || st.Size() != 2<<20 {
		t.Fatalf("custom import output: %v %v", st, err)
	}
}

// TestOneOffFlags bundles a guest given only on the command line.
func TestOneOffFlags(t *testing.T) {
	deploy, unpack := fixture(t)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	_, errOut, code := run(t, "install", "--guest", "my-vendor-guest:autostart", "--set", "XEN_GUEST_ROOTFS[my-vendor-guest]=vendor-rootfs.ext4",
		"--set", "XEN_GUEST_MEMORY[my-vendor-guest]=300", "--deploy-dir", deploy, "--unpackdir", unpack, "--rootfs", rootfs, "--cache-dir", t.TempDir(), "-q")
	if code != 0 {
		t.Fatal(errOut)
	}
	cfg, err := os.ReadFile(filepath.Join(rootfs, "etc/xen/my-vendor-guest.cfg"))
	if err != nil || !strings.Contains(string(cfg), "memory = 300") {
		t.Errorf("config %q %v", cfg, err)
	}
	if _, err := os.Readlink(filepath.Join(rootfs, "etc/xen/auto/my-vendor-guest.cfg")); err != nil {
		t.Error(err)
	}
}
