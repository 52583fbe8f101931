package e2e

// This file sorts last so that go test runs TestPoweroff after every
// other test of the suite (tests run in file name order).

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestPoweroff runs last: dom0 poweroff must stop the autostarted guest
// through xendomains (rcK) and make QEMU exit.
func TestPoweroff(t *testing.T) {
	v := vm(t)
	running, _ := domState(t, autoGuest)
	t0 := time.Now()
	err := v.Shutdown(context.Background())
	s.vm = nil
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("poweroff to QEMU exit: %.1fs", time.Since(t0).Seconds())
	con := v.Console()
	if !strings.Contains(con, "vxn-dom0: xendomains stop done rc=0") {
		t.Errorf("xendomains stop did not run at poweroff")
	}
	if running && !strings.Contains(con, "Shutting down Xen domain "+autoGuest) {
		t.Errorf("xendomains did not shut down %s at poweroff", autoGuest)
	}
	for _, p := range v.Timings() {
		t.Logf("phase %-14s %7.1fs", p.Name, p.At.Seconds())
	}
}
