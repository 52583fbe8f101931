package refimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vxn-dev/vxn/pkg/bbconf"
	"github.com/vxn-dev/vxn/pkg/bundle"
	"github.com/vxn-dev/vxn/pkg/debpkg"
	"github.com/vxn-dev/vxn/pkg/guest"
	"github.com/vxn-dev/vxn/pkg/hostimage"
	"github.com/vxn-dev/vxn/pkg/imagestore"
	"github.com/vxn-dev/vxn/pkg/initramfs"
	"github.com/vxn-dev/vxn/pkg/oci/busyboximage"
)

// earlyOutput reconstructs the outputs hostimage has written before the
// Dom0 rootfs step (the PopulateRootfs hook gets only the staging root):
// the kernel release is the one module directory of the staging root, and
// the file names are hostimage's.
func earlyOutput(host hostimage.Options, root string) (*hostimage.Output, string, error) {
	ents, err := os.ReadDir(filepath.Join(root, "usr/lib/modules"))
	if err != nil {
		return nil, "", fmt.Errorf("kernel release of the Dom0 staging root: %w", err)
	}
	if len(ents) != 1 {
		return nil, "", fmt.Errorf("kernel release of the Dom0 staging root: %d directories in usr/lib/modules, want 1", len(ents))
	}
	kv := ents[0].Name()
	dir, err := filepath.Abs(host.OutDir)
	if err != nil {
		return nil, "", err
	}
	m, err := hostimage.LookupMachine(host.Machine)
	if err != nil {
		return nil, "", err
	}
	out := &hostimage.Output{Dir: dir, KernelVersion: kv,
		Vmlinux:   filepath.Join(dir, "vmlinux-"+kv),
		Kernel:    filepath.Join(dir, m.KernelImage+"-"+kv),
		Initramfs: filepath.Join(dir, "initramfs-"+m.Name+".cpio.gz")}
	for _, p := range []string{out.Vmlinux, out.Initramfs} {
		if _, err := os.Stat(p); err != nil {
			return nil, "", fmt.Errorf("hostimage output expected before the rootfs step: %w", err)
		}
	}
	return out, kv, nil
}

// populate runs inside hostimage's PopulateRootfs hook: bundle packages
// first, then vxn.
func populate(ctx context.Context, opts Options, host hostimage.Options, root string, logf func(string, ...any)) error {
	out, _, err := earlyOutput(host, root)
	if err != nil {
		return err
	}
	if opts.Packages != nil {
		deploy := filepath.Join(out.Dir, "deploy")
		if err := DeployDir(out, host.Machine, deploy); err != nil {
			return err
		}
		t0 := time.Now()
		pkgs, err := opts.Packages(ctx, deploy, root)
		if err != nil {
			return fmt.Errorf("bundle packages: %w", err)
		}
		if err := InstallDebs(ctx, root, pkgs...); err != nil {
			return err
		}
		logf("refimage: %d package(s) built and installed with dpkg in %.1fs", len(pkgs), time.Since(t0).Seconds())
	}
	if opts.Vxn != nil {
		t0 := time.Now()
		if err := installVxn(ctx, *opts.Vxn, host, out, root); err != nil {
			return fmt.Errorf("vxn: %w", err)
		}
		logf("refimage: vxn installed in %.1fs", time.Since(t0).Seconds())
	}
	return nil
}

// InstallDebs installs .deb files into the root directory root with the
// host's dpkg (--root, --force-all: no chroot scripts, no dependency on
// the target's package set), creating an empty dpkg database first when
// root has none, as on a freshly assembled rootfs.
func InstallDebs(ctx context.Context, root string, debs ...string) error {
	if len(debs) == 0 {
		return nil
	}
	admin := filepath.Join(root, "var/lib/dpkg")
	for _, d := range []string{"info", "updates", "triggers"} {
		if err := os.MkdirAll(filepath.Join(admin, d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{"status", "available"} {
		p := filepath.Join(admin, f)
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				return err
			}
		}
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		return fmt.Errorf("installing bundle packages needs dpkg on the build host: %w", err)
	}
	args := append([]string{"--root=" + root, "--force-all", "--force-not-root", "--log=/dev/null", "-i"}, debs...)
	cmd := exec.CommandContext(ctx, "dpkg", args...)
	// dpkg looks for ldconfig and start-stop-daemon in PATH.
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg --root=%s -i %s: %v\n%s", root, strings.Join(debs, " "), err, b)
	}
	return nil
}

// BundleOptions configure PackBundle.
type BundleOptions struct {
	// Name and Version of the package.
	Name, Version string
	// Recipe is bitbake-style text with XEN_GUEST_BUNDLES (a bundle recipe
	// such as examples/bundles/*.bb); RecipeName names it in errors.
	Recipe     []byte
	RecipeName string
	// Machine, DeployDir and UnpackDir resolve the recipe's files.
	Machine, DeployDir, UnpackDir string
	// Format is bundle.FormatDeb (default) or bundle.FormatIPK.
	Format string
	// Output receives the package; CacheDir is the import cache.
	Output, CacheDir string
	// Log receives progress lines; Notice the redistribution notice.
	Log    func(format string, args ...any)
	Notice func(string)
}

// PackBundle packs a bundle recipe into a package, like `xenbundle pack
// --conf RECIPE`, with the reference image's conventions (guest kernel
// type vmlinux in DeployDir). It returns the package path.
func PackBundle(ctx context.Context, o BundleOptions) (*bundle.PackResult, error) {
	if o.Machine == "" {
		o.Machine = "qemux86-64"
	}
	if o.Format == "" {
		o.Format = bundle.FormatDeb
	}
	if o.RecipeName == "" {
		o.RecipeName = o.Name + "_" + o.Version + ".bb"
	}
	d, err := bbconf.Load(o.Machine, o.Name, bbconf.Source{Name: o.RecipeName, Text: o.Recipe})
	if err != nil {
		return nil, err
	}
	d.Set("MACHINE", o.Machine)
	d.Set("DEPLOY_DIR_IMAGE", o.DeployDir)
	d.Set("KERNEL_IMAGETYPE", GuestKernelType)
	d.Set("UNPACKDIR", o.UnpackDir)
	specs, env, err := specsFrom(d, o.Machine, o.DeployDir, guest.ListBundles)
	if err != nil {
		return nil, err
	}
	return bundle.Pack(ctx, specs, env, bundle.PackOptions{Name: o.Name, Version: o.Version, Format: o.Format,
		Output: o.Output, CacheDir: o.CacheDir, Epoch: time.Unix(0, 0).UTC(), Log: o.Log, Notice: o.Notice})
}

// VxnOptions put vxn into the Dom0 root filesystem: /usr/bin/vxn (a
// static build of cmd/vxn) with its front-end links /usr/bin/vdkr and
// /usr/bin/vpdmn, the guest assets under
// /usr/share/vxn/<arch>/ (the image's vmlinux, its bzImage and an initramfs with
// vxn-init and the Xen guest modules of the image's kernel) and Files.
type VxnOptions struct {
	// ModuleDir is a directory of the vxn Go module (go build runs there).
	ModuleDir string
	// Programs maps a Dom0 path to a Go package path built static
	// (CGO_ENABLED=0) from ModuleDir, e.g. test helpers.
	Programs map[string]string
	// Files maps a Dom0 path to a host file or directory copied there.
	Files map[string]string
	// Modules are the initramfs's modules; default initramfs.XenModules.
	Modules []string
}

// VxnFrontEnds are installed in Dom0 as /usr/bin links to vxn.
var VxnFrontEnds = []string{"vdkr", "vpdmn"}

// AssetDir is vxn's asset directory in a Dom0 of machine m:
// /usr/share/vxn/<arch>, with the architecture named as vxn names it
// (x86_64, aarch64).
func AssetDir(m *hostimage.Machine) string { return "/usr/share/vxn/" + m.QEMUArch }

func installVxn(ctx context.Context, o VxnOptions, host hostimage.Options, out *hostimage.Output, root string) error {
	if o.ModuleDir == "" {
		return errors.New("VxnOptions.ModuleDir is required")
	}
	m, err := hostimage.LookupMachine(host.Machine)
	if err != nil {
		return err
	}
	progs := map[string]string{"/usr/bin/vxn": "github.com/vxn-dev/vxn/cmd/vxn"}
	// The OCI runtime and vctr, for the engines (hostimage.Options.Engines
	// configures them with these paths), when the module has them.
	for dst, cmd := range map[string]string{hostimage.EngineRuntimeBinary: "cmd/vxn-oci-runtime", "/usr/bin/vctr": "cmd/vctr"} {
		if _, err := os.Stat(filepath.Join(o.ModuleDir, cmd)); err == nil {
			progs[dst] = "github.com/vxn-dev/vxn/" + cmd
		}
	}
	for k, v := range o.Programs {
		progs[k] = v
	}
	for dst, pkg := range progs {
		if err := goBuild(ctx, o.ModuleDir, pkg, filepath.Join(root, dst), m.DebArch); err != nil {
			return err
		}
	}
	// The Docker-like and Podman-like front-ends are vxn under other
	// names (the name selects the personality).
	for _, name := range VxnFrontEnds {
		p := filepath.Join(root, "usr/bin", name)
		os.Remove(p)
		if err := os.Symlink("vxn", p); err != nil {
			return err
		}
	}
	modDir, err := kernelModDir(ctx, host, out)
	if err != nil {
		return err
	}
	initBin, err := initramfs.BuildInit(ctx, o.ModuleDir, m.DebArch)
	if err != nil {
		return err
	}
	assets := filepath.Join(root, AssetDir(m))
	if err := os.MkdirAll(assets, 0o755); err != nil {
		return err
	}
	mods := o.Modules
	if mods == nil {
		mods = initramfs.XenModules
	}
	if _, err := initramfs.WriteFile(filepath.Join(assets, "initramfs.cpio.gz"), initramfs.Options{Init: initBin, ModDir: modDir, Modules: mods}); err != nil {
		return err
	}
	if err := copyTree(out.Vmlinux, filepath.Join(assets, "vmlinux")); err != nil {
		return err
	}
	// The compressed kernel too (vxn run --kernel .../bzImage): the same
	// guest, 8 MB instead of 66 MB on disk, about 4 s slower to create
	// under TCG (see pkg/hostimage/vmlinux.go).
	if err := copyTree(out.Kernel, filepath.Join(assets, "bzImage")); err != nil {
		return err
	}
	if err := installOfflineImage(ctx, root, host.Machine); err != nil {
		return err
	}
	for dst, src := range o.Files {
		if err := copyTree(src, filepath.Join(root, dst)); err != nil {
			return err
		}
	}
	return nil
}

// kernelModDir is lib/modules/<release> of the image's extracted kernel
// package (the Dom0 rootfs holds only a subset of the modules).
func kernelModDir(ctx context.Context, host hostimage.Options, out *hostimage.Output) (string, error) {
	lockPath := host.LockFile
	if lockPath == "" {
		lockPath = filepath.Join(out.Dir, "packages.lock.json")
	}
	lock, err := debpkg.ReadLock(lockPath)
	if err != nil {
		return "", err
	}
	name := lock.Extra["kernel_package"]
	p, ok := lock.Find(name)
	if !ok {
		return "", fmt.Errorf("%s: kernel package %q not locked", lockPath, name)
	}
	cache := host.CacheDir
	if cache == "" {
		if cache, err = debpkg.DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	if cache, err = filepath.Abs(cache); err != nil {
		return "", err
	}
	dir, err := (&debpkg.Fetcher{CacheDir: cache, NoUpdate: true}).Extract(ctx, p)
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "lib/modules", out.KernelVersion), nil
}

// goBuild builds a static Go program for Dom0's architecture (goarch:
// Debian's and Go's names agree: amd64, arm64).
func goBuild(ctx context.Context, moduleDir, pkg, dst, goarch string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", dst, pkg)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// copyTree copies a file or a directory tree (cp -a semantics).
func copyTree(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	os.RemoveAll(dst)
	if b, err := exec.Command("cp", "-a", "--", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp -a %s %s: %v\n%s", src, dst, err, b)
	}
	return nil
}

// installOfflineImage puts the offline image (busyboximage, from the
// Dom0's own busybox-static) into vxn's image store, with its guest disk
// built, and as an archive that the engines import into containerd.
func installOfflineImage(ctx context.Context, root, machine string) error {
	m, err := hostimage.LookupMachine(machine)
	if err != nil {
		return err
	}
	img, err := busyboximage.Build(filepath.Join(root, "usr/bin/busybox"), m.DebArch)
	if err != nil {
		return fmt.Errorf("offline image: %w", err)
	}
	if _, err := busyboximage.AddToStore(ctx, filepath.Join(root, imagestore.DefaultRoot), img, busyboximage.Ref, true); err != nil {
		return fmt.Errorf("offline image: %w", err)
	}
	dir := filepath.Join(root, hostimage.ShippedImagesDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return busyboximage.WriteArchive(filepath.Join(dir, "busybox.tar"), img, busyboximage.Ref)
}
