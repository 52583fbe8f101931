package refimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/vxn-dev/vxn/pkg/debpkg"
	"github.com/vxn-dev/vxn/pkg/hostimage"
	"github.com/vxn-dev/vxn/pkg/imagestore"
	"github.com/vxn-dev/vxn/pkg/initramfs"
	"github.com/vxn-dev/vxn/pkg/oci/busyboximage"
)

// VxnOptions put vxn into the Dom0 root filesystem: /usr/bin/vxn (a
// static build of cmd/vxn) with its front-end links /usr/bin/vdkr and
// /usr/bin/vpdmn, the guest assets under
// /usr/share/vxn/<arch>/ (the image's guest kernel: vmlinux and bzImage, or Image on arm64; an initramfs with
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
	// The guest kernel under the machine's name for it (vmlinux, or
	// Image on arm64, where the package's kernel is already uncompressed).
	if err := copyTree(out.GuestKernel, filepath.Join(assets, m.GuestKernelType)); err != nil {
		return err
	}
	// Where the guest kernel was extracted, the compressed kernel too (vxn
	// run --kernel .../bzImage): the same guest, 8 MB instead of 66 MB on
	// disk, about 4 s slower to create under TCG (see
	// pkg/hostimage/vmlinux.go).
	if out.GuestKernel != out.Kernel {
		if err := copyTree(out.Kernel, filepath.Join(assets, m.KernelImageType)); err != nil {
			return err
		}
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
