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
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestproto"
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
	t0    time.Time
	cl    cmdline
	con   *os.File
	w     *guestproto.Writer
	specs chan *guestproto.Spec
	sigs  chan syscall.Signal
	rp    *reaper
	// chroot is false only in tests (see procSpec.chroot).
	chroot bool
	// pts overrides the devpts directory for terminals (tests only).
	pts string
	// drain bounds how long output of leftover processes is still read
	// after a process exited (they may keep the pipes open).
	drain time.Duration

	mu       sync.Mutex
	stdin    *inQueue // the main process's stdin (Stdin frames)
	mainSpec *guestproto.Spec
	root     string // container root once the main process runs
	mainProc *proc
	ended    bool // the main process ended: no more exec sessions
	sessions map[uint32]*proc
	windows  map[uint32]unix.Winsize
	execs    sync.WaitGroup
}

func newGuest(t0 time.Time) *guest {
	return &guest{t0: t0, specs: make(chan *guestproto.Spec, 1), sigs: make(chan syscall.Signal, 8),
		chroot: true, drain: 200 * time.Millisecond, sessions: map[uint32]*proc{}, windows: map[uint32]unix.Winsize{}}
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
	g := newGuest(t0)
	code := g.main()
	g.finish(code)
	return code, g.con
}

// finish ends the exec sessions still running (each reported with its
// ExecExit) and reports the exit status: first to xenstore data/vxn-exit
// (under Xen; Dom0's fallback when the Exit frame is lost), then as the
// Exit frame.
func (g *guest) finish(code int) {
	g.mu.Lock()
	g.ended = true
	for _, p := range g.sessions {
		p.signal(syscall.SIGKILL)
	}
	g.mu.Unlock()
	done := make(chan struct{})
	go func() { g.execs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	if err := xenstoreWrite("data/vxn-exit", strconv.Itoa(code)); err != nil {
		g.logf("%v", err)
	}
	if g.w != nil {
		g.w.WriteExit(code)
	}
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
	ready, _ := json.Marshal(guestproto.ReadyInfo{Version: 1, UptimeMS: uptime().Milliseconds(), InitMS: initDur.Milliseconds(), Kernel: rel})
	signal.Ignore(syscall.SIGPIPE)
	fwd := make(chan os.Signal, 4)
	signal.Notify(fwd, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		for s := range fwd {
			g.sigs <- s.(syscall.Signal)
		}
	}()
	g.rp = newReaper()

	inR, inW, err := os.Pipe()
	if err != nil {
		return g.fatal(err)
	}
	g.stdin = newInQueue(inW) // buffers Stdin frames until the process starts
	go g.readConsole(g.con)
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

	root, err := setupRoot(spec)
	if err != nil {
		return g.fatal(err)
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return g.fatal(fmt.Errorf("sethostname: %w", err))
		}
	}
	if err := setupNet(spec.Net, 10*time.Second); err != nil {
		return g.fatal(err)
	}
	resolv := spec.ResolvConf
	if resolv == "" && spec.Net != nil && len(spec.Net.DNS) > 0 {
		resolv = resolvConf(spec.Net.DNS)
	}
	if resolv != "" {
		if err := writeResolvConf(root, resolv); err != nil {
			return g.fatal(fmt.Errorf("writing /etc/resolv.conf: %w", err))
		}
	}
	return g.runMain(root, spec, inR, func(pid int) {
		info, _ := json.Marshal(guestproto.StartedInfo{UptimeMS: uptime().Milliseconds(),
			InitMS: (initDur + time.Since(tSpec)).Milliseconds(), Pid: pid})
		g.w.WriteFrame(guestproto.TypeStarted, info)
	})
}

// runMain starts the main process of spec in root and returns its exit
// status once it ended. inR is the read end of the pipe g.stdin writes to
// (startProc takes it over). Signals from g.sigs are forwarded to it meanwhile.
func (g *guest) runMain(root string, spec *guestproto.Spec, inR *os.File, started func(pid int)) int {
	p, err := makePlan(root, spec)
	if err != nil {
		inR.Close()
		return g.fatal(err)
	}
	ps := &procSpec{plan: p, chroot: g.chroot, tty: spec.TTY, stdin: spec.Stdin, stdinR: inR, pts: g.pts,
		stdout: g.w.Stream(guestproto.TypeStdout), stderr: g.w.Stream(guestproto.TypeStderr)}
	g.mu.Lock()
	ps.win = g.windows[0]
	pr, err := startProc(g.rp, ps)
	if err == nil {
		g.mainProc, g.mainSpec, g.root = pr, spec, root
	}
	g.mu.Unlock()
	if err != nil {
		return g.fatal(err)
	}
	if started != nil {
		started(pr.pid)
	}
	for {
		select {
		case ws := <-pr.status:
			return pr.finish(ws, g.drain)
		case s := <-g.sigs:
			pr.signal(s)
		}
	}
}

// readConsole handles Dom0's frames: the spec, stdin, signals, window
// sizes and exec sessions.
func (g *guest) readConsole(con io.Reader) {
	rd := guestproto.NewReader(con)
	gotSpec := false
	var specs guestproto.SpecReader // a large spec comes in parts
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
		case guestproto.TypeSpecPart, guestproto.TypeSpec:
			if gotSpec {
				continue
			}
			s, err := specs.Frame(f)
			if s == nil && err == nil {
				continue // a part
			}
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
			g.stdin.Write(f.Payload)
		case guestproto.TypeStdinClose:
			g.stdin.Close()
		case guestproto.TypeSignal:
			var n int
			if _, err := fmt.Sscan(string(f.Payload), &n); err == nil && n > 0 && n < 65 {
				g.sigs <- syscall.Signal(n)
			}
		case guestproto.TypeWindow:
			g.window(f.Payload)
		case guestproto.TypeExec:
			g.startExec(f.Payload)
		case guestproto.TypeExecData:
			g.execData(f.Payload)
		case guestproto.TypeExecSignal:
			g.execSignal(f.Payload)
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
	// Room for the largest spec in parts (base64 and frame headers).
	rd := guestproto.NewReader(io.LimitReader(f, int64(guestproto.MaxSpec/3*4+(guestproto.MaxSpec/guestproto.MaxPayload+2)*guestproto.MaxLine)))
	var specs guestproto.SpecReader
	for {
		fr, err := rd.Next()
		if err != nil {
			g.w.WriteFrame(guestproto.TypeFatal, []byte(fmt.Sprintf("%s: no job spec frame", p)))
			return
		}
		if fr.Type == guestproto.TypeSpecPart {
			specs.Frame(fr)
			continue
		}
		if fr.Type == guestproto.TypeSpec {
			s, err := specs.Frame(fr)
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
