package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// runner starts a plan and streams its output as frames.
type runner struct {
	w *guestproto.Writer
	// chroot runs the entrypoint chrooted into plan.Root (the guest); false
	// runs it on the host file system with paths under Root (tests).
	chroot bool
	// stdin is the container's stdin; nil means /dev/null.
	stdin *os.File
	// signals are forwarded to the entrypoint.
	signals <-chan syscall.Signal
	// drain bounds how long output of leftover processes is still read
	// after the entrypoint exited (they may keep the pipes open).
	drain time.Duration
	// started is called with the pid once the entrypoint is executing.
	started func(pid int)
}

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

// run executes p and returns its exit status. Output goes to r.w as
// Stdout/Stderr frames while the process runs. Only start failures are
// errors (an *execError carries docker's 126/127).
func (r *runner) run(p *plan) (int, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	stdin := r.stdin
	if stdin == nil {
		if stdin, err = os.Open(os.DevNull); err != nil {
			return 0, err
		}
		defer stdin.Close()
	}
	sys := &syscall.SysProcAttr{Setsid: true}
	if os.Getuid() == 0 {
		sys.Credential = &syscall.Credential{Uid: p.ID.UID, Gid: p.ID.GID, Groups: p.ID.Groups}
		if sys.Credential.Groups == nil {
			sys.Credential.Groups = []uint32{}
		}
	}
	argv0, dir := p.Path, p.Cwd
	if r.chroot {
		sys.Chroot = p.Root
	} else {
		if dir, err = resolveIn(p.Root, p.Cwd); err != nil {
			return 0, err
		}
		if len(argv0) > 0 && argv0[0] == '/' {
			if argv0, err = resolveIn(p.Root, argv0); err != nil {
				return 0, err
			}
		}
	}
	sigc := make(chan os.Signal, 16)
	signal.Notify(sigc, syscall.SIGCHLD)
	defer signal.Stop(sigc)

	pid, err := syscall.ForkExec(argv0, p.Args, &syscall.ProcAttr{
		Dir:   dir,
		Env:   p.Env,
		Files: []uintptr{stdin.Fd(), outW.Fd(), errW.Fd()},
		Sys:   sys,
	})
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR):
			return 0, &execError{127, fmt.Sprintf("exec %q: %v", p.Args[0], err)}
		default:
			return 0, &execError{126, fmt.Sprintf("exec %q: %v", p.Args[0], err)}
		}
	}
	if r.started != nil {
		r.started(pid)
	}
	pumps := make(chan struct{}, 2)
	pump := func(f *os.File, t guestproto.Type) {
		defer func() { pumps <- struct{}{} }()
		buf := make([]byte, guestproto.ChunkSize)
		s := r.w.Stream(t)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				if _, werr := s.Write(buf[:n]); werr != nil {
					io.Copy(io.Discard, f)
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go pump(outR, guestproto.TypeStdout)
	go pump(errR, guestproto.TypeStderr)

	var status syscall.WaitStatus
	for exited := false; !exited; {
		select {
		case <-sigc:
		case s := <-r.signals:
			syscall.Kill(pid, s)
			continue
		case <-time.After(time.Second): // belt and braces against a missed SIGCHLD
		}
		for {
			var ws syscall.WaitStatus
			wpid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if wpid <= 0 || err != nil {
				break
			}
			if wpid == pid {
				status, exited = ws, true
			}
		}
	}
	deadline := time.Now().Add(r.drain)
	outR.SetReadDeadline(deadline)
	errR.SetReadDeadline(deadline)
	<-pumps
	<-pumps
	outR.Close()
	errR.Close()
	return exitCode(status), nil
}
