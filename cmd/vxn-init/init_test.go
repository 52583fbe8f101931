package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
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
		case "exit":
			var n int
			fmt.Sscan(args[1], &n)
			os.Exit(n)
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
		var ee *execError
		if tc.code != 0 {
			if !errors.As(err, &ee) || ee.code != tc.code {
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

// runJob runs spec chroot-free through makePlan and runner, framing output
// like the guest does, and demultiplexes it like Dom0 does.
func runJob(t *testing.T, root string, spec *guestproto.Spec, stdin string) (code int, stdout, stderr string) {
	t.Helper()
	spec.Env = append(spec.Env, "VXN_INIT_HELPER=1")
	p, err := makePlan(root, spec)
	if err != nil {
		var ee *execError
		if errors.As(err, &ee) {
			return ee.code, "", err.Error()
		}
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	w := guestproto.NewWriter(pw)
	var o, e bytes.Buffer
	dm := make(chan error, 1)
	var dcode int
	go func() {
		var err error
		dcode, err = guestproto.Demux(context.Background(), pr, &o, &e)
		dm <- err
	}()
	r := &runner{w: w, drain: 100 * time.Millisecond}
	if stdin != "" {
		inR, inW, _ := os.Pipe()
		go func() { inW.Write([]byte(stdin)); inW.Close() }()
		r.stdin = inR
		defer inR.Close()
	}
	c, err := r.run(p)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteExit(c)
	if err := <-dm; err != nil {
		t.Fatal(err)
	}
	if dcode != c {
		t.Fatalf("demux code %d, runner %d", dcode, c)
	}
	return c, o.String(), e.String()
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
		{"not found", guestproto.Spec{Args: []string{"nope"}}, "", 127, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if os.Getuid() != 0 && tc.spec.User != "" {
				t.Skipf("changing user needs root (uid %d)", os.Getuid())
			}
			code, out, errOut := runJob(t, root, &tc.spec, tc.stdin)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if tc.code != 127 && errOut != "to stderr\n" {
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
	spec := &guestproto.Spec{Args: []string{"helper", "sleep"}, Env: []string{"VXN_INIT_HELPER=1"}}
	p, err := makePlan(root, spec)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sigs := make(chan syscall.Signal, 1)
	r := &runner{w: guestproto.NewWriter(&lockedBuf{b: &buf}), signals: sigs, drain: 100 * time.Millisecond,
		started: func(int) { go func() { time.Sleep(200 * time.Millisecond); sigs <- syscall.SIGTERM }() }}
	code, err := r.run(p)
	if err != nil || code != 128+int(syscall.SIGTERM) {
		t.Fatalf("code %d err %v", code, err)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
