// Package refimage is the reference image pipeline: it builds the Xen host
// image from Debian packages (package hostimage), lays its outputs out as a
// Yocto DEPLOY_DIR_IMAGE, and bundles guests into the Dom0 root filesystem
// with the same plan as `xenbundle install` (installed bundle packages
// first, then BUNDLED_XEN_GUESTS). `xenbundle build-image`, `xenbundle boot`
// and the runtime suite all go through it, so the image build and the
// bundler are one pipeline.
package refimage

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vxn-dev/vxn/pkg/bbconf"
	"github.com/vxn-dev/vxn/pkg/bundle"
	"github.com/vxn-dev/vxn/pkg/dom0fs"
	"github.com/vxn-dev/vxn/pkg/guest"
	"github.com/vxn-dev/vxn/pkg/hostimage"
	"github.com/vxn-dev/vxn/pkg/plan"
	"github.com/vxn-dev/vxn/pkg/qemu"
	"github.com/vxn-dev/vxn/pkg/sparse"
)

// DefaultConf is the local.conf used when no --conf is given: the spec's
// line bundling the reference guest, autostarted.
//
//go:embed conf/local.conf
var DefaultConf []byte

// MachineConf is the reference machines' configuration, read before any
// local.conf (the user's or DefaultConf): weak defaults (??=) for what the
// reference guest needs to boot with the shared kernel — its initramfs,
// console=hvc0 and root device — so that a local.conf holding only the
// spec's lines bundles a guest that boots, and any local.conf line wins.
//
//go:embed conf/machine.conf
var MachineConf []byte

// MachineConfName is the name MachineConf's lines are reported under.
const MachineConfName = "refimage/conf/machine.conf"

// Options configure Build.
type Options struct {
	// Host configures the host image build; Host.OutDir is required.
	Host hostimage.Options
	// Confs are bitbake-style configuration files (local.conf); nil means
	// DefaultConf. MachineConf is always read before them.
	Confs []string
	// Extra is appended configuration text (e.g. more guests).
	Extra string
	// Image is the host image name for :pn- overrides.
	Image string
	// CacheDir is xenbundle's import cache (default OutDir/xenbundle-cache).
	CacheDir string
	// HostMemoryMB is the QEMU memory the image will boot with, for the
	// memory budget warning (default: the descriptor's).
	HostMemoryMB int
	// Packages, when set, is called during the host image build, after
	// the hypervisor, kernel and initramfs steps and before the Dom0
	// rootfs is packed: deployDir is a Yocto-like deploy directory with
	// this build's kernels and guest initramfs (not the guest image yet),
	// rootDir the Dom0 staging root. The package files it returns (.deb)
	// are installed into rootDir with dpkg --root, as a package manager
	// would on a target, and the merge then deploys the bundles among them.
	Packages func(ctx context.Context, deployDir, rootDir string) ([]string, error)
	// Vxn, when set, installs vxn and its guest assets into Dom0.
	Vxn *VxnOptions
	// Logf receives progress lines.
	Logf func(format string, args ...any)
}

// Result is a built and bundled reference image.
type Result struct {
	Host *hostimage.Output
	// DeployDir is the Yocto-like view of the build outputs.
	DeployDir string
	// Rootfs is the Dom0 ext4 with the guests bundled; the descriptor's
	// root disk points at it.
	Rootfs string
	// Plan is what was bundled.
	Plan *plan.Plan
	// Features is what the configuration's image lines added.
	Features Features
	Warnings []string
}

// GuestKernelType is the deploy-dir name of the kernel the guests of
// machine boot (the KERNEL_IMAGETYPE the guest lookups use): the machine's
// GuestKernelType, vmlinux on qemux86-64 and Image on qemuarm64; vmlinux
// for a machine this package does not know.
func GuestKernelType(machine string) string {
	if m, err := hostimage.LookupMachine(machine); err == nil && m.GuestKernelType != "" {
		return m.GuestKernelType
	}
	return "vmlinux"
}

// GuestInitramfsName is the guest initramfs name in the deploy dir.
func GuestInitramfsName(machine string) string {
	return "xen-guest-initramfs-" + machine + ".cpio.gz"
}

// DeployDir lays out the outputs of a host image build the way Yocto's
// DEPLOY_DIR_IMAGE holds them (symbolic links), so that the standard
// rootfs and kernel lookups of xenbundle find them.
func DeployDir(out *hostimage.Output, machine, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	m, err := hostimage.LookupMachine(machine)
	if err != nil {
		return err
	}
	g := hostimage.GuestImageName + "-" + machine
	links := map[string]string{
		g + ".ext4":                 out.GuestExt4,
		g + ".tar.bz2":              out.GuestTarBz2,
		g + ".qcow2":                out.GuestQcow2,
		m.KernelImageType:           out.Kernel,
		GuestInitramfsName(machine): out.Initramfs,
		"xen-" + machine:            out.Hypervisor,
	}
	// Where the guest kernel is the Dom0's (arm64 Image), both names are
	// one link.
	if gk := out.GuestKernel; gk != "" {
		links[m.GuestKernelType] = gk
	}
	for name, target := range links {
		if target == "" {
			continue
		}
		p := filepath.Join(dir, name)
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	return nil
}

// Build builds the host image, then bundles the configured guests into a
// copy of its root filesystem and points the descriptor at that copy.
func Build(ctx context.Context, opts Options) (*Result, error) {
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	machine := opts.Host.Machine
	if machine == "" {
		machine = "qemux86-64"
		opts.Host.Machine = machine
	}
	d, err := loadConf(opts, machine)
	if err != nil {
		return nil, err
	}
	feat, err := FeaturesOf(d)
	if err != nil {
		return nil, err
	}
	for _, n := range feat.Notes {
		logf("refimage: %s", n)
	}
	if feat.Engines {
		opts.Host.Engines = true
	}
	if feat.Vxn && opts.Vxn == nil {
		dir, err := FindModuleDir()
		if err != nil {
			return nil, err
		}
		opts.Vxn = &VxnOptions{ModuleDir: dir}
	}
	if opts.Packages != nil || opts.Vxn != nil {
		user := opts.Host.PopulateRootfs
		host := opts.Host
		opts.Host.PopulateRootfs = func(ctx context.Context, root string) error {
			if user != nil {
				if err := user(ctx, root); err != nil {
					return err
				}
			}
			return populate(ctx, opts, host, root, logf)
		}
	}
	out, err := hostimage.Build(ctx, opts.Host)
	if err != nil {
		return nil, err
	}
	res := &Result{Host: out, DeployDir: filepath.Join(out.Dir, "deploy"), Features: feat}
	if err := DeployDir(out, machine, res.DeployDir); err != nil {
		return nil, err
	}
	specs, env, err := specsFrom(d, machine, res.DeployDir, guest.ListBundled)
	if err != nil {
		return nil, err
	}
	env.HostMemoryMB = opts.HostMemoryMB
	if env.HostMemoryMB == 0 {
		env.HostMemoryMB = out.Descriptor.MemoryMB
	}
	env.Dom0MemoryMB = opts.Host.Dom0MemMB
	if env.Dom0MemoryMB == 0 {
		env.Dom0MemoryMB = 512
	}
	// Bundle into a copy, so the pristine image stays reusable.
	res.Rootfs = filepath.Join(out.Dir, hostimage.HostImageName+"-"+machine+".bundled.ext4")
	if err := sparse.Copy(ctx, out.Rootfs, res.Rootfs); err != nil {
		return nil, fmt.Errorf("copy dom0 rootfs: %w", err)
	}
	target, err := dom0fs.Open(res.Rootfs)
	if err != nil {
		return nil, err
	}
	cache := opts.CacheDir
	if cache == "" {
		cache = filepath.Join(out.Dir, "xenbundle-cache")
	}
	m, err := bundle.Merge(ctx, bundle.MergeOptions{Target: target, Specs: specs, Env: env, CacheDir: cache, Log: logf})
	if m != nil {
		res.Warnings = m.Warnings
		res.Plan = m.Plan
	}
	if err != nil {
		return nil, err
	}
	desc := *out.Descriptor
	desc.RootDisk = filepath.Base(res.Rootfs)
	if err := desc.Write(out.DescriptorPath); err != nil {
		return nil, err
	}
	out.Descriptor = &desc
	return res, nil
}

// loadConf reads the reference machine's configuration, then the
// local.conf files (DefaultConf when there are none), then opts.Extra.
func loadConf(opts Options, machine string) (*bbconf.Data, error) {
	image := opts.Image
	if image == "" {
		image = hostimage.HostImageName
	}
	srcs := []bbconf.Source{{Name: MachineConfName, Text: MachineConf}}
	if len(opts.Confs) == 0 {
		srcs = append(srcs, bbconf.Source{Name: "refimage/conf/local.conf", Text: DefaultConf})
	}
	for _, f := range opts.Confs {
		srcs = append(srcs, bbconf.Source{Name: f})
	}
	if opts.Extra != "" {
		srcs = append(srcs, bbconf.Source{Name: "extra configuration", Text: []byte(opts.Extra)})
	}
	return bbconf.Load(machine, image, srcs...)
}

// LoadGuests returns the guests build-image bundles for opts on machine,
// resolved against the deploy directory deploy: the machine
// configuration, then the local.conf files, read by bbconf.Load as every
// other command reads them.
func LoadGuests(opts Options, machine, deploy string) ([]*guest.Spec, plan.Env, error) {
	return loadGuests(opts, machine, deploy)
}

// loadGuests is loadConf followed by the resolution of BUNDLED_XEN_GUESTS.
func loadGuests(opts Options, machine, deploy string) ([]*guest.Spec, plan.Env, error) {
	d, err := loadConf(opts, machine)
	if err != nil {
		return nil, plan.Env{}, err
	}
	return specsFrom(d, machine, deploy, guest.ListBundled)
}

// specsFrom resolves the guests of list in d against the deploy dir.
func specsFrom(d *bbconf.Data, machine, deploy, list string) ([]*guest.Spec, plan.Env, error) {
	d.Set("MACHINE", machine)
	d.Set("DEPLOY_DIR_IMAGE", deploy)
	d.Set("KERNEL_IMAGETYPE", GuestKernelType(machine))
	if v, ok, _ := d.Get("UNPACKDIR"); !ok || strings.TrimSpace(v) == "" {
		d.Set("UNPACKDIR", deploy)
	}
	specs, err := guest.FromVars(d, list)
	if err != nil {
		return nil, plan.Env{}, err
	}
	get := func(n string) string { v, _, _ := d.Get(n); return strings.TrimSpace(v) }
	size, err := guest.DefaultImageSize(d)
	if err != nil {
		return nil, plan.Env{}, err
	}
	env := plan.Env{DeployDir: deploy, UnpackDir: get("UNPACKDIR"), Machine: machine, KernelImageType: GuestKernelType(machine),
		ImageFstype: "ext4", DefaultImageSizeMB: size}
	return specs, env, nil
}

// LoadDescriptor loads the descriptor of a built image directory (or of a
// descriptor file).
func LoadDescriptor(p string) (*qemu.Descriptor, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		p = filepath.Join(p, qemu.DescriptorName)
	}
	return qemu.LoadDescriptor(p)
}
