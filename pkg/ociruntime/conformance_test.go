package ociruntime_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/internal/testutil"
	"github.com/vxn-dev/vxn/pkg/toolstack/faketoolstack"
)

// The conformance tests drive the real vxn-oci-runtime binary the way
// containerd's runc shim does, with containerd's go-runc, against the fake
// toolstack (built with -tags vxnfake and run with VXN_TOOLSTACK=fake: each
// monitor runs an in-process fake Xen whose guest interprets a few
// commands, see faketoolstack.ScriptProgram).

var (
	buildOnce sync.Once
	binDir    string // removed by TestMain when the tests are done
	binPath   string
	buildErr  error
)

// runtimeBinary builds cmd/vxn-oci-runtime with the fake toolstack
// (-tags vxnfake) once per test run, into a directory shared by all tests
// (a t.TempDir would go with the first test).
func runtimeBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vxn-oci-runtime-bin")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		binPath = filepath.Join(dir, "vxn-oci-runtime")
		cmd := exec.Command("go", "build", "-tags", "vxnfake", "-o", binPath, "./cmd/vxn-oci-runtime")
		cmd.Dir = testutil.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// subreaper makes the test process adopt the monitors once the runtime
// that started them exits, as the shim (a subreaper) does.
var subreaperOnce sync.Once

type env struct {
	t      *testing.T
	r      *runc.Runc
	dir    string
	log    string
	ctx    context.Context
	cancel context.CancelFunc
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Getenv("VXN_TOOLSTACK") != "" && os.Getenv("VXN_TOOLSTACK") != "fake" {
		t.Skip("VXN_TOOLSTACK is set to a real toolstack")
	}
	bin := runtimeBinary(t)
	subreaperOnce.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
		}
	})
	dir := t.TempDir()
	for _, f := range []string{"vmlinux", "initramfs.cpio.gz"} {
		os.WriteFile(filepath.Join(dir, f), []byte("fake"), 0o644)
	}
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("kernel: %s/vmlinux\ninitramfs: %s/initramfs.cpio.gz\nmemory: 128\nimage_store: %s/store\n", dir, dir, dir)), 0o644)
	t.Setenv("VXN_TOOLSTACK", "fake")
	t.Setenv("VXN_CONFIG", cfg)
	e := &env{t: t, dir: dir, log: filepath.Join(dir, "log.json")}
	e.r = &runc.Runc{Command: bin, Root: filepath.Join(dir, "root"), Log: e.log, LogFormat: runc.JSON}
	e.ctx, e.cancel = context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(e.cancel)
	return e
}

// bundle writes a bundle whose process is args.
func (e *env) bundle(name string, edit func(s *specs.Spec), args ...string) string {
	b := filepath.Join(e.dir, name)
	os.MkdirAll(filepath.Join(b, "rootfs", "bin"), 0o755)
	os.WriteFile(filepath.Join(b, "rootfs", "bin", "sh"), []byte("#!fake"), 0o755)
	s := specs.Spec{Version: "1.0.2-dev", Root: &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: args, Env: []string{"PATH=/bin"}, Cwd: "/"},
		Mounts:  []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "mount"}}}}
	if edit != nil {
		edit(&s)
	}
	j, _ := json.Marshal(s)
	os.WriteFile(filepath.Join(b, "config.json"), j, 0o644)
	return b
}

// started is a created container with its stdio pipes.
type started struct {
	id, pidFile string
	pid         int
	io          runc.IO
}

// output collects the rest of stdout and stderr until the monitor closes
// them.
func (c *started) output() (stdout, stderr chan string) {
	return readAll(c.io.Stdout()), readAll(c.io.Stderr())
}

func readAll(r io.Reader) chan string {
	c := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(r)
		c <- string(b)
	}()
	return c
}

// create runs `create` with pipes for stdio, as the shim does.
func (e *env) create(id string, edit func(s *specs.Spec), args ...string) *started {
	e.t.Helper()
	b := e.bundle(id, edit, args...)
	pio, err := runc.NewPipeIO(os.Getuid(), os.Getgid())
	if err != nil {
		e.t.Fatal(err)
	}
	c := &started{id: id, pidFile: filepath.Join(b, "init.pid"), io: pio}
	t0 := time.Now()
	if err := e.r.Create(e.ctx, id, b, &runc.CreateOpts{IO: pio, PidFile: c.pidFile}); err != nil {
		e.t.Fatalf("create %s: %v; log:\n%s", id, err, e.logText())
	}
	e.t.Logf("create %s took %v", id, time.Since(t0))
	pio.Stdin().Close()
	pb, err := os.ReadFile(c.pidFile)
	if err != nil {
		e.t.Fatalf("pid file: %v", err)
	}
	if c.pid, err = strconv.Atoi(string(pb)); err != nil || c.pid <= 0 {
		e.t.Fatalf("pid file %q", pb)
	}
	if err := syscall.Kill(c.pid, 0); err != nil {
		e.t.Fatalf("monitor %d not alive after create: %v", c.pid, err)
	}
	e.t.Cleanup(func() {
		e.r.Delete(context.Background(), id, &runc.DeleteOpts{Force: true})
		syscall.Kill(c.pid, syscall.SIGKILL)
		e.wait(c.pid)
	})
	return c
}

func (e *env) logText() string {
	b, _ := os.ReadFile(e.log)
	return string(b)
}

// wait reaps pid (adopted by this subreaper) and returns its exit status.
func (e *env) wait(pid int) int {
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return -1
		}
		if ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ws.ExitStatus()
	}
}

func (e *env) status(id string) string {
	e.t.Helper()
	c, err := e.r.State(e.ctx, id)
	if err != nil {
		e.t.Fatalf("state %s: %v", id, err)
	}
	return c.Status
}

// waitStatus polls state until it is want.
func (e *env) waitStatus(id, want string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := e.status(id)
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: status %q, want %q", id, st, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConformanceLifecycle(t *testing.T) {
	e := newEnv(t)
	c := e.create("life-echo", nil, "echo", "hello", "a  b")
	st, err := e.r.State(e.ctx, c.id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != "created" || st.Pid != c.pid || st.Bundle != filepath.Join(e.dir, c.id) || st.ID != c.id {
		t.Errorf("state after create: %+v (monitor %d)", st, c.pid)
	}
	if err := e.r.Start(e.ctx, c.id); err != nil {
		t.Fatalf("start: %v\n%s", err, e.logText())
	}
	stdout, _ := c.output()
	out := <-stdout
	if code := e.wait(c.pid); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if out != "hello a  b\n" {
		t.Errorf("stdout %q, want the args verbatim", out)
	}
	if s := e.status(c.id); s != "stopped" {
		t.Errorf("status after exit %q", s)
	}
	if err := e.r.Delete(e.ctx, c.id, nil); err != nil {
		t.Errorf("delete: %v", err)
	}
	if _, err := e.r.State(e.ctx, c.id); err == nil {
		t.Error("state after delete succeeded")
	}
	if !strings.Contains(e.logText(), `"level":"warning"`) || strings.Count(e.logText(), "not applicable to a VM") != 1 {
		t.Errorf("namespaces not reported once as a warning:\n%s", e.logText())
	}
}

func TestConformanceProcess(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		id   string
		edit func(s *specs.Spec)
		args []string
		want []string
	}{
		{"proc-env", func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "GREETING=hello world", "EQ=a=b") }, []string{"env"},
			[]string{"GREETING=hello world\n", "EQ=a=b\n", "PATH=/bin\n"}},
		{"proc-cwd", func(s *specs.Spec) { s.Process.Cwd = "/work dir" }, []string{"pwd"}, []string{"/work dir\n"}},
		{"proc-user", func(s *specs.Spec) { s.Process.User = specs.User{UID: 1000, GID: 100} }, []string{"id"}, []string{"1000:100"}},
		{"proc-stderr", nil, []string{"echo-err", "to", "stderr"}, nil},
	} {
		t.Run(tc.id, func(t *testing.T) {
			c := e.create(tc.id, tc.edit, tc.args...)
			if err := e.r.Start(e.ctx, c.id); err != nil {
				t.Fatal(err)
			}
			so, se := c.output()
			out, errOut := <-so, <-se
			if code := e.wait(c.pid); code != 0 {
				t.Errorf("exit status %d", code)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout %q lacks %q", out, w)
				}
			}
			if tc.want == nil && (out != "" || errOut != "to stderr\n") {
				t.Errorf("stdout %q stderr %q: streams mixed up", out, errOut)
			}
		})
	}
}

func TestConformanceExitCodes(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		id   string
		args []string
		sig  int
		want int
	}{
		{"exit-42", []string{"exit", "42"}, 0, 42},
		{"kill-term", []string{"wait-signal"}, int(syscall.SIGTERM), 143},
		{"kill-kill", []string{"hang"}, int(syscall.SIGKILL), 137},
		{"notfound", []string{"no-such-command"}, 0, 127},
	} {
		t.Run(tc.id, func(t *testing.T) {
			c := e.create(tc.id, nil, tc.args...)
			if err := e.r.Start(e.ctx, c.id); err != nil {
				t.Fatal(err)
			}
			if tc.sig != 0 {
				e.waitStatus(c.id, "running")
				if tc.args[0] == "wait-signal" {
					// Signal only once the program waits for it.
					if s := readLine(t, c.io.Stdout()); s != "waiting" {
						t.Fatalf("first output %q", s)
					}
				}
				if err := e.r.Kill(e.ctx, c.id, tc.sig, &runc.KillOpts{All: tc.sig == int(syscall.SIGKILL)}); err != nil {
					t.Fatalf("kill: %v\n%s", err, e.logText())
				}
			}
			_, stderr := c.output()
			if code := e.wait(c.pid); code != tc.want {
				t.Errorf("exit status %d, want %d; stderr %q", code, tc.want, <-stderr)
			}
			if err := e.r.Delete(e.ctx, c.id, nil); err != nil {
				t.Errorf("delete: %v", err)
			}
		})
	}
}

// readLine reads one line from r byte by byte (the rest stays in the pipe
// for the collector, which was not started for this stream yet).
func readLine(t *testing.T, r io.Reader) string {
	var b []byte
	one := make([]byte, 1)
	for {
		n, err := r.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return string(b)
			}
			b = append(b, one[0])
		}
		if err != nil {
			return string(b)
		}
	}
}

func TestConformanceDeleteForceExecPause(t *testing.T) {
	e := newEnv(t)
	c := e.create("busy", nil, "sleep", "300")
	if err := e.r.Start(e.ctx, c.id); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(c.id, "running")

	// exec --detach with pipes: the pid file names a monitor that exits
	// with the process's status.
	for i, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"echo", "from", "exec"}, 0, "from exec\n"},
		{[]string{"exit", "3"}, 3, ""},
		{[]string{"no-such-program"}, 127, ""},
	} {
		pio, err := runc.NewPipeIO(os.Getuid(), os.Getgid())
		if err != nil {
			t.Fatal(err)
		}
		pidFile := filepath.Join(e.dir, fmt.Sprintf("exec%d.pid", i))
		err = e.r.Exec(e.ctx, c.id, specs.Process{Args: tc.args, Cwd: "/", Env: []string{"PATH=/bin"}},
			&runc.ExecOpts{IO: pio, PidFile: pidFile, Detach: true})
		if err != nil {
			t.Fatalf("exec %v: %v\n%s", tc.args, err, e.logText())
		}
		pio.Stdin().Close()
		out := readAll(pio.Stdout())
		pb, _ := os.ReadFile(pidFile)
		epid, _ := strconv.Atoi(string(pb))
		if epid <= 0 {
			t.Fatalf("exec pid file %q", pb)
		}
		if code := e.wait(epid); code != tc.code {
			t.Errorf("exec %v: exit status %d, want %d", tc.args, code, tc.code)
		}
		if o := <-out; o != tc.out {
			t.Errorf("exec %v: stdout %q, want %q", tc.args, o, tc.out)
		}
		pio.Close()
	}
	if s := e.status(c.id); s != "running" {
		t.Errorf("status after the execs %q", s)
	}

	if err := e.r.Pause(e.ctx, c.id); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if s := e.status(c.id); s != "paused" {
		t.Errorf("status after pause %q", s)
	}
	if err := e.r.Resume(e.ctx, c.id); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if s := e.status(c.id); s != "running" {
		t.Errorf("status after resume %q", s)
	}
	pids, err := e.r.Ps(e.ctx, c.id)
	if err != nil || len(pids) != 1 || pids[0] != c.pid {
		t.Errorf("ps: %v %v", pids, err)
	}

	if err := e.r.Delete(e.ctx, c.id, nil); err == nil {
		t.Error("delete of a running container without --force succeeded")
	}
	if err := e.r.Delete(e.ctx, c.id, &runc.DeleteOpts{Force: true}); err != nil {
		t.Fatalf("delete --force: %v\n%s", err, e.logText())
	}
	if code := e.wait(c.pid); code < 0 {
		t.Errorf("monitor not reaped after delete --force")
	}
	if _, err := e.r.State(e.ctx, c.id); err == nil {
		t.Error("state after delete --force succeeded")
	}
}

func TestConformanceErrors(t *testing.T) {
	e := newEnv(t)
	lastError := func() map[string]string {
		lines := strings.Split(strings.TrimSpace(e.logText()), "\n")
		var m map[string]string
		json.Unmarshal([]byte(lines[len(lines)-1]), &m)
		return m
	}
	if _, err := e.r.State(e.ctx, "nope"); err == nil {
		t.Error("state of an unknown id succeeded")
	} else if m := lastError(); m["level"] != "error" || !strings.Contains(m["msg"], "does not exist") || m["time"] == "" {
		t.Errorf("log line %v", m)
	}
	if err := e.r.Kill(e.ctx, "nope", 9, nil); err == nil {
		t.Error("kill of an unknown id succeeded")
	}
	if err := e.r.Delete(e.ctx, "nope", &runc.DeleteOpts{Force: true}); err != nil {
		t.Errorf("delete --force of an unknown id: %v", err)
	}
	bad := filepath.Join(e.dir, "bad")
	os.MkdirAll(bad, 0o755)
	if err := e.r.Create(e.ctx, "badbundle", bad, &runc.CreateOpts{}); err == nil {
		t.Error("create from a bundle without config.json succeeded")
	} else if m := lastError(); !strings.Contains(m["msg"], "config.json") {
		t.Errorf("log line %v", m)
	}
	c := e.create("dup", nil, "sleep", "300")
	b := filepath.Join(e.dir, "dup")
	if err := e.r.Create(e.ctx, c.id, b, &runc.CreateOpts{}); err == nil {
		t.Error("duplicate create succeeded")
	} else if m := lastError(); !strings.Contains(m["msg"], "already exists") {
		t.Errorf("log line %v", m)
	}
	if s := e.status(c.id); s != "created" {
		t.Errorf("the first container was disturbed: %s", s)
	}
}

func TestConformanceTerminal(t *testing.T) {
	e := newEnv(t)
	sock, err := runc.NewTempConsoleSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	id := "term-tty"
	b := e.bundle(id, func(s *specs.Spec) { s.Process.Terminal = true }, "tty")
	pidFile := filepath.Join(b, "init.pid")
	// No IO: go-runc reads the runtime's output to EOF, so the monitor
	// must not keep the runtime's stdio (the shim does this for terminals).
	done := make(chan error, 1)
	go func() { done <- e.r.Create(e.ctx, id, b, &runc.CreateOpts{PidFile: pidFile, ConsoleSocket: sock}) }()
	var master interface {
		io.Reader
		Close() error
	}
	mc := make(chan error, 1)
	go func() {
		m, err := sock.ReceiveMaster()
		if err == nil {
			master = m
		}
		mc <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("create: %v\n%s", err, e.logText())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("create with a console socket hangs (the monitor holds the runtime's stdio?)")
	}
	if err := <-mc; err != nil {
		t.Fatalf("receiving the pty master: %v", err)
	}
	defer master.Close()
	pb, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(string(pb))
	t.Cleanup(func() {
		e.r.Delete(context.Background(), id, &runc.DeleteOpts{Force: true})
		syscall.Kill(pid, syscall.SIGKILL)
		e.wait(pid)
	})
	if err := e.r.Start(e.ctx, id); err != nil {
		t.Fatal(err)
	}
	line := readLine(t, master)
	if code := e.wait(pid); code != 0 {
		t.Errorf("exit status %d", code)
	}
	if !strings.HasPrefix(strings.TrimSpace(line), "/dev/pts/") {
		t.Errorf("the process has no terminal: %q", line)
	}
}

// TestConformanceConfiguredXL proves that a container's monitor, a process
// of its own, runs the xl program of the vxn config's xl: key (the runtime
// tells it the toolstack over its options pipe).
func TestConformanceConfiguredXL(t *testing.T) {
	e := newEnv(t)
	xl, log, err := faketoolstack.XLScript(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(e.dir, "config.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "xl: %s\n", xl)
	f.Close()
	t.Setenv("VXN_TOOLSTACK", "") // xl, not the fake
	b := e.bundle("xl-conf", nil, "echo", "hi")
	err = e.r.Create(e.ctx, "xl-conf", b, &runc.CreateOpts{})
	if err == nil {
		e.r.Delete(context.Background(), "xl-conf", &runc.DeleteOpts{Force: true})
	}
	if err == nil || !strings.Contains(e.logText(), "not a Xen host (test script)") {
		t.Errorf("create with a failing xl: %v; log:\n%s", err, e.logText())
	}
	if b, err := os.ReadFile(log); err != nil || len(b) == 0 {
		t.Errorf("the monitor did not run %s: %q, %v", xl, b, err)
	}
}
