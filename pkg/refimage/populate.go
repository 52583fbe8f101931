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

	"github.com/vxn-dev/vxn/pkg/hostimage"
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
		Kernel:    filepath.Join(dir, m.KernelImage+"-"+kv),
		Initramfs: filepath.Join(dir, "initramfs-"+m.Name+".cpio.gz")}
	out.GuestKernel = out.Kernel
	if m.ExtractVmlinux {
		out.Vmlinux = filepath.Join(dir, "vmlinux-"+kv)
		out.GuestKernel = out.Vmlinux
	}
	for _, p := range []string{out.GuestKernel, out.Initramfs} {
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
