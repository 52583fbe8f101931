// Package guestserver is the guest side of vxn's console protocol
// (pkg/guestproto), the one implementation that both vxn-init (the guest's
// PID 1) and the fake toolstack's guest (pkg/toolstack/faketoolstack) run:
// the Ready frame, the frame loop on the console, the job spec's assembly
// (one Spec frame or SpecPart frames, from the console or a file), the
// main process's Started frame, its stdin, signals and window sizes, exec
// sessions (Exec, ExecData, ExecSignal, ExecExit), and the end: the exec
// sessions killed and reported, then the exit status.
//
// What differs between guests is behind Starter (how a process is started:
// fork and exec with users, terminals and devpts in vxn-init, a Go function
// in the fake) and the Config hooks (preparing the container once the spec
// is known, the Started timings, where else the exit status goes).
package guestserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// Starter starts the processes of the container.
type Starter interface {
	// Start starts p and returns at once. Only failures to start are
	// errors; a *StartError carries docker's status (126/127). It is
	// called with the server's lock held: it must not call the server.
	Start(p *ProcSpec) (Proc, error)
}

// ProcSpec is a process to start: the main process (Session 0) or an exec
// session.
type ProcSpec struct {
	// Spec is the job spec. For an exec session it is the main spec with
	// the ExecSpec applied (see ExecJob).
	Spec *guestproto.Spec
	// Session is the exec session id; 0 is the main process.
	Session uint32
	// Window is the last terminal size Dom0 sent for this process (zero
	// when none yet); later ones come through Proc.Resize.
	Window guestproto.Window
	// Stdin is fed by Stdin frames (stream-0 ExecData for a session); nil
	// unless Spec.Stdin. It is closed once the process ended.
	Stdin *Input
	// Stdout and Stderr send Stdout and Stderr frames (ExecData streams 1
	// and 2 for a session).
	Stdout, Stderr io.Writer
}

// Proc is a started process.
type Proc interface {
	// Pid is the process id in the guest (reported in the Started frame).
	Pid() int
	// Signal forwards signal signo (1-64).
	Signal(signo int)
	// Kill ends the process at once: the container is ending.
	Kill()
	// Resize sets its terminal's size (no-op without a terminal).
	Resize(w guestproto.Window)
	// Wait waits until the process ended and its output is sent, and
	// returns its exit status (0-255, 128+n for signal n). A non-nil error
	// says the process could not be executed after all (a Starter that
	// learns it only then); the status then is docker's 126 or 127.
	Wait() (int, error)
}

// StartError is a failure to start a process with docker's exit status:
// 126 found but not executable, 127 not found.
type StartError struct {
	Status int
	Msg    string
}

// Error returns the message.
func (e *StartError) Error() string { return e.Msg }

// Config is what a guest tells the server about itself.
type Config struct {
	// Writer sends frames to Dom0 (the console's output side).
	Writer *guestproto.Writer
	// Starter starts the main process and exec sessions.
	Starter Starter
	// Ready is the payload of the Ready frame.
	Ready guestproto.ReadyInfo
	// Setup, when set, prepares the container once its spec arrived
	// (vxn-init: mounts, host name, network). An error ends the guest
	// with a Fatal frame and status 125 (or a StartError's).
	Setup func(spec *guestproto.Spec) error
	// Started, when set, gives the Started frame's payload for the main
	// process's pid; the default has only the pid.
	Started func(pid int) guestproto.StartedInfo
	// ReportExit, when set, runs before the Exit frame (vxn-init writes
	// the status to xenstore data/vxn-exit); false skips the frame.
	ReportExit func(code int) bool
	// KillWait bounds the wait for exec sessions killed when the main
	// process ended (default 2 s).
	KillWait time.Duration
}

// Server runs the guest side of the protocol for one boot.
type Server struct {
	cfg   Config
	w     *guestproto.Writer
	specs chan *guestproto.Spec
	sigs  chan int
	stdin *Input // the main process's (Stdin frames)

	mu       sync.Mutex
	mainSpec *guestproto.Spec
	mainProc Proc
	ended    bool // the main process ended: no more exec sessions
	sessions map[uint32]*session
	windows  map[uint32]guestproto.Window
	execs    sync.WaitGroup
}

type session struct {
	proc  Proc
	stdin *Input
}

// New returns a server; call ReadConsole in a goroutine, then Run.
func New(cfg Config) *Server {
	if cfg.KillWait == 0 {
		cfg.KillWait = 2 * time.Second
	}
	return &Server{cfg: cfg, w: cfg.Writer, specs: make(chan *guestproto.Spec, 1), sigs: make(chan int, 16),
		stdin: NewInput(), sessions: map[uint32]*session{}, windows: map[uint32]guestproto.Window{}}
}

// Logf sends a Log frame.
func (s *Server) Logf(format string, args ...any) {
	s.w.WriteFrame(guestproto.TypeLog, fmt.Appendf(nil, format, args...))
}

// Fatal reports a failure of the init itself as a Fatal frame and returns
// the exit status: a StartError's, else 125 (docker's "daemon error").
func (s *Server) Fatal(err error) int {
	code := 125
	var se *StartError
	if errors.As(err, &se) {
		code = se.Status
	}
	s.w.WriteFrame(guestproto.TypeFatal, []byte(err.Error()))
	return code
}

// Signal forwards signo to the main process (signals the init receives,
// a shutdown request). It is kept until the main process runs and dropped
// when 16 are pending.
func (s *Server) Signal(signo int) {
	select {
	case s.sigs <- signo:
	default:
	}
}

// Run sends Ready, waits for the job spec, prepares the container (Setup),
// runs the main process until it ends, then ends the exec sessions and
// reports the exit status, which it returns. When ctx is done before the
// spec arrived it returns 125 without Exit frame.
func (s *Server) Run(ctx context.Context) int {
	ready, _ := json.Marshal(s.cfg.Ready)
	s.w.WriteFrame(guestproto.TypeReady, ready)
	var spec *guestproto.Spec
	select {
	case spec = <-s.specs:
	case <-ctx.Done():
		s.stdin.Close()
		return 125
	}
	code := s.runSpec(spec)
	s.Finish(code)
	return code
}

func (s *Server) runSpec(spec *guestproto.Spec) int {
	if spec == nil {
		s.stdin.Close()
		return s.Fatal(errors.New("no job spec received"))
	}
	if s.cfg.Setup != nil {
		if err := s.cfg.Setup(spec); err != nil {
			s.stdin.Close()
			return s.Fatal(err)
		}
	}
	ps := &ProcSpec{Spec: spec, Stdout: s.w.Stream(guestproto.TypeStdout), Stderr: s.w.Stream(guestproto.TypeStderr)}
	if spec.Stdin {
		ps.Stdin = s.stdin
	} else {
		s.stdin.Close() // Stdin frames are dropped
	}
	s.mu.Lock()
	ps.Window = s.windows[0]
	p, err := s.start(ps)
	if err == nil {
		s.mainProc, s.mainSpec = p, spec
	}
	s.mu.Unlock()
	if err != nil {
		s.stdin.Close()
		return s.Fatal(err)
	}
	info := guestproto.StartedInfo{Pid: p.Pid()}
	if s.cfg.Started != nil {
		info = s.cfg.Started(p.Pid())
	}
	started, _ := json.Marshal(info)
	s.w.WriteFrame(guestproto.TypeStarted, started)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := p.Wait()
		done <- result{code, err}
	}()
	for {
		select {
		case r := <-done:
			s.stdin.Close()
			if r.err != nil {
				s.w.WriteFrame(guestproto.TypeFatal, []byte(r.err.Error()))
			}
			return r.code
		case n := <-s.sigs:
			p.Signal(n)
		}
	}
}

// start runs the Starter, turning a panic-free nil Proc into an error.
func (s *Server) start(ps *ProcSpec) (Proc, error) {
	p, err := s.cfg.Starter.Start(ps)
	if err == nil && p == nil {
		err = errors.New("guestserver: the starter returned no process")
	}
	return p, err
}

// Finish ends the exec sessions still running (each reported with its
// ExecExit, waiting at most Config.KillWait) and reports code: first
// Config.ReportExit, then the Exit frame. Run calls it; a guest that fails
// before Run calls it itself.
func (s *Server) Finish(code int) {
	s.mu.Lock()
	s.ended = true
	for _, se := range s.sessions {
		se.proc.Kill()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.execs.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.cfg.KillWait):
	}
	if s.cfg.ReportExit != nil && !s.cfg.ReportExit(code) {
		return
	}
	s.w.WriteExit(code)
}

// deliver hands over the first complete spec (from the console or a file).
func (s *Server) deliver(spec *guestproto.Spec) {
	select {
	case s.specs <- spec:
	default:
	}
}

// ReadConsole handles Dom0's frames from con until it ends: the spec,
// stdin, signals, window sizes and exec sessions. A console that ends
// before a spec arrived ends the guest ("no job spec received").
func (s *Server) ReadConsole(con io.Reader) {
	rd := guestproto.NewReader(con)
	gotSpec := false
	var specs guestproto.SpecReader // a large spec comes in parts
	for {
		f, err := rd.Next()
		if err != nil {
			if !gotSpec {
				s.deliver(nil)
			}
			return
		}
		switch f.Type {
		case guestproto.TypeSpecPart, guestproto.TypeSpec:
			if gotSpec {
				continue
			}
			spec, err := specs.Frame(f)
			if spec == nil && err == nil {
				continue // a part
			}
			if err != nil {
				s.w.WriteFrame(guestproto.TypeFatal, []byte(err.Error()))
				continue
			}
			gotSpec = true
			s.deliver(spec) // a spec from a file may have been first
		case guestproto.TypeStdin:
			s.stdin.Write(f.Payload)
		case guestproto.TypeStdinClose:
			s.stdin.Close()
		case guestproto.TypeSignal:
			if n, err := strconv.Atoi(strings.TrimSpace(string(f.Payload))); err == nil && n > 0 && n < 65 {
				s.Signal(n)
			}
		case guestproto.TypeWindow:
			s.window(f.Payload)
		case guestproto.TypeExec:
			s.startExec(f.Payload)
		case guestproto.TypeExecData:
			s.execData(f.Payload)
		case guestproto.TypeExecSignal:
			s.execSignal(f.Payload)
		}
	}
}

// ReadSpecFile reads the spec from the first Spec frame (after its
// SpecPart frames) in r, a file or device called name (vxn-init's
// vxn.spec=/dev/xvdc): the alternative to the console for toolstacks that
// cannot write to the console before the guest runs. Failures are Fatal
// frames naming the file.
func (s *Server) ReadSpecFile(r io.Reader, name string) {
	// Room for the largest spec in parts (base64 and frame headers).
	rd := guestproto.NewReader(io.LimitReader(r, int64(guestproto.MaxSpec/3*4+(guestproto.MaxSpec/guestproto.MaxPayload+2)*guestproto.MaxLine)))
	var specs guestproto.SpecReader
	for {
		f, err := rd.Next()
		if err != nil {
			s.w.WriteFrame(guestproto.TypeFatal, []byte(fmt.Sprintf("%s: no job spec frame", name)))
			return
		}
		switch f.Type {
		case guestproto.TypeSpecPart:
			specs.Frame(f)
		case guestproto.TypeSpec:
			spec, err := specs.Frame(f)
			if err != nil {
				s.w.WriteFrame(guestproto.TypeFatal, []byte(fmt.Sprintf("%s: %v", name, err)))
				return
			}
			s.deliver(spec)
			return
		}
	}
}

// ExecJob is the main spec with what an exec session changes: argv, user,
// terminal, stdin, and the environment and working directory when given.
func ExecJob(main *guestproto.Spec, es *guestproto.ExecSpec) *guestproto.Spec {
	j := *main
	j.Args, j.User, j.TTY, j.Stdin = es.Args, es.User, es.TTY, es.Stdin
	if len(es.Env) > 0 {
		j.Env = es.Env
	}
	if es.Cwd != "" {
		j.Cwd = es.Cwd
	}
	return &j
}

func (s *Server) execExit(e guestproto.ExecExit) {
	b, _ := json.Marshal(e)
	s.w.WriteFrame(guestproto.TypeExecExit, b)
}

// startExec starts the exec session of a TypeExec payload in the running
// container, or reports with an ExecExit why it cannot: status -1 for a bad
// spec, a container not running, a start failure; docker's 127 (not found)
// and 126 (not executable) from a StartError, the message then also in a
// Log frame.
func (s *Server) startExec(payload []byte) {
	es, err := guestproto.ParseExecSpec(payload)
	if err != nil {
		var id struct {
			ID uint32 `json:"id"`
		}
		if json.Unmarshal(payload, &id) == nil && id.ID != 0 {
			s.execExit(guestproto.ExecExit{ID: id.ID, Status: -1, Error: err.Error()})
		} else {
			s.Logf("%v", err)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.mainProc == nil || s.ended:
		s.execExit(guestproto.ExecExit{ID: es.ID, Status: -1, Error: "exec: the container is not running"})
		return
	case s.sessions[es.ID] != nil:
		s.execExit(guestproto.ExecExit{ID: es.ID, Status: -1, Error: fmt.Sprintf("exec: session %d is already running", es.ID)})
		return
	}
	ps := &ProcSpec{Spec: ExecJob(s.mainSpec, es), Session: es.ID, Window: s.windows[es.ID],
		Stdout: s.w.ExecStream(es.ID, guestproto.StreamStdout), Stderr: s.w.ExecStream(es.ID, guestproto.StreamStderr)}
	if es.Stdin {
		ps.Stdin = NewInput()
	}
	p, err := s.start(ps)
	if err != nil {
		if ps.Stdin != nil {
			ps.Stdin.Close()
		}
		s.execExit(s.startFailed(es.ID, -1, err))
		return
	}
	s.sessions[es.ID] = &session{proc: p, stdin: ps.Stdin}
	s.execs.Add(1)
	go func() {
		defer s.execs.Done()
		code, err := p.Wait()
		s.mu.Lock()
		delete(s.sessions, es.ID)
		delete(s.windows, es.ID)
		s.mu.Unlock()
		if ps.Stdin != nil {
			ps.Stdin.Close()
		}
		if err != nil {
			s.execExit(s.startFailed(es.ID, code, err))
			return
		}
		s.execExit(guestproto.ExecExit{ID: es.ID, Status: code})
	}()
}

// startFailed is the ExecExit of a session that could not be executed:
// a StartError's status (and a Log frame), else status.
func (s *Server) startFailed(id uint32, status int, err error) guestproto.ExecExit {
	e := guestproto.ExecExit{ID: id, Status: status, Error: err.Error()}
	var se *StartError
	if errors.As(err, &se) {
		e.Status = se.Status
		s.Logf("exec session %d: %v", id, err)
	}
	return e
}

// execData feeds a session's stdin (stream 0; empty data is EOF).
func (s *Server) execData(payload []byte) {
	d, err := guestproto.ParseExecData(payload)
	if err == nil && d.Stream != guestproto.StreamStdin {
		err = fmt.Errorf("exec data: session %d: stream %d is output, not input", d.ID, d.Stream)
	}
	if err != nil {
		s.Logf("%v", err)
		return
	}
	s.mu.Lock()
	se := s.sessions[d.ID]
	s.mu.Unlock()
	switch {
	case se == nil:
		// Ended already (its ExecExit is on the way), or never existed.
	case se.stdin == nil:
		// Started without stdin: the data is dropped, as docker does.
	case len(d.Data) == 0:
		se.stdin.Close()
	default:
		se.stdin.Write(d.Data)
	}
}

// execSignal forwards a TypeExecSignal to its session.
func (s *Server) execSignal(payload []byte) {
	id, signo, err := guestproto.ParseExecSignal(payload)
	if err != nil {
		s.Logf("%v", err)
		return
	}
	s.mu.Lock()
	se := s.sessions[id]
	s.mu.Unlock()
	if se == nil {
		s.Logf("exec signal %d for session %d: no such session", signo, id)
		return
	}
	se.proc.Signal(signo)
}

// window applies a TypeWindow payload to the main process or a session, and
// remembers it for a terminal opened later.
func (s *Server) window(payload []byte) {
	w, err := guestproto.ParseWindow(payload)
	if err != nil {
		s.Logf("%v", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.windows[w.ID] = w
	var p Proc
	if w.ID == 0 {
		p = s.mainProc
	} else if se := s.sessions[w.ID]; se != nil {
		p = se.proc
	}
	if p != nil {
		p.Resize(w)
	}
}

// Input is a process's standard input fed from console frames: Write
// never blocks (the console reader must not wait for a process that does
// not read), Read blocks until data or Close.
type Input struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
}

// NewInput returns an empty open Input.
func NewInput() *Input {
	in := &Input{}
	in.cond = sync.NewCond(&in.mu)
	return in
}

// Write queues a copy of b; after Close it is dropped.
func (in *Input) Write(b []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed || len(b) == 0 {
		return
	}
	in.buf = append(in.buf, b...)
	in.cond.Broadcast()
}

// Read reads queued data; io.EOF once closed and drained.
func (in *Input) Read(b []byte) (int, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for len(in.buf) == 0 && !in.closed {
		in.cond.Wait()
	}
	if len(in.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, in.buf)
	in.buf = in.buf[n:]
	if len(in.buf) == 0 {
		in.buf = nil
	}
	return n, nil
}

// Close ends the input once the queued data is read.
func (in *Input) Close() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	in.cond.Broadcast()
}
