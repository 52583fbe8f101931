package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// execExit sends a session's ExecExit frame.
func (g *guest) execExit(e guestproto.ExecExit) {
	b, _ := json.Marshal(e)
	g.w.WriteFrame(guestproto.TypeExecExit, b)
}

// logLine sends a Log frame whatever vxn.debug says (for errors Dom0 must
// see).
func (g *guest) logLine(format string, args ...any) {
	g.w.WriteFrame(guestproto.TypeLog, fmt.Appendf(nil, format, args...))
}

// execSpec is the main spec with what an exec session changes: argv, user,
// terminal, stdin, and the environment and working directory when given.
func execSpec(main *guestproto.Spec, es *guestproto.ExecSpec) *guestproto.Spec {
	s := *main
	s.Args, s.User, s.TTY, s.Stdin = es.Args, es.User, es.TTY, es.Stdin
	if len(es.Env) > 0 {
		s.Env = es.Env
	}
	if es.Cwd != "" {
		s.Cwd = es.Cwd
	}
	return &s
}

// startExec starts the exec session of a TypeExec payload in the running
// container, or reports with an ExecExit why it cannot: status -1 for a bad
// spec, a container not running, a user that does not resolve; docker's
// 127 (not found) and 126 (not executable) when the program cannot be
// executed, the message then also in a Log frame.
func (g *guest) startExec(payload []byte) {
	es, err := guestproto.ParseExecSpec(payload)
	if err != nil {
		var id struct {
			ID uint32 `json:"id"`
		}
		if json.Unmarshal(payload, &id) == nil && id.ID != 0 {
			g.execExit(guestproto.ExecExit{ID: id.ID, Status: -1, Error: err.Error()})
		} else {
			g.logLine("%v", err)
		}
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.mainProc == nil || g.ended:
		g.execExit(guestproto.ExecExit{ID: es.ID, Status: -1, Error: "exec: the container is not running"})
		return
	case g.sessions[es.ID] != nil:
		g.execExit(guestproto.ExecExit{ID: es.ID, Status: -1, Error: fmt.Sprintf("exec: session %d is already running", es.ID)})
		return
	}
	fail := func(err error) {
		e := guestproto.ExecExit{ID: es.ID, Status: -1, Error: err.Error()}
		var ee *execError
		if errors.As(err, &ee) {
			e.Status = ee.code
			g.logLine("exec session %d: %v", es.ID, err)
		}
		g.execExit(e)
	}
	p, err := makePlan(g.root, execSpec(g.mainSpec, es))
	if err != nil {
		fail(err)
		return
	}
	ps := &procSpec{plan: p, chroot: g.chroot, tty: es.TTY, stdin: es.Stdin, pts: g.pts, win: g.windows[es.ID],
		stdout: g.w.ExecStream(es.ID, guestproto.StreamStdout), stderr: g.w.ExecStream(es.ID, guestproto.StreamStderr)}
	pr, err := startProc(g.rp, ps)
	if err != nil {
		fail(err)
		return
	}
	g.sessions[es.ID] = pr
	g.execs.Add(1)
	go func() {
		defer g.execs.Done()
		code := pr.finish(<-pr.status, g.drain)
		g.mu.Lock()
		delete(g.sessions, es.ID)
		delete(g.windows, es.ID)
		g.mu.Unlock()
		g.execExit(guestproto.ExecExit{ID: es.ID, Status: code})
	}()
}

// execData feeds a session's stdin (stream 0; empty data is EOF).
func (g *guest) execData(payload []byte) {
	d, err := guestproto.ParseExecData(payload)
	if err == nil && d.Stream != guestproto.StreamStdin {
		err = fmt.Errorf("exec data: session %d: stream %d is output, not input", d.ID, d.Stream)
	}
	if err != nil {
		g.logLine("%v", err)
		return
	}
	g.mu.Lock()
	p := g.sessions[d.ID]
	g.mu.Unlock()
	switch {
	case p == nil:
		// Ended already (its ExecExit is on the way), or never existed.
	case p.in == nil:
		// Started without stdin: the data is dropped, as docker does.
	case len(d.Data) == 0:
		p.in.Close()
	default:
		p.in.Write(d.Data)
	}
}

// execSignal forwards a TypeExecSignal to its session.
func (g *guest) execSignal(payload []byte) {
	id, signo, err := guestproto.ParseExecSignal(payload)
	if err != nil {
		g.logLine("%v", err)
		return
	}
	g.mu.Lock()
	p := g.sessions[id]
	g.mu.Unlock()
	if p == nil {
		g.logLine("exec signal %d for session %d: no such session", signo, id)
		return
	}
	p.signal(syscall.Signal(signo))
}

// window applies a TypeWindow payload to the main process or a session, and
// remembers it for a terminal opened later.
func (g *guest) window(payload []byte) {
	w, err := guestproto.ParseWindow(payload)
	if err != nil {
		g.logLine("%v", err)
		return
	}
	ws := unix.Winsize{Row: w.Rows, Col: w.Cols}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.windows[w.ID] = ws
	p := g.mainProc
	if w.ID != 0 {
		p = g.sessions[w.ID]
	}
	if p != nil {
		p.resize(ws)
	}
}
