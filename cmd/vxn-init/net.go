package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// setupNet brings the loopback up and, when n is set, gives its interface
// the static address and the default route, with the classic ioctls (no
// netlink library, no ip(8) in the guest). The interface may still be
// probing (xen-netfront attaches asynchronously): it is waited for.
func setupNet(n *guestproto.Net, wait time.Duration) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("network: socket: %w", err)
	}
	defer unix.Close(fd)
	if err := ifUp(fd, "lo"); err != nil {
		return err
	}
	if n == nil {
		return nil
	}
	if err := n.Validate(); err != nil {
		return err
	}
	dev := n.Interface
	if dev == "" {
		dev = "eth0"
	}
	if err := waitIf(dev, wait); err != nil {
		return err
	}
	p, _ := netip.ParsePrefix(n.Address)
	if err := ifSetAddr(fd, dev, unix.SIOCSIFADDR, p.Addr().As4()); err != nil {
		return err
	}
	m := uint32(0)
	if p.Bits() > 0 {
		m = ^uint32(0) << (32 - p.Bits())
	}
	mask := [4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
	if err := ifSetAddr(fd, dev, unix.SIOCSIFNETMASK, mask); err != nil {
		return err
	}
	if err := ifUp(fd, dev); err != nil {
		return err
	}
	if n.Gateway != "" {
		gw, _ := netip.ParseAddr(n.Gateway)
		if err := addDefaultRoute(fd, gw.As4()); err != nil {
			return fmt.Errorf("network: default route via %s: %w", n.Gateway, err)
		}
	}
	return nil
}

// resolvConf is the /etc/resolv.conf for a list of name servers.
func resolvConf(dns []string) string {
	var b strings.Builder
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	return b.String()
}

func waitIf(dev string, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for {
		if _, err := os.Stat("/sys/class/net/" + dev); err == nil {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("network: interface %s did not appear within %v (no vif, or xen-netfront missing?)", dev, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ifSetAddr(fd int, dev string, req uint, a [4]byte) error {
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return fmt.Errorf("network: %s: %w", dev, err)
	}
	if err := ifr.SetInet4Addr(a[:]); err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, req, ifr); err != nil {
		what := "address"
		if req == unix.SIOCSIFNETMASK {
			what = "netmask"
		}
		return fmt.Errorf("network: setting the %s of %s to %s: %w", what, dev, netip.AddrFrom4(a), err)
	}
	return nil
}

func ifUp(fd int, dev string) error {
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return fmt.Errorf("network: %s: %w", dev, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("network: flags of %s: %w", dev, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("network: bringing %s up: %w", dev, err)
	}
	return nil
}

// rtentry is struct rtentry of <net/route.h> on 64-bit Linux.
type rtentry struct {
	pad1    uint64
	dst     unix.RawSockaddrInet4
	gateway unix.RawSockaddrInet4
	genmask unix.RawSockaddrInet4
	flags   uint16
	pad2    int16
	pad3    uint64
	pad4    uintptr
	metric  int16
	dev     uintptr
	mtu     uint64
	window  uint64
	irtt    uint16
}

func addDefaultRoute(fd int, gw [4]byte) error {
	rt := rtentry{flags: unix.RTF_UP | unix.RTF_GATEWAY}
	rt.dst.Family, rt.genmask.Family = unix.AF_INET, unix.AF_INET
	rt.gateway.Family, rt.gateway.Addr = unix.AF_INET, gw
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCADDRT, uintptr(unsafe.Pointer(&rt))); e != 0 {
		return e
	}
	return nil
}
