package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestDom0Boot(t *testing.T) {
	vm(t)
	t.Run("uname", func(t *testing.T) {
		r := run(t, "uname -a")
		if r.Status != 0 || !strings.Contains(r.Output, "Linux") {
			t.Errorf("uname -a = %d %q", r.Status, r.Output)
		}
	})
	t.Run("xl-list-domain0", func(t *testing.T) {
		need(t, "xl")
		r := run(t, "xl list")
		if r.Status != 0 || !strings.Contains(r.Output, "Domain-0") {
			t.Fatalf("xl list = %d %q", r.Status, r.Output)
		}
		for _, l := range strings.Split(r.Output, "\n") {
			f := strings.Fields(l)
			if len(f) >= 3 && f[0] == "Domain-0" {
				mem, err := strconv.Atoi(f[2])
				if err != nil || mem > 512 {
					t.Errorf("Domain-0 memory %q, want <= 512", f[2])
				}
			}
		}
	})
	t.Run("dmesg-xen", func(t *testing.T) {
		r := run(t, "dmesg | grep -i xen | head -50")
		low := strings.ToLower(r.Output)
		if r.Status != 0 || !strings.Contains(low, "xen") || !(strings.Contains(low, "hypervisor") || strings.Contains(low, "xenbus")) {
			t.Errorf("dmesg has no Xen lines: %q", r.Output)
		}
	})
	t.Run("free-memory", func(t *testing.T) {
		need(t, "xl")
		r := run(t, "xl info | grep free_memory")
		f := strings.Fields(strings.ReplaceAll(r.Output, ":", " "))
		if len(f) < 2 {
			t.Fatalf("xl info free_memory: %q", r.Output)
		}
		free, err := strconv.Atoi(f[len(f)-1])
		if err != nil || free < 256 {
			t.Errorf("free_memory = %q, want >= 256 MB for a guest", f[len(f)-1])
		}
	})
	t.Run("exit-status", func(t *testing.T) {
		if r := run(t, "sh -c 'echo out; echo err >&2; exit 7'"); r.Status != 7 || r.Output != "out\nerr\n" {
			t.Errorf("got %d %q, want 7 \"out\\nerr\\n\"", r.Status, r.Output)
		}
	})
}

// waitGuestLogin polls the xenconsoled log of a guest until its login
// prompt appears.
func waitGuestLogin(t *testing.T, name string, timeout time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for time.Since(t0) < timeout {
		r := run(t, fmt.Sprintf("grep -q 'login:' /var/log/xen/console/guest-%s.log 2>/dev/null", name))
		if r.Status == 0 {
			return time.Since(t0)
		}
		time.Sleep(2 * time.Second)
	}
	r := run(t, fmt.Sprintf("tail -20 /var/log/xen/console/guest-%s.log; xl list", name))
	t.Fatalf("guest %s: no login prompt after %v; console tail:\n%s", name, timeout, r.Output)
	return 0
}

func domState(t *testing.T, name string) (bool, string) {
	r := run(t, "xl list "+name)
	return r.Status == 0, r.Output
}

func TestGuestBundleRuntime(t *testing.T) {
	v := vm(t)
	need(t, "xl", "/etc/init.d/xendomains")
	scale := time.Duration(v.Scale())
	t.Run("autostart", func(t *testing.T) {
		r := run(t, "ls -l /etc/xen/auto/")
		if !strings.Contains(r.Output, autoGuest+".cfg") {
			t.Skipf("no autostart guest bundled: %q", r.Output)
		}
		if ok, out := domState(t, autoGuest); !ok {
			t.Fatalf("xendomains did not start %s: %s", autoGuest, out)
		}
		d := waitGuestLogin(t, autoGuest, 60*time.Second*scale)
		t.Logf("autostart guest reached login %.1fs after the check began", d.Seconds())
		r = run(t, "xl list | wc -l")
		if n, _ := strconv.Atoi(strings.TrimSpace(r.Output)); n < 3 {
			t.Errorf("xl list has %d lines, want header + Domain-0 + guest", n)
		}
	})
	t.Run("manual-not-running", func(t *testing.T) {
		if ok, out := domState(t, manualGuest); ok {
			t.Fatalf("%s is running although not linked in /etc/xen/auto: %s", manualGuest, out)
		}
	})
	t.Run("xl-create", func(t *testing.T) {
		t0 := time.Now()
		r := run(t, "xl create /etc/xen/"+manualGuest+".cfg")
		if r.Status != 0 {
			t.Fatalf("xl create: %d %s", r.Status, r.Output)
		}
		created := time.Since(t0)
		d := waitGuestLogin(t, manualGuest, 60*time.Second*scale)
		t.Logf("xl create returned after %.1fs; guest login prompt %.1fs after create", created.Seconds(), (created + d).Seconds())
	})
	t.Run("xl-shutdown", func(t *testing.T) {
		if ok, _ := domState(t, manualGuest); !ok {
			t.Skip("manual guest not running")
		}
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second*scale)
		defer cancel()
		r, err := v.Run(ctx, "xl shutdown -w "+manualGuest)
		if err != nil || r.Status != 0 {
			t.Fatalf("xl shutdown -w: %v %d %s", err, r.Status, r.Output)
		}
		t.Logf("xl shutdown -w took %.1fs", time.Since(t0).Seconds())
		// xl's per-domain monitor process destroys the domain shortly
		// after the shutdown is reported.
		for {
			ok, out := domState(t, manualGuest)
			if !ok {
				break
			}
			if time.Since(t0) > 30*time.Second*scale {
				t.Fatalf("%s still listed after shutdown: %s", manualGuest, out)
			}
			time.Sleep(time.Second)
		}
		t.Logf("domain gone %.1fs after xl shutdown", time.Since(t0).Seconds())
	})
}
