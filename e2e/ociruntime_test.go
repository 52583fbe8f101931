package e2e

import (
	"strings"
	"testing"
	"time"
)

// TestOCIRuntime drives vxn-oci-runtime through containerd's stock runc
// shim on real Xen beyond run --rm (TestEngineRuns): a detached container,
// exec with its exit code, pause/resume, SIGTERM reported as 143, delete,
// and nothing left behind.
func TestOCIRuntime(t *testing.T) {
	img := engineImage(t)
	if r := runLong(t, "ctr images pull --plain-http "+img+" >/dev/null 2>&1; echo rc=$?", 300*time.Second); !strings.Contains(r.Output, "rc=0") {
		t.Fatalf("ctr pull: %s", r.Output)
	}
	// withRC appends the command's exit status as a line "rc=N ".
	withRC := func(cmd string) string { return cmd + "; rc=$?; echo; echo \"rc=$rc \"" }
	before := run(t, "xl list | awk 'NR>1{print $1}' | sort").Output
	diag := func() string {
		return tail(run(t, "ctr task ls; cat /tmp/oci-t.rc /tmp/oci-t.err 2>/dev/null; for f in $(find /run/containerd/io.containerd.runtime.v2.task -name log.json); do echo \"== $f\"; tail -c 1500 $f; done; xl list").Output, 4000)
	}
	// status waits until `ctr task ls` shows the task in want.
	status := func(id, want string) {
		t.Helper()
		deadline := time.Now().Add(300 * time.Second * time.Duration(vm(t).Scale()))
		for {
			out := run(t, "ctr task ls | awk '$1==\""+id+"\"{print $3}'").Output
			if strings.TrimSpace(out) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s: status %q, want %s\n%s", id, strings.TrimSpace(out), want, diag())
			}
			time.Sleep(2 * time.Second)
		}
	}
	// The first run waits for the guest to boot; the others are quick.
	if r := runLong(t, withRC("vctr run -d "+img+" oci-d sleep 600 </dev/null >/dev/null 2>/tmp/oci-err"), 300*time.Second); !strings.Contains(r.Output, "rc=0") {
		t.Fatalf("vctr run -d: %s\n%s\n%s", r.Output, run(t, "cat /tmp/oci-err").Output, diag())
	}
	status("oci-d", "RUNNING")

	t.Run("exec", func(t *testing.T) {
		// The exec sees the container's file system (the image's busybox).
		r := runLong(t, withRC("ctr task exec --exec-id e1 oci-d sh -c 'echo exec-ok; test -x /bin/busybox && echo image-fs; exit 3' </dev/null"), 300*time.Second)
		t.Logf("exec: %s", strings.TrimSpace(r.Output))
		if !strings.Contains(r.Output, "exec-ok\nimage-fs\n") || !strings.Contains(r.Output, "rc=3 ") {
			t.Errorf("exec: want exec-ok, image-fs and rc=3, got:\n%s\n%s", r.Output, diag())
		}
	})
	t.Run("pause-resume", func(t *testing.T) {
		if r := run(t, "ctr task pause oci-d; echo rc=$?"); !strings.Contains(r.Output, "rc=0") {
			t.Fatalf("pause: %s", r.Output)
		}
		status("oci-d", "PAUSED")
		if r := run(t, "xl list | grep -c 'vxn-oci-d .*p'"); strings.TrimSpace(r.Output) != "1" {
			t.Errorf("the domain is not paused in xl list:\n%s", run(t, "xl list").Output)
		}
		if r := run(t, "ctr task resume oci-d; echo rc=$?"); !strings.Contains(r.Output, "rc=0") {
			t.Fatalf("resume: %s", r.Output)
		}
		status("oci-d", "RUNNING")
	})
	t.Run("kill-delete", func(t *testing.T) {
		if r := run(t, "ctr task kill -s SIGKILL oci-d; echo rc=$?"); !strings.Contains(r.Output, "rc=0") {
			t.Fatalf("kill: %s", r.Output)
		}
		status("oci-d", "STOPPED")
		if r := runLong(t, "ctr task delete oci-d; ctr container delete oci-d; echo rc=$?", 120*time.Second); !strings.Contains(r.Output, "rc=0") {
			t.Errorf("delete: %s\n%s", r.Output, diag())
		}
	})
	t.Run("sigterm-143", func(t *testing.T) {
		// A foreground run whose container a SIGTERM ends: ctr reports 143.
		// (Started only now: the test host has no memory for two guests
		// besides the bundled ones.)
		run(t, "rm -f /tmp/oci-t.rc; (vctr run --rm "+img+" oci-t sleep 600 </dev/null >/dev/null 2>/tmp/oci-t.err; echo rc=$? >/tmp/oci-t.rc) >/dev/null 2>&1 &")
		status("oci-t", "RUNNING")
		if r := run(t, "ctr task kill -s SIGTERM oci-t; echo rc=$?"); !strings.Contains(r.Output, "rc=0") {
			t.Fatalf("kill: %s", r.Output)
		}
		deadline := time.Now().Add(300 * time.Second * time.Duration(vm(t).Scale()))
		for {
			out := run(t, "cat /tmp/oci-t.rc 2>/dev/null").Output
			if strings.Contains(out, "rc=") {
				if !strings.Contains(out, "rc=143") {
					t.Errorf("SIGTERM: ctr reported %s, want 143\n%s", strings.TrimSpace(out), diag())
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("vctr run did not end after SIGTERM\n%s", diag())
			}
			time.Sleep(2 * time.Second)
		}
	})
	t.Run("nothing-left", func(t *testing.T) {
		after := run(t, "sleep 2; xl list | awk 'NR>1{print $1}' | sort").Output
		if after != before {
			t.Errorf("domains left behind:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		if r := run(t, "ls /run/containerd/runc/default 2>/dev/null | grep -v '^\\.' | wc -l"); strings.TrimSpace(r.Output) != "0" {
			t.Errorf("runtime state left: %s", run(t, "ls -la /run/containerd/runc/default").Output)
		}
	})
}
