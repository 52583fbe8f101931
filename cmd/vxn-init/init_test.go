package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/guestserver"
)

// TestMain turns the test binary into the container's test program when
// VXN_INIT_HELPER is set (the "entrypoint" of the chroot-free job tests).
func TestMain(m *testing.M) {
	if os.Getenv("VXN_INIT_HELPER") == "1" {
		helper()
		return
	}
	os.Exit(m.Run())
}

func helper() {
	args := os.Args[1:]
	wd, _ := os.Getwd()
	groups, _ := os.Getgroups()
	sort.Ints(groups)
	fmt.Printf("args=%q\n", args)
	fmt.Printf("id=%d:%d groups=%v\n", os.Getuid(), os.Getgid(), groups)
	fmt.Printf("cwd=%s\n", wd)
	fmt.Printf("env=%q\n", os.Environ())
	fmt.Fprintf(os.Stderr, "to stderr\n")
	if len(args) > 0 {
		switch args[0] {
		case "kill9":
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Hour)
		case "cat":
			io.Copy(os.Stdout, os.Stdin)
		case "sleep":
			time.Sleep(time.Hour)
		case "tty":
			ttyHelper()
		case "exit":
			var n int
			fmt.Sscan(args[1], &n)
			os.Exit(n)
		}
	}
}

// ttyHelper reports its terminal, then reports a SIGWINCH, echoes input
// lines until EOF and exits 3.
func ttyHelper() {
	_, err := unix.IoctlGetTermios(0, unix.TCGETS)
	_, cerr := os.Open("/dev/tty")
	ws, _ := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	fmt.Printf("isatty=%v ctty=%v size=%dx%d\n", err == nil, cerr == nil, ws.Row, ws.Col)
	fmt.Println("ready")
	go func() {
		for range winch {
			ws, _ := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ)
			fmt.Printf("winch %dx%d\n", ws.Row, ws.Col)
		}
	}()
	r := bufio.NewReader(os.Stdin)
	for {
		l, err := r.ReadString('\n')
		if l != "" {
			fmt.Printf("line %q\n", l)
		}
		if err != nil {
			os.Exit(3)
		}
	}
}

const passwd = `root:x:0:0:root:/root:/bin/sh
# comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
alice:x:1000:1000:Alice:/home/alice:/bin/sh
bob:x:1001:1001::/home/bob:/bin/sh
broken line
`

const group = `root:x:0:
wheel:x:10:alice,bob
audio:x:29:alice
alice:x:1000:
bob:x:1001:
staff:x:50:
`

func mkroot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for p, c := range map[string]string{"etc/passwd": passwd, "etc/group": group} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestResolveUser(t *testing.T) {
	root := mkroot(t)
	tests := []struct {
		spec string
		want ident
		err  string
	}{
		{"", ident{0, 0, nil, "/root"}, ""},
		{"root", ident{0, 0, nil, "/root"}, ""},
		{"alice", ident{1000, 1000, []uint32{10, 29}, "/home/alice"}, ""},
		{"1000", ident{1000, 1000, []uint32{10, 29}, "/home/alice"}, ""},
		{"bob", ident{1001, 1001, []uint32{10}, "/home/bob"}, ""},
		{"alice:staff", ident{1000, 50, nil, "/home/alice"}, ""},
		{"alice:50", ident{1000, 50, nil, "/home/alice"}, ""},
		{"alice:4242", ident{1000, 4242, nil, "/home/alice"}, ""},
		{"4242", ident{4242, 0, nil, ""}, ""},
		{"4242:4243", ident{4242, 4243, nil, ""}, ""},
		{"nobody", ident{}, "unable to find user nobody"},
		{"alice:nogroup", ident{}, "unable to find group nogroup"},
		{"alice:", ident{}, "empty group"},
		{":10", ident{}, "empty user"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := resolveUser(root, tc.spec)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got %+v, want %+v", *got, tc.want)
			}
		})
	}
	// No /etc/passwd at all (scratch images): numeric ids work, names not.
	empty := t.TempDir()
	if id, err := resolveUser(empty, "123:456"); err != nil || id.UID != 123 || id.GID != 456 {
		t.Errorf("no passwd: %+v %v", id, err)
	}
	if _, err := resolveUser(empty, "alice"); err == nil {
		t.Error("name resolved without passwd")
	}
	bad := mkroot(t)
	os.WriteFile(filepath.Join(bad, "etc/passwd"), []byte("x:x:notanumber:0::/:/bin/sh\n"), 0o644)
	if _, err := resolveUser(bad, "x"); err == nil || !strings.Contains(err.Error(), "/etc/passwd:1") {
		t.Errorf("bad passwd err %v", err)
	}
}

func TestBuildEnv(t *testing.T) {
	tests := []struct {
		env            []string
		home, hostname string
		want           []string
	}{
		{nil, "", "", []string{"PATH=" + defaultPath, "HOME=/"}},
		{[]string{"A=1", "A=2", "PATH=/x"}, "/root", "h", []string{"A=2", "PATH=/x", "HOSTNAME=h", "HOME=/root"}},
		{[]string{"HOME=/mine", "EMPTY="}, "/root", "", []string{"HOME=/mine", "EMPTY=", "PATH=" + defaultPath}},
	}
	for i, tc := range tests {
		if got := buildEnv(tc.env, tc.home, tc.hostname); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%d: got %q, want %q", i, got, tc.want)
		}
	}
}

func TestResolveIn(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/tool"), []byte("#!"), 0o755)
	os.Symlink("usr/bin", filepath.Join(root, "bin"))
	os.Symlink("/usr/bin/tool", filepath.Join(root, "usr/bin/abs"))
	os.Symlink("../../../../../etc/shadow", filepath.Join(root, "usr/bin/escape"))
	os.Symlink("loop", filepath.Join(root, "loop"))
	tests := []struct{ in, want, err string }{
		{"/bin/tool", "/usr/bin/tool", ""},
		{"/bin/abs", "/usr/bin/tool", ""},
		{"/usr/bin/escape", "/etc/shadow", ""},
		{"/../../etc", "/etc", ""},
		{"/missing/x", "/missing/x", ""},
		{"/loop", "", "too many levels"},
	}
	for _, tc := range tests {
		got, err := resolveIn(root, tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v", tc.in, err)
			}
			continue
		}
		if err != nil || got != filepath.Join(root, tc.want) {
			t.Errorf("%s: got %s %v, want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestLookPath(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.MkdirAll(filepath.Join(root, "opt"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/tool"), nil, 0o755)
	os.WriteFile(filepath.Join(root, "opt/noexec"), nil, 0o644)
	os.Symlink("/usr/bin/tool", filepath.Join(root, "opt/link"))
	tests := []struct {
		argv0, path, want string
		code              int
	}{
		{"tool", "/bin:/usr/bin", "/usr/bin/tool", 0},
		{"link", "/opt", "/opt/link", 0},
		{"/usr/bin/tool", "", "/usr/bin/tool", 0},
		{"nope", "/usr/bin", "", 127},
		{"/nope", "/usr/bin", "", 127},
		{"noexec", "/opt", "", 126},
		{"/opt/noexec", "", "", 126},
		{"tool", "relative:/usr/bin", "/usr/bin/tool", 0},
		{"./rel", "", "./rel", 0},
	}
	for _, tc := range tests {
		got, err := lookPath(root, tc.argv0, tc.path)
		var ee *guestserver.StartError
		if tc.code != 0 {
			if !errors.As(err, &ee) || ee.Status != tc.code {
				t.Errorf("%s: err %v, want code %d", tc.argv0, err, tc.code)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %q %v, want %q", tc.argv0, got, err, tc.want)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	c := parseCmdline("console=ttyS0 quiet vxn.console=/dev/ttyS1 vxn.spec=/dev/vdb vxn.debug=1\n")
	if c.Console != "ttyS1" || c.Spec != "/dev/vdb" || !c.Debug {
		t.Errorf("%+v", c)
	}
	if c := parseCmdline(""); c.Console != "hvc0" || c.Spec != "console" || c.Debug {
		t.Errorf("defaults %+v", c)
	}
}

// jobRoot is a container root whose /bin/helper is this test binary.
func jobRoot(t *testing.T) string {
	root := mkroot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	if err := os.WriteFile(filepath.Join(root, "bin/helper"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's directories are 0700: let other uids reach the root.
	os.Chmod(root, 0o755)
	os.Chmod(filepath.Dir(root), 0o755)
	return root
}

// testGuest is a guest run chroot-free in the test process: frames go
// through pipes as over the console, Dom0's side reads them.
type testGuest struct {
	t      *testing.T
	to     *guestproto.Writer // Dom0 → guest
	frames chan guestproto.Frame
	seen   []guestproto.Frame
}

var (
	reaperOnce sync.Once
	testReaper *reaper
)

// startGuest runs the protocol server as vxn-init does, with root as the
// container root set up, and sends spec; before runs first (its frames
// come before the spec, as Dom0's may).
func startGuest(t *testing.T, root string, spec *guestproto.Spec, before func(tg *testGuest)) *testGuest {
	t.Helper()
	reaperOnce.Do(func() { testReaper = newReaper() })
	st := &starter{rp: testReaper, drain: 100 * time.Millisecond, root: root}
	if _, err := os.Stat("/dev/pts/ptmx"); err == nil {
		st.pts = "/dev/pts"
	}
	cr, cw := io.Pipe() // Dom0 → guest
	or, ow := io.Pipe() // guest → Dom0
	srv := guestserver.New(guestserver.Config{Writer: guestproto.NewWriter(ow), Starter: st})
	tg := &testGuest{t: t, to: guestproto.NewWriter(cw), frames: make(chan guestproto.Frame, 1024)}
	go srv.ReadConsole(cr)
	go func() {
		defer close(tg.frames)
		r := guestproto.NewReader(or)
		for {
			f, err := r.Next()
			if err != nil {
				return
			}
			tg.frames <- f
		}
	}()
	t.Cleanup(func() { cw.Close(); or.Close() })
	go func() {
		srv.Run(context.Background())
		ow.Close()
	}()
	tg.waitFor(guestproto.TypeReady, "")
	if before != nil {
		before(tg)
	}
	if err := tg.to.SendSpec(spec); err != nil {
		t.Fatal(err)
	}
	return tg
}

func (tg *testGuest) send(t guestproto.Type, payload []byte) {
	tg.t.Helper()
	if err := tg.to.WriteFrame(t, payload); err != nil {
		tg.t.Fatalf("sending %s: %v", t, err)
	}
}

func (tg *testGuest) sendJSON(t guestproto.Type, v any) {
	tg.t.Helper()
	b, _ := json.Marshal(v)
	tg.send(t, b)
}

func (tg *testGuest) next() (guestproto.Frame, bool) {
	tg.t.Helper()
	select {
	case f, ok := <-tg.frames:
		if ok {
			tg.seen = append(tg.seen, f)
		}
		return f, ok
	case <-time.After(30 * time.Second):
		tg.t.Fatalf("no frame within 30s; seen %s", tg.dump())
	}
	return guestproto.Frame{}, false
}

func (tg *testGuest) waitFor(t guestproto.Type, sub string) guestproto.Frame {
	tg.t.Helper()
	for {
		f, ok := tg.next()
		if !ok {
			tg.t.Fatalf("guest ended waiting for %s %q; seen %s", t, sub, tg.dump())
		}
		if f.Type == t && strings.Contains(string(f.Payload), sub) {
			return f
		}
	}
}

// exit reads up to the Exit frame; -1 when the stream ends without one.
func (tg *testGuest) exit() int {
	tg.t.Helper()
	for {
		f, ok := tg.next()
		if !ok {
			return -1
		}
		if f.Type == guestproto.TypeExit {
			n, _ := strconv.Atoi(string(f.Payload))
			return n
		}
	}
}

func (tg *testGuest) execExit(id uint32) guestproto.ExecExit {
	tg.t.Helper()
	for {
		e, err := guestproto.ParseExecExit(tg.waitFor(guestproto.TypeExecExit, "").Payload)
		if err != nil {
			tg.t.Fatal(err)
		}
		if e.ID == id {
			return e
		}
	}
}

// output is what was seen of session (0: main) on stream (1, 2).
func (tg *testGuest) output(session uint32, stream byte) string {
	var b strings.Builder
	for _, f := range tg.seen {
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

func (tg *testGuest) logged(sub string) bool {
	for _, f := range tg.seen {
		if (f.Type == guestproto.TypeLog || f.Type == guestproto.TypeFatal) && strings.Contains(string(f.Payload), sub) {
			return true
		}
	}
	return false
}

func (tg *testGuest) dump() string {
	var b strings.Builder
	for _, f := range tg.seen {
		fmt.Fprintf(&b, "\n  %s %q", f.Type, f.Payload)
	}
	return b.String()
}

func TestRunJob(t *testing.T) {
	root := jobRoot(t)
	tests := []struct {
		name  string
		spec  guestproto.Spec
		stdin string
		code  int
		out   []string
	}{
		{"argv verbatim", guestproto.Spec{Args: []string{"helper", "a b", "", "$HOME", "*"}}, "", 0,
			[]string{`args=["a b" "" "$HOME" "*"]`}},
		{"exit 42", guestproto.Spec{Args: []string{"/bin/helper", "exit", "42"}}, "", 42, nil},
		{"exit 1", guestproto.Spec{Args: []string{"helper", "exit", "1"}}, "", 1, nil},
		{"kill -9", guestproto.Spec{Args: []string{"helper", "kill9"}}, "", 137, nil},
		{"env and cwd", guestproto.Spec{Args: []string{"helper"}, Env: []string{"FOO=bar baz", "PATH=/bin"}, Cwd: "/srv/app", Hostname: "box"}, "", 0,
			[]string{"/srv/app\n", `"FOO=bar baz"`, `"PATH=/bin"`, `"HOSTNAME=box"`, `"HOME=/root"`}},
		{"user", guestproto.Spec{Args: []string{"helper"}, User: "alice"}, "", 0,
			[]string{"id=1000:1000 groups=[10 29]", `"HOME=/home/alice"`}},
		{"user:group", guestproto.Spec{Args: []string{"helper"}, User: "1001:staff"}, "", 0,
			[]string{"id=1001:50 groups=[]"}},
		{"stdin", guestproto.Spec{Args: []string{"helper", "cat"}, Stdin: true}, "input\x00bytes", 0,
			[]string{"input\x00bytes"}},
		{"stdin not kept without -i", guestproto.Spec{Args: []string{"helper", "cat"}}, "dropped", 0, nil},
		{"not found", guestproto.Spec{Args: []string{"nope"}}, "", 127, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if os.Getuid() != 0 && tc.spec.User != "" {
				t.Skipf("changing user needs root (uid %d)", os.Getuid())
			}
			tc.spec.Env = append(tc.spec.Env, "VXN_INIT_HELPER=1")
			tg := startGuest(t, root, &tc.spec, func(tg *testGuest) {
				if tc.stdin != "" { // sent before the process starts: buffered
					tg.send(guestproto.TypeStdin, []byte(tc.stdin))
					tg.send(guestproto.TypeStdinClose, nil)
				}
			})
			code := tg.exit()
			if code != tc.code {
				t.Errorf("exit %d, want %d; frames %s", code, tc.code, tg.dump())
			}
			out, errOut := tg.output(0, 1), tg.output(0, 2)
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "dropped") {
				t.Error("stdin fed without -i")
			}
			if tc.code == 127 {
				if !tg.logged(`"nope": executable file not found`) {
					t.Errorf("no Fatal frame naming the program: %s", tg.dump())
				}
			} else if errOut != "to stderr\n" {
				t.Errorf("stderr %q", errOut)
			}
			if strings.Contains(out, "to stderr") {
				t.Error("stderr merged into stdout")
			}
		})
	}
	if st, err := os.Stat(filepath.Join(root, "srv/app")); err != nil || !st.IsDir() {
		t.Errorf("cwd not created: %v", err)
	}
}

// TestSignalForward checks Signal frames reach the entrypoint (SIGTERM →
// 143) and that output written before is delivered.
func TestSignalForward(t *testing.T) {
	root := jobRoot(t)
	tg := startGuest(t, root, &guestproto.Spec{Args: []string{"helper", "sleep"}, Env: []string{"VXN_INIT_HELPER=1"}}, nil)
	tg.waitFor(guestproto.TypeStderr, "to stderr")
	tg.send(guestproto.TypeSignal, []byte("15"))
	if code := tg.exit(); code != 143 {
		t.Fatalf("exit %d, want 143; frames %s", code, tg.dump())
	}
}

func execData(id uint32, data string) []byte {
	return guestproto.AppendExecData(nil, guestproto.ExecData{ID: id, Stream: guestproto.StreamStdin, Data: []byte(data)})
}

// TestExec runs exec sessions beside a sleeping main process.
func TestExec(t *testing.T) {
	root := jobRoot(t)
	os.WriteFile(filepath.Join(root, "bin/noexec"), []byte("x"), 0o644)
	tests := []struct {
		name   string
		exec   guestproto.ExecSpec
		after  func(tg *testGuest)
		status int
		errSub string // in ExecExit.Error; for 126/127 also in a Log frame
		out    []string
		stderr string
	}{
		{name: "output and env default", exec: guestproto.ExecSpec{ID: 1, Args: []string{"helper", "x y"}},
			out: []string{`args=["x y"]`, `"MAIN=1"`, "/work\n", `"HOME=/root"`}, stderr: "to stderr\n"},
		{name: "own env and cwd", exec: guestproto.ExecSpec{ID: 2, Args: []string{"helper"}, Env: []string{"VXN_INIT_HELPER=1", "OWN=2"}, Cwd: "/other"},
			out: []string{`"OWN=2"`, "/other\n"}, stderr: "to stderr\n"},
		{name: "user", exec: guestproto.ExecSpec{ID: 1, Args: []string{"helper"}, User: "bob"},
			out: []string{"id=1001:1001 groups=[10]", `"HOME=/home/bob"`}, stderr: "to stderr\n"},
		{name: "exit status", exec: guestproto.ExecSpec{ID: 3, Args: []string{"helper", "exit", "7"}}, status: 7, stderr: "to stderr\n"},
		{name: "stdin", exec: guestproto.ExecSpec{ID: 4, Args: []string{"helper", "cat"}, Stdin: true},
			after: func(tg *testGuest) {
				tg.send(guestproto.TypeExecData, execData(4, "in\x00put"))
				tg.send(guestproto.TypeExecData, execData(4, ""))
			}, out: []string{"in\x00put"}, stderr: "to stderr\n"},
		{name: "signal", exec: guestproto.ExecSpec{ID: 5, Args: []string{"helper", "sleep"}},
			after: func(tg *testGuest) {
				tg.waitFor(guestproto.TypeExecData, "to stderr")
				tg.send(guestproto.TypeExecSignal, guestproto.FormatSignal(5, 9))
			}, status: 137, stderr: "to stderr\n"},
		{name: "not found", exec: guestproto.ExecSpec{ID: 1, Args: []string{"nope"}}, status: 127, errSub: `"nope": executable file not found`},
		{name: "not executable", exec: guestproto.ExecSpec{ID: 1, Args: []string{"/bin/noexec"}}, status: 126, errSub: "permission denied"},
		{name: "unknown user", exec: guestproto.ExecSpec{ID: 1, Args: []string{"helper"}, User: "nobody"}, status: -1, errSub: "unable to find user nobody"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if os.Getuid() != 0 && tc.exec.User != "" {
				t.Skipf("changing user needs root (uid %d)", os.Getuid())
			}
			tg := startGuest(t, root, &guestproto.Spec{Args: []string{"helper", "sleep"}, Env: []string{"VXN_INIT_HELPER=1", "MAIN=1"}, Cwd: "/work"}, nil)
			tg.waitFor(guestproto.TypeStdout, "MAIN=1")
			tg.sendJSON(guestproto.TypeExec, tc.exec)
			if tc.after != nil {
				tc.after(tg)
			}
			e := tg.execExit(tc.exec.ID)
			if e.Status != tc.status || !strings.Contains(e.Error, tc.errSub) || (tc.errSub == "") != (e.Error == "") {
				t.Errorf("exec exit %+v, want status %d error %q; frames %s", e, tc.status, tc.errSub, tg.dump())
			}
			if tc.status >= 126 && tc.errSub != "" && !tg.logged(tc.errSub) {
				t.Errorf("no Log frame with %q", tc.errSub)
			}
			out := tg.output(tc.exec.ID, 1)
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if got := tg.output(tc.exec.ID, 2); got != tc.stderr {
				t.Errorf("stderr %q, want %q", got, tc.stderr)
			}
			if !strings.Contains(tg.output(0, 1), `"MAIN=1"`) || strings.Contains(tg.output(0, 1), "/other") {
				t.Errorf("main output mixed up: %q", tg.output(0, 1))
			}
			tg.send(guestproto.TypeSignal, []byte("15"))
			if code := tg.exit(); code != 143 {
				t.Errorf("main exit %d, want 143", code)
			}
		})
	}
}

// TestExecLifecycle: sessions refused by state, garbage frames, and
// sessions killed when the main process ends.
func TestExecLifecycle(t *testing.T) {
	root := jobRoot(t)
	spec := &guestproto.Spec{Args: []string{"helper", "sleep"}, Env: []string{"VXN_INIT_HELPER=1"}}
	tg := startGuest(t, root, spec, func(tg *testGuest) {
		tg.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 1, Args: []string{"helper"}})
		if e := tg.execExit(1); e.Status != -1 || !strings.Contains(e.Error, "not running") {
			t.Errorf("exec before start: %+v", e)
		}
	})
	tg.waitFor(guestproto.TypeStderr, "to stderr")
	tg.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 4})
	if e := tg.execExit(4); e.Status != -1 || !strings.Contains(e.Error, "empty argv") {
		t.Errorf("empty argv: %+v", e)
	}
	tg.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 2, Args: []string{"helper", "sleep"}})
	tg.waitFor(guestproto.TypeExecData, "to stderr")
	tg.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 2, Args: []string{"helper"}})
	if e := tg.execExit(2); e.Status != -1 || !strings.Contains(e.Error, "already running") {
		t.Errorf("duplicate id: %+v", e)
	}
	tg.send(guestproto.TypeExec, []byte("{"))
	tg.send(guestproto.TypeExecData, []byte{0, 0})
	tg.send(guestproto.TypeExecData, execData(77, "x"))
	tg.send(guestproto.TypeExecSignal, []byte("x"))
	tg.send(guestproto.TypeWindow, []byte("x"))
	tg.send(guestproto.TypeExecSignal, guestproto.FormatSignal(99, 9))
	tg.waitFor(guestproto.TypeLog, "session 99")
	tg.send(guestproto.TypeSignal, []byte("15"))
	if e := tg.execExit(2); e.Status != 137 {
		t.Errorf("session left when main ended: %+v", e)
	}
	if code := tg.exit(); code != 143 {
		t.Errorf("exit %d", code)
	}
}

// TestTTY runs the main process and an exec session on terminals:
// controlling terminal, size from Window frames, SIGWINCH, output on stdout
// only with CRLF, input through the terminal.
func TestTTY(t *testing.T) {
	if _, err := os.Stat("/dev/pts/ptmx"); err != nil {
		t.Skipf("no devpts here: %v", err)
	}
	root := jobRoot(t)
	spec := &guestproto.Spec{Args: []string{"helper", "tty"}, Env: []string{"VXN_INIT_HELPER=1"}, TTY: true, Stdin: true}
	tg := startGuest(t, root, spec, func(tg *testGuest) {
		tg.send(guestproto.TypeWindow, guestproto.FormatWindow(guestproto.Window{Rows: 30, Cols: 100}))
	})
	tg.waitFor(guestproto.TypeStdout, "ready")
	tg.send(guestproto.TypeWindow, guestproto.FormatWindow(guestproto.Window{Rows: 40, Cols: 120}))
	tg.waitFor(guestproto.TypeStdout, "winch 40x120")
	tg.send(guestproto.TypeStdin, []byte("hello\n"))
	tg.waitFor(guestproto.TypeStdout, "line \"hello\\n\"")

	// An exec session with its own terminal, meanwhile.
	tg.send(guestproto.TypeWindow, guestproto.FormatWindow(guestproto.Window{Rows: 5, Cols: 6, ID: 3}))
	tg.sendJSON(guestproto.TypeExec, guestproto.ExecSpec{ID: 3, Args: []string{"helper", "tty"}, TTY: true, Stdin: true})
	tg.waitFor(guestproto.TypeExecData, "ready")
	tg.send(guestproto.TypeExecData, execData(3, "abc"))
	tg.send(guestproto.TypeExecData, execData(3, "")) // EOF: ^D
	if e := tg.execExit(3); e.Status != 3 {
		t.Errorf("exec exit %+v, want 3", e)
	}
	ex := tg.output(3, 1)
	for _, w := range []string{"isatty=true ctty=true size=5x6\r\n", "to stderr\r\n", `line "abc"`} {
		if !strings.Contains(ex, w) {
			t.Errorf("exec terminal output lacks %q:\n%q", w, ex)
		}
	}
	if tg.output(3, 2) != "" {
		t.Errorf("exec stderr with a terminal: %q", tg.output(3, 2))
	}

	tg.send(guestproto.TypeStdinClose, nil)
	if code := tg.exit(); code != 3 {
		t.Errorf("exit %d, want 3; frames %s", code, tg.dump())
	}
	out := tg.output(0, 1)
	for _, w := range []string{"isatty=true ctty=true size=30x100\r\n", "to stderr\r\n", "hello\r\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("terminal output lacks %q:\n%q", w, out)
		}
	}
	if tg.output(0, 2) != "" {
		t.Errorf("stderr with a terminal: %q", tg.output(0, 2))
	}
}
