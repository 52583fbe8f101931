package vxncli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/vxn-dev/vxn/pkg/container"
	"github.com/vxn-dev/vxn/pkg/imagestore"
	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/toolstack/faketoolstack"
	"github.com/vxn-dev/vxn/pkg/vxnconf"
)

// TestMain lets the test binary act as a container monitor (run -d spawns
// /proc/self/exe); the scripts select the fake toolstack, which the test
// binary links, with VXN_TOOLSTACK=fake.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == container.MonitorArg {
		os.Exit(container.MonitorMain())
	}
	os.Exit(m.Run())
}

// TestScripts runs testdata/script/*.txtar. The vxn command runs in-process
// with faketoolstack.Fake (guests run faketoolstack.ScriptProgram); `exitcode N`
// checks the last vxn's exit status; $STDIN_FILE, when set, is vxn's stdin;
// `waitfor DURATION REGEXP vxn ARGS...` polls a command line (see waitFor).
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			w := e.WorkDir
			assets := filepath.Join(w, "assets")
			rootfs := filepath.Join(w, "rootfs")
			for _, d := range []string{assets, filepath.Join(rootfs, "etc"), filepath.Join(rootfs, "bin")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return err
				}
			}
			for _, f := range []string{"vmlinux", "initramfs.cpio.gz"} {
				os.WriteFile(filepath.Join(assets, f), []byte("fake"), 0o644)
			}
			os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
			cfg := "kernel: " + filepath.Join(assets, "vmlinux") + "\ninitramfs: " + filepath.Join(assets, "initramfs.cpio.gz") +
				"\nimage_store: " + filepath.Join(w, "store") + "\nruntime_dir: " + filepath.Join(w, "run") + "\n"
			os.WriteFile(filepath.Join(w, "config.yaml"), []byte(cfg), 0o644)
			e.Setenv("VXN_CONFIG", filepath.Join(w, "config.yaml"))
			e.Setenv("IMG", "dir:"+rootfs)
			e.Setenv(toolstack.Env, faketoolstack.Name)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"vxn":     func(ts *testscript.TestScript, neg bool, args []string) { runApp(ts, NameVxn, neg, args) },
			"vdkr":    func(ts *testscript.TestScript, neg bool, args []string) { runApp(ts, NameVdkr, neg, args) },
			"vpdmn":   func(ts *testscript.TestScript, neg bool, args []string) { runApp(ts, NameVpdmn, neg, args) },
			"waitfor": waitFor,
			"exitcode": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 {
					ts.Fatalf("usage: exitcode N")
				}
				if got := ts.Getenv("EXIT"); (got == args[0]) == neg {
					ts.Fatalf("exit status %s, want %s", got, args[0])
				}
			},
		},
	})
}

// waitFor is the script command `waitfor DURATION REGEXP vxn ARGS...`
// (or vdkr, vpdmn): it runs the command line again, every 50 ms, until it
// exits 0 with stdout matching REGEXP, and fails when that has not happened
// within DURATION. It waits for a condition where a detached container's
// output may not have reached its log yet. The last run's stdout and stderr
// become the command's, for later stdout/stderr checks.
func waitFor(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! waitfor")
	}
	if len(args) < 3 {
		ts.Fatalf("usage: waitfor DURATION REGEXP vxn|vdkr|vpdmn ARGS...")
	}
	d, err := time.ParseDuration(args[0])
	ts.Check(err)
	re, err := regexp.Compile("(?m)" + args[1])
	ts.Check(err)
	name := map[string]string{"vxn": NameVxn, "vdkr": NameVdkr, "vpdmn": NameVpdmn}[args[2]]
	if name == "" {
		ts.Fatalf("waitfor: %q is not vxn, vdkr or vpdmn", args[2])
	}
	deadline := time.Now().Add(d)
	for tries := 1; ; tries++ {
		var stdout, stderr bytes.Buffer
		a := newApp(ts, name)
		a.Stdout, a.Stderr = &stdout, &stderr
		code := a.Main(args[3:])
		if code == 0 && re.Match(stdout.Bytes()) || time.Now().After(deadline) {
			ts.Stdout().Write(stdout.Bytes())
			ts.Stderr().Write(stderr.Bytes())
			ts.Setenv("EXIT", strconv.Itoa(code))
			if code != 0 || !re.Match(stdout.Bytes()) {
				ts.Fatalf("%s %s: no stdout matching %q within %s (%d runs; last exit status %d)",
					args[2], strings.Join(args[3:], " "), args[1], d, tries, code)
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newApp is an in-process vxn for a script, writing to the script's
// stdout and stderr.
func newApp(ts *testscript.TestScript, name string) *App {
	a := NewApp()
	a.Name = name
	a.Signals = nil
	a.IsTerminal = func(io.Writer) bool { return false }
	a.LookupEnv = func(k string) (string, bool) {
		v := ts.Getenv(k)
		return v, v != ""
	}
	a.NewToolstack = func(*vxnconf.Config) toolstack.Toolstack {
		return &faketoolstack.Fake{Guest: faketoolstack.Init(faketoolstack.ScriptProgram)}
	}
	a.Stdin = strings.NewReader("")
	if f := ts.Getenv("STDIN_FILE"); f != "" {
		b, err := os.ReadFile(ts.MkAbs(f))
		ts.Check(err)
		a.Stdin = bytes.NewReader(b)
	}
	a.Stdout, a.Stderr = ts.Stdout(), ts.Stderr()
	return a
}

// runApp runs one in-process vxn command line for a script.
func runApp(ts *testscript.TestScript, name string, neg bool, args []string) {
	a := newApp(ts, name)
	code := a.Main(args)
	ts.Setenv("EXIT", strconv.Itoa(code))
	if (code != 0) != neg {
		ts.Fatalf("vxn %s: exit status %d (negated: %v)", strings.Join(args, " "), code, neg)
	}

}

func TestSplitName(t *testing.T) {
	for _, tc := range []struct{ in, repo, tag string }{
		{"index.docker.io/library/alpine:latest", "alpine", "latest"},
		{"index.docker.io/me/app:1", "me/app", "1"},
		{"localhost:5000/x:tag", "localhost:5000/x", "tag"},
		{"localhost:5000/x", "localhost:5000/x", "<none>"},
		{"ghcr.io/o/r@sha256:abc", "ghcr.io/o/r@sha256:abc", "<none>"},
		{"dir:/tmp/rootfs", "dir:/tmp/rootfs", "<none>"},
	} {
		repo, tag := splitName(tc.in)
		if repo != tc.repo || tag != tc.tag {
			t.Errorf("splitName(%q) = %q %q, want %q %q", tc.in, repo, tag, tc.repo, tc.tag)
		}
	}
}

func TestPersonality(t *testing.T) {
	for in, want := range map[string]string{"vxn": NameVxn, "/usr/bin/vdkr": NameVdkr, "vpdmn": NameVpdmn, "./x": NameVxn, "docker": NameVxn} {
		if got := Personality(in); got != want {
			t.Errorf("Personality(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNeedXen(t *testing.T) {
	env := map[string]string{}
	a := &App{Name: NameVdkr, cfg: &vxnconf.Config{XL: filepath.Join(t.TempDir(), "no-xl")},
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	err := a.needXen()
	if err == nil || !strings.Contains(err.Error(), "Xen not available: ") || !strings.Contains(err.Error(), "run it in a Xen Dom0") {
		t.Errorf("needXen without xl: %v", err)
	}
	env[toolstack.Env] = "fake"
	if err := a.needXen(); err != nil {
		t.Errorf("needXen with the fake toolstack: %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"KILL": 9, "SIGTERM": 15, "int": 2, "10": 10, "HUP": 1} {
		if got, err := parseSignal(in); err != nil || int(got) != want {
			t.Errorf("parseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "65", "NOPE", "-1"} {
		if _, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) succeeded", bad)
		}
	}
}

// TestHostDefaults checks that the host defaults of the packages vxn uses
// agree with vxnconf's (the build side fills the image store at
// imagestore.DefaultRoot).
func TestHostDefaults(t *testing.T) {
	if imagestore.DefaultRoot != vxnconf.DefaultImageStore {
		t.Errorf("imagestore.DefaultRoot %q, vxnconf.DefaultImageStore %q", imagestore.DefaultRoot, vxnconf.DefaultImageStore)
	}
	if container.DefaultRuntimeDir != vxnconf.DefaultRuntimeDir {
		t.Errorf("container.DefaultRuntimeDir %q, vxnconf.DefaultRuntimeDir %q", container.DefaultRuntimeDir, vxnconf.DefaultRuntimeDir)
	}
}

// TestRunDetachedUsesConfiguredXL proves that the monitor of `vxn run -d`,
// a process of its own, runs the xl program of the config file's xl: key
// (it is told the toolstack over its options pipe).
func TestRunDetachedUsesConfiguredXL(t *testing.T) {
	w := t.TempDir()
	xl, log, err := faketoolstack.XLScript(w)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(w, "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755)
	for _, f := range []string{"vmlinux", "initramfs.cpio.gz"} {
		os.WriteFile(filepath.Join(w, f), []byte("fake"), 0o644)
	}
	cfg := filepath.Join(w, "config.yaml")
	os.WriteFile(cfg, []byte("kernel: "+filepath.Join(w, "vmlinux")+"\ninitramfs: "+filepath.Join(w, "initramfs.cpio.gz")+
		"\nimage_store: "+filepath.Join(w, "store")+"\nruntime_dir: "+filepath.Join(w, "run")+"\nxl: "+xl+"\n"), 0o644)
	var stdout, stderr bytes.Buffer
	a := NewApp()
	a.Signals = nil
	a.IsTerminal = func(io.Writer) bool { return false }
	a.LookupEnv = func(string) (string, bool) { return "", false }
	// vxn's own (in-process) toolstack is a fake; the monitor's is chosen
	// by the config alone.
	a.NewToolstack = func(*vxnconf.Config) toolstack.Toolstack { return &faketoolstack.Fake{} }
	a.Stdin, a.Stdout, a.Stderr = strings.NewReader(""), &stdout, &stderr
	code := a.Main([]string{"--config", cfg, "run", "-d", "dir:" + rootfs, "echo", "hi"})
	if code != ExitVxnError || !strings.Contains(stderr.String(), "not a Xen host (test script)") {
		t.Errorf("run -d with a failing xl: exit %d, stderr %q; want 125 and the script's error", code, stderr.String())
	}
	if b, err := os.ReadFile(log); err != nil || len(b) == 0 {
		t.Errorf("the detached monitor did not run %s: %q, %v", xl, b, err)
	}
}
