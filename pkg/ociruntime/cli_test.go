package ociruntime

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeEngine is an in-memory Engine recording what the runtime asks.
type fakeEngine struct {
	spawned  []SpawnRequest
	spawnErr error
	cs       map[string]*fakeContainer
}

type fakeContainer struct {
	st    ContainerState
	calls []string
	execs []ExecRequest
}

func (e *fakeEngine) Spawn(ctx context.Context, r SpawnRequest) (int, error) {
	if e.spawnErr != nil {
		return 0, e.spawnErr
	}
	e.spawned = append(e.spawned, r)
	if e.cs == nil {
		e.cs = map[string]*fakeContainer{}
	}
	e.cs[r.ID] = &fakeContainer{st: ContainerState{ID: r.ID, Bundle: r.Bundle, Annotations: r.Annotations, Status: "created", PID: 4242, Created: time.Unix(1700000000, 0)}}
	return 4242, nil
}

func (e *fakeEngine) Load(root, id string) (Container, error) {
	if c, ok := e.cs[id]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("container %s: %w", id, fs.ErrNotExist)
}

func (c *fakeContainer) State() ContainerState { return c.st }
func (c *fakeContainer) Start(ctx context.Context) error {
	c.calls = append(c.calls, "start")
	c.st.Status = "running"
	return nil
}
func (c *fakeContainer) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	c.calls = append(c.calls, fmt.Sprintf("kill %d %v", sig, all))
	return nil
}
func (c *fakeContainer) Pause(ctx context.Context) error {
	c.calls = append(c.calls, "pause")
	c.st.Status = "paused"
	return nil
}
func (c *fakeContainer) Resume(ctx context.Context) error {
	c.calls = append(c.calls, "resume")
	c.st.Status = "running"
	return nil
}
func (c *fakeContainer) Delete(ctx context.Context, force bool) error {
	c.calls = append(c.calls, fmt.Sprintf("delete %v", force))
	return nil
}
func (c *fakeContainer) SpawnExec(ctx context.Context, r ExecRequest) (int, error) {
	c.execs = append(c.execs, r)
	return 5151, nil
}
func (c *fakeContainer) Exec(ctx context.Context, r ExecRequest) (int, error) {
	c.execs = append(c.execs, r)
	return 7, nil
}

// harness is a runtime with files for its streams, a bundle and assets.
type harness struct {
	t                 *testing.T
	dir, bundle, root string
	eng               *fakeEngine
	stdout, stderr    string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), eng: &fakeEngine{}}
	h.bundle = filepath.Join(h.dir, "bundle")
	h.root = filepath.Join(h.dir, "state")
	rootfs := filepath.Join(h.bundle, "rootfs")
	for _, d := range []string{filepath.Join(rootfs, "bin"), filepath.Join(rootfs, "etc"), filepath.Join(h.dir, "assets")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(rootfs, "bin", "sh"), "#!fake\n")
	write(t, filepath.Join(rootfs, "etc", "hosts"), "127.0.0.1 image\n")
	write(t, filepath.Join(h.dir, "assets", "vmlinux"), "kernel")
	write(t, filepath.Join(h.dir, "assets", "initramfs.cpio.gz"), "initramfs")
	write(t, filepath.Join(h.dir, "config.yaml"), fmt.Sprintf("kernel: %s\ninitramfs: %s\nmemory: 128\nimage_store: %s\n",
		filepath.Join(h.dir, "assets", "vmlinux"), filepath.Join(h.dir, "assets", "initramfs.cpio.gz"), filepath.Join(h.dir, "store")))
	s := minimalSpec()
	b, _ := json.Marshal(s)
	write(t, filepath.Join(h.bundle, "config.json"), string(b))
	return h
}

func write(t testing.TB, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run runs the runtime with args after "--root <root>" and returns the exit
// status; stdout and stderr are kept in h.
func (h *harness) run(args ...string) int {
	h.t.Helper()
	out, _ := os.Create(filepath.Join(h.dir, "stdout"))
	errf, _ := os.Create(filepath.Join(h.dir, "stderr"))
	in, _ := os.Open(os.DevNull)
	defer out.Close()
	defer errf.Close()
	defer in.Close()
	r := &Runtime{Engine: h.eng, Stdin: in, Stdout: out, Stderr: errf,
		LookupEnv: func(k string) (string, bool) {
			if k == "VXN_CONFIG" {
				return filepath.Join(h.dir, "config.yaml"), true
			}
			return "", false
		},
		AssetRoot: filepath.Join(h.dir, "assets"),
		Now:       func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }}
	code := r.Run(append([]string{"--root", h.root}, args...))
	b, _ := os.ReadFile(out.Name())
	h.stdout = string(b)
	b, _ = os.ReadFile(errf.Name())
	h.stderr = string(b)
	return code
}

func TestCreateStartStateDelete(t *testing.T) {
	h := newHarness(t)
	pidFile := filepath.Join(h.dir, "init.pid")
	logFile := filepath.Join(h.dir, "log.json")
	if code := h.run("--log", logFile, "--log-format", "json", "create", "--bundle", h.bundle, "--pid-file", pidFile, "c1"); code != 0 {
		t.Fatalf("create: exit %d, stderr %s", code, h.stderr)
	}
	if b, _ := os.ReadFile(pidFile); string(b) != "4242" {
		t.Errorf("pid file %q, want the monitor's 4242", b)
	}
	if len(h.eng.spawned) != 1 {
		t.Fatalf("spawned %d", len(h.eng.spawned))
	}
	r := h.eng.spawned[0]
	if r.ID != "c1" || r.Root != h.root || r.Bundle != h.bundle || r.User != "1000:100" || r.Cwd != "/work" ||
		strings.Join(r.Args, "|") != "sh|-c|echo 'a  b' $X" || r.MemoryMB != 128 || r.Hostname != "box" {
		t.Errorf("spawn request %+v", r)
	}
	if r.Stdio[0] == nil || r.Stdio[1] == nil || r.Stdio[2] == nil {
		t.Errorf("the runtime's stdio was not handed to the monitor: %v", r.Stdio)
	}
	if r.ImageDisk != filepath.Join(h.root, ".disks", "c1.ext4") {
		t.Errorf("disk %s", r.ImageDisk)
	}
	if _, err := os.Stat(r.ImageDisk); err != nil {
		t.Errorf("guest disk: %v", err)
	}

	if code := h.run("state", "c1"); code != 0 {
		t.Fatalf("state: %d %s", code, h.stderr)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(h.stdout), &st); err != nil {
		t.Fatalf("state JSON: %v\n%s", err, h.stdout)
	}
	if st["id"] != "c1" || st["status"] != "created" || st["pid"] != float64(4242) || st["bundle"] != h.bundle ||
		st["ociVersion"] == "" || st["rootfs"] != filepath.Join(h.bundle, "rootfs") {
		t.Errorf("state %v", st)
	}

	if code := h.run("create", "--bundle", h.bundle, "c1"); code != 1 || !strings.Contains(h.stderr, "already exists") {
		t.Errorf("duplicate create: exit %d, stderr %q", code, h.stderr)
	}
	if code := h.run("start", "c1"); code != 0 {
		t.Fatalf("start: %d %s", code, h.stderr)
	}
	if code := h.run("start", "c1"); code != 1 {
		t.Errorf("second start: exit %d", code)
	}
	if code := h.run("delete", "c1"); code != 1 || !strings.Contains(h.stderr, "not stopped") {
		t.Errorf("delete of a running container: exit %d %q", code, h.stderr)
	}
	if code := h.run("delete", "--force", "c1"); code != 0 {
		t.Errorf("delete --force: %d %s", code, h.stderr)
	}
	if _, err := os.Stat(r.ImageDisk); !os.IsNotExist(err) {
		t.Errorf("guest disk left after delete: %v", err)
	}
	c := h.eng.cs["c1"]
	if got := strings.Join(c.calls, ","); got != "start,delete true" {
		t.Errorf("calls %s", got)
	}
}

func TestCreateWarningsLoggedOnce(t *testing.T) {
	h := newHarness(t)
	s := minimalSpec()
	s.Process.Capabilities = nil
	s.Mounts = nil
	b, _ := json.Marshal(map[string]any{"ociVersion": "1.0.2", "process": s.Process, "root": s.Root,
		"linux":  map[string]any{"namespaces": []map[string]string{{"type": "pid"}, {"type": "mount"}}, "seccomp": map[string]any{"defaultAction": "SCMP_ACT_ALLOW"}},
		"mounts": []map[string]any{{"destination": "/etc/hosts", "type": "bind", "source": filepath.Join(h.dir, "hosts"), "options": []string{"rbind", "ro"}}}})
	write(t, filepath.Join(h.bundle, "config.json"), string(b))
	write(t, filepath.Join(h.dir, "hosts"), "10.0.0.1 engine\n")
	logFile := filepath.Join(h.dir, "log.json")
	if code := h.run("--log", logFile, "--log-format", "json", "create", "-b", h.bundle, "c2"); code != 0 {
		t.Fatalf("create: %d %s", code, h.stderr)
	}
	lb, _ := os.ReadFile(logFile)
	var lines []map[string]string
	for _, l := range strings.Split(strings.TrimSpace(string(lb)), "\n") {
		var m map[string]string
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if m["level"] == "" || m["time"] == "" {
			t.Errorf("log line lacks level/time: %q", l)
		}
		lines = append(lines, m)
	}
	all := string(lb)
	if strings.Count(all, "not applicable to a VM") != 1 || !strings.Contains(all, "namespaces (pid,mount") || !strings.Contains(all, "seccomp") {
		t.Errorf("log:\n%s", all)
	}
	if !strings.Contains(all, "copied into the guest disk") {
		t.Errorf("bind mount copy not reported:\n%s", all)
	}
	if h.stderr != "" {
		t.Errorf("warnings went to the container's stderr: %q", h.stderr)
	}
	// The bind mount is in the disk.
	im, err := openImage(t, h.eng.spawned[0].ImageDisk)
	if err != nil {
		t.Skip(err)
	}
	got, err := im.ReadFile("etc/hosts")
	if err != nil || string(got) != "10.0.0.1 engine\n" {
		t.Errorf("/etc/hosts in the disk = %q, %v", got, err)
	}
}

func TestErrorsAreRuncStyle(t *testing.T) {
	h := newHarness(t)
	logFile := filepath.Join(h.dir, "log.json")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"state", "nope"}, `container \"nope\" does not exist`},
		{[]string{"kill", "nope", "KILL"}, "does not exist"},
		{[]string{"delete", "nope"}, "does not exist"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"create", "--bogus", "x"}, "unknown create option"},
		{[]string{"create", "--bundle", filepath.Join(h.dir, "missing"), "x"}, "config.json"},
		{[]string{"create", "--bundle", h.bundle, "bad/id"}, "invalid container id"},
		{[]string{"kill", "c9", "SIGFOO"}, "unknown signal"},
	} {
		os.Remove(logFile)
		code := h.run(append([]string{"--log", logFile, "--log-format", "json"}, tc.args...)...)
		lb, _ := os.ReadFile(logFile)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1", tc.args, code)
		}
		var m map[string]string
		if err := json.Unmarshal([]byte(strings.TrimSpace(string(lb))), &m); err != nil || m["level"] != "error" || !strings.Contains(string(lb), tc.want) {
			t.Errorf("%v: log %q (%v), want an error line with %q", tc.args, lb, err, tc.want)
		}
		if !strings.Contains(h.stderr, strings.ReplaceAll(tc.want, `\"`, `"`)) {
			t.Errorf("%v: stderr %q", tc.args, h.stderr)
		}
	}
	if code := h.run("--log", filepath.Join(h.dir, "gone", "log.json"), "delete", "--force", "nope"); code != 0 {
		t.Errorf("delete --force of a missing container: exit %d %s", code, h.stderr)
	}
	if code := h.run("--log-format", "xml", "state", "x"); code != 1 {
		t.Errorf("bad --log-format accepted")
	}
}

func TestKillPauseExecPs(t *testing.T) {
	h := newHarness(t)
	if code := h.run("create", "--bundle", h.bundle, "c3"); code != 0 {
		t.Fatal(h.stderr)
	}
	h.run("start", "c3")
	for _, args := range [][]string{{"kill", "c3"}, {"kill", "--all", "c3", "KILL"}, {"kill", "c3", "9"}, {"kill", "c3", "sigusr1"}, {"pause", "c3"}, {"resume", "c3"}} {
		if code := h.run(args...); code != 0 {
			t.Errorf("%v: %d %s", args, code, h.stderr)
		}
	}
	if code := h.run("resume", "c3"); code != 1 {
		t.Errorf("resume of a running container: exit %d", code)
	}
	c := h.eng.cs["c3"]
	if got := strings.Join(c.calls, ","); got != "start,kill 15 false,kill 9 true,kill 9 false,kill 10 false,pause,resume" {
		t.Errorf("calls %s", got)
	}
	proc := filepath.Join(h.dir, "process.json")
	write(t, proc, `{"args":["sh","-c","exit 3"],"env":["A=1"],"cwd":"/tmp","user":{"uid":5,"gid":6}}`)
	pidFile := filepath.Join(h.dir, "exec.pid")
	if code := h.run("exec", "--process", proc, "--detach", "--pid-file", pidFile, "c3"); code != 0 {
		t.Fatalf("exec --detach: %d %s", code, h.stderr)
	}
	if b, _ := os.ReadFile(pidFile); string(b) != "5151" {
		t.Errorf("exec pid file %q", b)
	}
	e := c.execs[0]
	if strings.Join(e.Args, " ") != "sh -c exit 3" || e.Cwd != "/tmp" || e.User != "5:6" || e.Env[0] != "A=1" || e.Stdio[1] == nil {
		t.Errorf("exec request %+v", e)
	}
	if code := h.run("exec", "-e", "B=2", "--cwd", "/", "c3", "ls", "-l", "--color"); code != 7 {
		t.Errorf("foreground exec: exit %d, want the process's 7 (%s)", code, h.stderr)
	}
	e = c.execs[1]
	if strings.Join(e.Args, " ") != "ls -l --color" || e.Cwd != "/" || strings.Join(e.Env, ",") != "PATH=/bin,X=1=2,B=2" {
		t.Errorf("exec args/env %+v", e)
	}
	if code := h.run("ps", "--format", "json", "c3"); code != 0 || strings.TrimSpace(h.stdout) != "[4242]" {
		t.Errorf("ps: %d %q", code, h.stdout)
	}
}

func TestFeaturesAndVersion(t *testing.T) {
	h := newHarness(t)
	if code := h.run("features"); code != 0 {
		t.Fatal(h.stderr)
	}
	var f struct {
		OCIVersionMin, OCIVersionMax string
		Linux                        struct{ Namespaces []string }
		Annotations                  map[string]string
	}
	if err := json.Unmarshal([]byte(h.stdout), &f); err != nil {
		t.Fatal(err)
	}
	if f.OCIVersionMin == "" || f.OCIVersionMax == "" || f.Linux.Namespaces == nil || len(f.Linux.Namespaces) != 0 || f.Annotations["io.vxn.runtime_type"] != "vm" {
		t.Errorf("features %s", h.stdout)
	}
	// Podman's and the shim's global options.
	if code := h.run("--log-format=json", "--log", filepath.Join(h.dir, "l.json"), "--log-level", "debug", "--systemd-cgroup",
		"--cgroup-manager", "disabled", "-criu", "x", "features"); code != 0 {
		t.Errorf("engine global options refused: %s", h.stderr)
	}
	for _, v := range []string{"--version", "-v"} {
		if code := h.run(v); code != 0 || !strings.Contains(h.stdout, "vxn-oci-runtime version") || !strings.Contains(h.stdout, "spec: 1.") {
			t.Errorf("%s: %d %q", v, code, h.stdout)
		}
	}
}

func TestCreatePidFileFailureLeavesNothing(t *testing.T) {
	h := newHarness(t)
	if code := h.run("create", "--bundle", h.bundle, "--pid-file", filepath.Join(h.dir, "no", "such", "dir", "pid"), "p1"); code != 1 {
		t.Fatalf("create with an unwritable pid file: exit %d", code)
	}
	if got := strings.Join(h.eng.cs["p1"].calls, ","); got != "delete true" {
		t.Errorf("the container was not removed: calls %q", got)
	}
	if _, err := os.Stat(filepath.Join(h.root, ".disks", "p1.ext4")); !os.IsNotExist(err) {
		t.Errorf("guest disk left: %v", err)
	}
}

func TestTerminalNeedsConsoleSocket(t *testing.T) {
	h := newHarness(t)
	s := minimalSpec()
	s.Process.Terminal = true
	b, _ := json.Marshal(s)
	write(t, filepath.Join(h.bundle, "config.json"), string(b))
	if code := h.run("create", "--bundle", h.bundle, "t1"); code != 1 || !strings.Contains(h.stderr, "--console-socket") {
		t.Errorf("terminal without socket: %d %q", code, h.stderr)
	}
	if code := h.run("create", "--bundle", h.bundle, "--console-socket", filepath.Join(h.dir, "sock"), "t1"); code != 0 {
		t.Fatal(h.stderr)
	}
	r := h.eng.spawned[0]
	if !r.TTY || r.ConsoleSocket == "" || r.Stdio != [3]*os.File{} {
		t.Errorf("terminal container must not inherit the runtime's stdio: %+v", r)
	}
}

func TestWithSystemPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                 "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"/usr/bin:/bin":    "/usr/bin:/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin",
		"/opt/x:/usr/sbin": "/opt/x:/usr/sbin:/usr/local/sbin:/usr/local/bin:/usr/bin:/sbin:/bin",
	} {
		if got := WithSystemPath(in); got != want {
			t.Errorf("WithSystemPath(%q) = %q, want %q", in, got, want)
		}
	}
}
