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
	"sync/atomic"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/guestserver"
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

// Init returns a GuestFunc that behaves like vxn-init on the console: it
// runs the same protocol server (pkg/guestserver) after some kernel noise,
// with prog as the container's processes: Ready, the job spec, Started,
// the program's output as Stdout/Stderr frames, then the exit status in
// the xenstore key data/vxn-exit and an Exit frame. Stdin, StdinClose,
// Signal and Window frames are delivered to the program. Exec frames start
// exec sessions running the same program (argv from the ExecSpec)
// concurrently; their output is ExecData, their end ExecExit. When the main
// process ends, the sessions still running are cancelled (their ctx is
// done) and reported before the Exit frame. A shutdown request is signal
// 15 to the main process.
func Init(prog Program) GuestFunc {
	return func(ctx context.Context, g *Guest) {
		io.WriteString(g.Console, "[    0.000000] Linux version 6.1.0-fake (fake kernel noise)\n")
		st := &fakeStarter{ctx: ctx, prog: prog}
		srv := guestserver.New(guestserver.Config{
			Writer:  guestproto.NewWriter(g.Console),
			Starter: st,
			Ready:   guestproto.ReadyInfo{Version: 1, UptimeMS: 1, InitMS: 1, Kernel: "6.1.0-fake"},
			Started: func(pid int) guestproto.StartedInfo { return guestproto.StartedInfo{UptimeMS: 2, InitMS: 1, Pid: pid} },
			ReportExit: func(code int) bool {
				if ctx.Err() != nil {
					return false // destroyed: nobody is left to tell
				}
				g.XenstoreWrite("data/vxn-exit", strconv.Itoa(code))
				return !st.dropExit.Load()
			},
		})
		go srv.ReadConsole(g.Console)
		go func() {
			select {
			case <-g.ShutdownRequested:
				srv.Signal(15)
			case <-ctx.Done():
			}
		}()
		srv.Run(ctx)
	}
}

// fakeStarter runs a Program for every process of the container.
type fakeStarter struct {
	ctx      context.Context
	prog     Program
	dropExit atomic.Bool // the main process asked for no Exit frame
}

// fakeProc is a running Program.
type fakeProc struct {
	p      *Proc
	cancel context.CancelFunc
	sigs   chan int
	done   chan struct{}
	code   int

	mu  sync.Mutex
	win guestproto.Window
}

// Start implements guestserver.Starter: the program runs in a goroutine.
func (st *fakeStarter) Start(ps *guestserver.ProcSpec) (guestserver.Proc, error) {
	ctx, cancel := context.WithCancel(st.ctx)
	fp := &fakeProc{cancel: cancel, sigs: make(chan int, 16), done: make(chan struct{}), win: ps.Window}
	p := &Proc{Spec: ps.Spec, Session: ps.Session, Stdin: strings.NewReader(""), Signals: fp.sigs,
		Window: fp.window, Stdout: ps.Stdout, Stderr: ps.Stderr}
	if ps.Stdin != nil {
		p.Stdin = ps.Stdin
		context.AfterFunc(ctx, ps.Stdin.Close) // a destroyed domain's input ends
	}
	if ps.Spec.TTY {
		p.Stdout = onlcr{p.Stdout}
		p.Stderr = p.Stdout
	}
	fp.p = p
	go func() {
		defer close(fp.done)
		defer cancel()
		fp.code = st.prog(ctx, p)
		if p.Session == 0 && p.DropExit {
			st.dropExit.Store(true)
		}
	}()
	return fp, nil
}

func (fp *fakeProc) window() guestproto.Window {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.win
}

// Pid implements guestserver.Proc: the main process is 2, sessions 2+id.
func (fp *fakeProc) Pid() int { return 2 + int(fp.p.Session) }

// Signal implements guestserver.Proc: the signal goes to Proc.Signals.
func (fp *fakeProc) Signal(signo int) {
	select {
	case fp.sigs <- signo:
	default:
	}
}

// Kill implements guestserver.Proc: the program's ctx is done.
func (fp *fakeProc) Kill() { fp.cancel() }

// Resize implements guestserver.Proc.
func (fp *fakeProc) Resize(w guestproto.Window) {
	fp.mu.Lock()
	fp.win = w
	fp.mu.Unlock()
}

// Wait implements guestserver.Proc; a session's StartFailed is a
// StartError.
func (fp *fakeProc) Wait() (int, error) {
	<-fp.done
	if fp.p.Session == 0 {
		return fp.code, nil
	}
	if fp.p.startErr != "" {
		return fp.code & 0xff, &guestserver.StartError{Status: fp.code & 0xff, Msg: fp.p.startErr}
	}
	return fp.code & 0xff, nil
}

// onlcr turns "\n" into "\r\n", as a terminal's output processing does.
type onlcr struct{ w io.Writer }

func (o onlcr) Write(p []byte) (int, error) {
	if _, err := o.w.Write(bytes.ReplaceAll(p, []byte("\n"), []byte("\r\n"))); err != nil {
		return 0, err
	}
	return len(p), nil
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
