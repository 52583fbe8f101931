// Command vxn-init is PID 1 of a vxn guest: "the VM is the container".
//
// The guest boots a stock kernel with an initramfs holding only this
// static binary, the kernel modules it needs and their load order in
// /lib/modules/<release>/vxn.modules (see pkg/initramfs). vxn-init then:
//
//  1. mounts proc, sys, devtmpfs and tmp for itself;
//  2. opens the protocol console named by vxn.console= (hvc0 by default,
//     ttyS0 under plain QEMU), puts it in raw mode (no echo) and turns
//     kernel console logging off;
//  3. loads the modules and sends a Ready frame (pkg/guestproto);
//  4. receives the job Spec frame over the console (or, with
//     vxn.spec=/dev/xvdc, reads it from a device), so that environment
//     values never appear on a kernel command line;
//  5. mounts the image disk read-only, a writable layer (tmpfs, or the
//     scratch disk) and an overlay of both, then proc, sys, dev, devpts and
//     /dev/shm inside it; sets the hostname; brings the loopback up and
//     configures the vif (Spec.Net: address, default route, name servers);
//     writes /etc/resolv.conf;
//  6. resolves the user through the container's /etc/passwd and /etc/group,
//     builds the environment (docker's PATH/HOME/HOSTNAME defaults), finds
//     argv[0] in the container's PATH, creates the working directory;
//  7. forks the entrypoint chrooted into the container with the argv
//     verbatim (no shell), its own session, the uid/gid/groups applied;
//     streams its stdout and stderr as separate frames; feeds Stdin frames
//     to it; forwards Signal frames and SIGTERM/SIGINT/SIGHUP it receives;
//     reaps every zombie (it is PID 1);
//  8. runs exec sessions (Exec frames) beside it: more processes in the
//     same root with the same user, environment and working directory
//     resolution, their output as ExecData frames, their end as ExecExit;
//  9. with a terminal (-t) runs a process on a new pty of the container's
//     devpts as its controlling terminal, pumps the master's output as
//     Stdout (ExecData stream 1), and applies Window frames (TIOCSWINSZ;
//     the kernel then sends SIGWINCH);
//  10. when the entrypoint ends, kills the exec sessions, writes the exit
//     status (128+n for death by signal n) to xenstore data/vxn-exit when
//     running under Xen, then sends it as an Exit frame, kills what is
//     left, syncs, drains the console and powers off.
//
// Installed as /sbin/poweroff too: the kernel runs that on `xl shutdown`
// (orderly_poweroff), and it then asks PID 1 to stop the container with
// SIGTERM, like `docker stop`.
//
// Failures of the init itself are reported as a Fatal frame and exit status
// 125 (docker's "daemon error"); an entrypoint that cannot be found gives
// 127, one that cannot be executed 126.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/guestserver"
	"github.com/vxn-dev/vxn/pkg/termios"
)

func main() {
	switch filepath.Base(os.Args[0]) {
	case "poweroff", "halt", "reboot", "shutdown":
		// Kernel-initiated orderly shutdown: let PID 1 stop the container.
		syscall.Kill(1, syscall.SIGTERM)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "vxn-init: this is the init of a vxn guest and must run as PID 1")
		os.Exit(2)
	}
	t0 := time.Now()
	code, con := pid1(t0)
	unix.Kill(-1, unix.SIGKILL)
	unix.Sync()
	if con != nil {
		drain(con)
	}
	for {
		unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		time.Sleep(time.Second)
		_ = code
	}
}

// guest is the state of one boot.
type guest struct {
	t0  time.Time
	cl  cmdline
	con *os.File
	w   *guestproto.Writer
	srv *guestserver.Server
	st  *starter
}

func (g *guest) logf(format string, args ...any) {
	if g.cl.Debug && g.w != nil {
		g.w.WriteFrame(guestproto.TypeLog, fmt.Appendf(nil, "[%6dms] "+format, append([]any{time.Since(g.t0).Milliseconds()}, args...)...))
	}
}

func pid1(t0 time.Time) (int, *os.File) {
	g := &guest{t0: t0}
	if err := g.boot(); err != nil {
		// Before the protocol server runs: report like it does.
		code := 125
		if g.w == nil {
			fmt.Fprintln(os.Stderr, "vxn-init:", err)
		} else {
			g.w.WriteFrame(guestproto.TypeFatal, []byte(err.Error()))
		}
		if g.reportExit(code) && g.w != nil {
			g.w.WriteExit(code)
		}
		return code, g.con
	}
	return g.srv.Run(context.Background()), g.con
}

// reportExit writes the exit status to xenstore data/vxn-exit (under Xen;
// Dom0's fallback when the Exit frame is lost) before the Exit frame.
func (g *guest) reportExit(code int) bool {
	if err := xenstoreWrite("data/vxn-exit", strconv.Itoa(code)); err != nil {
		g.logf("%v", err)
	}
	return true
}

// boot mounts the init's file systems, opens the protocol console, loads
// the modules and sets up the protocol server (g.srv), which then runs the
// rest: Ready, the spec, setup (g.setup), the job.
func (g *guest) boot() error {
	if err := mountBase(); err != nil {
		return err
	}
	cmd, _ := os.ReadFile("/proc/cmdline")
	g.cl = parseCmdline(string(cmd))
	con, err := os.OpenFile("/dev/"+g.cl.Console, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("opening protocol console: %w", err)
	}
	g.con = con
	// Raw: no echo (the spec must not be echoed into Dom0's console log),
	// no CR/LF mapping, no flow control characters, no signals from ^C.
	termios.MakeRaw(int(con.Fd()))
	quietKernel()
	g.w = guestproto.NewWriter(con)

	rel := kernelRelease()
	if err := loadModules(filepath.Join("/lib/modules", rel, "vxn.modules"), g.logf); err != nil {
		g.logf("modules: %v", err) // not fatal: a later mount says what is missing
	}
	// The module files live in RAM (the initramfs); loaded, they are only
	// taking memory from the container (3 MB of a 64 MB guest).
	os.RemoveAll("/lib/modules")
	initDur := time.Since(g.t0)
	signal.Ignore(syscall.SIGPIPE)
	g.st = &starter{rp: newReaper(), chroot: true, drain: 200 * time.Millisecond}
	var tSpec time.Time
	g.srv = guestserver.New(guestserver.Config{
		Writer:  g.w,
		Starter: g.st,
		Ready:   guestproto.ReadyInfo{Version: 1, UptimeMS: uptime().Milliseconds(), InitMS: initDur.Milliseconds(), Kernel: rel},
		Setup: func(spec *guestproto.Spec) error {
			tSpec = time.Now()
			g.logf("spec received")
			return g.setup(spec)
		},
		Started: func(pid int) guestproto.StartedInfo {
			return guestproto.StartedInfo{UptimeMS: uptime().Milliseconds(),
				InitMS: (initDur + time.Since(tSpec)).Milliseconds(), Pid: pid}
		},
		ReportExit: g.reportExit,
	})
	fwd := make(chan os.Signal, 4)
	signal.Notify(fwd, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for s := range fwd {
			g.srv.Signal(int(s.(syscall.Signal)))
		}
	}()
	go g.srv.ReadConsole(g.con)
	if g.cl.Spec != "console" {
		go g.readSpecFile(g.cl.Spec)
	}
	return nil
}

// setup prepares the container of spec: its root file system, host name,
// network and /etc/resolv.conf.
func (g *guest) setup(spec *guestproto.Spec) error {
	root, err := setupRoot(spec)
	if err != nil {
		return err
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
	}
	if err := setupNet(spec.Net, 10*time.Second); err != nil {
		return err
	}
	resolv := spec.ResolvConf
	if resolv == "" && spec.Net != nil && len(spec.Net.DNS) > 0 {
		resolv = resolvConf(spec.Net.DNS)
	}
	if resolv != "" {
		if err := writeResolvConf(root, resolv); err != nil {
			return fmt.Errorf("writing /etc/resolv.conf: %w", err)
		}
	}
	g.st.setRoot(root)
	return nil
}

// readSpecFile reads the spec from a file or device (vxn.spec=/dev/xvdc):
// the alternative to the console for toolstacks that cannot write to the
// console before the guest runs.
func (g *guest) readSpecFile(p string) {
	if err := waitDev(p, 10*time.Second); err != nil {
		g.w.WriteFrame(guestproto.TypeFatal, []byte(err.Error()))
		return
	}
	f, err := os.Open(p)
	if err != nil {
		g.w.WriteFrame(guestproto.TypeFatal, []byte(err.Error()))
		return
	}
	defer f.Close()
	g.srv.ReadSpecFile(f, p)
}
