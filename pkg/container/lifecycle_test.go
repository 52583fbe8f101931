package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/toolstack/faketoolstack"
)

// TestMain lets the test binary act as a container monitor (Spawn re-execs
// /proc/self/exe); spawnOpts tells monitors to use the fake toolstack, which
// the test binary links.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == MonitorArg {
		os.Exit(MonitorMain())
	}
	os.Exit(m.Run())
}

func waitExit(t *testing.T, pid int) int {
	t.Helper()
	p, err := os.FindProcess(pid)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait()
	if err != nil {
		t.Fatalf("wait for monitor %d: %v", pid, err)
	}
	return st.ExitCode()
}

func spawnOpts(e *env, args ...string) SpawnOptions {
	return SpawnOptions{Options: e.opts(args...), Toolstack: toolstack.Selection{Name: faketoolstack.Name}}
}

func TestSpawnRunsAndLogs(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	o := spawnOpts(e, "echo", "hello", "world")
	o.ID = NewID()
	o.Name = "greeter"
	o.Env = []string{"SECRET=hunter2"}
	o.Stdio[1] = out
	o.LogPath = filepath.Join(e.runtime, "log.json")
	pid, err := Spawn(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, pid); code != 0 {
		t.Errorf("monitor exit status %d, want 0", code)
	}
	b, _ := os.ReadFile(out.Name())
	if string(b) != "hello world\n" {
		t.Errorf("stdout %q", b)
	}
	h, err := Find(e.runtime, "greeter")
	if err != nil {
		t.Fatal(err)
	}
	st := h.State()
	if st.Status != StatusStopped || st.ExitCode == nil || *st.ExitCode != 0 || st.Finished == nil || st.Started == nil || st.MonitorPID != pid {
		t.Errorf("state after exit: %+v", st)
	}
	raw, _ := os.ReadFile(filepath.Join(e.runtime, o.ID, "state.json"))
	if bytes.Contains(raw, []byte("hunter2")) {
		t.Errorf("state.json holds an env value:\n%s", raw)
	}
	var logOut, logErr bytes.Buffer
	if err := ReadLogs(context.Background(), o.LogPath, LogOptions{Tail: -1}, &logOut, &logErr); err != nil || logOut.String() != "hello world\n" {
		t.Errorf("logs: %v %q", err, logOut.String())
	}
	if sts, _ := List(e.runtime); len(sts) != 1 || sts[0].ID != o.ID {
		t.Errorf("List: %+v", sts)
	}
	if _, err := Find(e.runtime, o.ID[:6]); err != nil {
		t.Errorf("Find by prefix: %v", err)
	}
	if err := h.Delete(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(e.runtime, o.ID); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load after Delete: %v", err)
	}
}

func TestSpawnHoldStartKill(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	o := spawnOpts(e, "wait-signal")
	o.ID = NewID()
	o.Hold = true
	ctx := context.Background()
	pid, err := Spawn(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	h, err := Load(e.runtime, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st := h.State(); st.Status != StatusCreated || st.DomID == 0 {
		t.Fatalf("after Spawn with Hold: %+v", st)
	}
	if err := h.Delete(ctx, false); err == nil {
		t.Errorf("Delete of a created container without force succeeded")
	}
	// A signal before start destroys the guest (nothing runs yet).
	if err := h.Kill(ctx, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, pid); code != 143 {
		t.Errorf("monitor exit %d, want 143", code)
	}
	if st := h.State(); st.Status != StatusStopped || st.ExitCode == nil || *st.ExitCode != 143 {
		t.Errorf("state: %+v", st)
	}
	if err := h.Delete(ctx, false); err != nil {
		t.Fatal(err)
	}
}

func TestSpawnStartSignal(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	ctx := context.Background()
	o := spawnOpts(e, "wait-signal")
	o.ID = NewID()
	o.Hold = true
	pid, err := Spawn(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := Load(e.runtime, o.ID)
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st := h.State(); st.Status != StatusRunning {
		t.Fatalf("after Start: %+v", st)
	}
	if err := h.Start(ctx); err == nil {
		t.Errorf("second Start succeeded")
	}
	if err := h.Pause(ctx); err != nil || h.State().Status != StatusPaused {
		t.Errorf("Pause: %v %s", err, h.State().Status)
	}
	if err := h.Resume(ctx); err != nil || h.State().Status != StatusRunning {
		t.Errorf("Resume: %v %s", err, h.State().Status)
	}
	if env, err := h.Env(ctx); err != nil || env != nil {
		t.Errorf("Env: %v %v", env, err)
	}
	if err := h.Kill(ctx, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, pid); code != 143 {
		t.Errorf("monitor exit %d, want 143", code)
	}
	st := h.State()
	if st.Status != StatusStopped || st.ExitCode == nil || *st.ExitCode != 143 {
		t.Errorf("state: %+v", st)
	}
	if err := h.Kill(ctx, syscall.SIGTERM, false); err == nil {
		t.Errorf("Kill of a stopped container succeeded")
	}
	if err := h.Delete(ctx, false); err != nil {
		t.Fatal(err)
	}
}

func TestSpawnKillBeforeStartAndForceDelete(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	ctx := context.Background()
	for _, hold := range []bool{true, false} {
		o := spawnOpts(e, "hang")
		o.ID = NewID()
		o.Hold = hold
		pid, err := Spawn(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := Load(e.runtime, o.ID)
		if err := h.Delete(ctx, true); err != nil {
			t.Fatalf("hold=%v: Delete force: %v", hold, err)
		}
		if code := waitExit(t, pid); code != 137 {
			t.Errorf("hold=%v: monitor exit %d, want 137", hold, code)
		}
		if _, err := os.Stat(filepath.Join(e.runtime, o.ID)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("hold=%v: state left: %v", hold, err)
		}
	}
}

func TestSpawnFailureReported(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	o := spawnOpts(e, "echo")
	o.MemoryMB = 100000
	_, err := Spawn(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "needs 100000 MB") {
		t.Errorf("err = %v", err)
	}
	if sts, _ := List(e.runtime); len(sts) != 0 {
		t.Errorf("state left: %+v", sts)
	}
	o = spawnOpts(e, "echo")
	o.Name = "x"
	o.AutoRemove = true
	pid, err := Spawn(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	waitExit(t, pid)
	if sts, _ := List(e.runtime); len(sts) != 0 {
		t.Errorf("AutoRemove left state: %+v", sts)
	}
}

// execGuest is a fake vxn-init that also runs exec sessions: an exec
// prints its argv joined and its stdin on stdout, "err" on stderr, and
// exits with status 3; the main process waits for a signal.
func execGuest(ctx context.Context, g *faketoolstack.Guest) {
	w := guestproto.NewWriter(g.Console)
	w.WriteFrame(guestproto.TypeReady, []byte(`{"version":1}`))
	r := guestproto.NewReader(g.Console)
	stdin := map[uint32]*bytes.Buffer{}
	specs := map[uint32]*guestproto.ExecSpec{}
	finish := func(id uint32) {
		s := specs[id]
		out := strings.Join(s.Args, " ") + ":" + stdin[id].String() + "\n"
		w.WriteFrame(guestproto.TypeExecData, guestproto.AppendExecData(nil, guestproto.ExecData{ID: id, Stream: 1, Data: []byte(out)}))
		w.WriteFrame(guestproto.TypeExecData, guestproto.AppendExecData(nil, guestproto.ExecData{ID: id, Stream: 2, Data: []byte("err\n")}))
		b, _ := json.Marshal(guestproto.ExecExit{ID: id, Status: 3})
		w.WriteFrame(guestproto.TypeExecExit, b)
	}
	for {
		f, err := r.Next()
		if err != nil {
			return
		}
		switch f.Type {
		case guestproto.TypeSpec:
			w.WriteFrame(guestproto.TypeStdout, []byte("main\n"))
		case guestproto.TypeSignal:
			w.WriteExit(128 + 15)
			return
		case guestproto.TypeExec:
			s, err := guestproto.ParseExecSpec(f.Payload)
			if err != nil {
				continue
			}
			specs[s.ID], stdin[s.ID] = s, &bytes.Buffer{}
			if !s.Stdin {
				finish(s.ID)
			}
		case guestproto.TypeExecData:
			d, err := guestproto.ParseExecData(f.Payload)
			if err != nil || specs[d.ID] == nil {
				continue
			}
			if len(d.Data) == 0 {
				finish(d.ID)
				continue
			}
			stdin[d.ID].Write(d.Data)
		}
	}
}

func TestExecInForegroundRun(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	e.ts.Guest = execGuest
	stdout := &syncBuf{}
	seen := waitFor(stdout, "main\n")
	o := e.opts("main")
	o.ID, o.Name, o.Stdout = NewID(), "fg", stdout
	done := make(chan *Result)
	go func() {
		res, err := Run(context.Background(), e.ts, o)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-seen
	ctx := context.Background()
	h, err := Find(e.runtime, "fg")
	if err != nil {
		t.Fatal(err)
	}
	if st := h.State(); st.Status != StatusRunning || st.MonitorPID != os.Getpid() {
		t.Errorf("foreground state: %+v", st)
	}
	var out, errb bytes.Buffer
	code, err := h.Exec(ctx, ExecOptions{Args: []string{"cat", "/etc/os-release"}}, strings.NewReader("in put"), &out, &errb)
	if err != nil || code != 3 || out.String() != "cat /etc/os-release:in put\n" || errb.String() != "err\n" {
		t.Errorf("exec with stdin: %d %v %q %q", code, err, out.String(), errb.String())
	}
	// Files are passed as they are.
	f, _ := os.CreateTemp(t.TempDir(), "o")
	code, err = h.Exec(ctx, ExecOptions{Args: []string{"true"}}, nil, f, io.Discard)
	b, _ := os.ReadFile(f.Name())
	if err != nil || code != 3 || string(b) != "true:\n" {
		t.Errorf("exec to a file: %d %v %q", code, err, b)
	}
	if _, err := h.Exec(ctx, ExecOptions{}, nil, nil, nil); err == nil {
		t.Errorf("exec without args succeeded")
	}
	if err := h.Kill(ctx, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.ExitCode != 143 {
		t.Errorf("exit %d, want 143", res.ExitCode)
	}
	if _, err := h.Exec(ctx, ExecOptions{Args: []string{"x"}}, nil, nil, nil); err == nil {
		t.Errorf("exec after exit succeeded")
	}
	e.clean()
}

func TestExitFromXenstore(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	// A guest whose Exit frame is lost: it writes the xenstore key and
	// powers off without the frame.
	e.ts.Guest = func(ctx context.Context, g *faketoolstack.Guest) {
		w := guestproto.NewWriter(g.Console)
		w.WriteFrame(guestproto.TypeReady, []byte(`{"version":1}`))
		guestproto.NewReader(g.Console).Next()
		w.WriteFrame(guestproto.TypeStdout, []byte("bye\n"))
		g.XenstoreWrite(ExitKey, "42")
	}
	var stdout bytes.Buffer
	o := e.opts("x")
	o.Stdout = &stdout
	res, err := Run(context.Background(), e.ts, o)
	if err != nil || res.ExitCode != 42 || !res.ExitFromXenstore || stdout.String() != "bye\n" {
		t.Errorf("got %+v %v %q", res, err, stdout.String())
	}
	e.clean()

	// The knob: the Exit frame is ignored, the key read.
	t.Setenv(IgnoreExitFrameEnv, "1")
	e.ts.Guest = faketoolstack.Init(func(ctx context.Context, p *faketoolstack.Proc) int { return 7 })
	var guestRef *faketoolstack.Guest
	inner := e.ts.Guest
	e.ts.Guest = func(ctx context.Context, g *faketoolstack.Guest) {
		guestRef = g
		g.XenstoreWrite(ExitKey, "7")
		inner(ctx, g)
	}
	res, err = Run(context.Background(), e.ts, e.opts("x"))
	if err != nil || res.ExitCode != 7 || !res.ExitFromXenstore || guestRef == nil {
		t.Errorf("with %s: %+v %v", IgnoreExitFrameEnv, res, err)
	}
	e.clean()
}

func TestKeepAndReap(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	o := e.opts("exit", "5")
	o.Keep, o.Name = true, "kept"
	res, err := Run(context.Background(), e.ts, o)
	if err != nil || res.ExitCode != 5 {
		t.Fatal(res, err)
	}
	h, err := Find(e.runtime, "kept")
	if err != nil {
		t.Fatal(err)
	}
	if st := h.State(); st.Status != StatusStopped || *st.ExitCode != 5 {
		t.Errorf("kept state %+v", st)
	}
	// The name stays taken until removal, and Reap keeps it.
	if _, err := Run(context.Background(), e.ts, o); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("name reuse: %v", err)
	}
	if r, err := Reap(context.Background(), e.ts, e.runtime); err != nil || len(r) != 0 {
		t.Errorf("Reap: %v %v", r, err)
	}
	h.Toolstack = e.ts
	if err := h.Delete(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	e.clean()
}

func TestJSONLog(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log.json")
	l, err := openJSONLog(p)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(l.Stream("stdout"), "one\ntw")
	io.WriteString(l.Stream("stderr"), "e1\n")
	io.WriteString(l.Stream("stdout"), "o\nthree")
	l.Close()
	var out, errb bytes.Buffer
	if err := ReadLogs(context.Background(), p, LogOptions{Tail: -1}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if out.String() != "one\ntwo\nthree" || errb.String() != "e1\n" {
		t.Errorf("got %q %q", out.String(), errb.String())
	}
	out.Reset()
	errb.Reset()
	ReadLogs(context.Background(), p, LogOptions{Tail: 2}, &out, &errb)
	if out.String() != "two\nthree" || errb.String() != "" {
		t.Errorf("tail 2: %q %q", out.String(), errb.String())
	}
	out.Reset()
	ReadLogs(context.Background(), p, LogOptions{Tail: 1, Timestamps: true}, &out, &errb)
	if !strings.HasSuffix(out.String(), "Z three") {
		t.Errorf("timestamps: %q", out.String())
	}
	// Follow ends when the container stops.
	n := 0
	start := time.Now()
	ReadLogs(context.Background(), p, LogOptions{Tail: 0, Follow: true, Poll: time.Millisecond, Stopped: func() bool { n++; return n > 3 }}, io.Discard, io.Discard)
	if n <= 3 || time.Since(start) > time.Minute {
		t.Errorf("follow did not poll")
	}
}

func FuzzReadLogs(f *testing.F) {
	f.Add([]byte(`{"log":"a\n","stream":"stdout","time":"2024-01-01T00:00:00Z"}` + "\n" + `{"log":"b","stream":"stderr"`))
	f.Add([]byte("\n\n{}\nnot json\n"))
	// One file rewritten per input: a temporary directory per input (made
	// and removed) took most of each exec.
	p := filepath.Join(f.TempDir(), "log.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		ReadLogs(context.Background(), p, LogOptions{Tail: 3}, io.Discard, io.Discard)
		ReadLogs(context.Background(), p, LogOptions{Tail: -1}, io.Discard, io.Discard)
	})
}

// flakyCreate fails the first Create like a hotplug script timing out.
type flakyCreate struct {
	*faketoolstack.Fake
	calls int
}

func (f *flakyCreate) Create(ctx context.Context, cfg string, paused bool) (int, error) {
	f.calls++
	if f.calls == 1 {
		return 0, errors.New("libxl: error: libxl_aoutils.c:539:async_exec_timeout: killing execution of /etc/xen/scripts/block add because of timeout")
	}
	return f.Fake.Create(ctx, cfg, paused)
}

func TestCreateRetriedAfterHotplugTimeout(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	ts := &flakyCreate{Fake: e.ts}
	var out bytes.Buffer
	o := e.opts("echo", "hi")
	o.Stdout = &out
	res, err := Run(context.Background(), ts, o)
	if err != nil || res.ExitCode != 0 || out.String() != "hi\n" || ts.calls != 2 {
		t.Errorf("got %+v %v %q after %d creates", res, err, out.String(), ts.calls)
	}
	e.clean()
}

// TestSpawnUsesSelectedXL proves that a spawned monitor runs the xl program
// of SpawnOptions.Toolstack, not "xl" from PATH.
func TestSpawnUsesSelectedXL(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	xl, log, err := faketoolstack.XLScript(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := spawnOpts(e, "echo")
	o.Toolstack = toolstack.Selection{XL: xl}
	if _, err := Spawn(context.Background(), o); err == nil || !strings.Contains(err.Error(), "not a Xen host (test script)") {
		t.Errorf("Spawn with a failing xl: err = %v", err)
	}
	if b, err := os.ReadFile(log); err != nil || len(b) == 0 {
		t.Errorf("the monitor did not run %s: %q, %v", xl, b, err)
	}
	if sts, _ := List(e.runtime); len(sts) != 0 {
		t.Errorf("state left: %+v", sts)
	}
}
