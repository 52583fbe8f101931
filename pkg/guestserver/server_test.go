package guestserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// echoStarter starts processes that copy their stdin to stdout (or print
// their argv without stdin) and exit with the status of "exit N" or at the
// first signal (128+n) or kill (137); "missing" is a StartError.
type echoStarter struct {
	mu    sync.Mutex
	specs []*ProcSpec
}

type echoProc struct {
	ps     *ProcSpec
	sigs   chan int
	done   chan int
	mu     sync.Mutex
	resize []guestproto.Window
}

func (s *echoStarter) Start(ps *ProcSpec) (Proc, error) {
	if ps.Spec.Args[0] == "missing" {
		return nil, &StartError{Status: 127, Msg: `exec: "missing": executable file not found in $PATH`}
	}
	s.mu.Lock()
	s.specs = append(s.specs, ps)
	s.mu.Unlock()
	p := &echoProc{ps: ps, sigs: make(chan int, 1), done: make(chan int, 1)}
	go func() {
		args := ps.Spec.Args
		switch {
		case args[0] == "exit":
			var n int
			fmt.Sscan(args[1], &n)
			p.done <- n
		case ps.Stdin != nil:
			io.Copy(ps.Stdout, ps.Stdin)
			p.done <- 0
		case args[0] == "wait":
			fmt.Fprintln(ps.Stdout, "waiting")
			p.done <- 128 + <-p.sigs
		default:
			fmt.Fprintln(ps.Stdout, strings.Join(args, " "))
			p.done <- 0
		}
	}()
	return p, nil
}

func (p *echoProc) Pid() int { return 2 }
func (p *echoProc) Signal(n int) {
	select {
	case p.sigs <- n:
	default:
	}
}
func (p *echoProc) Kill() { p.Signal(9) }
func (p *echoProc) Resize(w guestproto.Window) {
	p.mu.Lock()
	p.resize = append(p.resize, w)
	p.mu.Unlock()
}
func (p *echoProc) Wait() (int, error) { return <-p.done, nil }

// conn is Dom0's side of a Server in a test.
type conn struct {
	t      *testing.T
	to     *guestproto.Writer
	frames chan guestproto.Frame
	seen   []guestproto.Frame
	code   chan int
}

func start(t *testing.T, cfg Config) *conn {
	cr, cw := io.Pipe()
	or, ow := io.Pipe()
	cfg.Writer = guestproto.NewWriter(ow)
	srv := New(cfg)
	c := &conn{t: t, to: guestproto.NewWriter(cw), frames: make(chan guestproto.Frame, 256), code: make(chan int, 1)}
	go srv.ReadConsole(cr)
	go func() {
		defer close(c.frames)
		r := guestproto.NewReader(or)
		for {
			f, err := r.Next()
			if err != nil {
				return
			}
			c.frames <- f
		}
	}()
	go func() {
		c.code <- srv.Run(context.Background())
		ow.Close()
	}()
	t.Cleanup(func() { cw.Close(); or.Close() })
	c.waitFor(guestproto.TypeReady, "")
	return c
}

func (c *conn) send(t guestproto.Type, p []byte) {
	c.t.Helper()
	if err := c.to.WriteFrame(t, p); err != nil {
		c.t.Fatal(err)
	}
}

func (c *conn) waitFor(t guestproto.Type, sub string) guestproto.Frame {
	c.t.Helper()
	for {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("console ended waiting for %s %q; seen %v", t, sub, c.seen)
			}
			c.seen = append(c.seen, f)
			if f.Type == t && strings.Contains(string(f.Payload), sub) {
				return f
			}
		case <-time.After(10 * time.Second):
			c.t.Fatalf("no %s %q within 10s; seen %v", t, sub, c.seen)
		}
	}
}

// TestRunOrder: stdin and window frames sent before the spec reach the
// main process; an exec session runs in the main spec with its changes;
// at the end the session still running is killed and reported before the
// Exit frame, after ReportExit.
func TestRunOrder(t *testing.T) {
	st := &echoStarter{}
	var reported []int
	c := start(t, Config{Starter: st, ReportExit: func(code int) bool { reported = append(reported, code); return true }})
	c.send(guestproto.TypeWindow, guestproto.FormatWindow(guestproto.Window{Rows: 3, Cols: 4}))
	c.send(guestproto.TypeStdin, []byte("early "))
	if err := c.to.SendSpec(&guestproto.Spec{Args: []string{"cat"}, Stdin: true, Env: []string{"A=1"}, Cwd: "/w"}); err != nil {
		t.Fatal(err)
	}
	c.waitFor(guestproto.TypeStarted, `"pid":2`)
	c.waitFor(guestproto.TypeStdout, "early ")
	c.send(guestproto.TypeExec, []byte(`{"id":1,"args":["wait"],"user":"bob"}`))
	c.waitFor(guestproto.TypeExecData, "waiting")
	c.send(guestproto.TypeExec, []byte(`{"id":2,"args":["missing"]}`))
	c.waitFor(guestproto.TypeLog, "exec session 2") // before its ExecExit
	if e, _ := guestproto.ParseExecExit(c.waitFor(guestproto.TypeExecExit, `"id":2`).Payload); e.Status != 127 || !strings.Contains(e.Error, "not found") {
		t.Errorf("missing program: %+v", e)
	}
	c.send(guestproto.TypeStdin, []byte("late"))
	c.send(guestproto.TypeStdinClose, nil)
	c.waitFor(guestproto.TypeStdout, "late")
	if e, _ := guestproto.ParseExecExit(c.waitFor(guestproto.TypeExecExit, `"id":1`).Payload); e.Status != 137 {
		t.Errorf("session left running: %+v, want killed (137)", e)
	}
	if f := c.waitFor(guestproto.TypeExit, ""); string(f.Payload) != "0" {
		t.Errorf("exit %q", f.Payload)
	}
	if <-c.code != 0 || !reflect.DeepEqual(reported, []int{0}) {
		t.Errorf("ReportExit saw %v", reported)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if w := st.specs[0].Window; w.Rows != 3 || w.Cols != 4 {
		t.Errorf("main process window %+v, want 3x4 (sent before the spec)", w)
	}
	ex := st.specs[1]
	if ex.Session != 1 || ex.Spec.User != "bob" || ex.Spec.Cwd != "/w" || !reflect.DeepEqual(ex.Spec.Env, []string{"A=1"}) || ex.Stdin != nil {
		t.Errorf("exec session spec %+v %+v", ex, ex.Spec)
	}
}

// TestRunFailures: a Setup error and a start error are Fatal frames with
// 125 and the StartError's status; Exit follows.
func TestRunFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*guestproto.Spec) error
		args  []string
		code  string
		fatal string
	}{
		{"setup", func(*guestproto.Spec) error { return errors.New("mount failed") }, []string{"x"}, "125", "mount failed"},
		{"start", nil, []string{"missing"}, "127", "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := start(t, Config{Starter: &echoStarter{}, Setup: tc.setup})
			c.to.SendSpec(&guestproto.Spec{Args: tc.args})
			c.waitFor(guestproto.TypeFatal, tc.fatal)
			if f := c.waitFor(guestproto.TypeExit, ""); string(f.Payload) != tc.code {
				t.Errorf("exit %q, want %s", f.Payload, tc.code)
			}
		})
	}
}

// TestConsoleLargeSpec: a job spec whose env and args exceed one frame
// (64 KiB) reaches the job over the console, in parts.
func TestConsoleLargeSpec(t *testing.T) {
	for _, n := range []int{10, 70, 3 << 10} { // KiB
		spec := &guestproto.Spec{Args: []string{"echo", "hi"}}
		for i := 0; i < n; i++ {
			spec.Env = append(spec.Env, fmt.Sprintf("V%d=%s", i, strings.Repeat("e", 1000)))
		}
		s := New(Config{Writer: guestproto.NewWriter(io.Discard)})
		cr, cw := io.Pipe()
		go s.ReadConsole(cr)
		go func() {
			if err := guestproto.NewWriter(cw).SendSpec(spec); err != nil {
				cw.CloseWithError(err)
			}
		}()
		select {
		case got := <-s.specs:
			if !reflect.DeepEqual(got, spec) {
				t.Fatalf("%d KiB: the spec changed on the console", n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d KiB: no spec after 10 s", n)
		}
		cw.Close()
	}
}

// TestSpecFile reads the spec from a file holding its frames, and names
// the file when there is none.
func TestSpecFile(t *testing.T) {
	var b bytes.Buffer
	guestproto.NewWriter(&b).SendSpec(&guestproto.Spec{Args: []string{"a"}})
	s := New(Config{Writer: guestproto.NewWriter(io.Discard)})
	s.ReadSpecFile(&b, "/dev/xvdc")
	if got := <-s.specs; got == nil || got.Args[0] != "a" {
		t.Fatalf("spec %+v", got)
	}
	var out bytes.Buffer
	s = New(Config{Writer: guestproto.NewWriter(&out)})
	s.ReadSpecFile(strings.NewReader("noise\n"), "/dev/xvdc")
	f, err := guestproto.NewReader(&out).Next()
	if err != nil || f.Type != guestproto.TypeFatal || !strings.Contains(string(f.Payload), "/dev/xvdc: no job spec") {
		t.Errorf("frame %v %q, %v", f.Type, f.Payload, err)
	}
}

// FuzzConsole feeds arbitrary frames (after a spec) to a running server:
// no panic, no hang, and the main process's end is still reported.
func FuzzConsole(f *testing.F) {
	frames := func(fn func(w *guestproto.Writer)) []byte {
		var b bytes.Buffer
		fn(guestproto.NewWriter(&b))
		return b.Bytes()
	}
	f.Add(frames(func(w *guestproto.Writer) {
		w.WriteFrame(guestproto.TypeExec, []byte(`{"id":1,"args":["wait"],"stdin":true}`))
		w.WriteFrame(guestproto.TypeExecData, guestproto.AppendExecData(nil, guestproto.ExecData{ID: 1, Data: []byte("x")}))
		w.WriteFrame(guestproto.TypeExecSignal, guestproto.FormatSignal(1, 15))
		w.WriteFrame(guestproto.TypeWindow, []byte("1 2 1"))
		w.WriteFrame(guestproto.TypeSignal, []byte("15"))
	}))
	f.Add(frames(func(w *guestproto.Writer) {
		w.WriteFrame(guestproto.TypeSpecPart, []byte("{"))
		w.WriteFrame(guestproto.TypeSpec, []byte(`{"spec_parts":{"parts":1,"bytes":1}}`))
		w.WriteFrame(guestproto.TypeExec, []byte(`{"id":0}`))
		w.WriteFrame(guestproto.TypeStdin, []byte("in"))
		w.WriteFrame(guestproto.TypeStdinClose, nil)
	}))
	f.Fuzz(func(t *testing.T, in []byte) {
		var spec bytes.Buffer
		guestproto.NewWriter(&spec).SendSpec(&guestproto.Spec{Args: []string{"wait"}})
		s := New(Config{Writer: guestproto.NewWriter(io.Discard), Starter: &echoStarter{}, KillWait: time.Second})
		done := make(chan int, 1)
		go func() { done <- s.Run(context.Background()) }()
		s.ReadConsole(io.MultiReader(&spec, bytes.NewReader(in)))
		s.Signal(9) // ends the main process ("wait") if the input did not
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the server did not end")
		}
	})
}
