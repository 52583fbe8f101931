package bundle_test

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/vxn-dev/vxn/internal/testutil"
	"github.com/vxn-dev/vxn/pkg/bundle"
	"github.com/vxn-dev/vxn/pkg/dom0fs"
	"github.com/vxn-dev/vxn/pkg/guest"
	"github.com/vxn-dev/vxn/pkg/plan"
)

var update = flag.Bool("update", false, "rewrite golden files")

// The guest set used by the equivalence tests, once as a bundle recipe and
// once as variable-driven configuration.
const guestSettings = `
XEN_GUEST_MEMORY[xen-guest-image-minimal] = "1024"
XEN_GUEST_ROOTFS[my-vendor-guest] = "vendor-rootfs.ext4"
XEN_GUEST_KERNEL[my-vendor-guest] = "vendor-kernel"
XEN_GUEST_KERNEL[win] = "none"
XEN_GUEST_MEMORY[win] = "2048"
XEN_GUEST_ROOTFS[minimal-custom] = "xen-guest-image-minimal-qemux86-64.ext4"
XEN_GUEST_CONFIG_FILE[minimal-custom] = "${UNPACKDIR}/my-custom-guest.cfg"
XEN_GUEST_NAME[minimal-custom] = "custom-minimal"
XEN_GUEST_SOURCE_TYPE[alpine] = "rootfs_tar"
XEN_GUEST_SOURCE_FILE[alpine] = "alpine-minirootfs-3.23.3-x86_64.tar.gz"
XEN_GUEST_IMAGE_SIZE[alpine] = "24"
XEN_GUEST_MEMORY[alpine] = "256"
XEN_GUEST_EXTRA[alpine] = "root=/dev/xvda ro console=hvc0 init=/bin/sh"
`

const guestList = "xen-guest-image-minimal:autostart my-vendor-guest:external win minimal-custom alpine:autostart:external"

func (f *fixture) conf(t testing.TB, name, list string) string {
	p := filepath.Join(f.root, name)
	writeFile(t, p, []byte(list+" = \""+guestList+"\"\n"+guestSettings))
	return p
}

func (f *fixture) pack(t testing.TB, recipe, format, out string, extra ...string) string {
	t.Helper()
	args := append([]string{"pack", "--conf", recipe, "--deploy-dir", f.deploy, "--unpackdir", f.unpack, "--format", format, "--output", out, "--cache-dir", f.cache}, extra...)
	stdout, _ := cli(t, true, args...)
	path, _, ok := strings.Cut(stdout, ": bundle ")
	if !ok {
		t.Fatalf("pack output %q", stdout)
	}
	return path
}

// installDeb installs a .deb into root the way an image build does: with
// dpkg --root when available (registering it), else dpkg-deb -x.
func installDeb(t testing.TB, deb, root string) (registered bool) {
	t.Helper()
	needTool(t, "dpkg-deb", "dpkg")
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("dpkg"); err == nil {
			for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
				must(t, os.MkdirAll(filepath.Join(root, d), 0o755))
			}
			writeFile(t, filepath.Join(root, "var/lib/dpkg/status"), nil)
			out, err := exec.Command("dpkg", "--root="+root, "--force-all", "--log=/dev/null", "-i", deb).CombinedOutput()
			if err != nil {
				t.Fatalf("dpkg -i: %v\n%s", err, out)
			}
			return true
		}
	}
	out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput()
	if err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}
	return false
}

// TestMergeEqualsInstall packs the guest set as a .deb, installs it with
// dpkg into an empty root, merges, and compares the tree with the one
// `xenbundle install` writes from the same guests as BUNDLED_XEN_GUESTS.
func TestMergeEqualsInstall(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	f := newFixture(t)
	recipe := f.conf(t, "my-guests_1.0.bb", guest.ListBundles)
	vars := f.conf(t, "local.conf", guest.ListBundled)

	direct := filepath.Join(f.root, "direct")
	cli(t, true, "install", "--conf", vars, "--deploy-dir", f.deploy, "--unpackdir", f.unpack, "--rootfs", direct, "--cache-dir", f.cache, "-q")

	deb := f.pack(t, recipe, "deb", filepath.Join(f.root, "out"))
	merged := filepath.Join(f.root, "merged")
	registered := installDeb(t, deb, merged)
	_, stderr := cli(t, true, "merge", "--rootfs", merged, "--cache-dir", filepath.Join(f.root, "cache2"))
	if strings.Contains(stderr, "ernel not found") {
		t.Errorf("merge warned about a kernel: %s", stderr)
	}
	want, got := treeDump(t, direct), treeDump(t, merged)
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("merge differs from install (-install +merge):\n%s", d)
	}
	if !strings.Contains(got, "/var/lib/xen/images/alpine.img") || !strings.Contains(got, "init=/bin/sh") {
		t.Errorf("tree lacks the imported alpine guest:\n%s", got)
	}
	if strings.Contains(got, "win.cfg\n  | kernel") {
		t.Errorf("HVM guest got a kernel line:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(merged, bundle.PayloadRoot)); !os.IsNotExist(err) {
		t.Errorf("payload not removed: %v", err)
	}
	if registered {
		out, _ := exec.Command("dpkg-query", "--admindir="+filepath.Join(merged, "var/lib/dpkg"), "-W", "my-guests").CombinedOutput()
		if !strings.Contains(string(out), "no packages found") {
			t.Errorf("package still registered after merge removed its payload: %s", out)
		}
	}
}

// TestMergeExt4 merges bundles installed in an ext4 image and compares with
// the directory merge; --keep-payload keeps the payload.
func TestMergeExt4(t *testing.T) {
	needTool(t, "mkfs.ext4", "e2fsprogs")
	needTool(t, "debugfs", "e2fsprogs")
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	f := newFixture(t)
	recipe := f.conf(t, "my-guests_1.0.bb", guest.ListBundles)
	dir := f.pack(t, recipe, "dir", filepath.Join(f.root, "out"))
	stage := filepath.Join(f.root, "stage")
	must(t, os.MkdirAll(filepath.Join(stage, "usr/share/xen-guest-bundles"), 0o755))
	must(t, exec.Command("cp", "-a", dir, filepath.Join(stage, "usr/share/xen-guest-bundles/")).Run())
	img := filepath.Join(f.root, "dom0.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", stage, img, "96M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	cli(t, true, "merge", "--rootfs", img, "--keep-payload", "--cache-dir", f.cache, "--tmpdir", f.root)
	cli(t, true, "merge", "--rootfs", stage, "--keep-payload", "--cache-dir", f.cache)
	out := filepath.Join(f.root, "rdump")
	must(t, os.MkdirAll(out, 0o755))
	for _, d := range []string{"/etc", "/var"} {
		if o, err := exec.Command("debugfs", "-R", "rdump "+d+" "+out, img).CombinedOutput(); err != nil {
			t.Fatalf("debugfs rdump: %v\n%s", err, o)
		}
	}
	// debugfs rdump does not restore symlinks' targets as links on every
	// version, so compare the regular files and configs only.
	strip := func(s string) string {
		var keep []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.Contains(l, " -> ") && !strings.HasSuffix(l, "/ 0755") && !strings.HasSuffix(l, "/ 0700") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	if d := cmp.Diff(strip(treeDump(t, stage)), strip(treeDump(t, out))); d != "" {
		t.Errorf("ext4 merge differs from directory merge (-dir +ext4):\n%s", d)
	}
	if o, err := exec.Command("debugfs", "-R", "stat /usr/share/xen-guest-bundles/my-guests/manifest.json", img).CombinedOutput(); err != nil || strings.Contains(string(o), "not found") {
		t.Errorf("--keep-payload: payload gone from the image: %s", o)
	}
	// Without --keep-payload the payload goes.
	cli(t, true, "merge", "--rootfs", img, "--cache-dir", f.cache, "--tmpdir", f.root)
	if o, _ := exec.Command("debugfs", "-R", "stat /usr/share/xen-guest-bundles/my-guests", img).CombinedOutput(); !strings.Contains(string(o), "not found") {
		t.Errorf("payload still in the image after merge: %s", o)
	}
}

// TestPackDeterministic packs twice from copies with different mtimes and
// compares bytes, for every format.
func TestPackDeterministic(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	f := newFixture(t)
	recipe := f.conf(t, "my-guests_1.0.bb", guest.ListBundles)
	for _, format := range []string{"deb", "ipk"} {
		start := time.Now()
		a := f.pack(t, recipe, format, filepath.Join(f.root, "a-"+format))
		elapsed := time.Since(start)
		// Touch every input: mtimes must not leak into the package.
		later := time.Now().Add(time.Hour)
		filepath.Walk(f.deploy, func(p string, _ os.FileInfo, _ error) error { os.Chtimes(p, later, later); return nil })
		b := f.pack(t, recipe, format, filepath.Join(f.root, "b-"+format), "--cache-dir", filepath.Join(f.root, "other-cache"))
		da, err := os.ReadFile(a)
		must(t, err)
		db, err := os.ReadFile(b)
		must(t, err)
		if !bytes.Equal(da, db) {
			t.Errorf("%s: two packs of the same inputs differ (%d vs %d bytes)", format, len(da), len(db))
		}
		t.Logf("%s: %d bytes, packed in %v", filepath.Base(a), len(da), elapsed.Round(time.Millisecond))
	}
}

// TestPackageListing is the golden test of package contents: the deb's
// data listing (dpkg-deb -c format, generated in Go), its control file, the
// ipk's listing, and manifest.json. When dpkg-deb is installed its listing
// must agree with ours.
func TestPackageListing(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	f := newFixture(t)
	recipe := filepath.Join(testutil.RepoRoot(t), "examples", "bundles", "example-xen-guest-bundle_1.0.bb")
	deb := f.pack(t, recipe, "deb", filepath.Join(f.root, "out"))
	ipk := f.pack(t, recipe, "ipk", filepath.Join(f.root, "out"))
	debData, err := os.ReadFile(deb)
	must(t, err)
	ar := arMembers(t, debData)
	var got strings.Builder
	got.WriteString("== " + filepath.Base(deb) + " members:")
	for _, m := range []string{"debian-binary", "control.tar.gz", "data.tar.gz"} {
		if _, ok := ar[m]; !ok {
			t.Errorf("deb lacks %s", m)
		}
		got.WriteString(" " + m)
	}
	got.WriteString("\n")
	listing, files := tarGzMembers(t, ar["data.tar.gz"])
	got.WriteString(strings.Join(listing, "\n") + "\n")
	_, control := tarGzMembers(t, ar["control.tar.gz"])
	got.WriteString("== control\n" + string(control["./control"]))
	got.WriteString("== manifest.json\n" + string(files["./usr/share/xen-guest-bundles/example-xen-guest-bundle/manifest.json"]))
	got.WriteString("== manifest\n" + string(files["./usr/share/xen-guest-bundles/example-xen-guest-bundle/manifest"]))
	got.WriteString("== configs/xen-guest-image-minimal.cfg\n" + string(files["./usr/share/xen-guest-bundles/example-xen-guest-bundle/configs/xen-guest-image-minimal.cfg"]))
	ipkData, err := os.ReadFile(ipk)
	must(t, err)
	outer, ipkFiles := tarGzMembers(t, ipkData)
	got.WriteString("== " + filepath.Base(ipk) + "\n" + strings.Join(outer, "\n") + "\n")
	ipkListing, _ := tarGzMembers(t, ipkFiles["./data.tar.gz"])
	if d := cmp.Diff(listing, ipkListing); d != "" {
		t.Errorf("ipk payload differs from deb payload:\n%s", d)
	}

	golden := filepath.Join("testdata", "example-xen-guest-bundle.golden")
	if *update {
		writeFile(t, golden, []byte(got.String()))
	}
	want, err := os.ReadFile(golden)
	must(t, err)
	if d := cmp.Diff(string(want), got.String()); d != "" {
		t.Errorf("package contents differ from %s (-want +got; -update rewrites):\n%s", golden, d)
	}

	if _, err := exec.LookPath("dpkg-deb"); err == nil {
		out, err := exec.Command("dpkg-deb", "-c", deb).Output()
		must(t, err)
		space := regexp.MustCompile(`\s+`)
		var theirs []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			theirs = append(theirs, space.ReplaceAllString(l, " "))
		}
		if d := cmp.Diff(listing, theirs); d != "" {
			t.Errorf("our listing differs from dpkg-deb -c (-ours +dpkg-deb):\n%s", d)
		}
		info, err := exec.Command("dpkg-deb", "-f", deb, "Package", "Version", "Architecture").Output()
		must(t, err)
		if want := "Package: example-xen-guest-bundle\nVersion: 1.0\nArchitecture: all\n"; string(info) != want {
			t.Errorf("dpkg-deb -f: %q, want %q", info, want)
		}
	} else {
		t.Logf("dpkg-deb not installed, cross-check skipped: %v", err)
	}
}

// TestExamples packs the two shipped example recipes.
func TestExamples(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	f := newFixture(t)
	dir := filepath.Join(testutil.RepoRoot(t), "examples", "bundles")
	stdout, stderr := cli(t, true, "pack", "--conf", filepath.Join(dir, "alpine-xen-guest-bundle_3.23.bb"), "--deploy-dir", f.deploy, "--unpackdir", f.unpack,
		"--format", "dir", "--output", filepath.Join(f.root, "out"), "--cache-dir", f.cache)
	if n := strings.Count(stderr, bundle.RedistributionNotice); n != 1 {
		t.Errorf("redistribution notice printed %d times, want once:\n%s", n, stderr)
	}
	if !strings.Contains(stdout, "bundle alpine-xen-guest-bundle 3.23") {
		t.Errorf("pack output: %s", stdout)
	}
	bdir := filepath.Join(f.root, "out", "alpine-xen-guest-bundle")
	data, err := os.ReadFile(filepath.Join(bdir, bundle.ManifestFile))
	must(t, err)
	m, err := bundle.ParseManifest("manifest.json", data)
	must(t, err)
	g := m.Guests[0]
	rootfs, _ := g.File(bundle.RoleRootfs)
	if g.Name != "alpine" || !g.Autostart || !g.External || g.Memory != 256 || g.KernelMode != bundle.KernelShared || rootfs.Size != 128<<20 || g.Notice == "" {
		t.Errorf("alpine guest: %+v", g)
	}
	cfg, err := os.ReadFile(filepath.Join(bdir, "configs", "alpine.cfg"))
	must(t, err)
	for _, want := range []string{`memory = 256`, `init=/bin/sh`, `console=hvc0`, `target=/var/lib/xen/images/alpine.img`, `kernel = "/var/lib/xen/images/bzImage"`} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("alpine.cfg lacks %q:\n%s", want, cfg)
		}
	}
	line, err := os.ReadFile(filepath.Join(bdir, bundle.LineManifestFile))
	must(t, err)
	if string(line) != "alpine:alpine.img:bzImage:autostart\n" {
		t.Errorf("line manifest %q", line)
	}
	// The image holds the tarball's tree, /bin/sh still a link to busybox.
	if _, err := exec.LookPath("debugfs"); err == nil {
		out, _ := exec.Command("debugfs", "-R", "stat /bin/sh", filepath.Join(bdir, "images", "alpine.img")).CombinedOutput()
		if !strings.Contains(string(out), "/bin/busybox") {
			t.Errorf("/bin/sh in the imported image:\n%s", out)
		}
	}

	stdout, _ = cli(t, true, "pack", "--conf", filepath.Join(dir, "example-xen-guest-bundle_1.0.bb"), "--deploy-dir", f.deploy,
		"--format", "dir", "--output", filepath.Join(f.root, "out"), "--cache-dir", f.cache)
	data, err = os.ReadFile(filepath.Join(f.root, "out", "example-xen-guest-bundle", bundle.ManifestFile))
	must(t, err)
	m, err = bundle.ParseManifest("manifest.json", data)
	must(t, err)
	if g := m.Guests[0]; g.Name != "xen-guest-image-minimal" || !g.Autostart || g.External || g.Memory != 1024 || m.Version != "1.0" {
		t.Errorf("example guest: %+v", g)
	}
}

// installDir packs a dir bundle from a recipe text and copies it into root.
func (f *fixture) installBundle(t testing.TB, root, name, text string) string {
	t.Helper()
	recipe := filepath.Join(f.root, name+"_1.0.bb")
	writeFile(t, recipe, []byte(text))
	out := filepath.Join(f.root, "out-"+name)
	dir := f.pack(t, recipe, "dir", out)
	dst := filepath.Join(root, bundle.PayloadRoot)
	must(t, os.MkdirAll(dst, 0o755))
	must(t, os.Rename(dir, filepath.Join(dst, name)))
	return filepath.Join(dst, name)
}

// TestVerify corrupts installed bundles in every way and checks that merge
// fails naming the problem and writes nothing at all.
func TestVerify(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	f := newFixture(t)
	const recipe = `XEN_GUEST_BUNDLES = "xen-guest-image-minimal:autostart win"
XEN_GUEST_KERNEL[win] = "none"
`
	cases := []struct {
		name   string
		break_ func(t testing.TB, dir string)
		want   string
	}{
		{"corrupt image", func(t testing.TB, dir string) {
			p := filepath.Join(dir, "images", "xen-guest-image-minimal.img")
			data, err := os.ReadFile(p)
			must(t, err)
			data[1000] ^= 1
			must(t, os.WriteFile(p, data, 0o644))
		}, "images/xen-guest-image-minimal.img: sha256"},
		{"truncated kernel", func(t testing.TB, dir string) {
			must(t, os.Truncate(filepath.Join(dir, "images", "bzImage"), 10))
		}, "images/bzImage: size 10"},
		{"missing config", func(t testing.TB, dir string) {
			must(t, os.Remove(filepath.Join(dir, "configs", "win.cfg")))
		}, "configs/win.cfg: missing"},
		{"extra file", func(t testing.TB, dir string) {
			writeFile(t, filepath.Join(dir, "images", "evil.img"), []byte("x"))
		}, "images/evil.img: extra file"},
		{"edited line manifest", func(t testing.TB, dir string) {
			writeFile(t, filepath.Join(dir, "manifest"), []byte("win:win.img::autostart\n"))
		}, "manifest: does not match manifest.json"},
		{"no manifest.json", func(t testing.TB, dir string) {
			must(t, os.Remove(filepath.Join(dir, "manifest.json")))
		}, "only upstream's line manifest is there"},
		{"newer schema", func(t testing.TB, dir string) {
			p := filepath.Join(dir, "manifest.json")
			data, err := os.ReadFile(p)
			must(t, err)
			must(t, os.WriteFile(p, bytes.Replace(data, []byte(`"schemaVersion": 1`), []byte(`"schemaVersion": 7`), 1), 0o644))
		}, "schemaVersion 7 is newer"},
		{"renamed directory", func(t testing.TB, dir string) {
			must(t, os.Rename(dir, filepath.Join(filepath.Dir(dir), "other")))
		}, `names bundle "broken", but it is installed as "other"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			f.installBundle(t, root, "good", `XEN_GUEST_BUNDLES = "vendor"
XEN_GUEST_ROOTFS[vendor] = "vendor-rootfs.ext4"
`)
			dir := f.installBundle(t, root, "broken", recipe)
			c.break_(t, dir)
			_, stderr := cli(t, false, "merge", "--rootfs", root, "--cache-dir", f.cache)
			if !strings.Contains(stderr, c.want) {
				t.Errorf("error lacks %q:\n%s", c.want, stderr)
			}
			for _, p := range []string{"etc/xen", "var/lib/xen"} {
				if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
					t.Errorf("/%s written although verification failed", p)
				}
			}
			if _, err := os.Stat(filepath.Join(root, bundle.PayloadRoot, "good", "manifest.json")); err != nil {
				t.Errorf("good bundle's payload touched: %v", err)
			}
		})
	}
}

// TestConflicts covers every conflict kind, with and without a winner.
func TestConflicts(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	f := newFixture(t)
	writeFile(t, filepath.Join(f.root, "k2", "bzImage"), pattern("other kernel", 4096))
	minimal := `XEN_GUEST_BUNDLES = "xen-guest-image-minimal:autostart"
`
	vendorAs := func(dom string) string {
		return `XEN_GUEST_BUNDLES = "vendor"
XEN_GUEST_ROOTFS[vendor] = "vendor-rootfs.ext4"
XEN_GUEST_NAME[vendor] = "` + dom + `"
`
	}
	otherKernel := `XEN_GUEST_BUNDLES = "vendor"
XEN_GUEST_ROOTFS[vendor] = "vendor-rootfs.ext4"
XEN_GUEST_KERNEL[vendor] = "` + filepath.Join(f.root, "k2", "bzImage") + `"
`
	varsConf := filepath.Join(f.root, "vars.conf")
	writeFile(t, varsConf, []byte(`BUNDLED_XEN_GUESTS = "xen-guest-image-minimal"
`))
	type bundleDef struct{ name, recipe string }
	cases := []struct {
		name    string
		bundles []bundleDef
		args    []string
		want    string // in stderr; "" = success
		check   func(t *testing.T, root string)
	}{
		{"same guest in two bundles", []bundleDef{{"bundle-a", minimal}, {"bundle-b", minimal}}, nil,
			`guest "xen-guest-image-minimal" is declared twice: in bundle bundle-a and in bundle bundle-b`, nil},
		{"same guest with winner bundle-b", []bundleDef{{"bundle-a", minimal}, {"bundle-b", minimal}}, []string{"--winner", "bundle=bundle-b"},
			"", func(t *testing.T, root string) {}},
		{"bundle and BUNDLED_XEN_GUESTS", []bundleDef{{"bundle-a", minimal}}, []string{"--conf", varsConf, "--deploy-dir", f.deploy},
			`guest "xen-guest-image-minimal" is declared twice: in bundle bundle-a and in BUNDLED_XEN_GUESTS`, nil},
		{"bundle and vars with winner vars", []bundleDef{{"bundle-a", minimal}}, []string{"--conf", varsConf, "--deploy-dir", f.deploy, "--winner", "vars"},
			"", func(t *testing.T, root string) {
				// The variable-driven guest has no autostart: it won.
				if _, err := os.Lstat(filepath.Join(root, "etc/xen/auto/xen-guest-image-minimal.cfg")); !os.IsNotExist(err) {
					t.Errorf("bundle's autostart link present: the bundle guest won")
				}
			}},
		{"same domain name", []bundleDef{{"bundle-a", minimal}, {"bundle-b", vendorAs("xen-guest-image-minimal")}}, nil,
			`domain name "xen-guest-image-minimal" is used by guest "xen-guest-image-minimal" (bundle bundle-a) and guest "vendor" (bundle bundle-b)`, nil},
		{"same domain name with winner bundle-a", []bundleDef{{"bundle-a", minimal}, {"bundle-b", vendorAs("xen-guest-image-minimal")}}, []string{"--winner", "bundle=bundle-a"},
			"", func(t *testing.T, root string) {
				if _, err := os.Stat(filepath.Join(root, "etc/xen/vendor.cfg")); !os.IsNotExist(err) {
					t.Errorf("losing guest deployed")
				}
			}},
		{"two kernels named bzImage", []bundleDef{{"bundle-a", minimal}, {"bundle-b", otherKernel}}, nil,
			`two different files are named bzImage: bundle bundle-a (guest xen-guest-image-minimal)`, nil},
		{"two kernels renamed", []bundleDef{{"bundle-a", minimal}, {"bundle-b", otherKernel}}, []string{"--kernel-conflict", "rename"},
			"", func(t *testing.T, root string) {
				m, _ := filepath.Glob(filepath.Join(root, "var/lib/xen/images/bzImage-*"))
				if len(m) != 2 {
					t.Errorf("want two renamed kernels, got %v", m)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			for _, b := range c.bundles {
				f.installBundle(t, root, b.name, b.recipe)
			}
			args := append([]string{"merge", "--rootfs", root, "--cache-dir", f.cache}, c.args...)
			_, stderr := cli(t, c.want == "", args...)
			if c.want != "" {
				if !strings.Contains(stderr, c.want) {
					t.Errorf("error lacks %q:\n%s", c.want, stderr)
				}
				if _, err := os.Stat(filepath.Join(root, "etc/xen")); !os.IsNotExist(err) {
					t.Errorf("/etc/xen written despite the conflict")
				}
				return
			}
			c.check(t, root)
		})
	}
}

// TestResolveAPI checks Resolve directly: order kept, losers dropped.
func TestResolveAPI(t *testing.T) {
	mk := func(name, dom, from string) *guest.Spec {
		s := guest.New(guest.Entry{Name: name})
		s.DomainName, s.From = dom, from
		return s
	}
	a, b, v := mk("g", "g", "bundle a"), mk("g", "g", "bundle b"), mk("g", "g", "")
	out, warns, err := bundle.Resolve([]*guest.Spec{a, b, v}, bundle.Winner{"vars", "bundle=b"})
	if err != nil || len(out) != 1 || out[0] != v || len(warns) != 2 {
		t.Errorf("Resolve: %v %v %v", out, warns, err)
	}
	same := []*guest.Spec{mk("x", "x", "bundle a"), mk("x", "x", "bundle a")}
	if out, _, err := bundle.Resolve(same, nil); err != nil || len(out) != 2 {
		t.Errorf("duplicates inside one source are left to plan.Make: %v %v", out, err)
	}
	if _, err := bundle.ParseWinner("bundle=Bad Name"); err == nil {
		t.Error("ParseWinner accepted an invalid name")
	}
}

// TestSpecsForInstall is the lead's integration path: Specs, then the
// variable guests, one plan.
func TestSpecsForInstall(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	f := newFixture(t)
	root := filepath.Join(t.TempDir(), "root")
	f.installBundle(t, root, "bundle-a", `XEN_GUEST_BUNDLES = "win"
XEN_GUEST_KERNEL[win] = "none"
`)
	specs, found, cleanup, err := bundle.Specs(context.Background(), dom0fs.NewDir(root), "")
	defer cleanup()
	must(t, err)
	if len(found) != 1 || len(specs) != 1 || specs[0].From != "bundle bundle-a" || specs[0].Kernel != guest.KernelNone || !filepath.IsAbs(specs[0].Rootfs) {
		t.Fatalf("Specs: %+v", specs[0])
	}
	v := guest.New(guest.Entry{Name: "xen-guest-image-minimal"})
	all, _, err := bundle.Resolve(append(specs, v), nil)
	must(t, err)
	p, err := plan.Make(all, plan.Env{DeployDir: f.deploy, Machine: "qemux86-64"}, plan.Options{})
	must(t, err)
	if len(p.Guests) != 2 {
		t.Fatalf("plan has %d guests", len(p.Guests))
	}
	for _, c := range p.Checks {
		if c.Guest == "win" && c.What == "kernel" && !strings.Contains(c.Result, "none") {
			t.Errorf("HVM bundle guest: kernel check %q", c.Result)
		}
	}
}

// TestPushPull round-trips a bundle directory and a .deb through an
// in-process registry.
func TestPushPull(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "0")
	f := newFixture(t)
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	recipe := filepath.Join(testutil.RepoRoot(t), "examples", "bundles", "example-xen-guest-bundle_1.0.bb")
	dir := f.pack(t, recipe, "dir", filepath.Join(f.root, "out"))
	deb := f.pack(t, recipe, "deb", filepath.Join(f.root, "out"))

	cli(t, true, "push", dir, host+"/guests/example:1.0")
	cli(t, true, "push", deb, host+"/guests/example:1.0-deb")
	pulled := filepath.Join(f.root, "pulled")
	stdout, _ := cli(t, true, "pull", host+"/guests/example:1.0", "-o", pulled)
	if !strings.Contains(stdout, filepath.Join(pulled, "example-xen-guest-bundle")) {
		t.Errorf("pull output: %s", stdout)
	}
	for _, rel := range []string{"manifest.json", "manifest", "images/bzImage", "images/xen-guest-image-minimal.img", "configs/xen-guest-image-minimal.cfg"} {
		a, err := os.ReadFile(filepath.Join(dir, rel))
		must(t, err)
		b, err := os.ReadFile(filepath.Join(pulled, "example-xen-guest-bundle", rel))
		must(t, err)
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs after the round trip", rel)
		}
	}
	cli(t, true, "pull", host+"/guests/example:1.0-deb", "-o", pulled)
	a, _ := os.ReadFile(deb)
	b, err := os.ReadFile(filepath.Join(pulled, filepath.Base(deb)))
	must(t, err)
	if !bytes.Equal(a, b) {
		t.Errorf("deb differs after the round trip")
	}
	// A pushed corrupt bundle is refused before upload; a missing tag fails.
	must(t, os.Truncate(filepath.Join(dir, "images", "bzImage"), 1))
	if _, stderr := cli(t, false, "push", dir, host+"/guests/example:bad"); !strings.Contains(stderr, "images/bzImage: size 1") {
		t.Errorf("push of a corrupt bundle: %s", stderr)
	}
	cli(t, false, "pull", host+"/guests/example:nope", "-o", pulled)
}
