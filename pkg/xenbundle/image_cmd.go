package xenbundle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vxn-dev/vxn/pkg/debpkg"
	"github.com/vxn-dev/vxn/pkg/hostimage"
	"github.com/vxn-dev/vxn/pkg/qemu"
	"github.com/vxn-dev/vxn/pkg/refimage"
)

func init() {
	extraCommands = append(extraCommands, buildImageCommand, bootCommand)
}

func defaultImageDir(machine string) string {
	return filepath.Join("out", "images", machine)
}

func buildImageCommand() *cobra.Command {
	var opts refimage.Options
	var machine, outDir, cacheDir, extra string
	var guests []string
	cmd := &cobra.Command{
		Use:   "build-image [--machine M] [--out DIR] [--conf FILE...]",
		Short: "Build the reference Xen host image (xen-image-minimal) with guests bundled",
		Long: `build-image builds the reference Xen host image from Debian 12 packages (Xen
4.17, the dom0 kernel and modules, the xl toolstack, xendomains, busybox init),
and the reference guest image (xen-guest-image-minimal: ext4, tar.bz2, qcow2),
then bundles guests into the Dom0 root filesystem with the same plan as
install (default: the reference guest, autostarted). Packages are fetched once
by name, verified and cached by version; a cached build needs no network.
The output directory holds the hypervisor, dom0 kernel, initramfs, root
filesystem, a deploy/ directory laid out like Yocto's DEPLOY_DIR_IMAGE, and
the machine descriptor qemuboot.json that "xenbundle boot" reads.`,
		Example: `  xenbundle build-image
  xenbundle build-image --conf my-guests.conf --out out/images/qemux86-64
  xenbundle build-image --engines --out out/images/engines
  xenbundle build-image --machine qemuarm64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if outDir == "" {
				outDir = defaultImageDir(machine)
			}
			abs, err := filepath.Abs(outDir)
			if err != nil {
				return err
			}
			opts.Host.Machine, opts.Host.OutDir = machine, abs
			if cacheDir != "" {
				opts.Host.CacheDir = cacheDir
			} else if d, err := debpkg.DefaultCacheDir(); err == nil {
				opts.Host.CacheDir = d
			}
			if len(guests) > 0 {
				extra += fmt.Sprintf("\nBUNDLED_XEN_GUESTS += %q\n", strings.Join(guests, " "))
			}
			opts.Extra = extra
			w := cmd.OutOrStdout()
			opts.Logf = func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
			opts.Host.Logf = opts.Logf
			start := time.Now()
			res, err := refimage.Build(cmd.Context(), opts)
			if err != nil {
				return err
			}
			for _, warn := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "xenbundle: warning:", warn)
			}
			fmt.Fprintf(w, "\nbuilt %s for %s in %.1fs (kernel %s)\n", hostimage.HostImageName, machine, time.Since(start).Seconds(), res.Host.KernelVersion)
			for _, s := range res.Host.Steps {
				fmt.Fprintf(w, "  %-28s %6.1fs\n", s.Name, s.Duration.Seconds())
			}
			fmt.Fprintf(w, "descriptor: %s\nrootfs:     %s\ndeploy:     %s\nguests:    ", res.Host.DescriptorPath, res.Rootfs, res.DeployDir)
			for _, g := range res.Plan.Guests {
				auto := ""
				if g.Spec.Autostart {
					auto = " (autostart)"
				}
				fmt.Fprintf(w, " %s%s", g.Spec.Name, auto)
			}
			fmt.Fprintln(w)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&machine, "machine", "qemux86-64", "machine: qemux86-64 or qemuarm64 (arm64 needs `dpkg --add-architecture arm64` and qemu-system-arm: scripts/deps.sh --arch arm64)")
	f.StringVar(&outDir, "out", "", "output directory (default out/images/<machine>)")
	f.StringVar(&cacheDir, "cache-dir", "", "package cache (default the repository's .cache/)")
	f.StringArrayVar(&opts.Confs, "conf", nil, "bitbake-style configuration of the guests to bundle (default: the reference guest, autostart)")
	f.StringArrayVar(&guests, "guest", nil, "add a guest entry name[:autostart][:external] (repeatable)")
	f.IntVar(&opts.Host.Dom0MemMB, "dom0-memory", 512, "dom0_mem in MB")
	f.StringVar(&opts.Host.Init, "init", "busybox", "dom0 init: busybox (default) or systemd")
	f.BoolVar(&opts.Host.Engines, "engines", false, "add the container engines to dom0 (containerd, Docker, Podman; about 250 MB)")
	f.BoolVar(&opts.Host.NoAptUpdate, "no-apt-update", false, "never run apt-get update (use the local package indexes)")
	return cmd
}

func bootCommand() *cobra.Command {
	var o qemu.Options
	var runs []string
	var interactive, allowAutoFail bool
	var machine string
	cmd := &cobra.Command{
		Use:   "boot [IMAGE_DIR|qemuboot.json] [--run CMD]...",
		Short: "Boot a built host image under QEMU (runqemu for Xen)",
		Long: `boot starts QEMU on a host image built by build-image: Xen, dom0 and the
autostarted guests. KVM is used when /dev/kvm can run Xen, TCG otherwise
(--no-kvm forces it; the boot timeout is then scaled x4).

With --run, it waits for the dom0 shell, for the container engines when the
image has them, and for the Dom0's report on the autostart guests (each one reached its login prompt, stayed up through its
first minute, or failed: with libxl's error or its console's last lines;
also in /run/xen/autostart.status), runs each command in dom0, prints its
output and exit status, powers off cleanly and prints the boot phase
timings; the exit status is 0 only if every command succeeded and every
autostart guest came up (--allow-autostart-failure drops the latter). Without
--run (or with --interactive) the serial console is on stdio: log in as root,
"poweroff" to leave (Ctrl-A X kills QEMU).`,
		Example: `  xenbundle boot --run "xl list" --run "xl info | grep free_memory"
  xenbundle boot out/images/qemux86-64 --interactive -m 4096
  xenbundle boot --machine qemuarm64 --run "xl list" --run "uname -a"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := defaultImageDir(machine)
			if len(args) == 1 {
				if cmd.Flags().Changed("machine") {
					return errors.New("give either an image directory or --machine, not both")
				}
				dir = args[0]
			}
			d, err := refimage.LoadDescriptor(dir)
			if err != nil {
				return fmt.Errorf("%w (build one with: xenbundle build-image)", err)
			}
			if interactive || len(runs) == 0 {
				kvm := false
				if !o.NoKVM {
					kvm, _ = qemu.KVMUsableFor(d.Arch)
				}
				qargs, err := qemu.Args(d, o, kvm)
				if err != nil {
					return err
				}
				c := exec.CommandContext(cmd.Context(), d.QEMUBinary, qargs...)
				c.Stdin, c.Stdout, c.Stderr = os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr()
				return c.Run()
			}
			return bootAndRun(cmd, d, o, runs, allowAutoFail)
		},
	}
	f := cmd.Flags()
	f.StringVar(&machine, "machine", "qemux86-64", "boot out/images/<machine> (qemux86-64 or qemuarm64) when no image directory is given")
	f.IntVarP(&o.MemoryMB, "memory", "m", 0, "QEMU memory in MB (default the descriptor's, 4096)")
	f.IntVar(&o.SMP, "smp", 0, "QEMU CPUs (default the descriptor's)")
	f.BoolVar(&o.NoKVM, "no-kvm", false, "force TCG")
	f.DurationVar(&o.BootTimeout, "boot-timeout", 120*time.Second, "boot timeout under KVM (x4 under TCG)")
	f.StringArrayVar(&o.DataDisks, "data-disk", nil, "extra raw disk image for passing files in and out (repeatable; /dev/vdb, ...)")
	f.StringArrayVar(&o.ExtraArgs, "qemu-args", nil, "extra QEMU arguments (repeatable)")
	f.BoolVar(&o.Snapshot, "snapshot", false, "discard writes to the disks")
	f.BoolVar(&o.NoNetwork, "no-network", false, "no NIC for dom0 (default: QEMU user-mode networking, the host is 10.0.2.2)")
	f.StringArrayVar(&o.HostForwards, "hostfwd", nil, "QEMU user-net forward to dom0, e.g. tcp:127.0.0.1:2222-:22 (repeatable)")
	f.StringVar(&o.LogFile, "log", "", "write the timestamped serial console to this file")
	f.StringArrayVar(&runs, "run", nil, "command to run in dom0 (repeatable); non-interactive mode")
	f.BoolVar(&interactive, "interactive", false, "serial console on stdio")
	f.BoolVar(&allowAutoFail, "allow-autostart-failure", false, "with --run: exit 0 even when an autostart guest did not start or did not stay up")
	return cmd
}

func bootAndRun(cmd *cobra.Command, d *qemu.Descriptor, o qemu.Options, runs []string, allowAutoFail bool) error {
	w := cmd.OutOrStdout()
	ctx := cmd.Context()
	start := time.Now()
	vm, err := qemu.Boot(ctx, d, o)
	if err != nil {
		return err
	}
	defer vm.Kill()
	fmt.Fprintf(w, "booted %s under %s in %.1fs\n", d.Machine, vm.Accel(), time.Since(start).Seconds())
	// The autostart check of the Dom0 boot (xendomains-check) reports
	// every guest of /etc/xen/auto once it reached its login prompt, stayed
	// up through its first minute, or failed.
	var autoFailed []string
	if out, err := vm.Run(ctx, "ls /etc/xen/auto/ 2>/dev/null | wc -l"); err == nil && strings.TrimSpace(out.Output) != "0" {
		report, err := waitAutostart(ctx, vm)
		if err != nil {
			return err
		}
		fmt.Fprintln(w, "autostart guests:")
		for _, l := range report {
			fmt.Fprintf(w, "  %s\n", l)
			if f := strings.Fields(l); len(f) > 1 && f[1] == "FAILED" {
				autoFailed = append(autoFailed, f[0])
			}
		}
	}
	if err := waitEngines(ctx, vm, w); err != nil {
		return err
	}
	failed := 0
	for _, c := range runs {
		r, err := vm.Run(ctx, c)
		if err != nil {
			return fmt.Errorf("dom0 command %q: %w", c, err)
		}
		fmt.Fprintf(w, "\n$ %s\n%s", c, r.Output)
		if !strings.HasSuffix(r.Output, "\n") && r.Output != "" {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "[exit status %d]\n", r.Status)
		if r.Status != 0 {
			failed++
		}
	}
	t0 := time.Now()
	serr := vm.Shutdown(ctx)
	fmt.Fprintf(w, "\npoweroff: %.1fs\n\nboot phases (since QEMU start, %s):\n", time.Since(t0).Seconds(), vm.Accel())
	for _, p := range vm.Timings() {
		fmt.Fprintf(w, "  %-14s %7.1fs\n", p.Name, p.At.Seconds())
	}
	if serr != nil {
		return fmt.Errorf("shutdown: %w", serr)
	}
	if failed > 0 {
		return errors.New(fmt.Sprint(failed, " dom0 command(s) failed"))
	}
	if len(autoFailed) > 0 && !allowAutoFail {
		return fmt.Errorf("autostart guest(s) failed: %s (see their lines above; --allow-autostart-failure accepts this)", strings.Join(autoFailed, ", "))
	}
	return nil
}

// waitAutostart waits for the Dom0's autostart report (hostimage's
// AutostartStatusFile) to be complete and returns its guest lines. The
// first autostarted guest's login prompt is marked as the "guest-up" phase.
func waitAutostart(ctx context.Context, vm *qemu.VM) ([]string, error) {
	wctx, cancel := context.WithTimeout(ctx, 150*time.Second*time.Duration(vm.Scale()))
	defer cancel()
	marked := false
	for {
		if !marked {
			if r, err := vm.Run(wctx, "grep -l 'login:' /var/log/xen/console/guest-*.log 2>/dev/null"); err == nil && r.Status == 0 {
				vm.Mark("guest-up")
				marked = true
			}
		}
		r, err := vm.Run(wctx, "cat "+hostimage.AutostartStatusFile+" 2>/dev/null")
		if err != nil {
			return nil, fmt.Errorf("autostart report: %w", err)
		}
		lines := strings.Split(strings.TrimSpace(r.Output), "\n")
		if last := lines[len(lines)-1]; strings.HasPrefix(last, "done ") {
			return lines[:len(lines)-1], nil
		}
		select {
		case <-wctx.Done():
			return []string{"(no complete autostart report in " + hostimage.AutostartStatusFile + ": " + strings.TrimSpace(r.Output) + ")"}, nil
		case <-time.After(2 * time.Second):
		}
	}
}

// waitEngines waits, when the Dom0 has the container engines, until its
// engines script reports containerd and dockerd ready (or failed), so that
// ctr, vctr and docker commands given with --run find them.
func waitEngines(ctx context.Context, vm *qemu.VM, w io.Writer) error {
	if r, err := vm.Run(ctx, "test -x /etc/init.d/engines"); err != nil || r.Status != 0 {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Second*time.Duration(vm.Scale()))
	defer cancel()
	for {
		r, err := vm.Run(wctx, "cat /run/vxn-engines.ready.failed 2>/dev/null && exit 2; test -e /run/vxn-engines.ready")
		if err != nil {
			return fmt.Errorf("waiting for the container engines: %w", err)
		}
		switch r.Status {
		case 0:
			vm.Mark("engines-ready")
			fmt.Fprintln(w, "container engines ready (containerd, dockerd)")
			return nil
		case 2:
			fmt.Fprintf(w, "container engines failed to start: %s", r.Output)
			return nil
		}
		select {
		case <-wctx.Done():
			fmt.Fprintln(w, "container engines not ready yet; running the commands anyway")
			return nil
		case <-time.After(time.Second):
		}
	}
}
