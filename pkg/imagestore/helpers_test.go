package imagestore

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
	"github.com/vxn-dev/vxn/pkg/oci/testimage"
)

// startRegistry runs an in-process registry and returns its
// "localhost:PORT" host (plain HTTP).
func startRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	_, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	return "localhost:" + port
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func layered(t *testing.T) v1.Image {
	t.Helper()
	img, err := testimage.Layered(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func configDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (apt-get install e2fsprogs): %v", name, err)
	}
}

// checkDisk verifies a built disk with e2fsck and debugfs against want.
func checkDisk(t *testing.T, path string, want []testimage.Expectation) {
	t.Helper()
	needTool(t, "debugfs")
	needTool(t, "e2fsck")
	out, err := exec.Command("e2fsck", "-fn", path).CombinedOutput()
	if err != nil {
		t.Errorf("e2fsck -fn %s: %v\n%s", path, err, out)
	}
	im, err := ext4.OpenImage(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range want {
		fi, err := im.Stat(e.Path)
		if e.Absent {
			if err == nil {
				t.Errorf("%s: exists in the disk, want absent", e.Path)
			} else if !errors.Is(err, fs.ErrNotExist) && !strings.Contains(err.Error(), "not found") {
				t.Errorf("%s: stat: %v", e.Path, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", e.Path, err)
			continue
		}
		if e.Mode != 0 {
			got := int64(fi.Mode().Perm())
			if fi.Mode()&fs.ModeSetuid != 0 {
				got |= 0o4000
			}
			if got != e.Mode {
				t.Errorf("%s: mode %#o, want %#o", e.Path, got, e.Mode)
			}
		}
		if fi.UID != e.UID || fi.GID != e.GID {
			t.Errorf("%s: owner %d:%d, want %d:%d", e.Path, fi.UID, fi.GID, e.UID, e.GID)
		}
		if e.Body != "" {
			b, err := im.ReadFile(e.Path)
			if err != nil {
				t.Errorf("%s: %v", e.Path, err)
			} else if string(b) != e.Body {
				t.Errorf("%s: content %q, want %q", e.Path, b, e.Body)
			}
		}
	}
}

var bg = context.Background()
