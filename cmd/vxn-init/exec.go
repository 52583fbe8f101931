package main

import (
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/guestserver"
)

// starter is vxn-init's guestserver.Starter: processes forked chrooted
// into the container root with the spec's user, environment, working
// directory and terminal.
type starter struct {
	rp *reaper
	// chroot is false only in tests (see procSpec.chroot).
	chroot bool
	// pts overrides the devpts directory for terminals (tests only).
	pts string
	// drain bounds how long output of leftover processes is still read
	// after a process exited (they may keep the pipes open).
	drain time.Duration

	mu   sync.Mutex
	root string // the container root, once set up
}

func (s *starter) setRoot(root string) {
	s.mu.Lock()
	s.root = root
	s.mu.Unlock()
}

// Start implements guestserver.Starter.
func (s *starter) Start(ps *guestserver.ProcSpec) (guestserver.Proc, error) {
	s.mu.Lock()
	root := s.root
	s.mu.Unlock()
	p, err := makePlan(root, ps.Spec)
	if err != nil {
		return nil, err
	}
	sp := &procSpec{plan: p, chroot: s.chroot, tty: ps.Spec.TTY, pts: s.pts,
		win: unix.Winsize{Row: ps.Window.Rows, Col: ps.Window.Cols}, stdout: ps.Stdout, stderr: ps.Stderr, drain: s.drain}
	if ps.Stdin != nil {
		sp.stdin = ps.Stdin
	}
	return startProc(s.rp, sp)
}

// Pid implements guestserver.Proc.
func (p *proc) Pid() int { return p.pid }

// Signal implements guestserver.Proc.
func (p *proc) Signal(signo int) { syscall.Kill(p.pid, syscall.Signal(signo)) }

// Kill implements guestserver.Proc.
func (p *proc) Kill() { syscall.Kill(p.pid, syscall.SIGKILL) }

// Resize implements guestserver.Proc: the kernel then sends SIGWINCH to the
// terminal's foreground process group.
func (p *proc) Resize(w guestproto.Window) { p.resize(unix.Winsize{Row: w.Rows, Col: w.Cols}) }

// Wait implements guestserver.Proc.
func (p *proc) Wait() (int, error) { return p.finish(<-p.status, p.drain), nil }
