// Package hostimage builds the reference Xen images from Debian packages:
// the host image xen-image-minimal (Xen hypervisor, dom0 kernel, a small
// shared initramfs and an ext4 dom0 root filesystem with the xl toolstack
// and busybox init) and the guest image xen-guest-image-minimal (a busybox
// rootfs as tar.bz2, ext4 and qcow2 that boots the same kernel as a PV
// DomU), plus a machine descriptor (qemuboot.json) that pkg/qemu boots.
//
// Layout decision: the dom0 kernel boots a tiny initramfs (busybox, the
// virtio/xen-blkfront/ext4 modules and an /init that switch_roots) into an
// ext4 root disk on virtio that holds the whole dom0 system. Guests are then
// bundled into that ext4 (`xenbundle install --rootfs <ext4>` edits it
// without mounting, or the PopulateRootfs hook writes into the staging
// directory before mkfs), and guest images live on disk instead of in dom0
// RAM. The same initramfs also serves as the guest's ramdisk, because the
// Debian kernel has xen-blkfront and ext4 as modules.
//
// Init is busybox init with sysvinit-style /etc/rcS.d links, not systemd:
// the image needs no udev, dbus or journald and 26 fewer packages, and it
// boots faster (docs/hostimage.md has the figures); Options.Init =
// "systemd" builds the variant. Debian's real /etc/init.d/xendomains (bash,
// LSB functions, the python3 helpers xen-init-name/xen-init-list) starts
// everything in /etc/xen/auto at boot and shuts it down from rcK at
// poweroff. After it, xendomains-check reports each autostart guest that
// did not start (retried once) or did not stay up, on the console and in
// AutostartStatusFile. Disks are attached by our busybox block hotplug
// script (Debian's bash one is kept as block-debian).
//
// Networking: QEMU user-mode networking on a virtio NIC (the descriptor's
// net_device; the build host is 10.0.2.2 from inside). Dom0 loads
// virtio_net, bridge and xen-netback, creates the bridge xenbr0 with the NIC
// enslaved and takes a DHCP lease on xenbr0 (10.0.2.15/24, gateway
// 10.0.2.2, DNS 10.0.2.3), like Yocto's bridged Dom0. Guest configs with
// `vif = ['bridge=xenbr0']` work: Debian's vif-bridge hotplug script runs
// with bash, busybox ip/brctl and no iptables (its antispoofing rules are
// skipped). QEMU's user network is NAT: guests on xenbr0 reach the outside
// only if they get an address from it (slirp's DHCP serves several
// clients), and nothing outside can connect in except through hostfwd.
//
// Guest kernel: Debian's kernel has xen-blkfront and ext4 as modules, so a
// PV guest booting it needs `ramdisk =` pointing at the initramfs built
// here (root=/dev/xvda on the command line), unlike Yocto's guest kernels.
//
// Guest kernels: both the uncompressed vmlinux and Debian's bzImage boot as
// PV kernels and need the same guest memory; vmlinux is the default because
// the bzImage's decompression in Dom0 makes every start slower
// (docs/hostimage.md: the memory floor and the timings).
//
// We assemble the rootfs ourselves (extract .debs, merged-/usr mapping,
// DT_NEEDED check) rather than with debootstrap/mmdebstrap: that needs no
// chroot, runs no maintainer scripts, and keeps dom0 at a few dozen MB.
package hostimage

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vxn-dev/vxn/pkg/debpkg"
	"github.com/vxn-dev/vxn/pkg/initramfs"
	"github.com/vxn-dev/vxn/pkg/kmod"
	"github.com/vxn-dev/vxn/pkg/qemu"
)

// Image names, as in meta-virtualization.
const (
	HostImageName  = "xen-image-minimal"
	GuestImageName = "xen-guest-image-minimal"
)

// Options configure Build.
type Options struct {
	// Machine is the target machine (default "qemux86-64").
	Machine string
	// OutDir receives the artefacts (required).
	OutDir string
	// CacheDir holds downloaded and extracted packages (default
	// debpkg.DefaultCacheDir: the repository's ignored .cache/).
	CacheDir string
	// LockFile pins package versions (default OutDir/packages.lock.json).
	// Missing entries are resolved and added.
	LockFile string
	// Dom0MemMB is Xen's dom0_mem (default 512).
	Dom0MemMB int
	// MemoryMB and SMP are the QEMU defaults written to the descriptor
	// (default 4096 and 2).
	MemoryMB, SMP int
	// RootfsExtraMB is free space left in the dom0 ext4 for bundled guests
	// (default 1024; the file is sparse).
	RootfsExtraMB int64
	// PopulateRootfs, when set, is called with the dom0 rootfs staging
	// directory just before it is packed into ext4.
	PopulateRootfs func(ctx context.Context, rootDir string) error
	// Init selects dom0's init system: "busybox" (default) or "systemd".
	// The systemd variant exists to measure the boot-time difference; it
	// starts the same scripts from unit files.
	Init string
	// Engines adds the container engines to dom0 (containerd, Docker,
	// Podman; see engines.go): about 250 MB more rootfs.
	Engines bool
	// SkipGuest skips the reference guest image.
	SkipGuest bool
	// Logf receives progress messages.
	Logf func(format string, args ...any)
	// NoAptUpdate forbids `apt-get update` (use only the local indexes).
	NoAptUpdate bool
}

// Output lists the artefacts of a build. Paths are absolute.
type Output struct {
	Dir            string
	DescriptorPath string
	Descriptor     *qemu.Descriptor
	Hypervisor     string
	Kernel         string // bzImage / vmlinuz
	Vmlinux        string // uncompressed ELF for PV guests (Machine.ExtractVmlinux)
	// GuestKernel is the kernel guests boot: Vmlinux, or Kernel when the
	// machine boots its package's kernel as is (arm64 Image).
	GuestKernel   string
	Initramfs     string
	Rootfs        string // dom0 ext4
	GuestExt4     string
	GuestTarBz2   string
	GuestQcow2    string
	KernelVersion string
	Lock          *debpkg.Lock
	LockPath      string
	// Steps records the wall time of each build step.
	Steps []Step
}

// Step is one timed build step.
type Step struct {
	Name     string
	Duration time.Duration
}

type builder struct {
	opts  Options
	m     *Machine
	f     *debpkg.Fetcher
	lock  *debpkg.Lock
	out   *Output
	trees map[string]string // package name -> extracted dir
}

func (b *builder) logf(format string, args ...any) {
	if b.opts.Logf != nil {
		b.opts.Logf(format, args...)
	}
}

func (b *builder) step(name string, fn func() error) error {
	t0 := time.Now()
	err := fn()
	d := time.Since(t0)
	b.out.Steps = append(b.out.Steps, Step{name, d})
	b.logf("hostimage: %-16s %6.2fs", name, d.Seconds())
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Build fetches the packages and writes the host image, the guest image and
// the machine descriptor into opts.OutDir.
func Build(ctx context.Context, opts Options) (*Output, error) {
	if opts.Machine == "" {
		opts.Machine = "qemux86-64"
	}
	if opts.OutDir == "" {
		return nil, errors.New("hostimage: OutDir is required")
	}
	if opts.CacheDir == "" {
		d, err := debpkg.DefaultCacheDir()
		if err != nil {
			return nil, err
		}
		opts.CacheDir = d
	}
	if opts.Dom0MemMB == 0 {
		opts.Dom0MemMB = 512
	}
	if opts.MemoryMB == 0 {
		opts.MemoryMB = 4096
	}
	if opts.SMP == 0 {
		opts.SMP = 2
	}
	if opts.Init == "" {
		opts.Init = "busybox"
	}
	if opts.Init != "busybox" && opts.Init != "systemd" {
		return nil, fmt.Errorf("hostimage: Init %q: want busybox or systemd", opts.Init)
	}
	if opts.RootfsExtraMB == 0 {
		opts.RootfsExtraMB = 1024
	}
	m, err := LookupMachine(opts.Machine)
	if err != nil {
		return nil, err
	}
	outDir, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, err
	}
	cacheDir, err := filepath.Abs(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	if opts.LockFile == "" {
		opts.LockFile = filepath.Join(outDir, "packages.lock.json")
	}
	lock, err := debpkg.ReadLock(opts.LockFile)
	if err != nil {
		return nil, err
	}
	b := &builder{opts: opts, m: m, lock: lock, trees: map[string]string{},
		f:   &debpkg.Fetcher{CacheDir: cacheDir, Logf: opts.Logf, NoUpdate: opts.NoAptUpdate, Arch: m.DebArch},
		out: &Output{Dir: outDir, Lock: lock, LockPath: opts.LockFile}}
	if err := b.step("packages", func() error { return b.fetch(ctx) }); err != nil {
		return nil, err
	}
	if err := lock.Write(opts.LockFile); err != nil {
		return nil, err
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"hypervisor", b.hypervisor},
		{"kernel", b.kernel},
		{"initramfs", b.initramfs},
		{"dom0-rootfs", b.dom0Rootfs},
	}
	if !opts.SkipGuest {
		steps = append(steps, struct {
			name string
			fn   func(context.Context) error
		}{"guest-image", b.guestImage})
	}
	for _, s := range steps {
		if err := b.step(s.name, func() error { return s.fn(ctx) }); err != nil {
			return nil, err
		}
	}
	if err := b.descriptor(); err != nil {
		return nil, err
	}
	os.RemoveAll(filepath.Join(outDir, "work"))
	return b.out, nil
}

// fetch resolves (through the lock), downloads and extracts every package.
func (b *builder) fetch(ctx context.Context) error {
	kpkg := b.lock.Extra["kernel_package"]
	if kpkg == "" {
		ps, err := b.f.ResolveLocked(ctx, b.lock, b.m.KernelMeta)
		if err != nil {
			return err
		}
		rels, err := debpkg.ParseRelations(ps[0].Depends)
		if err != nil || len(rels) == 0 {
			return fmt.Errorf("%s %s: cannot find the kernel package in Depends %q: %v", ps[0].Name, ps[0].Version, ps[0].Depends, err)
		}
		kpkg = rels[0][0].Name
		if b.lock.Extra == nil {
			b.lock.Extra = map[string]string{}
		}
		b.lock.Extra["kernel_package"] = kpkg
	}
	b.out.KernelVersion = strings.TrimPrefix(kpkg, "linux-image-")
	names := []string{b.m.Hypervisor, kpkg}
	seen := map[string]bool{}
	for _, s := range append(append(append([]PackageSpec{}, b.m.Dom0Packages...), b.m.GuestPackages...), append(b.systemdPkgs(), b.enginePkgs()...)...) {
		if !seen[s.Name] {
			seen[s.Name] = true
			names = append(names, s.Name)
		}
	}
	ps, err := b.f.ResolveLocked(ctx, b.lock, names...)
	if err != nil {
		return err
	}
	// One apt-get call downloads everything missing; then extract with a
	// few workers (one apt-get process per package took ~4 s each).
	if _, err := b.f.FetchAll(ctx, ps); err != nil {
		return err
	}
	dirs := make([]string, len(ps))
	errs := make([]error, len(ps))
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			dirs[i], errs[i] = b.f.Extract(ctx, p)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, p := range ps {
		b.trees[p.Name] = dirs[i]
	}
	b.trees["kernel"] = b.trees[kpkg]
	return nil
}

func (b *builder) systemdPkgs() []PackageSpec {
	if b.opts.Init == "systemd" {
		return b.m.SystemdPackages
	}
	return nil
}

func (b *builder) enginePkgs() []PackageSpec {
	if b.opts.Engines {
		return b.m.EnginePackages
	}
	return nil
}

func (b *builder) dom0Modules() []string {
	mods := append([]string{}, b.m.Dom0Modules...)
	if b.opts.Engines {
		mods = append(mods, b.m.EngineModules...)
	}
	return mods
}

// installEngines adds the container engines, their configuration and
// their start script to the dom0 rootfs.
func (b *builder) installEngines(root string) error {
	for _, s := range b.m.EnginePackages {
		if err := installTree(b.trees[s.Name], root, s.Keep, s.Drop); err != nil {
			return fmt.Errorf("install %s: %w", s.Name, err)
		}
	}
	for rel, content := range engineFiles {
		if err := writeFile(root, rel, content, 0o644); err != nil {
			return err
		}
	}
	if err := writeFile(root, "etc/init.d/engines", fmt.Sprintf(enginesScript, ShippedImagesDir), 0o755); err != nil {
		return err
	}
	for _, l := range [][2]string{
		{"etc/rcS.d/S40engines", "../init.d/engines"},
		{"etc/rc0.d/K05engines", "../init.d/engines"},
	} {
		if err := symlink(root, l[0], l[1]); err != nil {
			return err
		}
	}
	for _, d := range []string{"var/lib/containerd", "var/lib/docker", "var/lib/containers/storage", "etc/cni/net.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// installSystemd turns the busybox-init rootfs into a systemd one.
func (b *builder) installSystemd(root string) error {
	for _, s := range b.m.SystemdPackages {
		if err := installTree(b.trees[s.Name], root, s.Keep, s.Drop); err != nil {
			return fmt.Errorf("install %s: %w", s.Name, err)
		}
	}
	unitDir := "etc/systemd/system"
	for name, content := range systemdUnits {
		if err := writeFile(root, unitDir+"/"+name, content, 0o644); err != nil {
			return err
		}
	}
	for _, l := range [][2]string{
		{"usr/sbin/init", "../lib/systemd/systemd"},
		{unitDir + "/default.target", "/lib/systemd/system/multi-user.target"},
		{unitDir + "/sysinit.target.wants/busybox-links.service", "../busybox-links.service"},
		{unitDir + "/multi-user.target.wants/xen-toolstack.service", "../xen-toolstack.service"},
		{unitDir + "/multi-user.target.wants/xendomains.service", "../xendomains.service"},
		{unitDir + "/multi-user.target.wants/vxn-getty.service", "../vxn-getty.service"},
	} {
		if err := symlink(root, l[0], l[1]); err != nil {
			return err
		}
	}
	return writeFile(root, "etc/machine-id", "", 0o444)
}

func (b *builder) path(name string) string { return filepath.Join(b.out.Dir, name) }

func (b *builder) hypervisor(ctx context.Context) error {
	src := filepath.Join(b.trees[b.m.Hypervisor], filepath.FromSlash(b.m.HypervisorFile))
	name := strings.TrimSuffix(filepath.Base(src), ".gz")
	dst := b.path(name)
	b.out.Hypervisor = dst
	if !strings.HasSuffix(src, ".gz") {
		return copyFile(src, dst, 0o644)
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, zr); err != nil {
		out.Close()
		return fmt.Errorf("%s: %w", src, err)
	}
	return out.Close()
}

func (b *builder) kernel(ctx context.Context) error {
	kv := b.out.KernelVersion
	src := filepath.Join(b.trees["kernel"], "boot", b.m.KernelImage+"-"+kv)
	b.out.Kernel = b.path(b.m.KernelImage + "-" + kv)
	if err := copyFile(src, b.out.Kernel, 0o644); err != nil {
		return err
	}
	b.out.GuestKernel = b.out.Kernel
	if !b.m.ExtractVmlinux {
		return nil
	}
	b.out.Vmlinux = b.path("vmlinux-" + kv)
	b.out.GuestKernel = b.out.Vmlinux
	if st, err := os.Stat(b.out.Vmlinux); err == nil && st.ModTime().After(mustMtime(src)) {
		return nil // already extracted from this kernel
	}
	return ExtractVmlinuxFile(src, b.out.Vmlinux)
}

func mustMtime(p string) time.Time {
	st, err := os.Stat(p)
	if err != nil {
		return time.Now()
	}
	return st.ModTime()
}

func (b *builder) modDir() string {
	return filepath.Join(b.trees["kernel"], "lib", "modules", b.out.KernelVersion)
}

func (b *builder) initramfs(ctx context.Context) error {
	set, err := kmod.ResolveModules(b.modDir(), b.m.InitramfsModules)
	if err != nil {
		return err
	}
	bb, err := os.ReadFile(filepath.Join(b.trees["busybox-static"], filepath.FromSlash(b.m.Busybox)))
	if err != nil {
		return err
	}
	a := initramfs.NewArchive()
	a.File("bin/busybox", bb, 0o755)
	a.Symlink("bin/sh", "busybox")
	a.File("init", []byte(initramfsInit), 0o755)
	a.File("etc/modules.load", []byte(strings.Join(set.Order, "\n")+"\n"), 0o644)
	kmods := "lib/modules/" + b.out.KernelVersion
	for _, rel := range set.Order {
		c, err := os.ReadFile(filepath.Join(b.modDir(), rel))
		if err != nil {
			return err
		}
		a.File(kmods+"/"+rel, c, 0o644)
	}
	a.File(kmods+"/modules.dep", []byte(set.ModulesDep()), 0o644)
	b.out.Initramfs = b.path("initramfs-" + b.m.Name + ".cpio.gz")
	_, err = a.WriteFile(b.out.Initramfs, gzip.BestSpeed)
	return err
}

// installBase writes what both rootfs trees share: merged-/usr links,
// busybox init, rcS/rcK, mounts, hostname, passwd.
func (b *builder) installBase(root, tag string) error {
	if err := makeUsrLinks(root); err != nil {
		return err
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "root", "mnt", "etc/rcS.d", "etc/rc0.d", "var/log", "var/lib", "var/tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	os.Chmod(filepath.Join(root, "var/tmp"), 0o1777)
	files := []struct {
		rel, content string
		perm         os.FileMode
	}{
		{"etc/inittab", fmt.Sprintf(inittab, b.m.Dom0Console), 0o644},
		{"etc/init.d/rcS", rcS, 0o755},
		{"etc/init.d/rcK", rcK, 0o755},
		{"etc/init.d/mounts", fmt.Sprintf(baseMounts, tag), 0o755},
		{"etc/hostname", b.m.Name + "\n", 0o644},
		{"etc/passwd", passwd, 0o644},
		{"etc/group", group, 0o644},
		{"etc/shells", "/bin/sh\n/bin/bash\n", 0o644},
		{"etc/profile", fmt.Sprintf(profile, b.m.XenLibDir), 0o644},
		{"etc/fstab", "", 0o644},
	}
	for _, f := range files {
		if err := writeFile(root, f.rel, f.content, f.perm); err != nil {
			return err
		}
	}
	links := [][2]string{
		{"usr/sbin/init", "../bin/busybox"},
		{"usr/bin/sh", "busybox"},
		{"etc/rcS.d/S01mounts", "../init.d/mounts"},
		{"etc/rc0.d/K99mounts", "../init.d/mounts"},
		{"var/run", "../run"},
		{"var/lock", "../run/lock"},
	}
	for _, l := range links {
		if err := symlink(root, l[0], l[1]); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) dom0Rootfs(ctx context.Context) error {
	root := b.path("work/dom0root")
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	if err := b.installBase(root, "vxn-dom0"); err != nil {
		return err
	}
	for _, s := range b.m.Dom0Packages {
		if err := installTree(b.trees[s.Name], root, s.Keep, s.Drop); err != nil {
			return fmt.Errorf("install %s: %w", s.Name, err)
		}
	}
	// Modules: the dom0 set plus the initramfs set (so dom0 can modprobe
	// them too), with a modules.dep of our own and depmod when available.
	set, err := kmod.ResolveModules(b.modDir(), append(append([]string{}, b.m.InitramfsModules...), b.dom0Modules()...))
	if err != nil {
		return err
	}
	dom0Set, err := kmod.ResolveModules(b.modDir(), b.dom0Modules())
	if err != nil {
		return err
	}
	kmods := filepath.Join(root, "usr/lib/modules", b.out.KernelVersion)
	for _, rel := range set.Order {
		if err := os.MkdirAll(filepath.Join(kmods, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		if err := copyFile(filepath.Join(b.modDir(), rel), filepath.Join(kmods, rel), 0o644); err != nil {
			return err
		}
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if err := copyFile(filepath.Join(b.modDir(), f), filepath.Join(kmods, f), 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(kmods, "modules.dep"), []byte(set.ModulesDep()), 0o644); err != nil {
		return err
	}
	if _, err := exec.LookPath("depmod"); err == nil {
		if err := run(ctx, "depmod", "-b", root, b.out.KernelVersion); err != nil {
			return err
		}
	} else {
		b.logf("hostimage: depmod not found; dom0 gets a modules.dep without alias indexes")
	}
	files := []struct {
		rel, content string
		perm         os.FileMode
	}{
		{"etc/modules.load", strings.Join(dom0Set.Order, "\n") + "\n", 0o644},
		{"etc/init.d/xen-toolstack", fmt.Sprintf(xenToolstack, b.m.XenLibDir), 0o755},
		{"etc/init.d/xendomains-boot", fmt.Sprintf(xendomainsWrap, b.m.XenLibDir), 0o755},
		{"usr/sbin/xendomains-check", fmt.Sprintf(autostartCheck, b.m.XenLibDir, AutostartStatusFile), 0o755},
		{"etc/default/xendomains", defaultXendomains, 0o644},
		{"etc/init.d/network", dom0Network, 0o755},
		{"etc/udhcpc.script", udhcpcScript, 0o755},
		{"etc/resolv.conf", "", 0o644},
	}
	for _, f := range files {
		if err := writeFile(root, f.rel, f.content, f.perm); err != nil {
			return err
		}
	}
	// Our block hotplug script in place of Debian's (kept as block-debian).
	scripts := filepath.Join(root, "etc/xen/scripts")
	if err := os.Rename(filepath.Join(scripts, "block"), filepath.Join(scripts, "block-debian")); err != nil {
		return fmt.Errorf("keep Debian's block script as block-debian: %w", err)
	}
	if err := writeFile(root, "etc/xen/scripts/block", fmt.Sprintf(blockScript, b.m.XenLibDir), 0o755); err != nil {
		return err
	}
	for _, l := range [][2]string{
		{"etc/rcS.d/S20xen-toolstack", "../init.d/xen-toolstack"},
		{"etc/rcS.d/S25network", "../init.d/network"},
		{"etc/rcS.d/S30xendomains", "../init.d/xendomains-boot"},
		{"etc/rc0.d/K10xendomains", "../init.d/xendomains-boot"},
		{"etc/rc0.d/K20xen-toolstack", "../init.d/xen-toolstack"},
	} {
		if err := symlink(root, l[0], l[1]); err != nil {
			return err
		}
	}
	for _, d := range []string{"etc/xen/auto", "var/lib/xen/images", "var/lib/xen/save", "var/log/xen/console", "var/lib/xenstored"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if b.opts.Engines {
		if err := b.installEngines(root); err != nil {
			return err
		}
	}
	if b.opts.Init == "systemd" {
		if err := b.installSystemd(root); err != nil {
			return err
		}
	}
	libDirs := []string{"usr/lib/" + b.m.Triplet, "usr/lib", "usr/lib64", "usr/lib/" + b.m.Triplet + "/systemd", "usr/lib/systemd"}
	if err := CheckSharedLibs(root, libDirs); err != nil {
		return err
	}
	if b.opts.PopulateRootfs != nil {
		if err := b.opts.PopulateRootfs(ctx, root); err != nil {
			return fmt.Errorf("PopulateRootfs: %w", err)
		}
	}
	b.out.Rootfs = b.path(HostImageName + "-" + b.m.Name + ".rootfs.ext4")
	return MakeExt4(ctx, root, b.out.Rootfs, "dom0root", b.opts.RootfsExtraMB)
}

func (b *builder) guestImage(ctx context.Context) error {
	root := b.path("work/guestroot")
	if err := os.RemoveAll(root); err != nil {
		return err
	}
	if err := b.installBase(root, "vxn-guest"); err != nil {
		return err
	}
	for _, s := range b.m.GuestPackages {
		if err := installTree(b.trees[s.Name], root, s.Keep, s.Drop); err != nil {
			return fmt.Errorf("install %s: %w", s.Name, err)
		}
	}
	base := b.path(GuestImageName + "-" + b.m.Name + ".rootfs")
	b.out.GuestExt4, b.out.GuestTarBz2, b.out.GuestQcow2 = base+".ext4", base+".tar.bz2", base+".ext4.qcow2"
	if err := MakeExt4(ctx, root, b.out.GuestExt4, "guestroot", 48); err != nil {
		return err
	}
	if err := MakeTarBz2(ctx, root, b.out.GuestTarBz2); err != nil {
		return err
	}
	return MakeQcow2(ctx, b.out.GuestExt4, b.out.GuestQcow2)
}

// GuestCmdline is the kernel command line for the reference guest.
func (m *Machine) GuestCmdline() string {
	return "console=hvc0 root=" + m.GuestRootDev + " rw"
}

func (b *builder) markers() map[string]string {
	mk := qemu.DefaultMarkers()
	if b.opts.Init == "systemd" {
		mk[qemu.PhaseDom0Init] = "running in system mode"
	}
	return mk
}

func (b *builder) descriptor() error {
	m := b.m
	rel := func(p string) string {
		if p == "" {
			return ""
		}
		return filepath.Base(p)
	}
	d := &qemu.Descriptor{
		Machine: m.Name, Arch: m.QEMUArch, QEMUBinary: m.QEMUBinary, QEMUMachine: m.QEMUMachine,
		CPUTCG: m.CPUTCG, CPUKVM: m.CPUKVM, MemoryMB: b.opts.MemoryMB, SMP: b.opts.SMP,
		BootMethod: m.BootMethod, Hypervisor: rel(b.out.Hypervisor),
		// max: as well, so that dom0's kernel does not size its memory map
		// for ballooning up to all of the host's memory (about 20 MB of
		// dom0 RAM lost per GB of host memory otherwise).
		XenCmdline:  fmt.Sprintf("%s dom0_mem=%dM,max:%dM", m.XenCmdline, b.opts.Dom0MemMB, b.opts.Dom0MemMB),
		Kernel:      rel(b.out.Kernel),
		Dom0Cmdline: strings.Join(strings.Fields(fmt.Sprintf("console=%s %s root=%s rw", m.Dom0Console, m.Dom0CmdlineExtra, m.RootDev)), " "),
		Initrd:      rel(b.out.Initramfs), RootDisk: rel(b.out.Rootfs), RootDiskFormat: "raw",
		DiskInterface: m.DiskInterface, DiskDevice: m.DiskDevice, NetDevice: m.NetDevice, ConsoleNoise: m.ConsoleNoise, ExtraArgs: m.ExtraArgs, LoginUser: "root",
		Markers: b.markers(),
		Files: map[string]string{
			"hypervisor": rel(b.out.Hypervisor), "kernel": rel(b.out.Kernel), "vmlinux": rel(b.out.Vmlinux), "guest_kernel": rel(b.out.GuestKernel),
			"initramfs": rel(b.out.Initramfs), "rootfs": rel(b.out.Rootfs),
			"guest_ext4": rel(b.out.GuestExt4), "guest_tar_bz2": rel(b.out.GuestTarBz2),
			"guest_qcow2": rel(b.out.GuestQcow2), "guest_cmdline": m.GuestCmdline(),
			"kernel_version": b.out.KernelVersion, "lock": rel(b.out.LockPath),
		},
	}
	for k, v := range d.Files {
		if v == "" {
			delete(d.Files, k)
		}
	}
	d.Dir = b.out.Dir
	b.out.Descriptor = d
	b.out.DescriptorPath = b.path(qemu.DescriptorName)
	if err := d.Validate(); err != nil {
		return err
	}
	return d.Write(b.out.DescriptorPath)
}
