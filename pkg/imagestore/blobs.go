package imagestore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// blobPath is where the blob with digest h is stored.
func (s *Store) blobPath(h v1.Hash) string {
	return filepath.Join(s.root, "blobs", h.Algorithm, h.Hex)
}

func (s *Store) hasBlob(h v1.Hash) bool {
	fi, err := os.Stat(s.blobPath(h))
	return err == nil && fi.Mode().IsRegular()
}

// writeBlob copies the blob h from open into the store unless it is there.
// The data is written to a temporary file, checked against h and renamed,
// so a stored blob is always complete and verified. count receives the
// bytes copied as they are written.
func (s *Store) writeBlob(h v1.Hash, open func() (io.ReadCloser, error), count func(int64)) error {
	if h.Algorithm != "sha256" || len(h.Hex) != 64 {
		return fmt.Errorf("blob %s: only sha256 digests are supported", h)
	}
	if s.hasBlob(h) {
		return nil
	}
	rc, err := open()
	if err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "blob-"+h.Hex[:12]+"-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	sum := sha256.New()
	w := io.MultiWriter(tmp, sum, countWriter(count))
	if _, err := io.Copy(w, rc); err != nil {
		tmp.Close()
		return fmt.Errorf("blob %s: %w", h, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("blob %s: %w", h, err)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != h.Hex {
		return fmt.Errorf("blob %s: content has digest sha256:%s", h, got)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.blobPath(h)), 0o755); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), s.blobPath(h))
}

type countWriter func(int64)

func (c countWriter) Write(p []byte) (int, error) {
	if c != nil {
		c(int64(len(p)))
	}
	return len(p), nil
}

// readBlob reads a small blob (manifest or config), checking its digest.
func (s *Store) readBlob(h v1.Hash) ([]byte, error) {
	b, err := os.ReadFile(s.blobPath(h))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("image store %s: blob %s is missing (store damaged; pull the image again): %w", s.root, h, err)
		}
		return nil, err
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != h.Hex {
		return nil, fmt.Errorf("image store %s: blob %s is corrupt", s.root, h)
	}
	return b, nil
}

// storeImage is an image read back from the blob store.
type storeImage struct {
	s        *Store
	manifest []byte
	mf       *v1.Manifest
	config   []byte
}

// RawManifest implements partial.CompressedImageCore.
func (i *storeImage) RawManifest() ([]byte, error) { return i.manifest, nil }

// RawConfigFile implements partial.CompressedImageCore.
func (i *storeImage) RawConfigFile() ([]byte, error) { return i.config, nil }

// MediaType implements partial.CompressedImageCore.
func (i *storeImage) MediaType() (types.MediaType, error) {
	if i.mf.MediaType != "" {
		return i.mf.MediaType, nil
	}
	return types.OCIManifestSchema1, nil
}

// LayerByDigest implements partial.CompressedImageCore.
func (i *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, d := range i.mf.Layers {
		if d.Digest == h {
			return &storeLayer{s: i.s, desc: d}, nil
		}
	}
	if i.mf.Config.Digest == h {
		return &storeLayer{s: i.s, desc: i.mf.Config}, nil
	}
	return nil, fmt.Errorf("image store: blob %s is not part of the image", h)
}

// storeLayer is a stored layer blob.
type storeLayer struct {
	s    *Store
	desc v1.Descriptor
}

func (l *storeLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *storeLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *storeLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.s.blobPath(l.desc.Digest))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("image store %s: layer %s is missing (store damaged; pull the image again): %w", l.s.root, l.desc.Digest, err)
	}
	return f, err
}

// loadImage reads the image with manifest digest h from the blob store.
func (s *Store) loadImage(h v1.Hash) (*storeImage, error) {
	raw, err := s.readBlob(h)
	if err != nil {
		return nil, err
	}
	mf, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("image store %s: manifest %s: %w", s.root, h, err)
	}
	cfg, err := s.readBlob(mf.Config.Digest)
	if err != nil {
		return nil, err
	}
	return &storeImage{s: s, manifest: raw, mf: mf, config: cfg}, nil
}

// parseConfig decodes an image config blob.
func parseConfig(raw []byte) (*v1.ConfigFile, error) {
	var cf v1.ConfigFile
	if err := json.Unmarshal(raw, &cf); err != nil {
		return nil, err
	}
	return &cf, nil
}
