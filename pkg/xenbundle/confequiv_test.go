package xenbundle

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/vxn-dev/vxn/pkg/refimage"
)

// TestConfEquivalence: the same local.conf gives the same guest specs
// through install/plan (Inputs.load) and through build-image
// (refimage.LoadGuests), machine and architecture overrides included.
func TestConfEquivalence(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "local.conf")
	os.WriteFile(conf, []byte(`BUNDLED_XEN_GUESTS = "g1:autostart g2"
BUNDLED_XEN_GUESTS:append:pn-xen-image-minimal = " g3"
XEN_GUEST_MEMORY_DEFAULT = "300"
XEN_GUEST_MEMORY[g1] = "256"
XEN_GUEST_VCPUS_DEFAULT:x86-64 = "2"
XEN_GUEST_EXTRA_DEFAULT = "root=/dev/xvda ro"
XEN_GUEST_EXTRA_DEFAULT:append:qemuall = " console=hvc0"
XEN_GUEST_RAMDISK_DEFAULT = "initrd-${MACHINE}.cpio.gz"
XEN_GUEST_VIF_DEFAULT = ""
XEN_GUEST_ROOTFS[g2] = "other-${MACHINE}.ext4"
`), 0o644)
	deploy := filepath.Join(dir, "deploy")
	in := Inputs{Confs: []string{conf}, DeployDir: deploy, Machine: "qemux86-64", Image: "xen-image-minimal", KernelType: refimage.GuestKernelType("qemux86-64")}
	a, _, err := in.load()
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := refimage.LoadGuests(refimage.Options{Confs: []string{conf}}, "qemux86-64", deploy)
	if err != nil {
		t.Fatal(err)
	}
	ja, _ := json.MarshalIndent(a, "", " ")
	jb, _ := json.MarshalIndent(b, "", " ")
	if string(ja) != string(jb) {
		t.Fatalf("install/plan and build-image read the same local.conf differently:\nplan:\n%s\nbuild-image:\n%s", ja, jb)
	}
	if len(a) != 3 || a[0].VCPUs != 2 || a[1].Memory != 300 {
		t.Errorf("overrides not applied: %s", ja)
	}
}
