package qemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// DescriptorName is the conventional file name of a machine descriptor
// inside an image output directory (like Yocto's qemuboot.conf).
const DescriptorName = "qemuboot.json"

// Boot methods understood by Args.
const (
	// BootMultiboot loads Xen with QEMU's multiboot loader (-kernel xen
	// -initrd "dom0-kernel args,dom0-initrd"); x86 only.
	BootMultiboot = "multiboot"
	// BootGuestLoader loads Xen as the -kernel of an Arm "virt" machine and
	// the dom0 kernel and initrd with -device guest-loader at fixed
	// addresses (GuestLoaderKernelAddr, GuestLoaderInitrdAddr); QEMU puts
	// them into the device tree as Xen's boot modules.
	BootGuestLoader = "guest-loader"
)

// Descriptor describes how to boot one built host image: which files, which
// command lines, and which QEMU machine. File fields are names relative to
// the descriptor's directory. Nothing architecture-specific is assumed by
// the code that reads it: everything x86-specific is data in the file.
type Descriptor struct {
	// Machine is the Yocto-style machine name, e.g. "qemux86-64".
	Machine string `json:"machine"`
	// Arch is the target architecture as QEMU names it (x86_64, aarch64).
	Arch string `json:"arch"`
	// QEMUBinary is the emulator program, e.g. "qemu-system-x86_64".
	QEMUBinary string `json:"qemu_binary"`
	// QEMUMachine is the -machine value ("" keeps QEMU's default).
	QEMUMachine string `json:"qemu_machine,omitempty"`
	// CPUTCG and CPUKVM are the -cpu values under TCG and KVM.
	CPUTCG string `json:"cpu_tcg"`
	CPUKVM string `json:"cpu_kvm"`
	// MemoryMB and SMP are the default -m and -smp values.
	MemoryMB int `json:"memory_mb"`
	SMP      int `json:"smp"`
	// BootMethod is BootMultiboot or BootGuestLoader.
	BootMethod string `json:"boot_method"`
	// Hypervisor is the Xen binary passed as -kernel.
	Hypervisor string `json:"hypervisor"`
	// XenCmdline is the hypervisor command line (-append).
	XenCmdline string `json:"xen_cmdline"`
	// Kernel is the dom0 kernel; Dom0Cmdline its command line.
	Kernel      string `json:"kernel"`
	Dom0Cmdline string `json:"dom0_cmdline"`
	// Initrd is the dom0 initramfs (optional).
	Initrd string `json:"initrd,omitempty"`
	// RootDisk is the dom0 root filesystem image attached as the first disk.
	RootDisk string `json:"root_disk,omitempty"`
	// RootDiskFormat is the QEMU format of RootDisk (default "raw").
	RootDiskFormat string `json:"root_disk_format,omitempty"`
	// DiskInterface is the QEMU drive interface for disks (default "virtio").
	DiskInterface string `json:"disk_interface,omitempty"`
	// DiskDevice, when set, is the QEMU device model of the disks, e.g.
	// "virtio-blk-device" (virtio over MMIO on Arm "virt"): each disk is
	// then -drive if=none,id=diskN plus -device DiskDevice,drive=diskN,
	// and DiskInterface is not used.
	DiskDevice string `json:"disk_device,omitempty"`
	// NetDevice is the QEMU network device model of dom0's NIC, e.g.
	// "virtio-net-pci"; it is attached to QEMU user-mode networking
	// (10.0.2.0/24, the host is 10.0.2.2). Empty means no network.
	NetDevice string `json:"net_device,omitempty"`
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string `json:"extra_args,omitempty"`
	// ConsoleNoise are regular expressions of console text that is not
	// part of a dom0 command's output though it arrives in the middle of
	// it: Xen's own messages on the serial console dom0 shares (e.g. Xen
	// on Arm's vGIC messages at every guest's boot). VM.Run removes them
	// from Result.Output; the log keeps them.
	ConsoleNoise []string `json:"console_noise,omitempty"`
	// LoginUser is sent when a "login:" prompt appears ("" = no login).
	LoginUser string `json:"login_user,omitempty"`
	// Markers maps boot phase names to substrings of serial lines; the
	// first line containing the substring marks the phase.
	Markers map[string]string `json:"markers,omitempty"`
	// Files lists every artefact of the build by role (informational).
	Files map[string]string `json:"files,omitempty"`

	// Dir is the directory the descriptor was loaded from; file fields are
	// resolved against it. Not serialised.
	Dir string `json:"-"`
}

// Path resolves a file field against the descriptor directory.
func (d *Descriptor) Path(name string) string {
	if name == "" || filepath.IsAbs(name) {
		return name
	}
	return filepath.Join(d.Dir, name)
}

// Validate checks the fields needed to boot.
func (d *Descriptor) Validate() error {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"machine", d.Machine}, {"qemu_binary", d.QEMUBinary}, {"boot_method", d.BootMethod},
		{"hypervisor", d.Hypervisor}, {"kernel", d.Kernel}, {"cpu_tcg", d.CPUTCG},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("descriptor: missing %s", strings.Join(missing, ", "))
	}
	if d.BootMethod != BootMultiboot && d.BootMethod != BootGuestLoader {
		return fmt.Errorf("descriptor: boot_method %q: want %q or %q", d.BootMethod, BootMultiboot, BootGuestLoader)
	}
	if d.MemoryMB < 0 || d.SMP < 0 {
		return fmt.Errorf("descriptor: negative memory_mb or smp")
	}
	for _, re := range d.ConsoleNoise {
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("descriptor: console_noise %q: %v", re, err)
		}
	}
	if strings.ContainsAny(d.DiskDevice, ", ") {
		return fmt.Errorf("descriptor: disk_device %q: want a QEMU device model name such as virtio-blk-device (no commas or spaces)", d.DiskDevice)
	}
	if strings.ContainsAny(d.NetDevice, ", ") {
		return fmt.Errorf("descriptor: net_device %q: want a QEMU device model name such as virtio-net-pci (no commas or spaces)", d.NetDevice)
	}
	for _, f := range []string{d.Hypervisor, d.Kernel, d.Initrd, d.RootDisk} {
		if strings.Contains(f, "..") {
			return fmt.Errorf("descriptor: file %q must stay inside the image directory", f)
		}
	}
	if d.BootMethod == BootMultiboot && (strings.Contains(d.Dom0Cmdline, ",") || strings.Contains(d.Kernel, ",") || strings.Contains(d.Initrd, ",")) {
		return fmt.Errorf("descriptor: dom0_cmdline/kernel/initrd must not contain ',' with multiboot (QEMU splits -initrd on commas)")
	}
	return nil
}

// ParseDescriptor decodes descriptor JSON; name is used in errors.
func ParseDescriptor(b []byte, name string) (*Descriptor, error) {
	var d Descriptor
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			line, col := lineCol(b, se.Offset)
			return nil, fmt.Errorf("%s:%d:%d: %w", name, line, col, err)
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			line, col := lineCol(b, te.Offset)
			return nil, fmt.Errorf("%s:%d:%d: field %q: %w", name, line, col, te.Field, err)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &d, nil
}

func lineCol(b []byte, off int64) (int, int) {
	if off > int64(len(b)) {
		off = int64(len(b))
	}
	line, col := 1, 1
	for _, c := range b[:off] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

// LoadDescriptor reads a descriptor file, or DescriptorName inside a
// directory.
func LoadDescriptor(path string) (*Descriptor, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, DescriptorName)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	d, err := ParseDescriptor(b, path)
	if err != nil {
		return nil, err
	}
	d.Dir = filepath.Dir(path)
	return d, nil
}

// Write stores the descriptor as indented JSON.
func (d *Descriptor) Write(path string) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Boot phase names recorded by VM.Timings.
const (
	PhaseXen         = "xen"          // first Xen line on the serial console
	PhaseDom0Kernel  = "dom0-kernel"  // dom0 Linux starts
	PhaseDom0Init    = "dom0-init"    // dom0 userspace init runs
	PhaseToolstack   = "toolstack"    // xenstored/xenconsoled up
	PhaseXendomains  = "xendomains"   // autostart guests created
	PhaseLoginPrompt = "login-prompt" // dom0 console ready
)

// DefaultMarkers returns the serial-line substrings of the reference image
// for each boot phase.
func DefaultMarkers() map[string]string {
	return map[string]string{
		PhaseXen:         "Xen version",
		PhaseDom0Kernel:  "Linux version",
		PhaseDom0Init:    "vxn-dom0: init",
		PhaseToolstack:   "vxn-dom0: toolstack ready",
		PhaseXendomains:  "vxn-dom0: xendomains start done",
		PhaseLoginPrompt: "login:",
	}
}
