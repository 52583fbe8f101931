package plan

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxn-dev/vxn/pkg/guest"
)

func write(t *testing.T, p, s string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNameFilesOneCopyPerKernel(t *testing.T) {
	dir := t.TempDir()
	k1 := write(t, filepath.Join(dir, "a", "bzImage"), "kernel one")
	k1copy := write(t, filepath.Join(dir, "b", "bzImage"), "kernel one")
	k2 := write(t, filepath.Join(dir, "c", "bzImage"), "kernel two")
	v := write(t, filepath.Join(dir, "vendor-kernel"), "vendor")
	guests := []*Guest{
		{Spec: guest.New(guest.Entry{Name: "g1"}), Kernel: k1},
		{Spec: guest.New(guest.Entry{Name: "g2"}), Kernel: k1copy},
		{Spec: guest.New(guest.Entry{Name: "g3"}), Kernel: k2},
		{Spec: guest.New(guest.Entry{Name: "g4"}), Kernel: v},
		{Spec: guest.New(guest.Entry{Name: "g5"})},
	}
	nameFiles(guests)
	if guests[0].KernelPath != guests[1].KernelPath {
		t.Errorf("same content, two names: %s %s", guests[0].KernelPath, guests[1].KernelPath)
	}
	if guests[0].KernelPath == guests[2].KernelPath {
		t.Errorf("different kernels share %s", guests[0].KernelPath)
	}
	for _, g := range guests[:3] {
		if !strings.HasPrefix(g.KernelPath, "/var/lib/xen/images/bzImage-") {
			t.Errorf("clashing kernel name not disambiguated: %s", g.KernelPath)
		}
	}
	if guests[3].KernelPath != "/var/lib/xen/images/vendor-kernel" || guests[4].KernelPath != "" {
		t.Errorf("names: %q %q", guests[3].KernelPath, guests[4].KernelPath)
	}
	if guests[4].RootfsPath != "/var/lib/xen/images/g5.img" {
		t.Errorf("rootfs path %s", guests[4].RootfsPath)
	}
}

func TestDefaultKernelImageType(t *testing.T) {
	for m, want := range map[string]string{"qemux86-64": "bzImage", "qemuarm64": "Image", "genericarm64": "Image", "qemuarm": "zImage"} {
		if got := DefaultKernelImageType(m); got != want {
			t.Errorf("%s: %s, want %s", m, got, want)
		}
	}
}

func TestResolveRootfsSearchOrder(t *testing.T) {
	dir := t.TempDir()
	env := Env{DeployDir: dir, Machine: "qemux86-64", ImageFstype: "ext4"}
	g := guest.New(guest.Entry{Name: "g"})
	_, err := resolveRootfs(g, env)
	var nf *NotFoundError
	if !errors.As(err, &nf) || !errors.Is(err, fs.ErrNotExist) || len(nf.Searched) != 2 ||
		nf.Searched[0] != filepath.Join(dir, "g-qemux86-64.ext4") || nf.Searched[1] != filepath.Join(dir, "g-qemux86-64.rootfs.ext4") {
		t.Fatalf("error %v", err)
	}
	second := write(t, filepath.Join(dir, "g-qemux86-64.rootfs.ext4"), "x")
	if p, err := resolveRootfs(g, env); err != nil || p != second {
		t.Errorf("got %s %v", p, err)
	}
	first := write(t, filepath.Join(dir, "g-qemux86-64.ext4"), "x")
	if p, _ := resolveRootfs(g, env); p != first {
		t.Errorf("standard name not preferred: %s", p)
	}
	g.Rootfs = "other.ext4"
	if _, err := resolveRootfs(g, env); err == nil || !strings.Contains(err.Error(), "XEN_GUEST_ROOTFS[g]") {
		t.Errorf("override error: %v", err)
	}
}

func TestResolveKernelModes(t *testing.T) {
	dir := t.TempDir()
	deploy, unpack := filepath.Join(dir, "deploy"), filepath.Join(dir, "unpack")
	shared := write(t, filepath.Join(deploy, "bzImage"), "k")
	inDeploy := write(t, filepath.Join(deploy, "custom"), "c")
	inUnpack := write(t, filepath.Join(unpack, "custom"), "u")
	env := Env{DeployDir: deploy, UnpackDir: unpack, KernelImageType: "bzImage"}
	for _, tt := range []struct {
		kernel, typ, want string
	}{
		{"", "", shared},
		{"custom", "", inUnpack},
		{"none", "", ""},
		{"", "hvm", ""},
		{inDeploy, "", inDeploy},
	} {
		g := guest.New(guest.Entry{Name: "g"})
		g.Kernel, g.Type = tt.kernel, tt.typ
		got, err := resolveKernel(g, env)
		if err != nil || got != tt.want {
			t.Errorf("kernel %q type %q: got %q %v, want %q", tt.kernel, tt.typ, got, err, tt.want)
		}
	}
}

func TestMemoryWarnings(t *testing.T) {
	a := guest.New(guest.Entry{Name: "a", Autostart: true})
	b := guest.New(guest.Entry{Name: "b"})
	guests := []*Guest{{Spec: a}, {Spec: b}}
	if w := memoryWarnings(guests, Env{HostMemoryMB: 4096, Dom0MemoryMB: 512}); len(w) != 0 {
		t.Errorf("unexpected warnings %v", w)
	}
	w := memoryWarnings(guests, Env{HostMemoryMB: 1024, Dom0MemoryMB: 512})
	if len(w) != 1 || !strings.Contains(w[0], "1024 MB, more than the 512 MB free") {
		t.Errorf("warnings %v", w)
	}
	w = memoryWarnings(guests, Env{HostMemoryMB: 768, Dom0MemoryMB: 512})
	if len(w) != 2 || !strings.Contains(w[0], "autostart guests need 512 MB (a=512)") {
		t.Errorf("warnings %v", w)
	}
}

func TestFingerprintChanges(t *testing.T) {
	dir := t.TempDir()
	f := write(t, filepath.Join(dir, "d", "f"), "one")
	fp1, err := Fingerprint(filepath.Join(dir, "d"))
	if err != nil {
		t.Fatal(err)
	}
	fp2, _ := Fingerprint(filepath.Join(dir, "d"))
	if fp1 != fp2 {
		t.Error("fingerprint not stable")
	}
	write(t, f, "two")
	if fp3, _ := Fingerprint(filepath.Join(dir, "d")); fp3 == fp1 {
		t.Error("content change not seen")
	}
	write(t, filepath.Join(dir, "d", "g"), "")
	fp4, _ := Fingerprint(filepath.Join(dir, "d"))
	os.Remove(filepath.Join(dir, "d", "g"))
	if fp5, _ := Fingerprint(filepath.Join(dir, "d")); fp5 == fp4 {
		t.Error("removal not seen")
	}
}

// TestGuestTypeArm: on an Arm machine a guest without a type gets no type
// key (Xen on Arm has one guest type), pvh stays, and PV and HVM guests are
// refused naming the setting; x86 keeps PV as the default.
func TestGuestTypeArm(t *testing.T) {
	for _, tt := range []struct {
		machine, typ, kernel, want, err string
	}{
		{"qemux86-64", "", "", "pv", ""},
		{"qemux86-64", "", "none", "hvm", ""},
		{"qemuarm64", "", "", "", ""},
		{"qemuarm64", "pvh", "", "pvh", ""},
		{"qemuarm64", "pv", "", "", "XEN_GUEST_TYPE"},
		{"qemuarm64", "hvm", "", "", "XEN_GUEST_TYPE"},
		{"qemuarm64", "", "none", "", "XEN_GUEST_KERNEL"},
	} {
		g := guest.New(guest.Entry{Name: "g"})
		g.Type, g.Kernel = tt.typ, tt.kernel
		got, err := guestType(g, Env{Machine: tt.machine})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) || !strings.Contains(err.Error(), tt.machine) {
				t.Errorf("%s type %q kernel %q: err %v, want one naming %s and the machine", tt.machine, tt.typ, tt.kernel, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s type %q kernel %q: got %q %v, want %q", tt.machine, tt.typ, tt.kernel, got, err, tt.want)
		}
	}
	// The generated config of an Arm guest has no type key.
	g := &Guest{Spec: guest.New(guest.Entry{Name: "g"}), RootfsPath: "/var/lib/xen/images/g.img", KernelPath: "/var/lib/xen/images/Image"}
	g.Spec.DiskDevice = "xvda"
	data, err := generateConfig(g)
	if err != nil || strings.Contains(string(data), "type") {
		t.Errorf("config %s %v", data, err)
	}
}
