package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/toolstack/faketoolstack"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestRenderConfigGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    DomainConfig
	}{
		{"minimal", DomainConfig{Name: "vxn-0123456789ab", MemoryMB: 128, VCPUs: 1, Kernel: "/usr/share/vxn/x86_64/vmlinux",
			Initramfs: "/usr/share/vxn/x86_64/initramfs.cpio.gz", ImageDisk: "/var/lib/vxn/disks/abc.ext4"}},
		{"scratch-bridge", DomainConfig{Name: "vxn-0123456789ab", MemoryMB: 256, VCPUs: 2, Kernel: "/k/bzImage",
			Initramfs: "/k/initramfs.cpio.gz", ImageDisk: "/var/lib/vxn/disks/a,b.ext4",
			ScratchDisk: "/run/vxn/containers/0123/scratch.ext4", Bridge: "xenbr0"}},
		{"pvh", DomainConfig{Name: "vxn-x", Type: "pvh", MemoryMB: 64, VCPUs: 1, Kernel: "/k", Initramfs: "/i", ImageDisk: "/d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderConfig(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join("testdata", tc.name+".cfg")
			if *update {
				os.WriteFile(p, got, 0o644)
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if d := cmp.Diff(string(want), string(got)); d != "" {
				t.Errorf("%s: -want +got:\n%s", p, d)
			}
		})
	}
	for _, bad := range []DomainConfig{
		{Name: "x", Kernel: "/k", Initramfs: "/i"},
		{Name: "x", Kernel: "/k", Initramfs: "/i", ImageDisk: "/d'q"},
		{Name: "x\n", Kernel: "/k", Initramfs: "/i", ImageDisk: "/d"},
		{Name: "x", Kernel: "/k", Initramfs: "/i", ImageDisk: "/d", Bridge: "a,b"},
	} {
		if _, err := RenderConfig(bad); err == nil {
			t.Errorf("RenderConfig(%+v) succeeded, want an error", bad)
		}
	}
}

func TestCheckMemory(t *testing.T) {
	for _, tc := range []struct {
		free, req int
		ok        bool
	}{{498, 128, true}, {128, 128, true}, {127, 128, false}, {0, 64, false}} {
		err := CheckMemory(toolstack.Info{TotalMemoryMB: 1023, FreeMemoryMB: tc.free}, tc.req)
		if (err == nil) != tc.ok {
			t.Errorf("free %d, request %d: err = %v, want ok=%v", tc.free, tc.req, err, tc.ok)
		}
		if err != nil {
			for _, s := range []string{fmt.Sprint(tc.req), fmt.Sprint(tc.free), "--memory", "xl list"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		}
	}
}

// env is a test bed: a fake toolstack, fake assets and a runtime dir.
type env struct {
	t       *testing.T
	ts      *faketoolstack.Fake
	runtime string
	assets  string
}

func newEnv(t *testing.T, prog faketoolstack.Program) *env {
	e := &env{t: t, ts: &faketoolstack.Fake{Guest: faketoolstack.Init(prog)}, runtime: filepath.Join(t.TempDir(), "run"), assets: t.TempDir()}
	for _, f := range []string{"vmlinux", "initramfs.cpio.gz", "image.ext4"} {
		os.WriteFile(filepath.Join(e.assets, f), []byte("x"), 0o644)
	}
	return e
}

func (e *env) opts(args ...string) Options {
	return Options{RuntimeDir: e.runtime, Kernel: filepath.Join(e.assets, "vmlinux"),
		Initramfs: filepath.Join(e.assets, "initramfs.cpio.gz"), ImageDisk: filepath.Join(e.assets, "image.ext4"),
		Args: args, ReadyTimeout: 10 * time.Second}
}

// clean asserts nothing is left: no domain but Domain-0, no state dir.
func (e *env) clean() {
	e.t.Helper()
	doms, _ := e.ts.List(context.Background())
	if len(doms) != 1 {
		e.t.Errorf("domains left: %+v", doms)
	}
	ents, _ := os.ReadDir(e.runtime)
	for _, d := range ents {
		if d.Name() != ".lock" {
			e.t.Errorf("state left in the runtime dir: %s", d.Name())
		}
	}
}

// syncBuf is a goroutine-safe buffer that can signal when text shows up.
type syncBuf struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan struct{}
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Write(p)
	if s.seen != nil && strings.Contains(s.b.String(), s.want) {
		close(s.seen)
		s.seen = nil
	}
	return len(p), nil
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(s *syncBuf, text string) <-chan struct{} {
	c := make(chan struct{})
	s.mu.Lock()
	s.want, s.seen = text, c
	s.mu.Unlock()
	return c
}

func TestRunExitCodesAndStreams(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	for _, tc := range []struct {
		args           []string
		code           int
		stdout, stderr string
	}{
		{[]string{"echo", "hello"}, 0, "hello\n", ""},
		{[]string{"false"}, 1, "", ""},
		{[]string{"exit", "42"}, 42, "", ""},
		{[]string{"exit", "137"}, 137, "", ""},
		{[]string{"echo-err", "oops"}, 0, "", "oops\n"},
		{[]string{"no-such-program"}, 127, "", "no-such-program: not found\n"},
	} {
		t.Run(strings.Join(tc.args, "_"), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			o := e.opts(tc.args...)
			o.Stdout, o.Stderr = &stdout, &stderr
			res, err := Run(context.Background(), e.ts, o)
			if err != nil {
				t.Fatal(err)
			}
			if res.ExitCode != tc.code || stdout.String() != tc.stdout || stderr.String() != tc.stderr {
				t.Errorf("got %d %q %q, want %d %q %q", res.ExitCode, stdout.String(), stderr.String(), tc.code, tc.stdout, tc.stderr)
			}
			e.clean()
		})
	}
}

func TestRunSpecAndSecrets(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	var stdout bytes.Buffer
	o := e.opts("spec")
	o.Env = []string{"PATH=/bin", "SECRET=hunter2"}
	o.Cwd, o.User, o.Name, o.Stdout = "/work", "1000:1000", "web", &stdout
	o.ScratchMB = 8
	res, err := Run(context.Background(), e.ts, o)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("Run: %v, %+v", err, res)
	}
	var got guestproto.Spec
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("spec output %q: %v", stdout.String(), err)
	}
	want := guestproto.Spec{Args: []string{"spec"}, Env: o.Env, Cwd: "/work", User: "1000:1000",
		Hostname: res.ID[:12], RootDev: "xvda", RootFSType: "ext4", ScratchDev: "xvdb"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("spec seen by the guest: -want +got:\n%s", d)
	}
	cfg := string(e.ts.ConfigOf(res.Domain))
	if strings.Contains(cfg, "hunter2") || strings.Contains(strings.Join(e.ts.Calls(), " "), "hunter2") {
		t.Errorf("the secret leaked into the xl config or toolstack calls:\n%s", cfg)
	}
	if !strings.Contains(cfg, "vdev=xvdb, access=rw") || !strings.Contains(cfg, `on_poweroff = "preserve"`) {
		t.Errorf("config lacks the scratch disk or on_poweroff:\n%s", cfg)
	}
	if !strings.HasPrefix(res.Domain, "vxn-") || len(res.Domain) != 16 {
		t.Errorf("domain name %q, want vxn-<id12>", res.Domain)
	}
	calls := e.ts.Calls()
	wantCalls := []string{"create -p " + res.Domain, fmt.Sprintf("console %d", res.DomID), fmt.Sprintf("unpause %d", res.DomID), fmt.Sprintf("destroy %d", res.DomID)}
	if d := cmp.Diff(wantCalls, calls); d != "" {
		t.Errorf("toolstack calls: -want +got:\n%s", d)
	}
	e.clean()
}

func TestRunStdin(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	var stdout bytes.Buffer
	o := e.opts("cat")
	o.Stdin, o.Stdout = strings.NewReader("line1\nbinary\x00\xff\n"), &stdout
	res, err := Run(context.Background(), e.ts, o)
	if err != nil || res.ExitCode != 0 || stdout.String() != "line1\nbinary\x00\xff\n" {
		t.Errorf("cat: %v, %+v, %q", err, res, stdout.String())
	}
	e.clean()
}

// TestRunStreamingAndSignal proves output arrives while the container runs
// (it blocks until signalled, and is only signalled once "waiting" arrived)
// and that the first interrupt is forwarded: exit 128+SIGINT.
func TestRunStreamingAndSignal(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	stdout := &syncBuf{}
	seen := waitFor(stdout, "waiting\n")
	sigs := make(chan os.Signal, 2)
	go func() {
		<-seen
		sigs <- syscall.SIGINT
	}()
	o := e.opts("wait-signal")
	o.Stdout, o.Signals = stdout, sigs
	res, err := Run(context.Background(), e.ts, o)
	if err != nil || res.ExitCode != 130 {
		t.Errorf("got %+v, %v; want exit 130", res, err)
	}
	e.clean()
}

func TestRunSecondInterruptDestroys(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	stdout := &syncBuf{}
	seen := waitFor(stdout, "hanging\n")
	sigs := make(chan os.Signal, 2)
	go func() {
		<-seen
		sigs <- syscall.SIGINT
		sigs <- syscall.SIGINT
	}()
	o := e.opts("hang")
	o.Stdout, o.Signals = stdout, sigs
	res, err := Run(context.Background(), e.ts, o)
	if !errors.Is(err, ErrKilled) || res.ExitCode != 137 {
		t.Errorf("got %+v, %v; want ErrKilled and 137", res, err)
	}
	e.clean()
}

// TestRunCleanupOnFailure covers the failure paths: each must leave no
// domain and no state behind.
func TestRunCleanupOnFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		prog  faketoolstack.Program
		guest faketoolstack.GuestFunc
		setup func(*env, *Options) context.Context
		want  string
	}{
		{name: "memory", setup: func(e *env, o *Options) context.Context {
			o.MemoryMB = 4096
			return context.Background()
		}, want: "needs 4096 MB but Xen has 512 MB free (of 1024 MB)"},
		{name: "create fails", setup: func(e *env, o *Options) context.Context {
			e.ts.CreateErr = errors.New("libxl: boom")
			return context.Background()
		}, want: "creating the guest: libxl: boom"},
		{name: "no kernel", setup: func(e *env, o *Options) context.Context {
			o.Kernel = filepath.Join(e.assets, "missing")
			return context.Background()
		}, want: "guest kernel"},
		{name: "cancelled", prog: faketoolstack.ScriptProgram, setup: func(e *env, o *Options) context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			out := &syncBuf{}
			seen := waitFor(out, "hanging")
			o.Stdout, o.Args = out, []string{"hang"}
			go func() { <-seen; cancel() }()
			return ctx
		}, want: "context canceled"},
		{name: "never ready", guest: func(ctx context.Context, g *faketoolstack.Guest) {
			g.Console.Write([]byte("Kernel panic - not syncing: fake\n"))
			<-ctx.Done()
		}, setup: func(e *env, o *Options) context.Context {
			o.ReadyTimeout = 100 * time.Millisecond
			return context.Background()
		}, want: "Kernel panic - not syncing: fake"},
		{name: "crash without exit", guest: func(ctx context.Context, g *faketoolstack.Guest) {
			w := guestproto.NewWriter(g.Console)
			w.WriteFrame(guestproto.TypeReady, []byte(`{"version":1}`))
			guestproto.NewReader(g.Console).Next()
			g.Console.Write([]byte("BUG: fake oops\n"))
		}, setup: func(e *env, o *Options) context.Context { return context.Background() },
			want: "BUG: fake oops"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, faketoolstack.ScriptProgram)
			if tc.guest != nil {
				e.ts.Guest = tc.guest
			}
			o := e.opts("echo", "hi")
			ctx := tc.setup(e, &o)
			res, err := Run(ctx, e.ts, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
			if res.ExitCode != -1 {
				t.Errorf("exit code %d, want -1", res.ExitCode)
			}
			e.clean()
		})
	}
}

func TestRunConcurrent(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	e.ts.TotalMemoryMB = 4096
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var stdout bytes.Buffer
			o := e.opts("echo", fmt.Sprint("run", i))
			o.MemoryMB, o.Stdout = 64, &stdout
			res, err := Run(context.Background(), e.ts, o)
			if err != nil || res.ExitCode != 0 || stdout.String() != fmt.Sprintf("run%d\n", i) {
				t.Errorf("run %d: %v %+v %q", i, err, res, stdout.String())
			}
		}()
	}
	wg.Wait()
	e.clean()
}

func TestNameInUse(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	stdout := &syncBuf{}
	seen := waitFor(stdout, "hanging")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		o := e.opts("hang")
		o.Name, o.Stdout = "web", stdout
		Run(ctx, e.ts, o)
		close(done)
	}()
	<-seen
	o := e.opts("echo")
	o.Name = "web"
	if _, err := Run(context.Background(), e.ts, o); err == nil || !strings.Contains(err.Error(), `name "web" is already in use`) {
		t.Errorf("second --name web: err = %v", err)
	}
	cancel()
	<-done
	o.Name = "web" // free again
	if res, err := Run(context.Background(), e.ts, o); err != nil || res.ExitCode != 0 {
		t.Errorf("--name web after the first ended: %v", err)
	}
	e.clean()
}

func TestReap(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	ctx := context.Background()
	// A container whose vxn was killed: state, no lock holder, a domain.
	dead := NewID()
	mk := func(id string, pid int) string {
		dir := filepath.Join(e.runtime, id)
		os.MkdirAll(dir, 0o700)
		os.WriteFile(filepath.Join(dir, "lock"), nil, 0o600)
		b, _ := json.Marshal(State{ID: id, Domain: DomainName(id), MonitorPID: pid})
		os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600)
		cfg, _ := RenderConfig(DomainConfig{Name: DomainName(id), MemoryMB: 64, Kernel: "/k", Initramfs: "/i", ImageDisk: "/d"})
		os.WriteFile(filepath.Join(dir, "domain.cfg"), cfg, 0o600)
		return dir
	}
	deadDir := mk(dead, 999999999)
	e.ts.Guest = func(ctx context.Context, g *faketoolstack.Guest) { <-ctx.Done() }
	if _, err := e.ts.Create(ctx, filepath.Join(deadDir, "domain.cfg"), false); err != nil {
		t.Fatal(err)
	}
	// One killed before its domain existed.
	noDom := mk(NewID(), 999999999)
	// A live one: its lock is held.
	live := NewID()
	liveDir := mk(live, os.Getpid())
	lf, _ := os.OpenFile(filepath.Join(liveDir, "lock"), os.O_RDWR, 0)
	defer lf.Close()
	if err := flock(lf, true); err != nil {
		t.Fatal(err)
	}
	reaped, err := Reap(ctx, e.ts, e.runtime)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range reaped {
		got[r.ID] = r.Destroyed
	}
	if d := cmp.Diff(map[string]bool{dead: true, filepath.Base(noDom): false}, got); d != "" {
		t.Errorf("reaped -want +got:\n%s", d)
	}
	for _, p := range []string{deadDir, noDom} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s not removed", p)
		}
	}
	if _, err := os.Stat(liveDir); err != nil {
		t.Errorf("live container's state removed: %v", err)
	}
	if doms, _ := e.ts.List(ctx); len(doms) != 1 {
		t.Errorf("domains left: %+v", doms)
	}
	// A missing runtime dir is fine.
	if r, err := Reap(ctx, e.ts, filepath.Join(t.TempDir(), "none")); err != nil || len(r) != 0 {
		t.Errorf("Reap of a missing dir: %v %v", r, err)
	}
}

func TestStatePermissions(t *testing.T) {
	e := newEnv(t, func(ctx context.Context, p *faketoolstack.Proc) int {
		return 0
	})
	// Inspect the state dir while the container runs.
	e.ts.Guest = faketoolstack.Init(func(ctx context.Context, p *faketoolstack.Proc) int {
		ents, _ := os.ReadDir(e.runtime)
		for _, d := range ents {
			if d.Name() == ".lock" {
				continue
			}
			dir := filepath.Join(e.runtime, d.Name())
			filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().Perm()&0o077 != 0 {
					t.Errorf("%s has mode %v, want no group/other access", p, fi.Mode().Perm())
				}
				return nil
			})
		}
		return 0
	})
	o := e.opts("x")
	o.ScratchMB = 4
	if _, err := Run(context.Background(), e.ts, o); err != nil {
		t.Fatal(err)
	}
	e.clean()
}
