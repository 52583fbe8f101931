package container

import (
	"fmt"

	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/xlcfg"
)

// KernelCmdline is the guest kernel command line: the console for the kernel
// and for vxn-init's protocol, and a silent kernel so that its messages
// rarely land between protocol frames. Nothing about the job is on it (the
// spec, with the environment, travels over the console).
const KernelCmdline = "console=hvc0 quiet loglevel=0 vxn.console=hvc0"

// DefaultMemoryMB and DefaultVCPUs size a guest unless told otherwise.
// 128 MiB is what the stock Debian kernel, the initramfs and a tmpfs upper
// layer need with room to spare; the floor is measured by the runtime suite.
const (
	DefaultMemoryMB = 128
	DefaultVCPUs    = 1
)

// DomainConfig is what RenderConfig needs to write a container's xl config.
type DomainConfig struct {
	// Name is the domain name.
	Name string
	// Type is "pv" (default) or "pvh".
	Type string
	// MemoryMB and VCPUs size the guest.
	MemoryMB, VCPUs int
	// Kernel and Initramfs are the guest kernel and vxn initramfs.
	Kernel, Initramfs string
	// ImageDisk is the image's read-only ext4 disk, attached as xvda.
	ImageDisk string
	// ScratchDisk, when set, is the writable layer's disk, xvdb.
	ScratchDisk string
	// Bridge, when set, adds one vif on that bridge (--network bridge).
	Bridge string
}

// RenderConfig writes the xl config of a container guest with
// xlcfg.Generate. Disks use the keyed form with the target last, so paths
// with commas are fine; the image disk is read-only, so any number of guests
// share it. on_poweroff is "preserve": the powered-off domain (and its
// xenstore keys, where vxn-init wrote its exit status) stays until vxn
// destroys it, so the exit status survives a lost Exit frame; on_reboot and
// on_crash are "destroy".
func RenderConfig(c DomainConfig) ([]byte, error) {
	typ := c.Type
	if typ == "" {
		typ = "pv"
	}
	if c.Kernel == "" || c.Initramfs == "" || c.ImageDisk == "" {
		return nil, fmt.Errorf("container config: kernel, initramfs and image disk are required")
	}
	disk := func(vdev, access, target string) (string, error) {
		if err := xlcfg.ValidateDiskTarget(target, true); err != nil {
			return "", fmt.Errorf("container config: disk %s: %w", vdev, err)
		}
		return fmt.Sprintf("format=raw, vdev=%s, access=%s, target=%s", vdev, access, target), nil
	}
	d := xlcfg.Domain{
		Name: c.Name, Type: typ, Memory: c.MemoryMB, VCPUs: c.VCPUs,
		Kernel: c.Kernel, Ramdisk: c.Initramfs, Extra: KernelCmdline,
		OnPoweroff: "preserve", OnReboot: "destroy", OnCrash: "destroy",
	}
	s, err := disk("xvda", "ro", c.ImageDisk)
	if err != nil {
		return nil, err
	}
	d.Disks = append(d.Disks, s)
	if c.ScratchDisk != "" {
		s, err := disk("xvdb", "rw", c.ScratchDisk)
		if err != nil {
			return nil, err
		}
		d.Disks = append(d.Disks, s)
	}
	if c.Bridge != "" {
		d.Vifs = append(d.Vifs, "bridge="+c.Bridge)
	}
	return xlcfg.Generate(d)
}

// MemoryError is the refusal of a container that does not fit in Xen's free
// memory.
type MemoryError struct {
	// RequestedMB is the guest's memory, FreeMB and TotalMB Xen's figures.
	RequestedMB, FreeMB, TotalMB int
}

func (e *MemoryError) Error() string {
	return fmt.Sprintf("not enough free memory for the container: it needs %d MB but Xen has %d MB free (of %d MB); "+
		"use a smaller --memory, or stop other guests (xl list)", e.RequestedMB, e.FreeMB, e.TotalMB)
}

// CheckMemory compares the request with `xl info`'s free memory and returns a
// *MemoryError when it does not fit (upstream vxn has no such check and lets
// xl create fail obscurely).
func CheckMemory(info toolstack.Info, requestedMB int) error {
	if requestedMB > info.FreeMemoryMB {
		return &MemoryError{RequestedMB: requestedMB, FreeMB: info.FreeMemoryMB, TotalMB: info.TotalMemoryMB}
	}
	return nil
}
