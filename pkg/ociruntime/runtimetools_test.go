package ociruntime_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/internal/testutil"
)

// The OCI runtime validation suite (github.com/opencontainers/runtime-tools
// v0.9.0, validation/*) is built from the Go module proxy in a module of its
// own (testdata/runtime-tools: it needs runtime-spec v1.0.2, which cannot
// share our go.mod) and run against vxn-oci-runtime on the fake toolstack.

// runtimeToolsTests are the validation programs run, with the failing TAP
// cases excluded from each (by line prefix: number and description) and why.
var runtimeToolsTests = []struct {
	name     string
	excluded map[string]string
}{
	{"create", nil},
	{"state", nil},
	{"kill", nil},
	{"kill_no_effect", nil},
	{"misc_props", nil},
	{"delete", map[string]string{
		"not ok 2 - attempting to `delete` a container that is not `stopped`": "deletes a *created* container without --force and " +
			"expects an error; we delete it as runc does, because containerd's shim deletes created tasks without --force " +
			"(cases 4 and 5, on a running container, are checked)",
		"not ok 3 - attempting to `delete` a container that is not `stopped`": "checks that case 2's container is still there (see case 2)",
	}},
	{"start", map[string]string{
		"not ok 4 - `start` operation MUST run the user-specified program": "checks a file the process writes into the bundle's rootfs; " +
			"a guest writes to its own throw-away layer, never to the host's rootfs",
		"not ok 6 - attempting to `start` a container that is not `created`": "reads the same file (see case 4)",
		"not ok 7 - exit status 1": "the suite's summary of the file check of case 4",
	}},
}

// Validation programs not run at all, and why.
var runtimeToolsExcluded = map[string]string{
	"pidfile": "runs `true`, waits 10 s for \"running\" and then expects `kill` to succeed: that relies on runc's unreaped " +
		"init zombie still looking alive; the runtime spec requires an error for kill of a stopped container, which we give",
	"killsig": "needs a shell with `trap` in the container; the fake toolstack's guest has none (kill by signal is " +
		"covered by TestConformanceExitCodes: 143 for SIGTERM, 137 for SIGKILL)",
	"default, hostname, mounts, process, process_user, process_capabilities*, process_oom_score_adj, process_rlimits*, " +
		"root_readonly_true, config_updates_without_affect, linux_*": "run the runtimetest binary inside the container to check " +
		"Linux namespaces, cgroups, capabilities, rlimits and mounts of a host-kernel container; a VM has its own kernel " +
		"and the fake toolstack runs no binaries",
	"hooks, hooks_stdin, prestart*, poststart*, poststop*": "hooks cannot run for a VM (reported as a warning at create)",
	"delete_only_create_resources, delete_resources":       "check host namespaces and cgroups created for the container; a VM creates none",
}

const reaperEnv = "VXN_OCI_TEST_REAPER"

// TestMain also serves as a reaper: with reaperEnv set the test binary runs
// its arguments as a child subreaper and reaps every orphan (the
// containers' monitors) so none is left as a zombie that looks alive.
// After the tests it removes the runtime binary's directory.
func TestMain(m *testing.M) {
	if os.Getenv(reaperEnv) == "1" {
		os.Exit(reaperMain(os.Args[1:]))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func reaperMain(args []string) int {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "reaper:", err)
		return 125
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "reaper:", err)
		return 125
	}
	code := -1
	var deadline time.Time
	for {
		var ws syscall.WaitStatus
		flags := 0
		if code >= 0 {
			flags = syscall.WNOHANG
		}
		pid, err := syscall.Wait4(-1, &ws, flags, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case err != nil: // ECHILD: nothing left
			return code
		case pid == cmd.Process.Pid:
			code = ws.ExitStatus()
			deadline = time.Now().Add(10 * time.Second)
		case pid == 0:
			if time.Now().After(deadline) {
				return code
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestRuntimeToolsValidation(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the validation suite is built from the module proxy")
	}
	e := newEnv(t) // fake toolstack, config, and the runtime binary
	dir := t.TempDir()
	td := filepath.Join(testutil.RepoRoot(t), "pkg", "ociruntime", "testdata", "runtime-tools")
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(td, f+".in"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	os.WriteFile(filepath.Join(dir, "tools.go"), []byte("//go:build tools\n\npackage rtt\n\nimport _ \"github.com/opencontainers/runtime-tools/validation/util\"\n"), 0o644)
	var pkgs []string
	for _, v := range runtimeToolsTests {
		pkgs = append(pkgs, "github.com/opencontainers/runtime-tools/validation/"+v.name)
	}
	bin := filepath.Join(dir, "bin")
	os.MkdirAll(bin, 0o755)
	build := exec.Command("go", append([]string{"build", "-o", bin + "/"}, pkgs...)...)
	build.Dir = dir
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building runtime-tools' validation suite: %v\n%s", err, out)
	}
	list := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/opencontainers/runtime-tools")
	list.Dir, list.Env = dir, build.Env
	modDir, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	run := filepath.Join(dir, "run")
	os.MkdirAll(run, 0o755)
	rootfs, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(modDir)), "rootfs-amd64.tar.gz"))
	if err != nil {
		t.Skipf("runtime-tools ships no rootfs for this machine: %v", err)
	}
	os.WriteFile(filepath.Join(run, "rootfs-amd64.tar.gz"), rootfs, 0o644)
	wrapper := filepath.Join(dir, "vxn-oci-runtime")
	os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\nexec %s --root %s --log %s --log-format json \"$@\"\n",
		e.r.Command, filepath.Join(dir, "state"), filepath.Join(dir, "log.json"))), 0o755)

	for name, why := range runtimeToolsExcluded {
		t.Logf("excluded %s: %s", name, why)
	}
	for _, v := range runtimeToolsTests {
		t.Run(v.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], filepath.Join(bin, v.name))
			cmd.Dir = run
			cmd.Env = append(os.Environ(), reaperEnv+"=1", "RUNTIME="+wrapper)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Logf("%s exited: %v", v.name, err)
			}
			ok, failed := 0, 0
			sc := bufio.NewScanner(strings.NewReader(string(out)))
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.HasPrefix(line, "ok "):
					ok++
				case strings.HasPrefix(line, "not ok "):
					why := ""
					for prefix, reason := range v.excluded {
						if strings.HasPrefix(line, prefix) {
							why = reason
						}
					}
					if why != "" {
						t.Logf("excluded: %s (%s)", line, why)
						continue
					}
					failed++
					t.Errorf("%s", line)
				}
			}
			if ok == 0 {
				t.Errorf("no passing case; output:\n%s", out)
			}
			if failed > 0 {
				t.Logf("output:\n%s", out)
			}
			t.Logf("%s: %d cases passed", v.name, ok)
		})
	}
}
