package faketoolstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// Proc is a running fake process (the container's main process or an exec
// session), as a Program sees it.
type Proc struct {
	// Spec is the job spec Dom0 sent. For an exec session it is built from
	// the ExecSpec: Args, User, TTY and Stdin as given, Env and Cwd
	// defaulting to the main process's, the other fields the main spec's.
	Spec *guestproto.Spec
	// Session is the exec session id; 0 is the main process.
	Session uint32
	// Stdin is fed by Stdin frames (stream-0 ExecData for a session); it
	// is empty unless Spec.Stdin.
	Stdin io.Reader
	// Stdout and Stderr become Stdout and Stderr frames (ExecData streams
	// 1 and 2). With Spec.TTY both go to stdout, with "\n" turned into
	// "\r\n" as a terminal's ONLCR does (there is no input echo).
	Stdout, Stderr io.Writer
	// Signals delivers forwarded signal numbers (Signal or ExecSignal
	// frames, and 15 to the main process when the domain is asked to shut
	// down).
	Signals <-chan int
	// Window returns the last terminal size Dom0 sent for this process
	// (zero when none).
	Window func() guestproto.Window
	// DropExit, set by the main process's Program, makes the fake init
	// skip the Exit frame as if the console had lost it: only the xenstore
	// key data/vxn-exit then carries the status.
	DropExit bool

	startErr string
}

// StartFailed reports that the process could not be executed (status 127:
// not found, 126: not executable) and returns status. In an exec session
// the fake init then sends msg as a Log frame and in the ExecExit's Error,
// as vxn-init does; for the main process msg goes to stderr.
func (p *Proc) StartFailed(status int, msg string) int {
	if p.Session == 0 {
		fmt.Fprintln(p.Stderr, msg)
		return status
	}
	p.startErr = msg
	return status
}

// Program is the container an Init guest runs; it returns the exit status.
// It should return when ctx is done (the domain was destroyed, or for an
// exec session: the main process ended).
type Program func(ctx context.Context, p *Proc) int

// Init returns a GuestFunc that behaves like vxn-init on the console:
// some kernel noise, Ready, wait for the Spec, Started, the program's output
// as Stdout/Stderr frames, then the exit status in the xenstore key
// data/vxn-exit and an Exit frame. Stdin, StdinClose, Signal and Window
// frames are delivered to the program. Exec frames start exec sessions
// running the same program (argv from the ExecSpec) concurrently; their
// output is ExecData, their end ExecExit. When the main process ends, the
// sessions still running are cancelled (their ctx is done) and reported
// before the Exit frame.
func Init(prog Program) GuestFunc {
	return func(ctx context.Context, g *Guest) {
		fi := &fakeInit{g: g, prog: prog, w: guestproto.NewWriter(g.Console),
			sessions: map[uint32]*fakeSession{}, windows: map[uint32]guestproto.Window{}}
		fi.run(ctx)
	}
}

type fakeInit struct {
	g    *Guest
	prog Program
	w    *guestproto.Writer

	mu       sync.Mutex
	main     *guestproto.Spec // set once the main process runs
	ended    bool             // main process ended: no more sessions
	sessions map[uint32]*fakeSession
	windows  map[uint32]guestproto.Window
	wg       sync.WaitGroup // running sessions
	execCtx  context.Context
}

type fakeSession struct {
	stdin *bufPipe
	sigs  chan int
}

func (fi *fakeInit) window(id uint32) func() guestproto.Window {
	return func() guestproto.Window {
		fi.mu.Lock()
		defer fi.mu.Unlock()
		return fi.windows[id]
	}
}

func (fi *fakeInit) run(ctx context.Context) {
	w, g := fi.w, fi.g
	io.WriteString(g.Console, "[    0.000000] Linux version 6.1.0-fake (fake kernel noise)\n")
	ready, _ := json.Marshal(guestproto.ReadyInfo{Version: 1, UptimeMS: 1, InitMS: 1, Kernel: "6.1.0-fake"})
	if w.WriteFrame(guestproto.TypeReady, ready) != nil {
		return
	}
	specc := make(chan *guestproto.Spec, 1)
	sigc := make(chan int, 16)
	stdin := newBufPipe()
	execCtx, cancelExec := context.WithCancel(ctx)
	defer cancelExec()
	fi.execCtx = execCtx
	go func() {
		<-ctx.Done()
		stdin.Close()
	}()
	go fi.readConsole(specc, sigc, stdin)
	go func() {
		select {
		case <-g.ShutdownRequested:
			sigc <- 15
		case <-ctx.Done():
		}
	}()
	var spec *guestproto.Spec
	select {
	case spec = <-specc:
	case <-ctx.Done():
		return
	}
	if spec == nil {
		w.WriteExit(125)
		return
	}
	started, _ := json.Marshal(guestproto.StartedInfo{UptimeMS: 2, InitMS: 1, Pid: 2})
	w.WriteFrame(guestproto.TypeStarted, started)
	fi.mu.Lock()
	fi.main = spec
	fi.mu.Unlock()
	p := &Proc{Spec: spec, Stdin: strings.NewReader(""), Signals: sigc, Window: fi.window(0)}
	if spec.Stdin {
		p.Stdin = stdin
	}
	p.Stdout, p.Stderr = w.Stream(guestproto.TypeStdout), w.Stream(guestproto.TypeStderr)
	if spec.TTY {
		p.Stdout = onlcr{p.Stdout}
		p.Stderr = p.Stdout
	}
	code := fi.prog(ctx, p)
	// The container ends with its main process: end the exec sessions.
	fi.mu.Lock()
	fi.ended = true
	fi.mu.Unlock()
	cancelExec()
	fi.wg.Wait()
	if ctx.Err() != nil {
		return
	}
	g.XenstoreWrite("data/vxn-exit", strconv.Itoa(code))
	if !p.DropExit {
		w.WriteExit(code)
	}
}

// readConsole handles Dom0's frames until the console closes.
func (fi *fakeInit) readConsole(specc chan<- *guestproto.Spec, sigc chan<- int, stdin *bufPipe) {
	w := fi.w
	r := guestproto.NewReader(fi.g.Console)
	defer stdin.Close()
	var specs guestproto.SpecReader // a large spec comes in parts
	for {
		f, err := r.Next()
		if err != nil {
			return
		}
		switch f.Type {
		case guestproto.TypeSpecPart:
			specs.Frame(f)
		case guestproto.TypeSpec:
			s, err := specs.Frame(f)
			if err != nil {
				w.WriteFrame(guestproto.TypeFatal, []byte("bad spec: "+err.Error()))
				s = nil
			}
			select {
			case specc <- s:
			default:
			}
		case guestproto.TypeStdin:
			stdin.Write(f.Payload)
		case guestproto.TypeStdinClose:
			stdin.Close()
		case guestproto.TypeSignal:
			n, _ := strconv.Atoi(string(f.Payload))
			select {
			case sigc <- n:
			default:
			}
		case guestproto.TypeWindow:
			win, err := guestproto.ParseWindow(f.Payload)
			if err != nil {
				fi.logf("%v", err)
				continue
			}
			fi.mu.Lock()
			fi.windows[win.ID] = win
			fi.mu.Unlock()
		case guestproto.TypeExec:
			fi.startExec(f.Payload)
		case guestproto.TypeExecData:
			d, err := guestproto.ParseExecData(f.Payload)
			if err != nil || d.Stream != guestproto.StreamStdin {
				fi.logf("exec data: %v", err)
				continue
			}
			fi.mu.Lock()
			s := fi.sessions[d.ID]
			fi.mu.Unlock()
			switch {
			case s == nil:
				fi.logf("exec data for session %d: no such session", d.ID)
			case len(d.Data) == 0:
				s.stdin.Close()
			default:
				s.stdin.Write(d.Data)
			}
		case guestproto.TypeExecSignal:
			id, n, err := guestproto.ParseExecSignal(f.Payload)
			if err != nil {
				fi.logf("%v", err)
				continue
			}
			fi.mu.Lock()
			s := fi.sessions[id]
			fi.mu.Unlock()
			if s == nil {
				fi.logf("exec signal for session %d: no such session", id)
				continue
			}
			select {
			case s.sigs <- n:
			default:
			}
		}
	}
}

func (fi *fakeInit) logf(format string, args ...any) {
	fi.w.WriteFrame(guestproto.TypeLog, fmt.Appendf(nil, format, args...))
}

func (fi *fakeInit) execExit(e guestproto.ExecExit) {
	b, _ := json.Marshal(e)
	fi.w.WriteFrame(guestproto.TypeExecExit, b)
}

// startExec starts the session described by payload, or reports why not.
func (fi *fakeInit) startExec(payload []byte) {
	es, err := guestproto.ParseExecSpec(payload)
	if err != nil {
		var id struct {
			ID uint32 `json:"id"`
		}
		if json.Unmarshal(payload, &id) == nil && id.ID != 0 {
			fi.execExit(guestproto.ExecExit{ID: id.ID, Status: -1, Error: err.Error()})
		} else {
			fi.logf("%v", err)
		}
		return
	}
	fi.mu.Lock()
	defer fi.mu.Unlock()
	switch {
	case fi.main == nil || fi.ended:
		fi.execExit(guestproto.ExecExit{ID: es.ID, Status: -1, Error: "exec: the container is not running"})
		return
	case fi.sessions[es.ID] != nil:
		fi.execExit(guestproto.ExecExit{ID: es.ID, Status: -1, Error: fmt.Sprintf("exec: session %d is already running", es.ID)})
		return
	}
	spec := *fi.main
	spec.Args, spec.User, spec.TTY, spec.Stdin = es.Args, es.User, es.TTY, es.Stdin
	if len(es.Env) > 0 {
		spec.Env = es.Env
	}
	if es.Cwd != "" {
		spec.Cwd = es.Cwd
	}
	s := &fakeSession{stdin: newBufPipe(), sigs: make(chan int, 16)}
	fi.sessions[es.ID] = s
	p := &Proc{Spec: &spec, Session: es.ID, Stdin: strings.NewReader(""), Signals: s.sigs, Window: fi.window(es.ID),
		Stdout: fi.w.ExecStream(es.ID, guestproto.StreamStdout), Stderr: fi.w.ExecStream(es.ID, guestproto.StreamStderr)}
	if es.Stdin {
		p.Stdin = s.stdin
	}
	if es.TTY {
		p.Stdout = onlcr{p.Stdout}
		p.Stderr = p.Stdout
	}
	ctx := fi.execCtx
	fi.wg.Add(1)
	go func() {
		defer fi.wg.Done()
		stop := context.AfterFunc(ctx, func() { s.stdin.Close() })
		defer stop()
		code := fi.prog(ctx, p)
		fi.mu.Lock()
		delete(fi.sessions, es.ID)
		fi.mu.Unlock()
		s.stdin.Close()
		e := guestproto.ExecExit{ID: es.ID, Status: code & 0xff}
		if p.startErr != "" {
			fi.logf("exec session %d: %s", es.ID, p.startErr)
			e.Error = p.startErr
		}
		fi.execExit(e)
	}()
}

// onlcr turns "\n" into "\r\n", as a terminal's output processing does.
type onlcr struct{ w io.Writer }

func (o onlcr) Write(p []byte) (int, error) {
	if _, err := o.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// bufPipe is an in-memory pipe whose writes never block (the console
// reader must not wait for a slow program).
type bufPipe struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
}

func newBufPipe() *bufPipe {
	p := &bufPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *bufPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.closed {
		p.cond.Wait()
	}
	if len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	return n, nil
}

func (p *bufPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, io.ErrClosedPipe
	}
	p.buf = append(p.buf, b...)
	p.cond.Broadcast()
	return len(b), nil
}

func (p *bufPipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.cond.Broadcast()
	return nil
}

// ScriptProgram is a Program interpreting argv as a few built-in commands,
// enough to exercise vxn without a real guest:
//
//	echo ARGS...        ARGS joined by spaces and a newline on stdout
//	echo-err ARGS...    the same on stderr
//	exit N / true / false
//	sh -c 'CMD ARGS'    CMD ARGS split at blanks (quotes removed), run as above
//	cat                 stdin to stdout
//	sleep N             waits N seconds (exits 128+n at a signal n)
//	env / pwd / id      the spec's Env (one a line), Cwd, User ("root" if empty)
//	tty                 "/dev/pts/0" with a terminal, else "not a tty" and exit 1
//	stty size           the terminal size "ROWS COLS" from Window frames
//	wait-signal         prints "waiting" and exits 128+n at the first signal n
//	hang                prints "hanging" and ignores signals until destroyed
//	spec                the spec as JSON on stdout
//	lose-exit N         exits N without an Exit frame (main process only;
//	                    the status is then only in xenstore data/vxn-exit)
//
// Anything else is not found: exit 127 with "ARG0: not found" on stderr for
// the main process, and for an exec session the ExecExit error
// `exec: "ARG0": executable file not found in $PATH`. A path under /etc/
// exists but is not executable: 126.
func ScriptProgram(ctx context.Context, p *Proc) int {
	args := p.Spec.Args
	switch args[0] {
	case "echo":
		fmt.Fprintln(p.Stdout, strings.Join(args[1:], " "))
	case "echo-err":
		fmt.Fprintln(p.Stderr, strings.Join(args[1:], " "))
	case "true":
	case "false":
		return 1
	case "exit", "lose-exit":
		p.DropExit = args[0] == "lose-exit" && p.Session == 0
		if len(args) < 2 {
			return 0
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			fmt.Fprintf(p.Stderr, "exit: %q: bad number\n", args[1])
			return 2
		}
		return n & 0xff
	case "sh":
		if len(args) < 3 || args[1] != "-c" {
			fmt.Fprintln(p.Stderr, "sh: only sh -c 'COMMAND' is supported")
			return 2
		}
		f := strings.Fields(strings.NewReplacer("'", "", `"`, "").Replace(args[2]))
		if len(f) == 0 {
			return 0
		}
		sub := *p.Spec
		sub.Args = f
		q := *p
		q.Spec = &sub
		code := ScriptProgram(ctx, &q)
		p.DropExit = q.DropExit
		return code
	case "cat":
		io.Copy(p.Stdout, p.Stdin)
	case "sleep":
		d := 0.0
		if len(args) > 1 {
			var err error
			if d, err = strconv.ParseFloat(args[1], 64); err != nil || d < 0 {
				fmt.Fprintf(p.Stderr, "sleep: invalid time interval %q\n", args[1])
				return 1
			}
		}
		t := time.NewTimer(time.Duration(d * float64(time.Second)))
		defer t.Stop()
		select {
		case <-t.C:
		case n := <-p.Signals:
			return 128 + n
		case <-ctx.Done():
			return 137
		}
	case "env":
		for _, e := range p.Spec.Env {
			fmt.Fprintln(p.Stdout, e)
		}
	case "pwd":
		cwd := p.Spec.Cwd
		if cwd == "" {
			cwd = "/"
		}
		fmt.Fprintln(p.Stdout, cwd)
	case "id":
		u := p.Spec.User
		if u == "" {
			u = "root"
		}
		fmt.Fprintln(p.Stdout, u)
	case "tty":
		if !p.Spec.TTY {
			fmt.Fprintln(p.Stdout, "not a tty")
			return 1
		}
		fmt.Fprintln(p.Stdout, "/dev/pts/0")
	case "stty":
		if len(args) != 2 || args[1] != "size" {
			fmt.Fprintln(p.Stderr, "stty: only stty size is supported")
			return 1
		}
		if !p.Spec.TTY {
			fmt.Fprintln(p.Stderr, "stty: standard input: Not a tty")
			return 1
		}
		win := p.Window()
		fmt.Fprintf(p.Stdout, "%d %d\n", win.Rows, win.Cols)
	case "spec":
		b, _ := json.Marshal(p.Spec)
		fmt.Fprintf(p.Stdout, "%s\n", b)
	case "wait-signal":
		fmt.Fprintln(p.Stdout, "waiting")
		select {
		case n := <-p.Signals:
			return 128 + n
		case <-ctx.Done():
			return 137
		}
	case "hang":
		fmt.Fprintln(p.Stdout, "hanging")
		<-ctx.Done()
		return 137
	default:
		if strings.HasPrefix(args[0], "/etc/") {
			return p.StartFailed(126, fmt.Sprintf("exec: %q: permission denied", args[0]))
		}
		if p.Session == 0 {
			fmt.Fprintf(p.Stderr, "%s: not found\n", args[0])
			return 127
		}
		return p.StartFailed(127, fmt.Sprintf("exec: %q: executable file not found in $PATH", args[0]))
	}
	return 0
}
