package container

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// NetworkPool is where --network bridge addresses come from: a static IPv4
// address per container, leased lock-free under RuntimeDir/.leases (one
// directory per address, made with mkdir, which is atomic) and released
// when the container stops (Reap releases the leases of killed monitors).
type NetworkPool struct {
	// Subnet is the bridge's network, e.g. 10.0.2.0/24.
	Subnet netip.Prefix `json:"subnet"`
	// First and Last bound the addresses handed out.
	First netip.Addr `json:"first"`
	Last  netip.Addr `json:"last"`
	// Gateway, when valid, is the guests' default route.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// DNS are name servers for the guests.
	DNS []string `json:"dns,omitempty"`
}

// Validate checks that the range lies in the subnet.
func (p *NetworkPool) Validate() error {
	if !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() {
		return fmt.Errorf("network pool: subnet %v: want an IPv4 prefix", p.Subnet)
	}
	if !p.Subnet.Contains(p.First) || !p.Subnet.Contains(p.Last) || p.Last.Less(p.First) {
		return fmt.Errorf("network pool: range %v-%v is not an ordered range inside %v", p.First, p.Last, p.Subnet)
	}
	return nil
}

// BridgePool derives a pool from the bridge's own IPv4 address: the
// addresses .100 to .199 of its subnet when it is a /24 or larger (leaving
// the low ones to DHCP and static hosts), else every host address but the
// bridge's; the gateway is the default route through the bridge, if any.
func BridgePool(bridge string) (*NetworkPool, error) {
	ifi, err := net.InterfaceByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("--network bridge: bridge %s: %w", bridge, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("--network bridge: bridge %s: %w", bridge, err)
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		ip, _ := netip.AddrFromSlice(ipn.IP.To4())
		ones, _ := ipn.Mask.Size()
		pool, err := poolFor(netip.PrefixFrom(ip, ones), ip)
		if err != nil {
			return nil, fmt.Errorf("--network bridge: bridge %s: %w", bridge, err)
		}
		pool.Gateway = defaultGateway(bridge)
		return pool, nil
	}
	return nil, fmt.Errorf("--network bridge: bridge %s has no IPv4 address to take the guests' subnet from", bridge)
}

// poolFor is BridgePool's range choice for the bridge address self.
func poolFor(p netip.Prefix, self netip.Addr) (*NetworkPool, error) {
	p = p.Masked()
	if p.Bits() > 30 {
		return nil, fmt.Errorf("subnet %v is too small for guests", p)
	}
	base := p.Addr().As4()
	n := uint32(1) << (32 - p.Bits())
	at := func(off uint32) netip.Addr {
		v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
		v += off
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	pool := &NetworkPool{Subnet: p, First: at(1), Last: at(n - 2)}
	if n >= 256 {
		pool.First, pool.Last = at(100), at(199)
	}
	if pool.First == self {
		pool.First = pool.First.Next()
	}
	return pool, nil
}

// defaultGateway reads the default route through dev from /proc/net/route.
func defaultGateway(dev string) netip.Addr {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 3 || fl[0] != dev || fl[1] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(fl[2])
		if err != nil || len(b) != 4 {
			continue
		}
		// Little-endian on the hosts vxn runs on (x86-64, arm64).
		return netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
	}
	return netip.Addr{}
}

const leaseDir = ".leases"

// acquireLease takes the first free address of the pool for container id.
func acquireLease(runtimeDir, id string, pool *NetworkPool) (netip.Addr, error) {
	if err := pool.Validate(); err != nil {
		return netip.Addr{}, err
	}
	dir := filepath.Join(runtimeDir, leaseDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return netip.Addr{}, fmt.Errorf("address leases: %w", err)
	}
	for a := pool.First; a.IsValid() && !pool.Last.Less(a); a = a.Next() {
		if a == pool.Gateway {
			continue
		}
		p := filepath.Join(dir, a.String())
		if err := os.Mkdir(p, 0o700); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return netip.Addr{}, fmt.Errorf("address leases: %w", err)
		}
		if err := os.WriteFile(filepath.Join(p, "owner"), []byte(id), 0o600); err != nil {
			os.RemoveAll(p)
			return netip.Addr{}, fmt.Errorf("address leases: %w", err)
		}
		return a, nil
	}
	return netip.Addr{}, fmt.Errorf("no free address for the container: every address of %v-%v is leased (vxn ps -a; vxn rm stopped containers)", pool.First, pool.Last)
}

func releaseLease(runtimeDir string, a netip.Addr) {
	if a.IsValid() {
		os.RemoveAll(filepath.Join(runtimeDir, leaseDir, a.String()))
	}
}

// reapLeases releases the leases whose container has no live monitor.
// Call with the runtime lock held.
func reapLeases(runtimeDir string) {
	dir := filepath.Join(runtimeDir, leaseDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		owner, err := os.ReadFile(filepath.Join(p, "owner"))
		if err != nil {
			// Being created: leave young ones alone.
			if fi, serr := os.Stat(p); serr == nil && time.Since(fi.ModTime()) > time.Minute {
				os.RemoveAll(p)
			}
			continue
		}
		id := string(owner)
		if strings.ContainsAny(id, "/\x00") || id == "" {
			os.RemoveAll(p)
			continue
		}
		live, f := held(filepath.Join(runtimeDir, id))
		if f != nil {
			f.Close()
		}
		if !live {
			os.RemoveAll(p)
		}
	}
}

// guestNet is the Spec.Net of a leased address.
func guestNet(pool *NetworkPool, a netip.Addr) *guestproto.Net {
	n := &guestproto.Net{Address: netip.PrefixFrom(a, pool.Subnet.Bits()).String(), DNS: pool.DNS}
	if pool.Gateway.IsValid() {
		n.Gateway = pool.Gateway.String()
	}
	return n
}
