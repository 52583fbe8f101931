package e2e

// Issue 6 §3 on real Xen: vxn's lifecycle verbs (run -d, ps, exec, logs,
// stop, rm, kill), several containers at once, a terminal (-t) through the
// harness's serial console (a tty), the exit status through the xenstore
// fallback, and the vdkr and vpdmn front-ends.

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

// containerIDRe finds the id run -d prints (a progress line on the serial
// console's stderr may precede it on the same line).
var containerIDRe = regexp.MustCompile(`(?m)[0-9a-f]{64}$`)

// expect fails the test unless every want is in the output of cmd.
func expect(t *testing.T, what, cmd string, d time.Duration, want ...string) string {
	t.Helper()
	r := runLong(t, cmd, d)
	for _, w := range want {
		if !strings.Contains(r.Output, w) {
			t.Errorf("%s: %q not in the output of %q:\n%s", what, w, cmd, tail(r.Output, 2000))
			return r.Output
		}
	}
	t.Logf("%s: ok", what)
	return r.Output
}

func TestVxnLifecycle(t *testing.T) {
	vm(t)
	need(t, "xl", "vxn")
	// Leftovers of an earlier failed run must not break the names.
	run(t, "vxn rm -f life a b >/dev/null 2>&1; true")

	t.Run("detached", func(t *testing.T) {
		t.Cleanup(func() { run(t, "vxn rm -f life >/dev/null 2>&1; true") })
		out := expect(t, "run -d", "vxn run -d --name life "+vxnImage+" sh -c 'echo started; echo to-err >&2; while true; do sleep 1; done'; echo rc=$?", 180*time.Second, "rc=0")
		if !containerIDRe.MatchString(out) {
			t.Fatalf("run -d printed no container id:\n%s", out)
		}
		expect(t, "ps shows it running", "vxn ps", 60*time.Second, "life", "Up")
		expect(t, "exec sees the container's filesystem", "vxn exec life cat /etc/app/conf; echo rc=$?", 120*time.Second, "version=2\nrc=0")
		expect(t, "exec exit status", "vxn exec life sh -c 'exit 7'; echo rc=$?", 120*time.Second, "rc=7")
		expect(t, "exec as another user, with env", "vxn exec -u 0 -e X=y life sh -c 'echo $(id -u) $X'", 120*time.Second, "0 y")
		expect(t, "logs: stdout", "vxn logs life 2>/dev/null", 60*time.Second, "started")
		expect(t, "logs: stderr apart", "vxn logs life 2>&1 >/dev/null", 60*time.Second, "to-err")
		expect(t, "inspect", "vxn inspect life", 60*time.Second, `"Status": "running"`, `"Domain": "vxn-`, `"Name": "/life"`)
		expect(t, "stop", "vxn stop -t 20 life; echo rc=$?", 180*time.Second, "life\nrc=0")
		expect(t, "stopped: exit status of SIGTERM", "vxn ps -a; vxn inspect life", 60*time.Second, "Exited (143)", `"ExitCode": 143`)
		expect(t, "rm", "vxn rm life && vxn ps -a | grep -c life", 60*time.Second, "life\n0")
	})

	t.Run("two-at-once", func(t *testing.T) {
		t.Cleanup(func() { run(t, "vxn rm -f a b >/dev/null 2>&1; true") })
		expect(t, "two detached", "vxn run -d --name a "+vxnImage+" sleep 600 >/dev/null && vxn run -d --name b "+vxnImage+" sleep 600 >/dev/null; echo rc=$?; vxn ps -q | wc -l; xl list | grep -c '^vxn-'", 300*time.Second, "rc=0\n2\n2")
		expect(t, "each has its own hostname", "ha=$(vxn exec a hostname); hb=$(vxn exec b hostname); [ -n \"$ha\" ] && [ \"$ha\" != \"$hb\" ] && echo distinct", 180*time.Second, "distinct")
		expect(t, "kill", "vxn kill a; vxn wait a", 120*time.Second, "a\n137")
		expect(t, "rm -f", "vxn rm -f a b; vxn ps -aq | wc -l", 120*time.Second, "a\nb\n0")
	})

	t.Run("tty", func(t *testing.T) {
		// The harness runs commands on the serial console, a terminal.
		expect(t, "run -t", "tty >/dev/null && echo host-tty; vxn run --rm -t "+vxnImage+" tty; echo rc=$?", 180*time.Second, "host-tty", "/dev/pts/0", "rc=0")
		expect(t, "run -t exit status", "vxn run --rm -t "+vxnImage+" sh -c 'exit 3'; echo rc=$?", 180*time.Second, "rc=3")
	})

	t.Run("exit-from-xenstore", func(t *testing.T) {
		// vxn ignores the Exit frame: the status comes from xenstore.
		expect(t, "xenstore fallback", "VXN_IGNORE_EXIT_FRAME=1 vxn --debug run --rm "+vxnImage+" sh -c 'exit 42'; echo rc=$?", 180*time.Second, "rc=42")
	})

	t.Run("front-ends", func(t *testing.T) {
		for _, fe := range []string{"vdkr", "vpdmn"} {
			expect(t, fe+" run --rm", fe+" run --rm "+vxnImage+" echo hello; echo rc=$?", 180*time.Second, "hello\nrc=0")
		}
		expect(t, "front-end errors are its own, exit 125", "vdkr rm nosuch; echo rc=$?", 60*time.Second, "vdkr: no such container: nosuch", "rc=125")
	})

	t.Run("nothing-left", func(t *testing.T) {
		// xl's block hotplug script detaches loop devices asynchronously.
		r := runLong(t, "i=0; while [ \"$(losetup -a | grep -c -e /var/lib/vxn -e /run/vxn)\" != 0 ] && [ $i -lt 30 ]; do sleep 1; i=$((i+1)); done; xl list | grep -c '^vxn-'; losetup -a | grep -c -e /var/lib/vxn -e /run/vxn; vxn ps -aq | wc -l", 120*time.Second)
		if r.Output != "0\n0\n0\n" {
			d := run(t, "xl list; losetup -a; vxn ps -a")
			t.Errorf("left behind (vxn domains, loop devices, containers): %q\n%s", r.Output, d.Output)
		}
	})
}
