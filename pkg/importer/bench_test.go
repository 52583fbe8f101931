package importer

import (
	"bytes"
	"context"
	"github.com/vxn-dev/vxn/pkg/tarsafe"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// benchTarball builds a gzip tarball of about 24 MiB in 2,000 files.
func benchTarball(b *testing.B) (string, []byte) {
	rng := rand.New(rand.NewSource(1))
	var ents []tent
	for i := range 2000 {
		body := make([]byte, 4096+rng.Intn(16384))
		// Half random, half text-like, so gzip has work to do.
		rng.Read(body[:len(body)/2])
		copy(body[len(body)/2:], bytes.Repeat([]byte("guest rootfs "), len(body)))
		ents = append(ents, tent{name: "usr/d" + strconv.Itoa(i%50) + "/f" + strconv.Itoa(i), body: string(body)})
	}
	plain := mkTar(b, ents)
	p := filepath.Join(b.TempDir(), "rootfs.tar.gz")
	if err := os.WriteFile(p, compress(b, Gzip, plain), 0o644); err != nil {
		b.Fatal(err)
	}
	return p, plain
}

// BenchmarkRootfsTar compares the rootfs_tar import (stream: gunzip →
// sanitize → ext4 writer) with upstream's route: GNU tar -x into a staging
// directory, then mkfs.ext4 -d (as root, which upstream needs fakeroot for).
func BenchmarkRootfsTar(b *testing.B) {
	tarBin := needTool(b, "tar")
	mkfs := needTool(b, "mkfs.ext4")
	src, _ := benchTarball(b)
	h, _ := NewRegistry().Lookup(TypeRootfsTar)
	dir := b.TempDir()
	var ours, ref time.Duration
	for b.Loop() {
		t0 := time.Now()
		req := Request{Guest: "g", Type: TypeRootfsTar, Source: src, Output: filepath.Join(dir, "ours.img"), SizeMB: 128}
		h.(*rootfsTar).cache = map[tarKey]*usage{} // count the estimate pass too
		if err := h.Import(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)
		b.StopTimer()
		stage := filepath.Join(dir, "stage")
		os.RemoveAll(stage)
		os.Mkdir(stage, 0o755)
		img := filepath.Join(dir, "ref.img")
		os.Remove(img)
		t0 = time.Now()
		if out, err := exec.Command(tarBin, "-xzf", src, "-C", stage).CombinedOutput(); err != nil {
			b.Fatalf("tar: %v %s", err, out)
		}
		if out, err := exec.Command(mkfs, "-q", "-F", "-d", stage, img, "128M").CombinedOutput(); err != nil {
			b.Fatalf("mkfs.ext4: %v %s", err, out)
		}
		ref += time.Since(t0)
		b.StartTimer()
	}
	b.ReportMetric(float64(ours)/float64(ref), "ours/tar+mkfs")
	b.Logf("rootfs_tar import vs tar -x + mkfs.ext4 -d: ours/ref = %.2f", float64(ours)/float64(ref))
}

// BenchmarkSanitizeTar compares the sanitizer (tar → tar) with GNU tar
// copying the same uncompressed archive entry by entry into a new one
// (tar -A, "concatenate"; this GNU tar has no bsdtar-style @archive).
func BenchmarkSanitizeTar(b *testing.B) {
	tarBin := needTool(b, "tar")
	_, plain := benchTarball(b)
	p := filepath.Join(b.TempDir(), "plain.tar")
	os.WriteFile(p, plain, 0o644)
	b.SetBytes(int64(len(plain)))
	var ours, ref time.Duration
	for b.Loop() {
		t0 := time.Now()
		r := tarsafe.Sanitize(context.Background(), bytes.NewReader(plain), tarsafe.Options{})
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(t0)
		b.StopTimer()
		t0 = time.Now()
		out := filepath.Join(filepath.Dir(p), "out.tar")
		os.Remove(out)
		if o, err := exec.Command(tarBin, "-cf", out, "-T", "/dev/null").CombinedOutput(); err != nil {
			b.Fatalf("tar: %v %s", err, o)
		}
		if o, err := exec.Command(tarBin, "-Af", out, p).CombinedOutput(); err != nil {
			b.Fatalf("tar -A: %v %s", err, o)
		}
		ref += time.Since(t0)
		b.StartTimer()
	}
	b.ReportMetric(float64(ours)/float64(ref), "ours/gnutar")
	b.Logf("sanitize vs tar -A: ours/ref = %.2f", float64(ours)/float64(ref))
}
