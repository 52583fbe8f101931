package vxncli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vxn-dev/vxn/pkg/container"
	"github.com/vxn-dev/vxn/pkg/oci"
	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/vxnconf"
)

// runFlags are `vxn run`'s options.
type runFlags struct {
	rm, detach, interactive, tty, timings bool
	env, envFiles                         []string
	workdir, user, entrypoint, name       string
	network, kernel, initramfs            string
	memory, vcpus, scratch                int
}

func (a *App) runCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND] [ARG...]",
		Short: "Run a command in a new container (a new Xen guest)",
		Long: `Run a command in a new container, with docker run's rules for the image's
Entrypoint, Cmd, Env, WorkingDir and User. The image is pulled when missing.
The container's stdout and stderr are streamed separately while it runs, and
vxn exits with the container's exit status (125 when vxn itself fails).
The first Ctrl-C is forwarded to the container; a second one destroys it.
Without --rm the stopped container stays (ps -a, logs, inspect) until rm.
With -d the container runs in the background and its id is printed.`,
		Example: `  vxn run --rm alpine echo hello
  vxn run --rm -e GREETING=hi alpine sh -c 'echo $GREETING'
  vxn run --rm -i alpine cat < file
  vxn run --rm -u nobody -w /tmp --memory 96 alpine id
  vxn run --rm --entrypoint /bin/ls alpine -l /
  vxn run -d --name web alpine sh -c 'while true; do date; sleep 5; done'
  vxn run --rm -it alpine sh`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return a.run(cmd, &f, args) },
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false) // everything after IMAGE is the container's
	fl.BoolVar(&f.rm, "rm", false, "remove the container when it exits")
	fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the container id")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep stdin open and forward it")
	fl.BoolVarP(&f.tty, "tty", "t", false, "allocate a terminal for the container")
	fl.StringArrayVarP(&f.env, "env", "e", nil, "set an environment variable (K=V, or K to copy it)")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "read environment variables from a file")
	fl.StringVarP(&f.workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&f.user, "user", "u", "", "USER[:GROUP] to run as (names or ids)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	fl.StringVar(&f.name, "name", "", "name of the container")
	fl.IntVarP(&f.memory, "memory", "m", 0, fmt.Sprintf("guest memory in MB (default %d)", container.DefaultMemoryMB))
	fl.IntVar(&f.vcpus, "vcpus", 0, fmt.Sprintf("virtual CPUs (default %d)", container.DefaultVCPUs))
	fl.IntVar(&f.scratch, "scratch", 0, "writable layer on a scratch disk of this many MB (default: tmpfs in guest memory)")
	fl.StringVar(&f.network, "network", "none", "none, or bridge (a vif on the configured bridge)")
	fl.StringVar(&f.kernel, "kernel", "", "guest kernel (default from the config, else "+vxnconf.DefaultAssetRoot+"/<arch>/)")
	fl.StringVar(&f.initramfs, "initramfs", "", "guest initramfs (default from the config, else "+vxnconf.DefaultAssetRoot+"/<arch>/initramfs.cpio.gz)")
	fl.BoolVar(&f.timings, "timings", false, "print a timing breakdown on stderr")
	return cmd
}

// runOptions are the docker-run settings of the command line: command,
// env (with --env-file files), workdir, user, entrypoint, terminal.
func (a *App) runOptions(cmd *cobra.Command, f *runFlags, args []string) (oci.RunOptions, error) {
	ropt := oci.RunOptions{Cmd: args[1:], Env: f.env, LookupEnv: a.LookupEnv, WorkDir: f.workdir, User: f.user, TTY: f.tty}
	if cmd.Flags().Changed("entrypoint") {
		ropt.Entrypoint = &f.entrypoint
	}
	for _, p := range f.envFiles {
		r, err := os.Open(p)
		if err != nil {
			return oci.RunOptions{}, fmt.Errorf("--env-file: %w", err)
		}
		env, err := oci.ParseEnvFile(p, r)
		r.Close()
		if err != nil {
			return oci.RunOptions{}, err
		}
		ropt.EnvFiles = append(ropt.EnvFiles, env)
	}
	return ropt, nil
}

func (a *App) run(cmd *cobra.Command, f *runFlags, args []string) error {
	t0 := time.Now()
	ctx := cmd.Context()
	if err := a.needXen(); err != nil {
		return err
	}
	if f.detach && f.interactive {
		return errors.New("-d and -i cannot be combined (there is no attach): use vxn exec -i")
	}
	if f.network != "" && f.network != "none" && f.network != "bridge" {
		return fmt.Errorf("--network %q: expected none or bridge", f.network)
	}
	guest, err := a.cfg.Guest(a.AssetRoot, vxnconf.GuestRequest{Kernel: f.kernel, Initramfs: f.initramfs,
		MemoryMB: f.memory, VCPUs: f.vcpus, ScratchMB: f.scratch, Network: f.network},
		"use --kernel/--initramfs, or kernel:/initramfs: in "+a.configPath)
	if err != nil {
		return err
	}
	ropt, err := a.runOptions(cmd, f, args)
	if err != nil {
		return err
	}

	ts, err := a.toolstack()
	if err != nil {
		return err
	}
	// The memory check's `xl info` (the slowest host-side step) runs
	// while the image and its disk are looked up.
	type infoResult struct {
		info toolstack.Info
		err  error
	}
	infoc := make(chan infoResult, 1)
	if !f.detach {
		go func() {
			info, err := ts.Info(ctx)
			infoc <- infoResult{info, err}
		}()
	}
	reaped, err := container.Reap(ctx, ts, a.runtimeDir)
	if err != nil {
		fmt.Fprintf(a.Stderr, "vxn: warning: cleaning up after killed vxn runs: %v\n", err)
	}
	if a.debug {
		for _, r := range reaped {
			fmt.Fprintf(a.Stderr, "vxn: reaped container %s (domain %s destroyed: %v)\n", r.ID, r.Domain, r.Destroyed)
		}
	}
	s, err := a.store()
	if err != nil {
		return err
	}
	tp := time.Now()
	popt, done := a.pullOptions(args[0])
	img, _, err := s.Ensure(ctx, args[0], popt)
	done(err == nil)
	if err != nil {
		return err
	}
	tPull := time.Since(tp)
	proc, err := oci.Resolve(img.Config.Config, ropt)
	if err != nil {
		return err
	}
	td := time.Now()
	if a.IsTerminal(a.Stderr) {
		fmt.Fprintf(a.Stderr, "vxn: preparing the guest disk of %s...\r", args[0])
	}
	disk, hit, err := s.Disk(ctx, img)
	if a.IsTerminal(a.Stderr) {
		fmt.Fprintf(a.Stderr, "\033[K")
	}
	if err != nil {
		return err
	}
	tDisk := time.Since(td)
	o := container.Options{ID: container.NewID(), Name: f.name, Image: args[0], RuntimeDir: a.runtimeDir, Keep: !f.rm, TTY: f.tty,
		Kernel: guest.Kernel, Initramfs: guest.Initramfs, ImageDisk: disk, ScratchMB: guest.ScratchMB,
		MemoryMB: guest.MemoryMB, VCPUs: guest.VCPUs, Type: guest.Type, Bridge: guest.Bridge,
		Args: proc.Args, Env: proc.Env, Cwd: proc.Cwd, User: proc.User,
		Stdout: a.Stdout, Stderr: a.Stderr}
	if guest.Bridge != "" {
		if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			o.ResolvConf = string(b)
		}
		// A static address of the bridge's subnet, leased per container.
		if o.Network, err = container.BridgePool(guest.Bridge); err != nil {
			return err
		}
	}
	if !f.detach {
		o.HostInfo = func(context.Context) (toolstack.Info, error) {
			r := <-infoc
			return r.info, r.err
		}
	}
	if f.detach {
		so := container.SpawnOptions{Options: o, AutoRemove: f.rm, Toolstack: a.selection(),
			LogPath: filepath.Join(a.runtimeDirOrDefault(), o.ID, container.LogFile)}
		if _, err := container.Spawn(ctx, so); err != nil {
			return err
		}
		fmt.Fprintln(a.Stdout, o.ID)
		return nil
	}
	if f.interactive {
		o.Stdin = a.Stdin
	}
	if a.debug {
		o.Log = prefixWriter{a.Stderr}
	}
	if a.Signals != nil {
		sigs, stop := a.Signals()
		defer stop()
		o.Signals = sigs
	}
	if f.tty {
		if in := terminalFile(a.Stdin); in != nil && f.interactive {
			restore, _ := makeRaw(in)
			defer restore()
		}
		if t := terminalFile(a.Stdout); t != nil {
			ws, stop := windowSizes(t)
			defer stop()
			o.WindowSizes = ws
		}
	}
	res, err := container.Run(ctx, ts, o)
	if f.timings {
		fmt.Fprintln(a.Stderr, timings(tPull, tDisk, hit, res, time.Since(t0)))
	}
	if res.Stats.Lost > 0 {
		fmt.Fprintf(a.Stderr, "vxn: warning: %d frames of container output were lost on the console\n", res.Stats.Lost)
	}
	if errors.Is(err, container.ErrKilled) {
		fmt.Fprintf(a.Stderr, "vxn: %v\n", err)
		a.code = res.ExitCode
		return nil
	}
	if err != nil {
		return err
	}
	a.code = res.ExitCode
	return nil
}

// prefixWriter marks vxn-init's log lines on stderr.
type prefixWriter struct{ w io.Writer }

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "vxn-init: %s", b); err != nil {
		return 0, err
	}
	return len(b), nil
}
