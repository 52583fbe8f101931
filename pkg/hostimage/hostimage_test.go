package hostimage

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"
)

// fakeKernel builds a "bzImage": a header, then a compressed ELF payload,
// then trailing padding, like the real thing.
func fakeKernel(t testing.TB, comp string, payload []byte) []byte {
	var b bytes.Buffer
	b.WriteString("MZ fake setup code \xfd7zXZ not-a-stream ")
	switch comp {
	case "xz":
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(payload)
		w.Close()
	case "gzip":
		w := gzip.NewWriter(&b)
		w.Write(payload)
		w.Close()
	}
	b.WriteString("trailing padding \x00\x00\x00")
	return b.Bytes()
}

func TestExtractVmlinux(t *testing.T) {
	elfPayload := append([]byte("\x7fELF"), bytes.Repeat([]byte("kernel"), 1000)...)
	tests := []struct {
		name    string
		img     []byte
		want    []byte
		wantErr string
	}{
		{"xz", fakeKernel(t, "xz", elfPayload), elfPayload, ""},
		{"gzip", fakeKernel(t, "gzip", elfPayload), elfPayload, ""},
		{"already elf", elfPayload, elfPayload, ""},
		{"xz non-elf", fakeKernel(t, "xz", []byte("not an elf file")), nil, "not an ELF"},
		{"nothing", []byte("MZ plain"), nil, "no XZ or gzip payload"},
		{"truncated", fakeKernel(t, "xz", elfPayload)[:60], nil, "extract vmlinux"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := ExtractVmlinux(tc.img, &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(tc.want)) || !bytes.Equal(out.Bytes(), tc.want) {
				t.Errorf("got %d bytes, want %d", n, len(tc.want))
			}
		})
	}
}

func FuzzExtractVmlinux(f *testing.F) {
	elfPayload := append([]byte("\x7fELF"), bytes.Repeat([]byte("k"), 100)...)
	f.Add(fakeKernel(f, "xz", elfPayload))
	f.Add(fakeKernel(f, "gzip", elfPayload))
	f.Add([]byte("\xfd7zXZ\x00\x00\x04"))
	f.Fuzz(func(t *testing.T, img []byte) {
		var out bytes.Buffer
		n, err := ExtractVmlinux(img, &out)
		if err == nil && (!bytes.HasPrefix(out.Bytes(), []byte("\x7fELF")) || n != int64(out.Len())) {
			t.Fatalf("accepted non-ELF output (%d bytes)", n)
		}
	})
}

func TestPathMapping(t *testing.T) {
	tests := []struct {
		rel        string
		keep, drop []string
		mapped     string
		kept       bool
	}{
		{"bin/bash", nil, nil, "usr/bin/bash", true},
		{"sbin/losetup", []string{"usr/sbin/losetup"}, nil, "usr/sbin/losetup", true},
		{"lib/x86_64-linux-gnu/libc.so.6", nil, nil, "usr/lib/x86_64-linux-gnu/libc.so.6", true},
		{"usr/share/doc/bash/copyright", nil, nil, "usr/share/doc/bash/copyright", false},
		{"usr/bin/flock", []string{"usr/bin/flock"}, nil, "usr/bin/flock", true},
		{"usr/bin/more", []string{"usr/bin/flock"}, nil, "usr/bin/more", false},
		{"usr", []string{"usr/bin/flock"}, nil, "usr", true}, // parent of a kept path
		{"usr/lib/xen-4.17/lib/x", nil, []string{"usr/lib/xen-4.17/lib/"}, "usr/lib/xen-4.17/lib/x", false},
		{"etc/xen/xl.conf", nil, nil, "etc/xen/xl.conf", true},
	}
	for _, tc := range tests {
		m := mapPath(tc.rel)
		k := kept(m, tc.keep) && !dropped(m, tc.drop)
		if m != tc.mapped || k != tc.kept {
			t.Errorf("%s: mapped %q kept %v, want %q %v", tc.rel, m, k, tc.mapped, tc.kept)
		}
	}
}

func TestInstallTreeAndTar(t *testing.T) {
	src, root := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(src, "bin"), 0o755)
	os.MkdirAll(filepath.Join(src, "usr/share/doc/x"), 0o755)
	os.WriteFile(filepath.Join(src, "bin/tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(src, "usr/share/doc/x/README"), []byte("doc"), 0o644)
	os.Symlink("tool", filepath.Join(src, "bin/alias"))
	if err := makeUsrLinks(root); err != nil {
		t.Fatal(err)
	}
	if err := installTree(src, root, nil, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(root, "usr/bin/tool")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("usr/bin/tool: %v", err)
	}
	if l, err := os.Readlink(filepath.Join(root, "usr/bin/alias")); err != nil || l != "tool" {
		t.Errorf("alias link = %q %v", l, err)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/share/doc/x/README")); err == nil {
		t.Error("docs were copied")
	}
	if l, _ := os.Readlink(filepath.Join(root, "bin")); l != "usr/bin" {
		t.Errorf("bin -> %q", l)
	}
	var tb bytes.Buffer
	if err := writeTar(root, &tb); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(tb.Bytes(), []byte("./usr/bin/tool")) {
		t.Error("tar lacks ./usr/bin/tool")
	}
}

func TestMachines(t *testing.T) {
	for name, m := range Machines {
		if m.Name != name {
			t.Errorf("%s: Name %q", name, m.Name)
		}
		for field, v := range map[string]string{"DebArch": m.DebArch, "Triplet": m.Triplet, "Hypervisor": m.Hypervisor,
			"HypervisorFile": m.HypervisorFile, "KernelMeta": m.KernelMeta, "Busybox": m.Busybox, "QEMUBinary": m.QEMUBinary,
			"CPUTCG": m.CPUTCG, "BootMethod": m.BootMethod, "RootDev": m.RootDev, "GuestRootDev": m.GuestRootDev} {
			if v == "" {
				t.Errorf("%s: %s is empty", name, field)
			}
		}
		if strings.Contains(m.GuestCmdline(), ",") {
			t.Errorf("%s: guest cmdline has a comma", name)
		}
	}
	if _, err := LookupMachine("nope"); err == nil || !strings.Contains(err.Error(), "qemux86-64") {
		t.Errorf("LookupMachine(nope) = %v", err)
	}
	if _, err := Build(context.Background(), Options{OutDir: t.TempDir(), Init: "upstart"}); err == nil || !strings.Contains(err.Error(), "upstart") {
		t.Errorf("Build with bad Init: %v", err)
	}
}

// TestArm64Machine pins what the hands-on arm64 study found necessary
// (../shared/docs/xen-arm64-in-qemu.md): Xen's bootscrub=0 and
// dom0_max_vcpus=1 under TCG and no noreboot (a panic must end QEMU),
// virtio over MMIO with its module, libfdt1 for libxl, the Image booted as
// is, and the guest-loader boot.
func TestArm64Machine(t *testing.T) {
	m, err := LookupMachine("qemuarm64")
	if err != nil {
		t.Fatal(err)
	}
	xen := " " + m.XenCmdline + " "
	for _, w := range []string{" bootscrub=0 ", " dom0_max_vcpus=1 ", " console=dtuart "} {
		if !strings.Contains(xen, w) {
			t.Errorf("Xen command line %q lacks %q", m.XenCmdline, strings.TrimSpace(w))
		}
	}
	if strings.Contains(xen, " noreboot ") {
		t.Errorf("Xen command line %q has noreboot: a panic would hang QEMU until the timeout", m.XenCmdline)
	}
	has := func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	}
	if !has(m.Dom0Modules, "virtio_mmio") || !has(m.InitramfsModules, "virtio_mmio") || m.DiskDevice != "virtio-blk-device" {
		t.Errorf("disks are not virtio-mmio: DiskDevice %q, modules %v / %v", m.DiskDevice, m.InitramfsModules, m.Dom0Modules)
	}
	var pkgs []string
	for _, p := range m.Dom0Packages {
		pkgs = append(pkgs, p.Name)
	}
	if !has(pkgs, "libfdt1") {
		t.Errorf("dom0 packages lack libfdt1 (libxl builds the guest device tree): %v", pkgs)
	}
	if m.ExtractVmlinux || m.KernelImageType != "Image" || m.GuestKernelType != "Image" || m.GuestType == "pv" {
		t.Errorf("kernel/guest settings: extract %v, types %q/%q, guest type %q", m.ExtractVmlinux, m.KernelImageType, m.GuestKernelType, m.GuestType)
	}
	if m.BootMethod != "guest-loader" || m.DebArch != "arm64" {
		t.Errorf("boot %q arch %q", m.BootMethod, m.DebArch)
	}
}
