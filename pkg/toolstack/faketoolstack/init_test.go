package faketoolstack

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/xlcfg"
)

// fakeConn is Dom0's end of an Init guest in the tests: it sends frames
// and records every frame the guest sends.
type fakeConn struct {
	t      *testing.T
	f      *Fake
	id     int
	w      *guestproto.Writer
	frames chan guestproto.Frame
	seen   []guestproto.Frame
	eof    bool
}

func startFake(t *testing.T) *fakeConn {
	t.Helper()
	f := &Fake{Guest: Init(ScriptProgram)}
	cfg := writeCfg(t, xlcfg.Domain{Name: "vxn-fi", Type: "pv", Memory: 64, Kernel: "/k", OnPoweroff: "preserve"})
	ctx := context.Background()
	id, err := f.Create(ctx, cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	con, err := f.Console(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { con.Close(); f.Destroy(ctx, id) })
	c := &fakeConn{t: t, f: f, id: id, w: guestproto.NewWriter(con), frames: make(chan guestproto.Frame, 256)}
	go func() {
		defer close(c.frames)
		r := guestproto.NewReader(con)
		for {
			fr, err := r.Next()
			if err != nil {
				return
			}
			c.frames <- fr
		}
	}()
	if err := f.Unpause(ctx, id); err != nil {
		t.Fatal(err)
	}
	c.waitFor(guestproto.TypeReady, "")
	return c
}

func (c *fakeConn) send(t guestproto.Type, payload []byte) {
	c.t.Helper()
	if err := c.w.WriteFrame(t, payload); err != nil {
		c.t.Fatalf("sending %s: %v", t, err)
	}
}

func (c *fakeConn) sendJSON(t guestproto.Type, v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(t, b)
}

// next returns the next frame, false at the end of the console.
func (c *fakeConn) next() (guestproto.Frame, bool) {
	c.t.Helper()
	select {
	case fr, ok := <-c.frames:
		if !ok {
			c.eof = true
			return fr, false
		}
		c.seen = append(c.seen, fr)
		return fr, true
	case <-time.After(20 * time.Second):
		c.t.Fatalf("no frame from the fake guest within 20s; seen %s", c.dump())
	}
	return guestproto.Frame{}, false
}

// waitFor reads frames until one of type t whose payload contains sub.
func (c *fakeConn) waitFor(t guestproto.Type, sub string) guestproto.Frame {
	c.t.Helper()
	for {
		fr, ok := c.next()
		if !ok {
			c.t.Fatalf("console ended waiting for %s %q; seen %s", t, sub, c.dump())
		}
		if fr.Type == t && strings.Contains(string(fr.Payload), sub) {
			return fr
		}
	}
}

// finish reads up to the Exit frame or the end of the console and returns
// the exit status (-1 without Exit frame).
func (c *fakeConn) finish() int {
	c.t.Helper()
	for {
		fr, ok := c.next()
		if !ok {
			return -1
		}
		if fr.Type == guestproto.TypeExit {
			var n int
			fmt.Sscan(string(fr.Payload), &n)
			return n
		}
	}
}

func (c *fakeConn) dump() string {
	var b strings.Builder
	for _, f := range c.seen {
		fmt.Fprintf(&b, "\n  %s %q", f.Type, f.Payload)
	}
	return b.String()
}

// output is what the guest sent so far on one stream: session 0 is the
// main process (stream 1 stdout, 2 stderr).
func (c *fakeConn) output(session uint32, stream byte) string {
	var b strings.Builder
	for _, f := range c.seen {
		switch {
		case session == 0 && stream == 1 && f.Type == guestproto.TypeStdout,
			session == 0 && stream == 2 && f.Type == guestproto.TypeStderr:
			b.Write(f.Payload)
		case session != 0 && f.Type == guestproto.TypeExecData:
			if d, err := guestproto.ParseExecData(f.Payload); err == nil && d.ID == session && d.Stream == stream {
				b.Write(d.Data)
			}
		}
	}
	return b.String()
}

func (c *fakeConn) execExit(id uint32) guestproto.ExecExit {
	c.t.Helper()
	for {
		fr := c.waitFor(guestproto.TypeExecExit, "")
		e, err := guestproto.ParseExecExit(fr.Payload)
		if err != nil {
			c.t.Fatal(err)
		}
		if e.ID == id {
			return e
		}
	}
}

func (c *fakeConn) xenstoreExit() (string, error) {
	return c.f.XenstoreRead(context.Background(), fmt.Sprintf("/local/domain/%d/data/vxn-exit", c.id))
}

func TestInitMain(t *testing.T) {
	tests := []struct {
		name           string
		spec           guestproto.Spec
		stdin          string
		code           int // -1: no Exit frame
		stdout, stderr string
	}{
		{name: "echo", spec: guestproto.Spec{Args: []string{"echo", "hello", "world"}}, stdout: "hello world\n"},
		{name: "stderr", spec: guestproto.Spec{Args: []string{"echo-err", "oops"}}, stderr: "oops\n"},
		{name: "tty merges and maps newlines", spec: guestproto.Spec{Args: []string{"echo-err", "a"}, TTY: true}, stdout: "a\r\n"},
		{name: "tty", spec: guestproto.Spec{Args: []string{"tty"}, TTY: true}, stdout: "/dev/pts/0\r\n"},
		{name: "no tty", spec: guestproto.Spec{Args: []string{"tty"}}, code: 1, stdout: "not a tty\n"},
		{name: "false", spec: guestproto.Spec{Args: []string{"false"}}, code: 1},
		{name: "sh -c exit", spec: guestproto.Spec{Args: []string{"sh", "-c", "exit 3"}}, code: 3},
		{name: "sh -c echo", spec: guestproto.Spec{Args: []string{"sh", "-c", "echo 'a  b'"}}, stdout: "a b\n"},
		{name: "sleep", spec: guestproto.Spec{Args: []string{"sleep", "0.01"}}},
		{name: "cat", spec: guestproto.Spec{Args: []string{"cat"}, Stdin: true}, stdin: "in\x00put", stdout: "in\x00put"},
		{name: "stdin closed without -i", spec: guestproto.Spec{Args: []string{"cat"}}, stdin: "ignored"},
		{name: "not found", spec: guestproto.Spec{Args: []string{"nope"}}, code: 127, stderr: "nope: not found\n"},
		{name: "lost exit frame", spec: guestproto.Spec{Args: []string{"lose-exit", "7"}}, code: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := startFake(t)
			c.sendJSON(guestproto.TypeSpec, tc.spec)
			c.waitFor(guestproto.TypeStarted, "")
			if tc.stdin != "" {
				c.send(guestproto.TypeStdin, []byte(tc.stdin))
				c.send(guestproto.TypeStdinClose, nil)
			}
			if code := c.finish(); code != tc.code {
				t.Errorf("exit %d, want %d; frames %s", code, tc.code, c.dump())
			}
			if got := c.output(0, 1); got != tc.stdout {
				t.Errorf("stdout %q, want %q", got, tc.stdout)
			}
			if got := c.output(0, 2); got != tc.stderr {
				t.Errorf("stderr %q, want %q", got, tc.stderr)
			}
			want := tc.code
			if want == -1 {
				want = 7
			}
			// The key is written before the Exit frame, so it is there now.
			if v, err := c.xenstoreExit(); err != nil || v != fmt.Sprint(want) {
				t.Errorf("xenstore data/vxn-exit = %q, %v; want %d", v, err, want)
			}
		})
	}
}

func TestInitSignalAndShutdown(t *testing.T) {
	c := startFake(t)
	c.sendJSON(guestproto.TypeSpec, guestproto.Spec{Args: []string{"sleep", "1000"}})
	c.waitFor(guestproto.TypeStarted, "")
	c.send(guestproto.TypeSignal, []byte("2"))
	if code := c.finish(); code != 130 {
		t.Errorf("exit %d after SIGINT, want 130", code)
	}

	c = startFake(t)
	c.sendJSON(guestproto.TypeSpec, guestproto.Spec{Args: []string{"wait-signal"}})
	c.waitFor(guestproto.TypeStdout, "waiting")
	c.f.Shutdown(context.Background(), c.id)
	if code := c.finish(); code != 143 {
		t.Errorf("exit %d after shutdown, want 143", code)
	}
}

func TestInitDestroyRemovesXenstore(t *testing.T) {
	c := startFake(t)
	c.sendJSON(guestproto.TypeSpec, guestproto.Spec{Args: []string{"true"}})
	if code := c.finish(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := c.xenstoreExit(); err != nil {
		t.Fatalf("before destroy: %v", err)
	}
	c.f.Destroy(context.Background(), c.id)
	if v, err := c.xenstoreExit(); err == nil {
		t.Errorf("data/vxn-exit = %q after destroy, want no key", v)
	}
}

// execCase is one exec session started in a running container: the Exec
// frame, the frames sent after it, and the expected end of the session.
type execCase struct {
	name   string
	main   guestproto.Spec
	exec   guestproto.ExecSpec
	before func(c *fakeConn) // after the Exec frame
	status int
	errSub string // in ExecExit.Error and a Log frame
	stdout string
	stderr string
}

func TestInitExec(t *testing.T) {
	tests := []execCase{
		{name: "echo", exec: guestproto.ExecSpec{ID: 1, Args: []string{"echo", "hi"}}, stdout: "hi\n"},
		{name: "stderr", exec: guestproto.ExecSpec{ID: 2, Args: []string{"echo-err", "e"}}, stderr: "e\n"},
		{name: "exit code", exec: guestproto.ExecSpec{ID: 1, Args: []string{"sh", "-c", "exit 42"}}, status: 42},
		{name: "false", exec: guestproto.ExecSpec{ID: 1, Args: []string{"false"}}, status: 1},
		{name: "stdin", exec: guestproto.ExecSpec{ID: 7, Args: []string{"cat"}, Stdin: true},
			before: func(c *fakeConn) {
				c.send(guestproto.TypeExecData, guestproto.AppendExecData(nil, guestproto.ExecData{ID: 7, Stream: 0, Data: []byte("a\x00b")}))
				c.send(guestproto.TypeExecData, guestproto.AppendExecData(nil, guestproto.ExecData{ID: 7, Stream: 0}))
			}, stdout: "a\x00b"},
		{name: "signal", exec: guestproto.ExecSpec{ID: 3, Args: []string{"sleep", "1000"}},
			before: func(c *fakeConn) { c.send(guestproto.TypeExecSignal, guestproto.FormatSignal(3, 15)) }, status: 143},
		{name: "env and cwd default to main", main: guestproto.Spec{Args: []string{"wait-signal"}, Env: []string{"A=1"}, Cwd: "/app"},
			exec: guestproto.ExecSpec{ID: 1, Args: []string{"sh", "-c", "env"}}, stdout: "A=1\n"},
		{name: "own env", main: guestproto.Spec{Args: []string{"wait-signal"}, Env: []string{"A=1"}},
			exec: guestproto.ExecSpec{ID: 1, Args: []string{"env"}, Env: []string{"B=2"}}, stdout: "B=2\n"},
		{name: "cwd", main: guestproto.Spec{Args: []string{"wait-signal"}, Cwd: "/app"},
			exec: guestproto.ExecSpec{ID: 1, Args: []string{"pwd"}}, stdout: "/app\n"},
		{name: "user", exec: guestproto.ExecSpec{ID: 1, Args: []string{"id"}, User: "1000:1000"}, stdout: "1000:1000\n"},
		{name: "tty", exec: guestproto.ExecSpec{ID: 5, Args: []string{"echo-err", "x"}, TTY: true}, stdout: "x\r\n"},
		{name: "not found", exec: guestproto.ExecSpec{ID: 1, Args: []string{"nope"}}, status: 127, errSub: `"nope": executable file not found`},
		{name: "not executable", exec: guestproto.ExecSpec{ID: 1, Args: []string{"/etc/passwd"}}, status: 126, errSub: "permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := startFake(t)
			main := tc.main
			if main.Args == nil {
				main.Args = []string{"wait-signal"}
			}
			c.sendJSON(guestproto.TypeSpec, main)
			c.waitFor(guestproto.TypeStdout, "waiting")
			c.sendJSON(guestproto.TypeExec, tc.exec)
			if tc.before != nil {
				tc.before(c)
			}
			e := c.execExit(tc.exec.ID)
			if e.Status != tc.status {
				t.Errorf("status %d, want %d (error %q); frames %s", e.Status, tc.status, e.Error, c.dump())
			}
			if tc.errSub == "" && e.Error != "" || !strings.Contains(e.Error, tc.errSub) {
				t.Errorf("error %q, want %q", e.Error, tc.errSub)
			}
			if got := c.output(tc.exec.ID, 1); got != tc.stdout {
				t.Errorf("stdout %q, want %q", got, tc.stdout)
			}
			if got := c.output(tc.exec.ID, 2); got != tc.stderr {
				t.Errorf("stderr %q, want %q", got, tc.stderr)
			}
			// The main process is unaffected and still reachable.
			c.send(guestproto.TypeSignal, []byte("15"))
			if code := c.finish(); code != 143 {
				t.Errorf("main exit %d, want 143", code)
			}
			logged := false
			for _, f := range c.seen {
				if f.Type == guestproto.TypeLog && tc.errSub != "" && strings.Contains(string(f.Payload), tc.errSub) {
					logged = true
				}
			}
			if tc.errSub != "" && !logged {
				t.Errorf("no Log frame with %q", tc.errSub)
			}
		})
	}
}

func TestInitExecWindow(t *testing.T) {
	c := startFake(t)
	c.sendJSON(guestproto.TypeSpec, guestproto.Spec{Args: []string{"wait-signal"}})
	c.waitFor(guestproto.TypeStdout, "waiting")
	c.send(guestproto.TypeWindow, guestproto.FormatWindow(guestproto.Window{Rows: 24, Cols: 80, ID: 5}))
	c.send(guestproto.TypeWindow, guestproto.FormatWindow(guestproto.Window{Rows: 10, Cols: 20}))
	c.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 5, Args: []string{"stty", "size"}, TTY: true})
	if e := c.execExit(5); e.Status != 0 || c.output(5, 1) != "24 80\r\n" {
		t.Errorf("exec stty size: %+v %q", e, c.output(5, 1))
	}
	c.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 6, Args: []string{"stty", "size"}})
	if e := c.execExit(6); e.Status != 1 {
		t.Errorf("stty without a terminal: %+v", e)
	}
}

// TestInitExecLifecycle covers sessions refused or ended by the
// container's state.
func TestInitExecLifecycle(t *testing.T) {
	c := startFake(t)
	// Before the spec: no container yet.
	c.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 1, Args: []string{"true"}})
	if e := c.execExit(1); e.Status != -1 || e.Error == "" {
		t.Errorf("exec before start: %+v", e)
	}
	c.sendJSON(guestproto.TypeSpec, guestproto.Spec{Args: []string{"wait-signal"}})
	c.waitFor(guestproto.TypeStdout, "waiting")
	// Invalid spec with an id: refused with that id.
	c.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 4})
	if e := c.execExit(4); e.Status != -1 || !strings.Contains(e.Error, "empty argv") {
		t.Errorf("empty argv: %+v", e)
	}
	// A session id in use is refused; the running one is unaffected.
	c.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 2, Args: []string{"hang"}})
	c.waitFor(guestproto.TypeExecData, "hanging")
	c.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 2, Args: []string{"true"}})
	if e := c.execExit(2); e.Status != -1 || !strings.Contains(e.Error, "already running") {
		t.Errorf("duplicate id: %+v", e)
	}
	// Garbage is logged, not fatal.
	c.send(guestproto.TypeExec, []byte("{"))
	c.send(guestproto.TypeExecSignal, []byte("x"))
	c.send(guestproto.TypeExecSignal, guestproto.FormatSignal(99, 9))
	c.waitFor(guestproto.TypeLog, "session 99")
	// The main process ends: the hanging session is killed and reported
	// before the Exit frame.
	c.send(guestproto.TypeSignal, []byte("15"))
	if e := c.execExit(2); e.Status != 137 {
		t.Errorf("session left at exit: %+v", e)
	}
	if code := c.finish(); code != 143 {
		t.Errorf("exit %d", code)
	}
	if _, ok := c.next(); ok {
		t.Errorf("frames after Exit: %s", c.dump())
	}
}

func writeCfg(t *testing.T, d xlcfg.Domain) string {
	b, err := xlcfg.Generate(d)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "guest.cfg")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
