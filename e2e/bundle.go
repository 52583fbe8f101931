// Package e2e boots the reference Xen host image (pkg/hostimage) under QEMU
// (pkg/qemu) and runs a runtime suite modelled on meta-virtualization's
// tests/test_xen_runtime.py: dom0 boot checks and guest bundling checks
// (xendomains autostart, manual xl create, xl shutdown).
//
// The tests only run when enabled:
//
//	go test ./e2e -v -args -e2e [-machine qemux86-64] [-boot-timeout 120s] [-no-kvm]
//	VXN_E2E=1 go test ./e2e -v
//
// The image is built once into the repository's .cache/ (package downloads
// and extraction are cached), and the machine is booted once per test
// binary in TestMain.
//
// Host packages (Debian 12) the CI must install:
//
//	apt-get install -y qemu-system-x86 qemu-utils e2fsprogs xz-utils bzip2 kmod cpio
//
// apt-get, apt-cache and dpkg-deb (always present on Debian) fetch and
// unpack the image packages; kmod (depmod) is optional; cpio is only used by
// a unit test to cross-check the initramfs. KVM is used only when /dev/kvm
// works and the CPU advertises vmx/svm; otherwise QEMU runs TCG and the boot
// timeout is multiplied by 4.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Guest describes one guest to bundle into the dom0 root filesystem.
type Guest struct {
	Name      string
	Kernel    string // host path of the guest kernel
	Ramdisk   string // host path of the guest initramfs ("" for none)
	Disk      string // host path of the guest root disk image
	Extra     string // guest kernel command line
	MemoryMB  int
	Autostart bool
}

// ImagesDir is where bundled files go inside dom0 (upstream layout).
const ImagesDir = "/var/lib/xen/images"

// Config renders the guest's xl config as bundled into dom0.
func (g Guest) Config() string {
	var b strings.Builder
	fmt.Fprintf(&b, "name = %q\n", g.Name)
	fmt.Fprintf(&b, "type = \"pv\"\n")
	fmt.Fprintf(&b, "memory = %d\n", g.MemoryMB)
	fmt.Fprintf(&b, "vcpus = 1\n")
	fmt.Fprintf(&b, "kernel = %q\n", ImagesDir+"/"+filepath.Base(g.Kernel))
	if g.Ramdisk != "" {
		fmt.Fprintf(&b, "ramdisk = %q\n", ImagesDir+"/"+filepath.Base(g.Ramdisk))
	}
	fmt.Fprintf(&b, "extra = %q\n", g.Extra)
	fmt.Fprintf(&b, "disk = ['file:%s/%s,xvda,rw']\n", ImagesDir, g.diskName())
	return b.String()
}

func (g Guest) diskName() string { return g.Name + filepath.Ext(g.Disk) }

// BundleIntoExt4 writes guests into a dom0 ext4 image without mounting it
// (debugfs -w): files into /var/lib/xen/images, /etc/xen/<g>.cfg and the
// /etc/xen/auto/<g>.cfg symlink for autostart guests. This stands in for
// `xenbundle install --rootfs <ext4>` until the CLI exists.
func BundleIntoExt4(ctx context.Context, rootfs string, guests []Guest) error {
	tmp, err := os.MkdirTemp("", "vxn-bundle-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var script bytes.Buffer
	written := map[string]bool{}
	write := func(host, target string) {
		if written[target] {
			return
		}
		written[target] = true
		fmt.Fprintf(&script, "rm %s\nwrite %s %s\n", target, host, target)
	}
	for _, g := range guests {
		write(g.Kernel, ImagesDir+"/"+filepath.Base(g.Kernel))
		if g.Ramdisk != "" {
			write(g.Ramdisk, ImagesDir+"/"+filepath.Base(g.Ramdisk))
		}
		write(g.Disk, ImagesDir+"/"+g.diskName())
		cfg := filepath.Join(tmp, g.Name+".cfg")
		if err := os.WriteFile(cfg, []byte(g.Config()), 0o644); err != nil {
			return err
		}
		write(cfg, "/etc/xen/"+g.Name+".cfg")
		if g.Autostart {
			fmt.Fprintf(&script, "rm /etc/xen/auto/%s.cfg\nsymlink /etc/xen/auto/%s.cfg /etc/xen/%s.cfg\n", g.Name, g.Name, g.Name)
		}
	}
	sp := filepath.Join(tmp, "script")
	if err := os.WriteFile(sp, script.Bytes(), 0o644); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "debugfs", "-w", "-f", sp, rootfs).CombinedOutput()
	if err != nil {
		return fmt.Errorf("debugfs -w %s: %w: %s", rootfs, err, out)
	}
	// debugfs reports most failures on its output, not in its exit status.
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "write: ") || strings.Contains(l, "symlink: ") || strings.Contains(l, "Could not") {
			return fmt.Errorf("debugfs -w %s: %s", rootfs, l)
		}
	}
	return nil
}
