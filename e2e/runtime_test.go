package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/hostimage"
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
		report := autostartReport(t)
		if ok, out := domState(t, autoGuest); !ok {
			t.Fatalf("xendomains did not start %s: %s\nautostart report: %s\nconsole tail:\n%s", autoGuest, out, report[autoGuest], consoleTail(t, autoGuest))
		}
		if !strings.HasPrefix(report[autoGuest], autoGuest+" ok ") {
			t.Errorf("autostart report for %s: %q, want ok", autoGuest, report[autoGuest])
		}
		d := waitGuestLogin(t, autoGuest, 60*time.Second*scale)
		t.Logf("autostart guest reached login %.1fs after the check began; report: %s", d.Seconds(), report[autoGuest])
		r = run(t, "xl list | wc -l")
		if n, _ := strconv.Atoi(strings.TrimSpace(r.Output)); n < 3 {
			t.Errorf("xl list has %d lines, want header + Domain-0 + guest", n)
		}
	})
	t.Run("autostart-failure-reported", func(t *testing.T) {
		report := autostartReport(t)
		line := report[panicGuest]
		if !strings.HasPrefix(line, panicGuest+" FAILED ") || !strings.Contains(line, "Kernel panic") {
			t.Fatalf("autostart report for %s (its init does not exist): %q, want FAILED with the kernel panic", panicGuest, line)
		}
		con, err := os.ReadFile(s.logFile)
		if err != nil || !strings.Contains(string(con), "vxn-dom0: autostart: "+panicGuest+" FAILED") {
			t.Errorf("the failure is not on the Dom0 console (%s): %v", s.logFile, err)
		}
		t.Logf("%s", line)
	})
	t.Run("manual-not-running", func(t *testing.T) {
		if ok, out := domState(t, manualGuest); ok {
			t.Fatalf("%s is running although not linked in /etc/xen/auto: %s", manualGuest, out)
		}
	})
	t.Run("xl-create-c", func(t *testing.T) {
		// The spec's `xl create -c`: the guest's console on xl's stdout
		// (stdin is not a terminal here, so xl only prints).
		t0 := time.Now()
		r := run(t, "(xl create -c /etc/xen/"+manualGuest+".cfg </dev/null >/tmp/xl-create-c.log 2>&1 &); sleep 1")
		if r.Status != 0 {
			t.Fatalf("xl create -c: %d %s", r.Status, r.Output)
		}
		for {
			r = run(t, "grep -c 'login:' /tmp/xl-create-c.log")
			if r.Status == 0 {
				break
			}
			if time.Since(t0) > 90*time.Second*scale {
				t.Fatalf("no login prompt from xl create -c after %v:\n%s", time.Since(t0), run(t, "tail -20 /tmp/xl-create-c.log; xl list").Output)
			}
			time.Sleep(2 * time.Second)
		}
		t.Logf("xl create -c showed the guest's login prompt %.1fs after create", time.Since(t0).Seconds())
		run(t, "pkill -f 'xl create -c' ; pkill -f xenconsole; true")
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

// autostartReport waits for the Dom0's autostart check to finish and
// returns its lines by guest name.
func autostartReport(t *testing.T) map[string]string {
	t.Helper()
	v := vm(t)
	t0 := time.Now()
	for {
		r := run(t, "cat "+hostimage.AutostartStatusFile+" 2>/dev/null")
		lines := strings.Split(strings.TrimSpace(r.Output), "\n")
		if strings.HasPrefix(lines[len(lines)-1], "done ") {
			m := map[string]string{}
			for _, l := range lines[:len(lines)-1] {
				if f := strings.Fields(l); len(f) > 0 {
					m[f[0]] = l
				}
			}
			return m
		}
		if time.Since(t0) > 150*time.Second*time.Duration(v.Scale()) {
			t.Fatalf("autostart report incomplete after %v: %q", time.Since(t0), r.Output)
		}
		time.Sleep(2 * time.Second)
	}
}

// consoleTail is the last lines of a guest's console log.
func consoleTail(t *testing.T, name string) string {
	return run(t, fmt.Sprintf("tail -15 /var/log/xen/console/guest-%s.log 2>&1", name)).Output
}

// TestBlockHotplug compares xl create of a paused domain with one file
// disk through the Dom0's block script and through Debian's (kept as
// block-debian), alternately, in the same boot.
func TestBlockHotplug(t *testing.T) {
	vm(t)
	need(t, "xl", "/etc/xen/scripts/block-debian")
	kernel := strings.TrimSpace(run(t, "sed -n 's/^kernel *= *\"\\(.*\\)\"/\\1/p' /etc/xen/"+autoGuest+".cfg").Output)
	if kernel == "" {
		t.Fatalf("no kernel line in /etc/xen/%s.cfg", autoGuest)
	}
	img := "/var/lib/xen/images/blockbench.img"
	if r := run(t, "dd if=/dev/zero of="+img+" bs=1M count=0 seek=64 2>&1"); r.Status != 0 {
		t.Fatalf("dd: %s", r.Output)
	}
	defer run(t, "xl destroy blockbench 2>/dev/null; rm -f "+img+" /tmp/blockbench-*.cfg")
	for _, script := range []string{"", "block-debian"} {
		opt := ""
		if script != "" {
			opt = "script=" + script + ", "
		}
		// printf's format on one line: \n are newlines, the strings are in
		// double quotes.
		cfg := fmt.Sprintf(`name = "blockbench"\nkernel = "%s"\nmemory = 128\ndisk = ["format=raw, vdev=xvda, %saccess=rw, target=%s"]\n`, kernel, opt, img)
		name := map[string]string{"": "ours", "block-debian": "debian"}[script]
		if r := run(t, fmt.Sprintf("printf '%s' > /tmp/blockbench-%s.cfg", cfg, name)); r.Status != 0 {
			t.Fatalf("writing the %s config: %s", name, r.Output)
		}
	}
	var ours, debian []float64
	for i := 0; i < 3; i++ {
		for _, which := range []string{"ours", "debian"} {
			r := run(t, "t0=$(cut -d' ' -f1 /proc/uptime); xl create -p /tmp/blockbench-"+which+".cfg >/tmp/bb.log 2>&1; rc=$?; t1=$(cut -d' ' -f1 /proc/uptime); xl destroy blockbench; echo $rc $t0 $t1; [ $rc = 0 ] || cat /tmp/bb.log")
			var rc int
			var t0, t1 float64
			if _, err := fmt.Sscan(r.Output, &rc, &t0, &t1); err != nil || rc != 0 {
				t.Fatalf("xl create -p with the %s block script: %q", which, r.Output)
			}
			if which == "ours" {
				ours = append(ours, t1-t0)
			} else {
				debian = append(debian, t1-t0)
			}
		}
	}
	if r := run(t, "losetup -a | grep -c blockbench"); strings.TrimSpace(r.Output) != "0" {
		t.Errorf("loop devices left after destroy: %s", run(t, "losetup -a").Output)
	}
	mo, md := median(ours), median(debian)
	t.Logf("xl create -p with one file disk: our block script %v s (median %.2f), Debian's %v s (median %.2f); ratio ours/Debian %.2f", ours, mo, debian, md, mo/md)
}
