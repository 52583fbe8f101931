package qcow2

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// qemuIO runs qemu-io commands on a qcow2 image.
func qemuIO(t *testing.T, img string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	sh(t, "qemu-io", append(args, img)...)
}

// TestAgainstQemuImg builds images with qemu-img and qemu-io and checks
// that ConvertToRaw is byte-identical to `qemu-img convert -O raw` and at
// least as sparse, and that ReadAt and Extents agree.
func TestAgainstQemuImg(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	const size = 6<<20 + 3*512 // not a multiple of any cluster size
	raw := filepath.Join(dir, "src.raw")
	writeMixedRaw(t, raw, size, 1<<20, 42)
	conv := func(name string, opts ...string) string {
		p := filepath.Join(dir, name)
		args := append([]string{"convert", "-f", "raw", "-O", "qcow2"}, opts...)
		sh(t, "qemu-img", append(args, raw, p)...)
		return p
	}
	create := func(name, backing, bfmt string, size string, opts ...string) string {
		p := filepath.Join(dir, name)
		args := []string{"create", "-q", "-f", "qcow2"}
		if backing != "" {
			args = append(args, "-b", backing, "-F", bfmt)
		}
		args = append(args, opts...)
		args = append(args, p)
		if size != "" {
			args = append(args, size)
		}
		sh(t, "qemu-img", args...)
		return p
	}
	overlayWrites := []string{
		"write -P 0x11 0 64k",
		"write -P 0x22 1000k 3k",
		"write -z 1M 256k",
		"write -z -u 2M 128k",
		"discard 3M 64k",
		"write -P 0x33 5M 4k",
		"write -z 6M 1k",
	}

	type tc struct {
		name  string
		build func() string
	}
	// Reader options by case: backing files outside the image's
	// directory, or without a backing format, need an explicit allowance.
	caseOpts := map[string]Options{
		"raw backing absolute":  {BackingDirs: []string{dir}},
		"backing format probed": {TrustBacking: true},
	}
	cases := []tc{
		{"v3 64k", func() string { return conv("v3.qcow2") }},
		{"v2 compat=0.10", func() string { return conv("v2.qcow2", "-o", "compat=0.10") }},
		{"deflate", func() string { return conv("zlib.qcow2", "-c") }},
		{"zstd", func() string { return conv("zstd.qcow2", "-c", "-o", "compression_type=zstd") }},
		{"512 plain", func() string { return conv("c512.qcow2", "-o", "cluster_size=512") }},
		{"512 zstd", func() string { return conv("c512z.qcow2", "-c", "-o", "cluster_size=512,compression_type=zstd") }},
		{"4k deflate", func() string { return conv("c4k.qcow2", "-c", "-o", "cluster_size=4k") }},
		{"2M plain", func() string { return conv("c2m.qcow2", "-o", "cluster_size=2M") }},
		{"2M deflate", func() string { return conv("c2mz.qcow2", "-c", "-o", "cluster_size=2M") }},
		{"2M zstd v2-size", func() string { return conv("c2mzs.qcow2", "-c", "-o", "cluster_size=2M,compression_type=zstd") }},
		{"overlay v3", func() string {
			base := conv("ob.qcow2")
			p := create("ov3.qcow2", filepath.Base(base), "qcow2", "")
			qemuIO(t, p, overlayWrites...)
			return p
		}},
		{"overlay larger than base, on zstd", func() string {
			base := conv("obz.qcow2", "-c", "-o", "compression_type=zstd,cluster_size=16k")
			p := create("ovl.qcow2", filepath.Base(base), "qcow2", "9M", "-o", "cluster_size=4k")
			qemuIO(t, p, append(overlayWrites, "write -P 0x44 8M 8k", "write -z 7M 64k")...)
			return p
		}},
		{"overlay v2 on deflate", func() string {
			base := conv("ob2.qcow2", "-c")
			p := create("ov2.qcow2", filepath.Base(base), "qcow2", "", "-o", "compat=0.10")
			qemuIO(t, p, "write -P 0x11 0 64k", "write -z 1M 256k", "write -P 0x55 4M 100k")
			return p
		}},
		{"raw backing absolute", func() string {
			p := create("ovr.qcow2", raw, "raw", "")
			qemuIO(t, p, overlayWrites...)
			return p
		}},
		{"smaller raw backing", func() string {
			small := filepath.Join(dir, "small.raw")
			b, err := os.ReadFile(raw)
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(small, b[:3<<20+100], 0o644)
			p := create("ovs.qcow2", "small.raw", "raw", "6M")
			qemuIO(t, p, "write -P 0x66 3M 4k")
			return p
		}},
		{"chain of three", func() string {
			base := conv("ch0.qcow2", "-c", "-o", "compression_type=zstd")
			mid := create("ch1.qcow2", filepath.Base(base), "qcow2", "", "-o", "cluster_size=2M")
			qemuIO(t, mid, "write -P 0x77 512k 1M", "write -z 2M 2M")
			top := create("ch2.qcow2", filepath.Base(mid), "qcow2", "", "-o", "cluster_size=512")
			qemuIO(t, top, "write -P 0x88 600k 5k", "write -z 2500k 1k", "write -P 0 4M 8k")
			return top
		}},
		{"backing format probed", func() string {
			base := conv("pb.qcow2")
			p := create("pov.qcow2", filepath.Base(base), "qcow2", "")
			qemuIO(t, p, "write -P 0x99 1M 64k")
			// Turn the backing format extension into an unknown one, which
			// readers ignore, so the format has to be probed.
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			i := bytes.Index(b[:4096], []byte{0xe2, 0x79, 0x2a, 0xca})
			if i < 0 {
				t.Fatal("no backing format extension")
			}
			copy(b[i:], []byte{0x12, 0x34, 0x56, 0x78})
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if out := sh(t, "qemu-img", "info", p); strings.Contains(out, "backing file format") {
				t.Fatalf("backing format still present:\n%s", out)
			}
			return p
		}},
		{"backing_fmt raw over a qcow2 file", func() string {
			base := conv("rq.qcow2", "-o", "cluster_size=4k")
			p := create("rqov.qcow2", filepath.Base(base), "raw", "6M")
			qemuIO(t, p, "write -P 0x12 64k 64k")
			return p
		}},
		{"empty", func() string { return create("empty.qcow2", "", "", "3M") }},
		{"zero size", func() string { return create("zero.qcow2", "", "", "0") }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := c.build()
			checkAgainstQemu(t, img, caseOpts[c.name])
		})
	}
}

// TestRefusedByDesign checks the clear errors for features we do not
// implement, on images made by qemu-img.
func TestRefusedByDesign(t *testing.T) {
	needQemu(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		msg  string
	}{
		{"extended_l2", []string{"-o", "extended_l2=on"}, "extended L2"},
		{"data_file", []string{"-o", "data_file=" + filepath.Join(dir, "data.raw")}, "external data file"},
		{"luks", []string{"--object", "secret,id=sec0,data=abc", "-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=200"}, "encryption"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".qcow2")
			args := append([]string{"create", "-q", "-f", "qcow2"}, tc.args...)
			sh(t, "qemu-img", append(args, p, "4M")...)
			_, err := Open(p)
			if !errors.Is(err, ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) {
				t.Fatalf("Open: err = %v, want ErrUnsupported", err)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), p) {
				t.Errorf("error %q should name %s and say %q", err, p, tc.msg)
			}
			t.Logf("%v", err)
		})
	}
}
