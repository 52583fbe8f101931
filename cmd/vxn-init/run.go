package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestserver"
	"github.com/vxn-dev/vxn/pkg/termios"
)

// exitCode maps a wait status to the container's exit status (signal
// death is 128+n, as in a shell and docker).
func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 255
}

// reaper waits for every child (as PID 1 the init inherits all orphans)
// and hands the status of the processes it started to their waiters.
type reaper struct {
	mu    sync.Mutex
	procs map[int]chan syscall.WaitStatus
}

func newReaper() *reaper {
	r := &reaper{procs: map[int]chan syscall.WaitStatus{}}
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, syscall.SIGCHLD)
	go func() {
		tick := time.NewTicker(time.Second) // belt and braces against a missed SIGCHLD
		for {
			select {
			case <-sigc:
			case <-tick.C:
			}
			r.reap()
		}
	}()
	return r
}

func (r *reaper) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		if ws.Stopped() || ws.Continued() {
			continue
		}
		r.mu.Lock()
		c := r.procs[pid]
		delete(r.procs, pid)
		r.mu.Unlock()
		if c != nil {
			c <- ws
		}
	}
}

// fork runs ForkExec with the reaper locked, so that the child's status
// cannot be reaped before its waiter is registered.
func (r *reaper) fork(argv0 string, argv []string, attr *syscall.ProcAttr) (int, <-chan syscall.WaitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := syscall.ForkExec(argv0, argv, attr)
	if err != nil {
		return 0, nil, err
	}
	c := make(chan syscall.WaitStatus, 1)
	r.procs[pid] = c
	return pid, c, nil
}

// procSpec is a process to start from a plan: the main process or an exec
// session.
type procSpec struct {
	plan *plan
	// chroot runs the process chrooted into plan.Root (the guest); false
	// runs it on the host file system with paths under Root (tests).
	chroot bool
	// tty gives the process a new pty of the container's devpts as its
	// controlling terminal and stdin/stdout/stderr; Stdout gets all output.
	tty bool
	// pts is the devpts directory to open the terminal in; "" is the
	// container's /dev/pts.
	pts string
	// win is the terminal's initial size (tty only; zero = kernel default).
	win unix.Winsize
	// stdin, when set, is the process's input (copied into a pipe, or to
	// the terminal); otherwise stdin is /dev/null (with a terminal:
	// nothing is ever typed).
	stdin io.Reader
	// stdout and stderr receive the output (frame streams).
	stdout, stderr io.Writer
	// drain bounds how long output is read after the process exited.
	drain time.Duration
}

// proc is a started process.
type proc struct {
	pid    int
	status <-chan syscall.WaitStatus
	// master is the pty master (tty only).
	master *os.File
	outs   []*os.File // read ends of the output pipes, or the master
	pumps  sync.WaitGroup
	drain  time.Duration
}

// startProc starts s. Only start failures are errors (a
// *guestserver.StartError carries docker's 126/127).
func startProc(rp *reaper, s *procSpec) (*proc, error) {
	p := &proc{drain: s.drain}
	var files []*os.File // the child's 0, 1, 2
	var closeAfter []*os.File
	// in is the read end of the input pipe (no terminal), nil without
	// stdin; feed copies s.stdin into it once the process runs.
	var in, feed *os.File
	fail := func(err error) (*proc, error) {
		for _, f := range closeAfter {
			f.Close()
		}
		for _, f := range p.outs {
			f.Close()
		}
		if feed != nil {
			feed.Close()
		}
		return nil, err
	}
	if s.stdin != nil && !s.tty {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		in, feed = r, w
	}
	if s.tty {
		pts := s.pts
		if pts == "" {
			var err error
			if pts, err = resolveIn(s.plan.Root, "/dev/pts"); err != nil {
				return fail(err)
			}
		}
		master, slave, err := openPty(pts, &s.win)
		if err != nil {
			return fail(err)
		}
		p.master = master
		p.outs = append(p.outs, master)
		closeAfter = append(closeAfter, slave)
		files = []*os.File{slave, slave, slave}
	} else {
		stdin := in
		if stdin == nil {
			var err error
			if stdin, err = os.Open(os.DevNull); err != nil {
				return fail(err)
			}
		}
		closeAfter = append(closeAfter, stdin)
		outR, outW, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		p.outs = append(p.outs, outR)
		closeAfter = append(closeAfter, outW)
		errR, errW, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		p.outs = append(p.outs, errR)
		closeAfter = append(closeAfter, errW)
		files = []*os.File{stdin, outW, errW}
	}

	sys := &syscall.SysProcAttr{Setsid: true}
	if s.tty {
		sys.Setctty, sys.Ctty = true, 0
	}
	if os.Getuid() == 0 {
		id := s.plan.ID
		sys.Credential = &syscall.Credential{Uid: id.UID, Gid: id.GID, Groups: id.Groups}
		if sys.Credential.Groups == nil {
			sys.Credential.Groups = []uint32{}
		}
	}
	argv0, dir := s.plan.Path, s.plan.Cwd
	if s.chroot {
		sys.Chroot = s.plan.Root
	} else {
		var err error
		if dir, err = resolveIn(s.plan.Root, s.plan.Cwd); err != nil {
			return fail(err)
		}
		if len(argv0) > 0 && argv0[0] == '/' {
			if argv0, err = resolveIn(s.plan.Root, argv0); err != nil {
				return fail(err)
			}
		}
	}
	fds := make([]uintptr, len(files))
	for i, f := range files {
		fds[i] = f.Fd()
	}
	pid, status, err := rp.fork(argv0, s.plan.Args, &syscall.ProcAttr{Dir: dir, Env: s.plan.Env, Files: fds, Sys: sys})
	if err != nil {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR):
			return fail(&guestserver.StartError{Status: 127, Msg: fmt.Sprintf("exec %q: %v", s.plan.Args[0], err)})
		default:
			return fail(&guestserver.StartError{Status: 126, Msg: fmt.Sprintf("exec %q: %v", s.plan.Args[0], err)})
		}
	}
	for _, f := range closeAfter {
		f.Close()
	}
	p.pid, p.status = pid, status
	pump := func(f *os.File, w io.Writer) {
		defer p.pumps.Done()
		buf := make([]byte, 3<<10)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					io.Copy(io.Discard, f)
					return
				}
			}
			if err != nil {
				return // EOF; EIO from a master whose slave is closed
			}
		}
	}
	p.pumps.Add(len(p.outs))
	if s.tty {
		go pump(p.master, s.stdout)
		if s.stdin != nil {
			go copyToTerminal(p.master, s.stdin)
		}
	} else {
		go pump(p.outs[0], s.stdout)
		go pump(p.outs[1], s.stderr)
		if feed != nil {
			go copyToPipe(feed, s.stdin)
		}
	}
	return p, nil
}

// copyToTerminal copies input to a pty master and ends it with the
// terminal's EOF character, as a user's ^D: twice when the last line is
// unterminated (the first only ends that read).
func copyToTerminal(master *os.File, in io.Reader) {
	buf := make([]byte, 3<<10)
	last := byte('\n')
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if _, werr := master.Write(buf[:n]); werr != nil {
				return
			}
			last = buf[n-1]
		}
		if err != nil {
			break
		}
	}
	eof := []byte{4}
	if last != '\n' {
		eof = []byte{4, 4}
	}
	master.Write(eof)
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) { syscall.Kill(p.pid, sig) }

// resize sets the terminal size (the kernel sends SIGWINCH to the
// terminal's foreground process group).
func (p *proc) resize(ws unix.Winsize) {
	if p.master != nil {
		termios.SetSize(int(p.master.Fd()), ws.Row, ws.Col)
	}
}

// finish waits for the output after the process exited with ws: processes
// left behind may keep the pipes (or the terminal) open, so the output is
// read for at most drain more. It returns the exit status.
func (p *proc) finish(ws syscall.WaitStatus, drain time.Duration) int {
	deadline := time.Now().Add(drain)
	for _, f := range p.outs {
		f.SetReadDeadline(deadline)
	}
	p.pumps.Wait()
	for _, f := range p.outs {
		f.Close()
	}
	return exitCode(ws)
}

// openPty opens a new pty pair in the devpts instance mounted on pts (the
// container's, mounted by setupRoot with newinstance) and sets its size.
func openPty(pts string, ws *unix.Winsize) (master, slave *os.File, err error) {
	m, s, err := termios.OpenPty(filepath.Join(pts, "ptmx"), pts)
	if err != nil {
		return nil, nil, err
	}
	if ws.Row != 0 || ws.Col != 0 {
		termios.SetSize(int(m.Fd()), ws.Row, ws.Col)
	}
	return m, s, nil
}

// copyToPipe copies input to the process's stdin pipe until the input
// ends, then closes the pipe. When the process stops reading (the pipe is
// broken) the rest of the input is read and dropped.
func copyToPipe(w *os.File, in io.Reader) {
	defer w.Close()
	if _, err := io.Copy(w, in); err != nil {
		io.Copy(io.Discard, in)
	}
}
