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
