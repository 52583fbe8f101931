package ext4

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestBenchChild is run by TestBenchmarkVsMkfs in a child process so that
// the child's peak RSS is FromDir's or FromTar's alone.
func TestBenchChild(t *testing.T) {
	mode := os.Getenv("VXN_BENCH_CHILD")
	if mode == "" {
		t.Skip("only run as TestBenchmarkVsMkfs's child")
	}
	size, _ := strconv.ParseInt(os.Getenv("VXN_BENCH_SIZE"), 10, 64)
	opt := Options{SizeBytes: size}
	src, img := os.Getenv("VXN_BENCH_IN"), os.Getenv("VXN_BENCH_IMG")
	var err error
	if mode == "dir" {
		err = FromDir(context.Background(), src, img, opt)
	} else {
		var f *os.File
		if f, err = os.Open(src); err == nil {
			err = FromTar(context.Background(), f, img, opt)
			f.Close()
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

// peakRSS runs cmd and returns its peak resident set in MiB.
func peakRSS(cmd *exec.Cmd) (int64, error) {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("%v: %s", err, out)
	}
	return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss >> 10, nil
}

// TestBenchmarkVsMkfs compares FromDir with `mkfs.ext4 -d` and FromTar with
// `tar -x` + `mkfs.ext4 -d` on the same tree in the same run, and prints
// the ratios (lower is better). Set VXN_BENCH=1 to run it; VXN_BENCH_SRC
// picks the source tree (default: a copy of /usr/lib/x86_64-linux-gnu).
func TestBenchmarkVsMkfs(t *testing.T) {
	if os.Getenv("VXN_BENCH") != "1" {
		t.Skip("skipping benchmark: set VXN_BENCH=1")
	}
	for _, tool := range []string{"mkfs.ext4", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not installed: %v", tool, err)
		}
	}
	src := os.Getenv("VXN_BENCH_SRC")
	if src == "" {
		src = "/usr/lib/x86_64-linux-gnu"
	}
	if _, err := os.Stat(src); err != nil {
		t.Skipf("skipping: benchmark source tree: %v", err)
	}
	dir := t.TempDir()
	tarball := filepath.Join(dir, "tree.tar")
	if out, err := exec.Command("tar", "-C", src, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Logf("tar -c reported: %v %s", err, bytes.TrimSpace(out))
	}
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	if out, err := exec.Command("tar", "-C", tree, "-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v %s", err, out)
	}
	est, err := EstimateDir(tree)
	if err != nil {
		t.Fatal(err)
	}
	size := est + est/5 + 64<<20
	t.Logf("tree: %d MiB estimated, image %d MiB", est>>20, size>>20)
	run := func(name string, fn func() error) time.Duration {
		best := time.Duration(1 << 62)
		for i := 0; i < 3; i++ {
			t0 := time.Now()
			if err := fn(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if d := time.Since(t0); d < best {
				best = d
			}
		}
		return best
	}
	mkfs := func(d, img string) error {
		os.Remove(img)
		if err := os.WriteFile(img, nil, 0o644); err != nil {
			return err
		}
		if err := os.Truncate(img, size); err != nil {
			return err
		}
		out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", d, img).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	img := filepath.Join(dir, "x.img")
	tMkfs := run("mkfs.ext4 -d", func() error { return mkfs(tree, img) })
	tTarMkfs := run("tar -x + mkfs.ext4 -d", func() error {
		x := filepath.Join(dir, "x")
		os.RemoveAll(x)
		os.Mkdir(x, 0o755)
		if out, err := exec.Command("tar", "-C", x, "-xf", tarball).CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		err := mkfs(x, img)
		os.RemoveAll(x)
		return err
	})
	opt := Options{SizeBytes: size}
	tDir := run("FromDir", func() error { return FromDir(context.Background(), tree, img, opt) })
	fsck(t, img)
	tTar := run("FromTar", func() error {
		f, err := os.Open(tarball)
		if err != nil {
			return err
		}
		defer f.Close()
		return FromTar(context.Background(), f, img, opt)
	})
	fsck(t, img)
	t.Logf("mkfs.ext4 -d: %v; tar -x + mkfs.ext4 -d: %v; FromDir: %v; FromTar: %v", tMkfs, tTarMkfs, tDir, tTar)
	// Both sides write a journal and metadata_csum (mke2fs's defaults here).
	mb := float64(est) / (1 << 20)
	fmt.Printf("BENCH tree %.0f MiB: mkfs.ext4 -d %v (%.0f MB/s), tar -x + mkfs.ext4 -d %v, FromDir %v (%.0f MB/s), FromTar %v (%.0f MB/s)\n",
		mb, tMkfs.Round(time.Millisecond), mb/tMkfs.Seconds(), tTarMkfs.Round(time.Millisecond),
		tDir.Round(time.Millisecond), mb/tDir.Seconds(), tTar.Round(time.Millisecond), mb/tTar.Seconds())
	fmt.Printf("BENCH dir->ext4 / mkfs.ext4 -d = %.2f (before this writer: <= 0.5)\n", float64(tDir)/float64(tMkfs))
	fmt.Printf("BENCH tar->ext4 / (tar -x + mkfs.ext4 -d) = %.2f (before this writer: <= 0.35)\n", float64(tTar)/float64(tTarMkfs))
	// Peak RSS of one run each, in child processes.
	exe, _ := os.Executable()
	child := func(mode, in string) (int64, error) {
		cmd := exec.Command(exe, "-test.run", "^TestBenchChild$")
		cmd.Env = append(os.Environ(), "VXN_BENCH_CHILD="+mode, "VXN_BENCH_IN="+in, "VXN_BENCH_IMG="+img, fmt.Sprintf("VXN_BENCH_SIZE=%d", size))
		return peakRSS(cmd)
	}
	rDir, err := child("dir", tree)
	if err != nil {
		t.Fatal(err)
	}
	rTar, err := child("tar", tarball)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(img)
	f, _ := os.Create(img)
	f.Truncate(size)
	f.Close()
	rMkfs, err := peakRSS(exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", tree, img))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("BENCH peak RSS: FromDir %d MiB, FromTar %d MiB, mkfs.ext4 -d %d MiB\n", rDir, rTar, rMkfs)
}
