package e2e

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/hostimage"
	"github.com/vxn-dev/vxn/pkg/qemu"
)

var flagCompareInit = flag.Int("compare-init", 0, "boot the busybox and the systemd dom0 this many times each (alternating, no guests) and print phase times and ratios")

// TestCompareInit measures dom0 boot with busybox init against systemd
// (same kernel, same toolstack scripts, no guests), alternating the two so
// that host load affects both alike. It justifies busybox init with numbers.
func TestCompareInit(t *testing.T) {
	if *flagCompareInit <= 0 {
		t.Skip("pass -args -compare-init N to compare busybox and systemd dom0 boot times")
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	descs := map[string]*qemu.Descriptor{}
	for _, init := range []string{"busybox", "systemd"} {
		out, err := hostimage.Build(ctx, hostimage.Options{Machine: *flagMachine, Init: init, SkipGuest: true,
			OutDir: filepath.Join(root, ".cache", "e2e", "compare-"+init), CacheDir: filepath.Join(root, ".cache")})
		if err != nil {
			t.Fatal(err)
		}
		descs[init] = out.Descriptor
	}
	phases := []string{qemu.PhaseDom0Kernel, qemu.PhaseDom0Init, qemu.PhaseToolstack, qemu.PhaseLoginPrompt}
	res := map[string]map[string][]float64{}
	for i := 0; i < *flagCompareInit; i++ {
		for _, init := range []string{"busybox", "systemd"} {
			vm, err := qemu.Boot(ctx, descs[init], qemu.Options{NoKVM: *flagNoKVM, MemoryMB: *flagMemory,
				Snapshot: true, BootTimeout: *flagBootTimeout})
			if err != nil {
				t.Fatalf("%s: %v", init, err)
			}
			at := map[string]time.Duration{}
			for _, p := range vm.Timings() {
				at[p.Name] = p.At
			}
			vm.Kill()
			if res[init] == nil {
				res[init] = map[string][]float64{}
			}
			k := at[qemu.PhaseDom0Kernel]
			for _, ph := range phases[1:] {
				if v, ok := at[ph]; ok {
					res[init][ph] = append(res[init][ph], (v - k).Seconds())
				}
			}
			t.Logf("run %d %-7s kernel->init %.1fs kernel->toolstack %.1fs kernel->login %.1fs", i+1, init,
				(at[qemu.PhaseDom0Init] - k).Seconds(), (at[qemu.PhaseToolstack] - k).Seconds(), (at[qemu.PhaseLoginPrompt] - k).Seconds())
		}
	}
	med := func(v []float64) float64 {
		if len(v) == 0 {
			return 0
		}
		s := append([]float64(nil), v...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	for _, ph := range phases[1:] {
		b, sd := med(res["busybox"][ph]), med(res["systemd"][ph])
		ratio := "n/a"
		if b > 0 {
			ratio = fmt.Sprintf("%.2fx", sd/b)
		}
		t.Logf("median dom0-kernel -> %-13s busybox %5.1fs  systemd %5.1fs  systemd/busybox %s", ph, b, sd, ratio)
	}
}
