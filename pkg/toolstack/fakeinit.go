package toolstack

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// Proc is a running fake container, as a Program sees it.
type Proc struct {
	// Spec is the job spec Dom0 sent.
	Spec *guestproto.Spec
	// Stdin is fed by Stdin frames (empty unless Spec.Stdin).
	Stdin io.Reader
	// Stdout and Stderr become Stdout and Stderr frames.
	Stdout, Stderr io.Writer
	// Signals delivers forwarded signal numbers (Signal frames, and 15 when
	// the domain is asked to shut down).
	Signals <-chan int
}

// Program is the container a FakeInit guest runs; it returns the exit status.
// It should return when ctx is done (the domain was destroyed).
type Program func(ctx context.Context, p *Proc) int

// FakeInit returns a GuestFunc that behaves like vxn-init on the console:
// some kernel noise, Ready, wait for the Spec, Started, the program's output
// as Stdout/Stderr frames, then Exit. Stdin, StdinClose and Signal frames are
// delivered to the program.
func FakeInit(prog Program) GuestFunc {
	return func(ctx context.Context, g *FakeGuest) {
		w := guestproto.NewWriter(g.Console)
		io.WriteString(g.Console, "[    0.000000] Linux version 6.1.0-fake (fake kernel noise)\n")
		ready, _ := json.Marshal(guestproto.ReadyInfo{Version: 1, UptimeMS: 1, InitMS: 1, Kernel: "6.1.0-fake"})
		if w.WriteFrame(guestproto.TypeReady, ready) != nil {
			return
		}
		specc := make(chan *guestproto.Spec, 1)
		sigc := make(chan int, 16)
		inR, inW := io.Pipe()
		go func() {
			r := guestproto.NewReader(g.Console)
			defer inW.Close()
			for {
				f, err := r.Next()
				if err != nil {
					return
				}
				switch f.Type {
				case guestproto.TypeSpec:
					s, err := guestproto.ParseSpec(f.Payload)
					if err != nil {
						w.WriteFrame(guestproto.TypeFatal, []byte("bad spec: "+err.Error()))
						s = nil
					}
					select {
					case specc <- s:
					default:
					}
				case guestproto.TypeStdin:
					inW.Write(f.Payload)
				case guestproto.TypeStdinClose:
					inW.Close()
				case guestproto.TypeSignal:
					n, _ := strconv.Atoi(string(f.Payload))
					select {
					case sigc <- n:
					default:
					}
				}
			}
		}()
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
		var stdin io.Reader = strings.NewReader("")
		if spec.Stdin {
			stdin = inR
		}
		code := prog(ctx, &Proc{Spec: spec, Stdin: stdin, Stdout: w.Stream(guestproto.TypeStdout),
			Stderr: w.Stream(guestproto.TypeStderr), Signals: sigc})
		if ctx.Err() != nil {
			return
		}
		w.WriteExit(code)
	}
}

// ScriptProgram is a Program interpreting argv as a few built-in commands,
// enough to exercise vxn without a real guest:
//
//	echo ARGS...        ARGS joined by spaces and a newline on stdout
//	echo-err ARGS...    the same on stderr
//	exit N / true / false
//	cat                 stdin to stdout
//	env / pwd / id      the spec's Env (one a line), Cwd, User ("root" if empty)
//	wait-signal         prints "waiting" and exits 128+n at the first signal n
//	hang                prints "hanging" and ignores signals until destroyed
//	spec                the spec as JSON on stdout
//
// Anything else prints "ARG0: not found" on stderr and exits 127.
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
	case "exit":
		if len(args) < 2 {
			return 0
		}
		n, err := strconv.Atoi(args[1])
		if err != nil {
			fmt.Fprintf(p.Stderr, "exit: %q: bad number\n", args[1])
			return 2
		}
		return n & 0xff
	case "cat":
		io.Copy(p.Stdout, p.Stdin)
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
		fmt.Fprintf(p.Stderr, "%s: not found\n", args[0])
		return 127
	}
	return 0
}
