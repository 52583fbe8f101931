package qcow2

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestBenchmarkVsQemuImg times `qemu-img convert -f qcow2 -O raw` against
// ConvertToRaw on ~1 GiB virtual images like those of docs/go-deps.md
// section 7 and prints the ratios (ours / qemu-img), whether the outputs
// are byte-identical and how sparse they are. It only runs with
// VXN_BENCH=1:
//
//	VXN_BENCH=1 go test ./pkg/disk/qcow2 -run TestBenchmarkVsQemuImg -v
//
// VXN_BENCH_DIR reuses (or creates) the images in a directory instead of a
// temporary one; VXN_BENCH_RUNS sets the number of timed runs (default 5; the minimum is compared).
// Wall-clock and CPU times are printed, never asserted; only output
// equality is. The ratio column is wall-clock (minimum over the runs); the
// CPU ratio (user+system seconds) is steadier on a loaded machine.
func TestBenchmarkVsQemuImg(t *testing.T) {
	if os.Getenv("VXN_BENCH") != "1" {
		t.Skip("skipping: set VXN_BENCH=1 to run the qemu-img comparison benchmark")
	}
	needQemu(t)
	dir := os.Getenv("VXN_BENCH_DIR")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	runs := 5
	if v := os.Getenv("VXN_BENCH_RUNS"); v != "" {
		fmt.Sscan(v, &runs)
	}
	raw := filepath.Join(dir, "src.raw")
	if _, err := os.Stat(raw); err != nil {
		writeBenchRaw(t, raw)
	}
	build := func(name string, f func(p string)) string {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		start := time.Now()
		f(p + ".tmp")
		if err := os.Rename(p+".tmp", p); err != nil {
			t.Fatal(err)
		}
		t.Logf("built %s in %.2fs", name, time.Since(start).Seconds())
		return p
	}
	conv := func(opts ...string) func(string) {
		return func(p string) {
			sh(t, "qemu-img", append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, opts...), raw, p)...)
		}
	}
	a := build("A-plain.qcow2", conv())
	images := []struct{ name, path string }{
		{"A plain", a},
		{"B deflate", build("B-zlib.qcow2", conv("-c"))},
		{"C zstd", build("C-zstd.qcow2", conv("-c", "-o", "compression_type=zstd"))},
		{"D backing+zero", build("D-overlay.qcow2", func(p string) {
			sh(t, "qemu-img", "create", "-q", "-f", "qcow2", "-b", filepath.Base(a), "-F", "qcow2", p)
			qemuIO(t, p, "write -P 0xaa 100M 16M", "write -z 10M 8M", "write -z 70M 32M",
				"write -P 0x55 500M 4M", "write -z -u 200M 4M", "discard 300M 2M", "write -P 0x11 900M 1M")
		})},
		{"E v2", build("E-v2.qcow2", conv("-o", "compat=0.10"))},
		{"F extended_l2", build("F-extl2.qcow2", conv("-o", "extended_l2=on"))},
	}

	t.Logf("%-16s %10s %10s %7s %9s %14s %14s %9s", "image", "qemu-img s", "ours s", "ratio", "identical", "alloc qemu MiB", "alloc ours MiB", "CPU ratio")
	for _, im := range images {
		qout := filepath.Join(dir, "out-qemu.raw")
		gout := filepath.Join(dir, "out-go.raw")
		var qt, gt, qc, gc []float64 // wall and CPU seconds
		var gerr error
		for range runs {
			os.Remove(qout)
			os.Remove(gout)
			start := time.Now()
			cmd := exec.Command("qemu-img", "convert", "-f", "qcow2", "-O", "raw", im.path, qout)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("qemu-img convert %s: %v\n%s", im.path, err, out)
			}
			qt = append(qt, time.Since(start).Seconds())
			qc = append(qc, (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds())
			c0 := cpuSeconds()
			start = time.Now()
			gerr = ConvertToRaw(context.Background(), im.path, gout)
			gt = append(gt, time.Since(start).Seconds())
			gc = append(gc, cpuSeconds()-c0)
			if gerr != nil {
				break
			}
		}
		qmin := slices.Min(qt)
		if gerr != nil {
			t.Logf("%-16s %10.3f %10s %7s %9s   refused: %v", im.name, qmin, "-", "-", "-", gerr)
			continue
		}
		gmin := slices.Min(gt)
		same := sha256File(t, qout) == sha256File(t, gout)
		if !same {
			t.Errorf("%s: output differs from qemu-img's", im.name)
		}
		t.Logf("%-16s %10.3f %10.3f %7.2f %9v %14.1f %14.1f %9.2f   (wall s: qemu %v, ours %v; CPU s: qemu %v, ours %v)", im.name, qmin, gmin, gmin/qmin, same,
			float64(allocatedBytes(t, qout))/(1<<20), float64(allocatedBytes(t, gout))/(1<<20), slices.Min(gc)/slices.Min(qc),
			fmtSecs(qt), fmtSecs(gt), fmtSecs(qc), fmtSecs(gc))
		os.Remove(qout)
		os.Remove(gout)
	}
}

// cpuSeconds returns the user+system CPU time of this process.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func fmtSecs(s []float64) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += fmt.Sprintf("%.3f", v)
	}
	return out
}

// writeBenchRaw writes the 1 GiB raw source of docs/go-deps.md section 7:
// 64 MiB random data, 128 MiB base64 text, 1,000 scattered 4 KiB writes,
// 32 MiB of explicitly written zeros, a 4 MiB random tail; the rest holes.
func writeBenchRaw(t *testing.T, path string) {
	t.Helper()
	const (
		size = 1 << 30
		mib  = 1 << 20
	)
	cc := rand.NewChaCha8([32]byte{'v', 'x', 'n'})
	rng := rand.New(cc)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	random := func(n int) []byte {
		b := make([]byte, n)
		cc.Read(b)
		return b
	}
	write := func(b []byte, off int64) {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	write(random(64*mib), 16*mib)
	text := make([]byte, 128*mib)
	base64.StdEncoding.Encode(text, random(96*mib))
	write(text, 128*mib)
	for range 1000 {
		write(random(4096), rng.Int64N(size/4096-1024)*4096)
	}
	write(make([]byte, 32*mib), 400*mib)
	write(random(4*mib), size-4*mib)
}
