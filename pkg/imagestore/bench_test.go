package imagestore

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vxn-dev/vxn/pkg/oci"
	"github.com/vxn-dev/vxn/pkg/oci/testimage"
)

// benchImage is a three-layer image of about 24 MB in 1,500 files.
func benchImage(b *testing.B) v1.Image {
	rng := rand.New(rand.NewPCG(1, 2))
	var layers []v1.Layer
	for l := range 3 {
		var files []testimage.File
		for d := range 10 {
			files = append(files, testimage.File{Name: fmt.Sprintf("l%d/d%d/", l, d)})
			for f := range 50 {
				body := make([]byte, 1024+rng.IntN(30000))
				for i := range body {
					body[i] = byte('a' + rng.IntN(4)) // compressible, like binaries
				}
				files = append(files, testimage.File{Name: fmt.Sprintf("l%d/d%d/f%d", l, d, f), Body: string(body)})
			}
		}
		layer, err := testimage.Layer(files)
		if err != nil {
			b.Fatal(err)
		}
		layers = append(layers, layer)
	}
	img, err := testimage.Image(runtime.GOARCH, v1.Config{Cmd: []string{"x"}}, layers...)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// BenchmarkDiskBuild compares building a guest disk (flatten + sanitize +
// ext4.FromTar, streamed) with upstream's way: GNU tar extraction of each
// layer into a directory, then mkfs.ext4 -d (sized content + 30 % + 64 MB),
// on the same image in the same run.
func BenchmarkDiskBuild(b *testing.B) {
	for _, tool := range []string{"tar", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("reference tool %s missing: %v", tool, err)
		}
	}
	img := benchImage(b)
	tmp := b.TempDir()
	s, err := Open(filepath.Join(tmp, "store"))
	if err != nil {
		b.Fatal(err)
	}
	if err := testimage.WriteLayout(filepath.Join(tmp, "layout"), img, ""); err != nil {
		b.Fatal(err)
	}
	simg, err := s.Pull(bg, "oci-layout:"+filepath.Join(tmp, "layout"), oci.Options{})
	if err != nil {
		b.Fatal(err)
	}
	layers, _ := simg.V1().Layers()
	var ours, ref time.Duration
	for i := 0; i < b.N; i++ {
		os.Remove(s.DiskPath(simg.ID))
		t0 := time.Now()
		if _, hit, err := s.Disk(bg, simg); err != nil || hit {
			b.Fatal(hit, err)
		}
		ours += time.Since(t0)

		root := filepath.Join(tmp, "rootfs")
		os.RemoveAll(root)
		os.MkdirAll(root, 0o755)
		t0 = time.Now()
		for _, l := range layers {
			d, _ := l.Digest()
			out, err := exec.Command("tar", "-xzf", s.blobPath(d), "-C", root).CombinedOutput()
			if err != nil {
				b.Fatalf("tar: %v %s", err, out)
			}
		}
		du, err := dirSize(root)
		if err != nil {
			b.Fatal(err)
		}
		mb := du*13/10>>20 + 64
		refImg := filepath.Join(tmp, "ref.ext4")
		os.Remove(refImg)
		out, err := exec.Command("mkfs.ext4", "-q", "-t", "ext4", "-m", "0", "-F", "-d", root, refImg, fmt.Sprintf("%dM", mb)).CombinedOutput()
		if err != nil {
			b.Fatalf("mkfs.ext4: %v %s", err, out)
		}
		ref += time.Since(t0)
	}
	b.ReportMetric(float64(ours.Microseconds())/float64(b.N)/1000, "ms/disk")
	b.ReportMetric(float64(ref.Microseconds())/float64(b.N)/1000, "ms/ref")
	b.Logf("guest disk build: ours %v, tar -x + mkfs.ext4 -d %v per image; ratio ours/reference = %.2f (N=%d)",
		ours/time.Duration(b.N), ref/time.Duration(b.N), float64(ours)/float64(ref), b.N)
}

func dirSize(root string) (int64, error) {
	var n int64
	err := filepath.Walk(root, func(_ string, fi os.FileInfo, err error) error {
		if err == nil {
			n += fi.Size()
		}
		return err
	})
	return n, err
}
