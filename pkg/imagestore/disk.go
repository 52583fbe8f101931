package imagestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
	"github.com/vxn-dev/vxn/pkg/tarsafe"
)

// diskSuffix ends the file name of a guest disk.
const diskSuffix = ".ext4"

// MaxImageContent bounds the file content of one image's root file system
// (64 GiB): a larger image (or a decompression bomb) fails to convert
// instead of filling the disk.
var MaxImageContent int64 = 64 << 30

// DiskPath returns where the guest disk of the image with ID id is (or
// would be) stored; it does not build it.
func (s *Store) DiskPath(id string) string {
	return filepath.Join(s.root, "disks", strings.TrimPrefix(id, "sha256:")+diskSuffix)
}

// Disk returns the path of img's read-only guest disk, an ext4 image of
// the flattened layers, building it first if needed. hit reports that the
// disk already existed (no conversion). The disk is built once per image
// ID: concurrent callers wait for the one building it. It is sized to the
// content plus headroom (ext4's automatic size: 10 % + 16 MiB) and must be
// attached read-only; it is deleted when the image is removed.
func (s *Store) Disk(ctx context.Context, img *Image) (path string, hit bool, err error) {
	if img == nil || img.img == nil {
		return "", false, errors.New("image store: Disk needs an image from this store")
	}
	id := strings.TrimPrefix(img.ID, "sha256:")
	if len(id) != 64 {
		return "", false, fmt.Errorf("image store: bad image ID %q", img.ID)
	}
	path = s.DiskPath(img.ID)
	if _, err := os.Stat(path); err == nil {
		return path, true, nil
	}
	// Keep Remove from collecting our blobs while we read them.
	unlock, err := s.lock(false)
	if err != nil {
		return "", false, err
	}
	defer unlock()
	unlockDisk, err := flock(filepath.Join(s.root, "disks", id+".lock"), true)
	if err != nil {
		return "", false, err
	}
	defer func() {
		os.Remove(filepath.Join(s.root, "disks", id+".lock"))
		unlockDisk()
	}()
	if _, err := os.Stat(path); err == nil {
		return path, true, nil // built by the caller we waited for
	}
	if h, err := v1.NewHash(img.Digest); err != nil || !s.hasBlob(h) {
		return "", false, fmt.Errorf("%w: image %s was removed", ErrNotFound, short(img.ID))
	}
	if err := s.buildDisk(ctx, img, path); err != nil {
		return "", false, err
	}
	return path, false, nil
}

func (s *Store) buildDisk(ctx context.Context, img *Image, path string) error {
	layers, err := img.img.Layers()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	flat := Flatten(ctx, layers)
	defer flat.Close()
	name := short(img.ID)
	if len(img.Names) > 0 {
		name = img.Names[0]
	}
	clean := tarsafe.Sanitize(ctx, flat, tarsafe.Options{Source: "image " + name, MaxContent: MaxImageContent})
	defer clean.Close()
	label := "vxn-" + short(img.ID)[:11]
	if err := ext4.FromTar(ctx, clean, path, ext4.Options{Label: label}); err != nil {
		return fmt.Errorf("building the guest disk of %s: %w", name, err)
	}
	return nil
}
