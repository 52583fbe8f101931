package qcow2

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Layout of testdata/overlay-512.qcow2 used to rewrite its backing file
// fields: the backing format extension starts at byte 112 (its data at
// 120, 8 bytes with padding), the backing file name at byte 136.
const (
	ovFmtExt      = 112
	ovNameOff     = 136
	ovMaxNameLen  = 512 - ovNameOff
	ovMaxFmtBytes = 8
)

// withBacking returns the overlay seed with its backing file name and
// format replaced; format "" removes the format extension (its type is
// changed to one readers ignore).
func withBacking(t testing.TB, name, format string) []byte {
	t.Helper()
	ov, err := os.ReadFile("testdata/overlay-512.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint64(ov[8:]) != ovNameOff || binary.BigEndian.Uint32(ov[ovFmtExt:]) != extBackingFormat {
		t.Fatal("overlay seed layout changed: update ovNameOff/ovFmtExt")
	}
	return rewriteBacking(ov, name, format)
}

// rewriteBacking rewrites the backing fields of a copy of the overlay seed
// ov; name and format are cut to what fits.
func rewriteBacking(ov []byte, name, format string) []byte {
	c := bytes.Clone(ov)
	name = name[:min(len(name), ovMaxNameLen)]
	clear(c[ovNameOff:512])
	copy(c[ovNameOff:], name)
	binary.BigEndian.PutUint32(c[16:], uint32(len(name)))
	if name == "" {
		binary.BigEndian.PutUint64(c[8:], 0)
	}
	if format == "" {
		binary.BigEndian.PutUint32(c[ovFmtExt:], 0x12345678)
	} else {
		format = format[:min(len(format), ovMaxFmtBytes)]
		binary.BigEndian.PutUint32(c[ovFmtExt+4:], uint32(len(format)))
		clear(c[ovFmtExt+8 : ovFmtExt+16])
		copy(c[ovFmtExt+8:], format)
	}
	return c
}

// backingFixture is a directory holding an image's directory (img/) with a
// good base image, and a secret host file outside it (outside/secret),
// reachable through a symlink img/link.raw and by ../outside/secret.
type backingFixture struct {
	root, img, outside, secret string
}

var secretBytes = []byte("root:$6$secret-hash-that-must-never-reach-a-guest-image:19000:0:99999:7:::\n")

func newBackingFixture(t testing.TB) *backingFixture {
	t.Helper()
	root := t.TempDir()
	f := &backingFixture{root: root, img: filepath.Join(root, "img"), outside: filepath.Join(root, "outside")}
	f.secret = filepath.Join(f.outside, "secret")
	for _, d := range []string{f.img, f.outside, filepath.Join(f.img, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	base, err := os.ReadFile("testdata/v3-512.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(f.img, "v3-512.qcow2"), filepath.Join(f.img, "sub", "base.qcow2"), filepath.Join(f.outside, "base.qcow2")} {
		if err := os.WriteFile(p, base, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(f.secret, secretBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(f.secret, filepath.Join(f.img, "link.raw")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../outside", filepath.Join(f.img, "out")); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestBackingConfined: a backing file name is the image author's choice and
// must not read host files into the guest disk. Before the confinement an
// image naming /etc/shadow (or ../../etc/shadow, or a symlink) as a raw
// backing file converted successfully into a disk starting with its bytes.
func TestBackingConfined(t *testing.T) {
	f := newBackingFixture(t)
	tests := []struct {
		name, backing, format string
		opts                  Options
		want                  string // "" = opens; else a substring of the refusal
	}{
		{"relative same dir", "v3-512.qcow2", "qcow2", Options{}, ""},
		{"relative subdir", "sub/base.qcow2", "qcow2", Options{}, ""},
		{"relative dot-dot back inside", "sub/../v3-512.qcow2", "qcow2", Options{}, ""},
		{"absolute", f.secret, "raw", Options{}, "is an absolute name"},
		{"absolute etc", "/etc/passwd", "raw", Options{}, "is an absolute name"},
		{"dot-dot escape", "../outside/secret", "raw", Options{}, "outside the allowed directory"},
		{"deep dot-dot escape", strings.Repeat("../", 30) + "etc/passwd", "raw", Options{}, "outside the allowed directory"},
		{"symlink escape", "link.raw", "raw", Options{}, "outside the allowed directory"},
		{"symlinked dir escape", "out/secret", "raw", Options{}, "outside the allowed directory"},
		{"no format", "v3-512.qcow2", "", Options{}, "has no backing format"},
		{"no format escape", "../outside/secret", "", Options{}, "has no backing format"},
		{"allowed dir relative", "../outside/base.qcow2", "qcow2", Options{BackingDirs: []string{f.outside}}, ""},
		{"allowed dir absolute", filepath.Join(f.outside, "base.qcow2"), "qcow2", Options{BackingDirs: []string{f.outside}}, ""},
		{"allowed dir via symlink", "out/base.qcow2", "qcow2", Options{BackingDirs: []string{f.outside}}, ""},
		{"allowed dir still needs a format", filepath.Join(f.outside, "base.qcow2"), "", Options{BackingDirs: []string{f.outside}}, "has no backing format"},
		{"allowed dir does not allow elsewhere", "/etc/passwd", "raw", Options{BackingDirs: []string{f.outside}}, "outside the allowed directories"},
		{"trusted", "../outside/base.qcow2", "", Options{TrustBacking: true}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(f.img, "top.qcow2")
			if err := os.WriteFile(p, withBacking(t, tc.backing, tc.format), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out.raw")
			err := ConvertToRawOptions(context.Background(), p, out, ConvertOptions{Open: tc.opts})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				b, _ := os.ReadFile(out)
				t.Fatalf("backing %q (format %q) was followed; output starts %q", tc.backing, tc.format, b[:min(len(b), 40)])
			}
			if !errors.Is(err, ErrBackingRefused) {
				t.Errorf("error %v does not wrap ErrBackingRefused", err)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.want) || !strings.Contains(msg, p) || !strings.Contains(msg, tc.backing) {
				t.Errorf("error %q should name the image %s, the backing file %q and say %q", msg, p, tc.backing, tc.want)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Errorf("refused conversion left %s", out)
			}
		})
	}
}

// TestBackingDirMissing: a misspelled allowed directory is an error, not a
// silent refusal of every backing file.
func TestBackingDirMissing(t *testing.T) {
	f := newBackingFixture(t)
	p := filepath.Join(f.img, "top.qcow2")
	os.WriteFile(p, withBacking(t, "v3-512.qcow2", "qcow2"), 0o644)
	_, err := OpenOptions(p, Options{BackingDirs: []string{filepath.Join(f.root, "nope")}})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("err = %v, want a not-exist error naming the directory", err)
	}
}

// FuzzBackingChain fuzzes the backing file name and format of an overlay in
// a directory with a secret file outside it (reachable by absolute name,
// "..", a symlinked file and a symlinked directory). Whatever the name, the
// default rules must never open a file outside the image's directory, and
// a raw backing layer must never be the secret.
func FuzzBackingChain(f *testing.F) {
	fx := newBackingFixture(f)
	for _, s := range []struct{ name, format string }{
		{"v3-512.qcow2", "qcow2"}, {"sub/base.qcow2", "qcow2"}, {fx.secret, "raw"},
		{"../outside/secret", "raw"}, {"link.raw", "raw"}, {"out/secret", "raw"},
		{"./sub/../../outside/base.qcow2", "qcow2"}, {"sub//base.qcow2", ""}, {"top.qcow2", "qcow2"},
		{"/proc/self/root/etc/passwd", "raw"}, {"out/../img/v3-512.qcow2", "qcow2"},
	} {
		f.Add(s.name, s.format, false)
		f.Add(s.name, s.format, true)
	}
	ov, err := os.ReadFile("testdata/overlay-512.qcow2")
	if err != nil {
		f.Fatal(err)
	}
	realImg, err := filepath.EvalSymlinks(fx.img)
	if err != nil {
		f.Fatal(err)
	}
	realOutside, _ := filepath.EvalSymlinks(fx.outside)
	realSecret, _ := filepath.EvalSymlinks(fx.secret)
	p := filepath.Join(fx.img, "top.qcow2")
	// The fuzzed overlay is read from memory as if it were p (no file write
	// per input); on disk, p is an overlay of itself, for names that loop.
	if err := os.WriteFile(p, rewriteBacking(ov, "top.qcow2", "qcow2"), 0o644); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, format string, allowOutside bool) {
		top := rewriteBacking(ov, name, format) // read from memory, as if at p
		opts := Options{MaxBackingDepth: 4}
		roots := []string{realImg}
		if allowOutside {
			opts.BackingDirs = []string{fx.outside}
			roots = append(roots, realOutside)
		}
		img, err := openSource(p, &memFile{bytes.NewReader(top), p}, int64(len(top)), opts)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		defer img.Close()
		for _, c := range img.BackingChain() {
			rp, err := filepath.EvalSymlinks(c)
			if err != nil {
				t.Fatalf("chain element %s: %v", c, err)
			}
			ok := false
			for _, r := range roots {
				ok = ok || within(r, rp)
			}
			if !ok {
				t.Fatalf("backing %q (format %q) opened %s, outside %v", name, format, rp, roots)
			}
			if rp == realSecret && !allowOutside {
				t.Fatalf("backing %q opened the secret", name)
			}
		}
		if img.Header().BackingFile != "" && img.Header().BackingFormat == "" {
			t.Fatalf("backing %q opened without a backing format", name)
		}
	})
}
