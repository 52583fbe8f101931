package imagestore

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vxn-dev/vxn/pkg/oci"
	"github.com/vxn-dev/vxn/pkg/oci/testimage"
)

func TestAdd(t *testing.T) {
	s := openStore(t)
	img := layered(t)
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Add(bg, img, "app", oci.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want.String() || got.ID != configDigest(t, img) {
		t.Errorf("Add: digest %s ID %s, want %s %s", got.Digest, got.ID, want, configDigest(t, img))
	}
	if strings.Join(got.Names, " ") != "index.docker.io/library/app:latest" {
		t.Errorf("Add: names %v", got.Names)
	}
	// Found by any spelling of the name, without network access (Ensure
	// would pull, and fail, otherwise: there is no such registry).
	for _, ref := range []string{"app", "app:latest", "docker.io/library/app", "index.docker.io/library/app:latest"} {
		found, pulled, err := s.Ensure(bg, ref, oci.Options{Transport: failTransport{}})
		if err != nil || pulled || found.Digest != want.String() {
			t.Errorf("Ensure(%q): pulled=%v %v", ref, pulled, err)
		}
	}
	disk, _, err := s.Disk(bg, got)
	if err != nil {
		t.Fatal(err)
	}
	checkDisk(t, disk, testimage.LayeredExpect)

	// Nothing in the store names the directory it lives in.
	err = filepath.WalkDir(s.Root(), func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), s.Root()) {
			t.Errorf("%s holds the store's path %s", p, s.Root())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// Re-pointing the name drops the first image.
	other, err := testimage.Malicious(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(bg, other, "app:latest", oci.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(short(configDigest(t, img))); !errors.Is(err, ErrNotFound) {
		t.Errorf("the re-pointed name's old image is still there: %v", err)
	}
	if _, err := os.Stat(disk); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old image's disk is still there: %v", err)
	}
}

func TestAddRejectsNames(t *testing.T) {
	s := openStore(t)
	img := layered(t)
	for _, ref := range []string{"oci-layout:" + t.TempDir(), "docker-archive:/tmp/x.tar", "dir:/",
		"app@sha256:" + strings.Repeat("ab", 32), "Bad Name", ""} {
		if _, err := s.Add(bg, img, ref, oci.Options{}); err == nil {
			t.Errorf("Add(%q) succeeded", ref)
		} else if !strings.Contains(err.Error(), ref) {
			t.Errorf("Add(%q): error %q does not quote the name", ref, err)
		}
	}
	if imgs, err := s.List(); err != nil || len(imgs) != 0 {
		t.Errorf("after rejected Adds the store has %d images (%v)", len(imgs), err)
	}
}

// failTransport fails every registry request.
type failTransport struct{}

func (failTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("test: no registry access")
}
