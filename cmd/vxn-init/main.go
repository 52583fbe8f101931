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
//     /dev/shm inside it; sets the hostname; writes /etc/resolv.conf;
//  6. resolves the user through the container's /etc/passwd and /etc/group,
//     builds the environment (docker's PATH/HOME/HOSTNAME defaults), finds
//     argv[0] in the container's PATH, creates the working directory;
//  7. forks the entrypoint chrooted into the container with the argv
//     verbatim (no shell), its own session, the uid/gid/groups applied;
//     streams its stdout and stderr as separate frames; feeds Stdin frames
//     to it; forwards Signal frames and SIGTERM/SIGINT/SIGHUP it receives;
//     reaps every zombie (it is PID 1);
//  8. sends the exit status (128+n for death by signal n) as an Exit frame
//     and to xenstore data/vxn-exit when running under Xen, kills what is
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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestproto"
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
	t0    time.Time
	cl    cmdline
	con   *os.File
	w     *guestproto.Writer
	specs chan *guestproto.Spec
	sigs  chan syscall.Signal
	stdin *os.File // write end of the container's stdin pipe
	inR   *os.File
}

func (g *guest) logf(format string, args ...any) {
	if g.cl.Debug && g.w != nil {
		g.w.WriteFrame(guestproto.TypeLog, fmt.Appendf(nil, "[%6dms] "+format, append([]any{time.Since(g.t0).Milliseconds()}, args...)...))
	}
}

// fatal reports an init failure and returns its exit status.
func (g *guest) fatal(err error) int {
	code := 125
	var ee *execError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if g.w != nil {
		g.w.WriteFrame(guestproto.TypeFatal, []byte(err.Error()))
	} else {
		fmt.Fprintln(os.Stderr, "vxn-init:", err)
	}
	return code
}

func pid1(t0 time.Time) (int, *os.File) {
	g := &guest{t0: t0, specs: make(chan *guestproto.Spec, 1), sigs: make(chan syscall.Signal, 8)}
	code := g.main()
	if g.w != nil {
		g.w.WriteExit(code)
	}
	if err := xenstoreWrite("data/vxn-exit", fmt.Sprint(code)); err != nil {
		g.logf("%v", err)
	}
	return code, g.con
}

func (g *guest) main() int {
	if err := mountBase(); err != nil {
		return g.fatal(err)
	}
	cmd, _ := os.ReadFile("/proc/cmdline")
	g.cl = parseCmdline(string(cmd))
	con, err := os.OpenFile("/dev/"+g.cl.Console, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return g.fatal(fmt.Errorf("opening protocol console: %w", err))
	}
	g.con = con
	makeRaw(int(con.Fd()))
	quietKernel()
	g.w = guestproto.NewWriter(con)

	rel := kernelRelease()
	if err := loadModules(filepath.Join("/lib/modules", rel, "vxn.modules"), g.logf); err != nil {
		g.logf("modules: %v", err) // not fatal: a later mount says what is missing
	}
	initDur := time.Since(g.t0)
	ready, _ := json.Marshal(guestproto.ReadyInfo{Version: 1, UptimeMS: uptime().Milliseconds(), InitMS: initDur.Milliseconds(), Kernel: rel})
	signal.Ignore(syscall.SIGPIPE)
	fwd := make(chan os.Signal, 4)
	signal.Notify(fwd, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for s := range fwd {
			g.sigs <- s.(syscall.Signal)
		}
	}()

	g.inR, g.stdin, _ = os.Pipe()
	go g.readConsole()
	if g.cl.Spec != "console" {
		go g.readSpecFile(g.cl.Spec)
	}
	g.w.WriteFrame(guestproto.TypeReady, ready)
	spec := <-g.specs
	if spec == nil {
		return g.fatal(errors.New("no job spec received"))
	}
	tSpec := time.Now()
	g.logf("spec received")
	if !spec.Stdin {
		g.inR.Close()
		g.inR = nil
	}

	root, err := setupRoot(spec)
	if err != nil {
		return g.fatal(err)
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return g.fatal(fmt.Errorf("sethostname: %w", err))
		}
	}
	if spec.ResolvConf != "" {
		if err := writeResolvConf(root, spec.ResolvConf); err != nil {
			return g.fatal(fmt.Errorf("writing /etc/resolv.conf: %w", err))
		}
	}
	p, err := makePlan(root, spec)
	if err != nil {
		return g.fatal(err)
	}
	r := &runner{w: g.w, chroot: true, stdin: g.inR, signals: g.sigs, drain: 200 * time.Millisecond,
		started: func(pid int) {
			if g.inR != nil {
				g.inR.Close() // the child has its copy
			}
			info, _ := json.Marshal(guestproto.StartedInfo{UptimeMS: uptime().Milliseconds(),
				InitMS: (initDur + time.Since(tSpec)).Milliseconds(), Pid: pid})
			g.w.WriteFrame(guestproto.TypeStarted, info)
		}}
	code, err := r.run(p)
	if err != nil {
		return g.fatal(err)
	}
	return code
}

// readConsole handles Dom0's frames: the spec, stdin, signals.
func (g *guest) readConsole() {
	rd := guestproto.NewReader(g.con)
	gotSpec := false
	for {
		f, err := rd.Next()
		if err != nil {
			if !gotSpec {
				select {
				case g.specs <- nil:
				default:
				}
			}
			return
		}
		switch f.Type {
		case guestproto.TypeSpec:
			if gotSpec {
				continue
			}
			s, err := guestproto.ParseSpec(f.Payload)
			if err != nil {
				g.w.WriteFrame(guestproto.TypeFatal, []byte(err.Error()))
				continue
			}
			gotSpec = true
			select { // a spec from vxn.spec= may have been first
			case g.specs <- s:
			default:
			}
		case guestproto.TypeStdin:
			if g.stdin != nil {
				g.stdin.Write(f.Payload)
			}
		case guestproto.TypeStdinClose:
			if g.stdin != nil {
				g.stdin.Close()
				g.stdin = nil
			}
		case guestproto.TypeSignal:
			var n int
			if _, err := fmt.Sscan(string(f.Payload), &n); err == nil && n > 0 && n < 65 {
				g.sigs <- syscall.Signal(n)
			}
		}
	}
}

// readSpecFile reads the spec from the first Spec frame in a file or
// device (vxn.spec=/dev/xvdc): the alternative to the console for
// toolstacks that cannot write to the console before the guest runs.
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
	rd := guestproto.NewReader(io.LimitReader(f, 1<<20))
	for {
		fr, err := rd.Next()
		if err != nil {
			g.w.WriteFrame(guestproto.TypeFatal, []byte(fmt.Sprintf("%s: no job spec frame", p)))
			return
		}
		if fr.Type == guestproto.TypeSpec {
			s, err := guestproto.ParseSpec(fr.Payload)
			if err != nil {
				g.w.WriteFrame(guestproto.TypeFatal, []byte(fmt.Sprintf("%s: %v", p, err)))
				return
			}
			select {
			case g.specs <- s:
			default:
			}
			return
		}
	}
}
