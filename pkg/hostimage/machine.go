package hostimage

import (
	"fmt"
	"sort"
)

// PackageSpec names one Debian package to put into an image. Keep, when
// set, limits what is copied to paths under these prefixes (relative, after
// the merged-/usr mapping, e.g. "usr/bin/flock").
type PackageSpec struct {
	Name string
	Keep []string
	// Drop excludes paths under these prefixes (after Keep).
	Drop []string
}

// Machine describes a target machine: which packages provide the
// hypervisor, kernel and userland, and how QEMU boots it. All
// architecture-specific knowledge lives in these values, not in code paths.
type Machine struct {
	// Name is the Yocto-style machine name.
	Name string
	// DebArch is the Debian architecture (amd64, arm64); Triplet the
	// multiarch library directory name.
	DebArch string
	Triplet string
	// Hypervisor is the Xen package; HypervisorFile the path inside it.
	Hypervisor     string
	HypervisorFile string
	// XenLibDir is the versioned toolstack directory (usr/lib/xen-4.17).
	XenLibDir string
	// KernelMeta is the metapackage whose first dependency names the
	// current kernel package (linux-image-amd64 → linux-image-6.1.0-N-amd64).
	KernelMeta string
	// KernelImage is the kernel file name prefix inside the package's boot/.
	KernelImage string
	// KernelImageType is the deploy-dir name of that kernel (Yocto's
	// KERNEL_IMAGETYPE: bzImage, Image).
	KernelImageType string
	// GuestKernelType is the deploy-dir name of the kernel guests boot:
	// "vmlinux" when ExtractVmlinux is set (the uncompressed ELF taken out
	// of the package's kernel), else the package's kernel as is under
	// KernelImageType's name.
	GuestKernelType string
	ExtractVmlinux  bool
	// GuestType is the xl type of guests written by hand for the machine
	// (pv on x86; pvh on Arm, whose Xen has no other guest type).
	GuestType string
	// Dom0Packages are extracted into the dom0 rootfs.
	Dom0Packages []PackageSpec
	// SystemdPackages are added to dom0 for Options.Init == "systemd".
	SystemdPackages []PackageSpec
	// EnginePackages and EngineModules are added to dom0 for
	// Options.Engines (containerd, Docker, Podman).
	EnginePackages []PackageSpec
	EngineModules  []string
	// GuestPackages are extracted into the reference guest rootfs.
	GuestPackages []PackageSpec
	// InitramfsModules are loaded by the shared initramfs (disk + ext4 for
	// dom0 and guests), in this order, after their dependencies.
	InitramfsModules []string
	// Dom0Modules are loaded in dom0 by the rootfs init scripts (disk,
	// loop, ext4, and the network: NIC driver, bridge, xen-netback).
	Dom0Modules []string
	// NetDevice is the QEMU model of dom0's NIC (user-mode networking);
	// empty means no network.
	NetDevice string
	// DiskDevice, when set, is the QEMU device model of the disks (e.g.
	// virtio-blk-device, virtio over MMIO), attached with -drive if=none
	// and -device; empty uses -drive if=DiskInterface.
	DiskDevice string
	// ConsoleNoise are regular expressions of Xen's own messages that land
	// in dom0's command output on the shared serial console (the
	// descriptor's console_noise).
	ConsoleNoise []string
	// Busybox is the path of the static busybox inside busybox-static.
	Busybox string

	// QEMU settings copied into the descriptor.
	QEMUBinary, QEMUMachine, QEMUArch string
	CPUTCG, CPUKVM                    string
	BootMethod                        string
	XenCmdline                        string // without dom0_mem
	Dom0Console                       string // kernel console= value
	Dom0CmdlineExtra                  string // e.g. earlyprintk=xen (x86)
	RootDev                           string // dom0 root device
	GuestRootDev                      string
	DiskInterface                     string
	ExtraArgs                         []string
}

// xenUtils is the toolstack without pygrub's filesystem plugins (PV guests
// boot a kernel given in the config; pygrub would need libext2fs).
var xenUtils = PackageSpec{Name: "xen-utils-4.17", Drop: []string{"usr/lib/xen-4.17/lib/", "usr/lib/xen-4.17/bin/pygrub"}}

var xenLibs = []PackageSpec{
	{Name: "xen-utils-common"}, {Name: "xenstore-utils"},
	{Name: "libxenmisc4.17", Drop: []string{"usr/lib/xen-4.17/lib/x86_64-linux-gnu/xenfsimage/", "usr/lib/xen-4.17/lib/aarch64-linux-gnu/xenfsimage/"}}, {Name: "libxencall1"}, {Name: "libxendevicemodel1"}, {Name: "libxenevtchn1"},
	{Name: "libxenforeignmemory1"}, {Name: "libxengnttab1"}, {Name: "libxenhypfs1"}, {Name: "libxenstore4"},
	{Name: "libxentoolcore1"}, {Name: "libxentoollog1"}, {Name: "libyajl2"},
}

var commonDom0 = append(append([]PackageSpec{}, xenLibs...), []PackageSpec{
	{Name: "busybox-static"},
	{Name: "libc6", Drop: []string{"usr/lib/x86_64-linux-gnu/gconv/", "usr/lib/aarch64-linux-gnu/gconv/"}}, {Name: "libgcc-s1"}, {Name: "libuuid1"}, {Name: "liblzma5"}, {Name: "libzstd1"},
	{Name: "zlib1g"}, {Name: "libtinfo6"}, {Name: "libncursesw6"}, {Name: "libncurses6"}, {Name: "libsmartcols1"},
	{Name: "libmount1"}, {Name: "libblkid1"}, {Name: "libselinux1"}, {Name: "libpcre2-8-0"},
	// bash, flock and losetup: needed by etc/xen/scripts/block and by xendomains.
	{Name: "bash", Keep: []string{"usr/bin/bash"}},
	{Name: "util-linux", Keep: []string{"usr/bin/flock"}},
	{Name: "mount", Keep: []string{"usr/sbin/losetup"}},
	// xendomains' helpers xen-init-name and xen-init-list are python3.
	{Name: "python3.11-minimal", Keep: []string{"usr/bin/python3.11"}},
	{Name: "libpython3.11-minimal", Drop: []string{"usr/lib/python3.11/lib-dynload/_ssl.", "usr/lib/python3.11/lib-dynload/_hashlib."}},
	{Name: "libpython3.11-stdlib", Keep: []string{"usr/lib/python3.11/json/"}},
	{Name: "python3-minimal", Keep: []string{"usr/bin/python3"}},
	{Name: "libexpat1"},
	// /lib/lsb/init-functions and /lib/init/vars.sh, sourced by xendomains.
	{Name: "sysvinit-utils", Keep: []string{"usr/lib/lsb/", "usr/lib/init/vars.sh"}},
}...)

// systemdDom0 is what the systemd variant of dom0 adds (measurement only).
var systemdDom0 = []PackageSpec{
	{Name: "systemd", Drop: []string{"usr/lib/systemd/system-generators/systemd-getty-generator"}},
	{Name: "systemd-sysv", Keep: []string{"usr/sbin/poweroff", "usr/sbin/reboot", "usr/sbin/halt", "usr/sbin/shutdown"}},
	{Name: "libsystemd-shared"}, {Name: "libsystemd0"}, {Name: "mount"},
	{Name: "libacl1"}, {Name: "libapparmor1"}, {Name: "libaudit1"}, {Name: "libcap-ng0"}, {Name: "libcap2"},
	{Name: "libcrypt1"}, {Name: "libcryptsetup12"}, {Name: "libdevmapper1.02.1"}, {Name: "libargon2-1"},
	{Name: "libjson-c5"}, {Name: "libudev1"}, {Name: "libfdisk1"}, {Name: "libgcrypt20"}, {Name: "libgpg-error0"},
	{Name: "libip4tc2"}, {Name: "libkmod2"}, {Name: "liblz4-1"}, {Name: "libp11-kit0"}, {Name: "libffi8"},
	{Name: "libpam0g"}, {Name: "libseccomp2"}, {Name: "libssl3"},
}

// Machines lists the known machines by name.
var Machines = map[string]*Machine{
	"qemux86-64": {
		Name: "qemux86-64", DebArch: "amd64", Triplet: "x86_64-linux-gnu",
		Hypervisor: "xen-hypervisor-4.17-amd64", HypervisorFile: "boot/xen-4.17-amd64.gz",
		XenLibDir:  "usr/lib/xen-4.17",
		KernelMeta: "linux-image-amd64", KernelImage: "vmlinuz",
		KernelImageType: "bzImage", GuestKernelType: "vmlinux", ExtractVmlinux: true, GuestType: "pv",
		Dom0Packages:    append([]PackageSpec{xenUtils}, commonDom0...),
		GuestPackages:   []PackageSpec{{Name: "busybox-static"}},
		SystemdPackages: systemdDom0,
		EnginePackages:  enginePackages, EngineModules: engineModules,
		InitramfsModules: []string{"virtio_pci", "virtio_blk", "xen-blkfront", "crc32c_generic", "ext4"},
		Dom0Modules: []string{"xen-evtchn", "xen-privcmd", "xenfs", "xen-gntdev", "xen-gntalloc",
			"xen-blkback", "loop", "crc32c_generic", "ext4", "virtio_net", "bridge", "xen-netback"},
		NetDevice:  "virtio-net-pci",
		Busybox:    "bin/busybox",
		QEMUBinary: "qemu-system-x86_64", QEMUArch: "x86_64",
		CPUTCG: "qemu64,+npt,+rdrand", CPUKVM: "host",
		BootMethod:  "multiboot",
		XenCmdline:  "console=com1 com1=115200 loglvl=all guest_loglvl=all noreboot",
		Dom0Console: "hvc0", Dom0CmdlineExtra: "earlyprintk=xen", RootDev: "/dev/vda", GuestRootDev: "/dev/xvda", DiskInterface: "virtio",
	},
	// qemuarm64: QEMU "virt" with EL2 (virtualization=on) and GICv3, Xen
	// as -kernel, dom0's kernel and initramfs through guest-loader devices
	// (no firmware). Debian's vmlinuz-*-arm64 is an uncompressed Image
	// that dom0 and the guests boot as is. Under TCG, bootscrub=0 (else Xen
	// scrubs dom0's memory for ~18 s) and dom0_max_vcpus=1 (halves every
	// boot phase) matter; noreboot is left out so that a Xen panic ends
	// QEMU (-no-reboot) instead of hanging until the timeout. Disks and the
	// NIC are virtio over MMIO (virtio_mmio is a module on arm64); the PCI
	// variants work but dom0 warns about MSI (no ITS for dom0).
	"qemuarm64": {
		Name: "qemuarm64", DebArch: "arm64", Triplet: "aarch64-linux-gnu",
		Hypervisor: "xen-hypervisor-4.17-arm64", HypervisorFile: "boot/xen-4.17-arm64",
		XenLibDir:  "usr/lib/xen-4.17",
		KernelMeta: "linux-image-arm64", KernelImage: "vmlinuz",
		KernelImageType: "Image", GuestKernelType: "Image", GuestType: "pvh",
		// libxl builds the guest device tree with libfdt.
		Dom0Packages:    append([]PackageSpec{xenUtils, {Name: "libfdt1"}}, commonDom0...),
		GuestPackages:   []PackageSpec{{Name: "busybox-static"}},
		SystemdPackages: systemdDom0,
		EnginePackages:  enginePackages, EngineModules: engineModules,
		InitramfsModules: []string{"virtio_mmio", "virtio_blk", "xen-blkfront", "crc32c_generic", "ext4"},
		Dom0Modules: []string{"xen-evtchn", "xen-privcmd", "xenfs", "xen-gntdev", "xen-gntalloc",
			"xen-blkback", "loop", "crc32c_generic", "ext4", "virtio_mmio", "virtio_net", "bridge", "xen-netback"},
		NetDevice:  "virtio-net-device",
		DiskDevice: "virtio-blk-device",
		Busybox:    "bin/busybox",
		QEMUBinary: "qemu-system-aarch64", QEMUArch: "aarch64", QEMUMachine: "virt,gic-version=3,virtualization=on",
		CPUTCG: "cortex-a57", CPUKVM: "host",
		BootMethod: "guest-loader",
		// No guest_loglvl=all: Xen on Arm logs every Linux guest's
		// boot-time SMC/HVC probes at info level on the console that
		// dom0's shell output shares. Its vGIC messages come at any
		// level: ConsoleNoise keeps them out of command output.
		XenCmdline:   "console=dtuart loglvl=all bootscrub=0 dom0_max_vcpus=1",
		ConsoleNoise: []string{`\(XEN\) d[0-9]+v[0-9]+[: ][^\n]*\n`},
		Dom0Console:  "hvc0", RootDev: "/dev/vda", GuestRootDev: "/dev/xvda", DiskInterface: "virtio",
	},
}

// LookupMachine returns the named machine or an error listing known ones.
func LookupMachine(name string) (*Machine, error) {
	if m, ok := Machines[name]; ok {
		return m, nil
	}
	var names []string
	for n := range Machines {
		names = append(names, n)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("unknown machine %q (known: %v)", name, names)
}
