package ext4_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
	"github.com/vxn-dev/vxn/pkg/imagestore"
	"github.com/vxn-dev/vxn/pkg/tarsafe"
)

type lent struct {
	name, body, link string
	typ              byte
}

func layer(t *testing.T, ents ...lent) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		switch e.typ {
		case tar.TypeReg:
			h.Size = int64(len(e.body))
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	return static.NewLayer(buf.Bytes(), types.DockerUncompressedLayer)
}

// TestLayersToDisk runs the image store's disk path (Flatten, then
// tarsafe.Sanitize, then FromTar) on layers where an upper layer rewrites a
// lower layer's file through a directory symlink, and where a file's data
// is replaced by a later layer: the last version must win.
func TestLayersToDisk(t *testing.T) {
	for _, tool := range []string{"e2fsck", "debugfs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not installed (Debian package e2fsprogs): %v", tool, err)
		}
	}
	big := strings.Repeat("lower layer data ", 10000)
	layers := []v1.Layer{
		layer(t,
			lent{name: "usr/", typ: tar.TypeDir},
			lent{name: "usr/lib/", typ: tar.TypeDir},
			lent{name: "usr/lib/libfoo.so", typ: tar.TypeReg, body: big},
			lent{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
			lent{name: "etc/", typ: tar.TypeDir},
			lent{name: "etc/os-release", typ: tar.TypeReg, body: big},
		),
		// No "lib/" entry: a directory entry would replace the symlink.
		layer(t,
			lent{name: "lib/libfoo.so", typ: tar.TypeReg, body: "upper libfoo"},
			lent{name: "etc/os-release", typ: tar.TypeReg, body: "upper os-release"},
		),
	}
	ctx := context.Background()
	flat := imagestore.Flatten(ctx, layers)
	defer flat.Close()
	clean := tarsafe.Sanitize(ctx, flat, tarsafe.Options{Source: "test layers"})
	defer clean.Close()
	img := filepath.Join(t.TempDir(), "layers.img")
	if err := ext4.FromTar(ctx, clean, img, ext4.Options{Label: "layers"}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput(); err != nil || strings.Contains(string(out), "?") {
		t.Fatalf("e2fsck -fn: %v\n%s", err, out)
	}
	for p, want := range map[string]string{"/usr/lib/libfoo.so": "upper libfoo", "/etc/os-release": "upper os-release"} {
		out, err := exec.Command("debugfs", "-R", "cat "+p, img).Output()
		if err != nil || string(out) != want {
			t.Errorf("%s: %.80q %v, want %q", p, out, err, want)
		}
	}
	if out, _ := exec.Command("debugfs", "-R", "stat /lib", img).Output(); !strings.Contains(string(out), `Fast link dest: "usr/lib"`) {
		t.Errorf("/lib is no longer the symlink:\n%.300s", out)
	}
}
