package main

import (
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

func TestRtentryLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skipf("rtentry is declared for 64-bit Linux (pointer size %d)", unsafe.Sizeof(uintptr(0)))
	}
	var rt rtentry
	if s, f, d := unsafe.Sizeof(rt), unsafe.Offsetof(rt.flags), unsafe.Offsetof(rt.dev); s != 120 || f != 56 || d != 88 {
		t.Errorf("struct rtentry: size %d, rt_flags at %d, rt_dev at %d; want 120, 56, 88", s, f, d)
	}
}

func TestResolvConf(t *testing.T) {
	if got := resolvConf([]string{"10.0.2.3", "2001:db8::1"}); got != "nameserver 10.0.2.3\nnameserver 2001:db8::1\n" {
		t.Errorf("%q", got)
	}
}

// inNetns runs fn on a thread in a new network namespace (its loopback
// only), or skips when that is not permitted here.
// fn reports with t.Errorf only (it does not run on the test goroutine).
func inNetns(t *testing.T, fn func()) {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Skipf("cannot make a network namespace here: %v", err)
	}
}

func TestSetupNet(t *testing.T) {
	inNetns(t, func() {
		// The interface must be the loopback: /sys/class/net shows the
		// namespace of the process's sysfs mount, not this thread's.
		n := &guestproto.Net{Interface: "lo", Address: "127.0.0.2/16"}
		if err := setupNet(n, time.Second); err != nil {
			t.Errorf("setupNet: %v", err)
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			t.Errorf("socket: %v", err)
			return
		}
		defer unix.Close(fd)
		get := func(req uint) string {
			ifr, _ := unix.NewIfreq("lo")
			if err := unix.IoctlIfreq(fd, req, ifr); err != nil {
				t.Errorf("ioctl %#x: %v", req, err)
				return ""
			}
			a, err := ifr.Inet4Addr()
			if err != nil {
				t.Errorf("ioctl %#x: %v", req, err)
				return ""
			}
			return netip.AddrFrom4([4]byte(a)).String()
		}
		if a, m := get(unix.SIOCGIFADDR), get(unix.SIOCGIFNETMASK); a != "127.0.0.2" || m != "255.255.0.0" {
			t.Errorf("lo %s/%s, want 127.0.0.2/255.255.0.0", a, m)
		}
		ifr, _ := unix.NewIfreq("lo")
		unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr)
		if ifr.Uint16()&unix.IFF_UP == 0 {
			t.Error("lo not up")
		}
		// A default route through an address of the lo network.
		if err := addDefaultRoute(fd, [4]byte{127, 0, 0, 3}); err != nil {
			t.Errorf("default route via 127.0.0.3: %v", err)
		}
		if err := setupNet(&guestproto.Net{Interface: "nosuch0", Address: "10.0.0.2/24"}, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "nosuch0 did not appear") {
			t.Errorf("missing interface: %v", err)
		}
		if err := setupNet(&guestproto.Net{Interface: "lo", Address: "bad"}, time.Second); err == nil || !strings.Contains(err.Error(), "net.address") {
			t.Errorf("bad address: %v", err)
		}
	})
}
