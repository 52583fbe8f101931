package container

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/toolstack/faketoolstack"
)

func TestPoolFor(t *testing.T) {
	for _, tc := range []struct {
		prefix, self, first, last string
		err                       bool
	}{
		{"10.0.2.15/24", "10.0.2.15", "10.0.2.100", "10.0.2.199", false},
		{"172.16.0.1/16", "172.16.0.1", "172.16.0.100", "172.16.0.199", false},
		{"192.168.1.1/28", "192.168.1.1", "192.168.1.2", "192.168.1.14", false},
		{"192.168.1.1/31", "192.168.1.1", "", "", true},
	} {
		p, err := poolFor(netip.MustParsePrefix(tc.prefix), netip.MustParseAddr(tc.self))
		if tc.err {
			if err == nil {
				t.Errorf("%s: no error", tc.prefix)
			}
			continue
		}
		if err != nil || p.First.String() != tc.first || p.Last.String() != tc.last || p.Validate() != nil {
			t.Errorf("%s: %+v %v", tc.prefix, p, err)
		}
	}
}

func TestLeases(t *testing.T) {
	dir := t.TempDir()
	pool := &NetworkPool{Subnet: netip.MustParsePrefix("10.0.0.0/29"), First: netip.MustParseAddr("10.0.0.1"),
		Last: netip.MustParseAddr("10.0.0.3"), Gateway: netip.MustParseAddr("10.0.0.2")}
	a, err := acquireLease(dir, "one", pool)
	if err != nil || a.String() != "10.0.0.1" {
		t.Fatal(a, err)
	}
	b, err := acquireLease(dir, "two", pool)
	if err != nil || b.String() != "10.0.0.3" {
		t.Fatalf("second lease %v %v (the gateway is skipped)", b, err)
	}
	if _, err := acquireLease(dir, "three", pool); err == nil {
		t.Errorf("a third lease in a pool of two succeeded")
	}
	releaseLease(dir, a)
	if c, err := acquireLease(dir, "three", pool); err != nil || c != a {
		t.Errorf("released address not reused: %v %v", c, err)
	}
	// No container holds these: Reap's lease pass frees them all.
	reapLeases(dir)
	if ents, _ := os.ReadDir(filepath.Join(dir, leaseDir)); len(ents) != 0 {
		t.Errorf("leases left: %v", ents)
	}
	if _, err := acquireLease(dir, "x", &NetworkPool{Subnet: netip.MustParsePrefix("10.0.0.0/29"), First: netip.MustParseAddr("10.0.1.1"), Last: netip.MustParseAddr("10.0.1.2")}); err == nil {
		t.Errorf("range outside the subnet accepted")
	}
}

func TestRunBridgeAddress(t *testing.T) {
	e := newEnv(t, faketoolstack.ScriptProgram)
	var stdout bytes.Buffer
	o := e.opts("spec")
	o.Stdout, o.Bridge = &stdout, "xenbr0"
	o.Network = &NetworkPool{Subnet: netip.MustParsePrefix("10.0.2.0/24"), First: netip.MustParseAddr("10.0.2.100"),
		Last: netip.MustParseAddr("10.0.2.199"), Gateway: netip.MustParseAddr("10.0.2.2"), DNS: []string{"10.0.2.3"}}
	res, err := Run(context.Background(), e.ts, o)
	if err != nil || res.ExitCode != 0 {
		t.Fatal(res, err)
	}
	var spec guestproto.Spec
	json.Unmarshal(stdout.Bytes(), &spec)
	if spec.Net == nil || spec.Net.Address != "10.0.2.100/24" || spec.Net.Gateway != "10.0.2.2" || len(spec.Net.DNS) != 1 {
		t.Errorf("spec.net = %+v", spec.Net)
	}
	if cfg := string(e.ts.ConfigOf(res.Domain)); !bytes.Contains([]byte(cfg), []byte("bridge=xenbr0")) {
		t.Errorf("no vif in the config:\n%s", cfg)
	}
	// Released with the container.
	if ents, _ := os.ReadDir(filepath.Join(e.runtime, leaseDir)); len(ents) != 0 {
		t.Errorf("lease not released: %v", ents)
	}
}
