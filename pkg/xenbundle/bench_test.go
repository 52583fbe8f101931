package xenbundle

import (
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBenchmarkRebuild measures an unchanged rebuild against a cold build
// of the same guest set (a rootfs_dir import of a ~160 MB tree plus a
// copied rootfs). It prints the ratio; it asserts only correctness.
// Run with VXN_BENCH=1 (scripts/bench.sh does).
func TestBenchmarkRebuild(t *testing.T) {
	if os.Getenv("VXN_BENCH") == "" {
		t.Skip("benchmark: set VXN_BENCH=1 to run (scripts/bench.sh)")
	}
	deploy, unpack := fixture(t)
	src := filepath.Join(unpack, "big-rootfs")
	rng := rand.New(rand.NewSource(1))
	buf := make([]byte, 64<<10)
	for i := 0; i < 2000; i++ {
		d := filepath.Join(src, fmt.Sprintf("d%02d", i%40))
		os.MkdirAll(d, 0o755)
		n := 4<<10 + rng.Intn(len(buf)-4<<10) + (i%20)*5<<10
		big := make([]byte, n)
		rng.Read(big)
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("f%04d", i)), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(t.TempDir(), "local.conf")
	os.WriteFile(conf, []byte(`BUNDLED_XEN_GUESTS = "xen-guest-image-minimal:autostart big"
XEN_GUEST_SOURCE_TYPE[big] = "rootfs_dir"
XEN_GUEST_SOURCE_FILE[big] = "big-rootfs"
`), 0o644)
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	cache := t.TempDir()
	args := []string{"install", "-q", "--conf", conf, "--deploy-dir", deploy, "--unpackdir", unpack, "--rootfs", rootfs, "--cache-dir", cache}
	timeRun := func() time.Duration {
		start := time.Now()
		if out, errOut, code := run(t, args...); code != 0 {
			t.Fatalf("install: %s%s", out, errOut)
		}
		return time.Since(start)
	}
	cold := timeRun()
	var warm time.Duration
	for i := 0; i < 5; i++ {
		if d := timeRun(); warm == 0 || d < warm {
			warm = d
		}
	}
	fmt.Printf("BENCH rebuild: cold %.3fs, unchanged rebuild %.4fs, ratio %.3f (aim <= 0.05)\n", cold.Seconds(), warm.Seconds(), warm.Seconds()/cold.Seconds())
}
