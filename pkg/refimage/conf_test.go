package refimage

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSpecLocalConf: a local.conf holding only the spec's lines still gets
// what the reference guest needs to boot (initramfs, hvc0 console, root
// device) from the machine configuration, and its own lines win.
func TestSpecLocalConf(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "local.conf")
	spec := "BUNDLED_XEN_GUESTS = \"xen-guest-image-minimal:autostart\"\n" +
		"XEN_GUEST_MEMORY[xen-guest-image-minimal] = \"256\"\n"
	if err := os.WriteFile(conf, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		confs []string
	}{{"default", nil}, {"spec-lines", []string{conf}}} {
		t.Run(c.name, func(t *testing.T) {
			specs, _, err := loadGuests(Options{Confs: c.confs}, "qemux86-64", "/deploy")
			if err != nil {
				t.Fatal(err)
			}
			if len(specs) != 1 {
				t.Fatalf("got %d guests, want 1", len(specs))
			}
			g := specs[0]
			if g.Name != "xen-guest-image-minimal" || !g.Autostart {
				t.Errorf("guest %q autostart=%v", g.Name, g.Autostart)
			}
			if !strings.HasSuffix(g.Ramdisk, "xen-guest-initramfs-qemux86-64.cpio.gz") {
				t.Errorf("ramdisk = %q, want the reference guest initramfs", g.Ramdisk)
			}
			if !strings.Contains(g.Extra, "console=hvc0") || !strings.Contains(g.Extra, "root=/dev/xvda") {
				t.Errorf("extra = %q, want console=hvc0 root=/dev/xvda", g.Extra)
			}
			if g.Memory != 256 {
				t.Errorf("memory = %d, want 256", g.Memory)
			}
		})
	}
	// A user's line, with any operator, wins over the machine's default.
	over := filepath.Join(dir, "over.conf")
	os.WriteFile(over, []byte(spec+"XEN_GUEST_EXTRA_DEFAULT ?= \"root=/dev/xvda ro quiet\"\nXEN_GUEST_RAMDISK[xen-guest-image-minimal] = \"my.cpio.gz\"\n"), 0o644)
	specs, _, err := loadGuests(Options{Confs: []string{over}}, "qemux86-64", "/deploy")
	if err != nil {
		t.Fatal(err)
	}
	if g := specs[0]; g.Extra != "root=/dev/xvda ro quiet" || !strings.HasSuffix(g.Ramdisk, "my.cpio.gz") {
		t.Errorf("user lines did not win: extra %q ramdisk %q", g.Extra, g.Ramdisk)
	}
}

// TestFeatures: the spec's tier-3 lines turn on vxn and the engines;
// vcontainer alone gives the engines; IMAGE_INSTALL vxn without the distro
// feature is an error naming the line; :pn- of another image has no effect.
func TestFeatures(t *testing.T) {
	const tier3 = `DISTRO_FEATURES:append = " virtualization vcontainer vxn"
IMAGE_INSTALL:append:pn-xen-image-minimal = " vxn"
BBMULTICONFIG = "vruntime-aarch64 vruntime-x86-64"
`
	cases := []struct {
		name, conf   string
		vxn, engines bool
		err, note    string
	}{
		{name: "none", conf: "BUNDLED_XEN_GUESTS = \"\"\n"},
		{name: "tier3", conf: tier3, vxn: true, engines: true, note: "BBMULTICONFIG"},
		{name: "vcontainer", conf: "DISTRO_FEATURES:append = \" virtualization vcontainer\"\n", engines: true},
		{name: "vxn-no-engines", conf: "DISTRO_FEATURES:append = \" vxn\"\nIMAGE_INSTALL:append = \" vxn\"\n", vxn: true},
		{name: "no-distro-feature", conf: "IMAGE_INSTALL:append:pn-xen-image-minimal = \" vxn\"\n", err: "local.conf:1"},
		{name: "other-image", conf: "DISTRO_FEATURES:append = \" vxn\"\nIMAGE_INSTALL:append:pn-core-image-minimal = \" vxn\"\n", note: "lacks vxn"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "local.conf")
			os.WriteFile(p, []byte(c.conf), 0o644)
			d, err := loadConf(Options{Confs: []string{p}}, "qemux86-64")
			if err != nil {
				t.Fatal(err)
			}
			f, err := FeaturesOf(d)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one naming %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if f.Vxn != c.vxn || f.Engines != c.engines {
				t.Errorf("vxn=%v engines=%v, want %v %v", f.Vxn, f.Engines, c.vxn, c.engines)
			}
			if c.note != "" && !strings.Contains(strings.Join(f.Notes, "\n"), c.note) {
				t.Errorf("notes %q lack %q", f.Notes, c.note)
			}
		})
	}
}
