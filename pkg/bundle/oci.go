package bundle

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/vxn-dev/vxn/pkg/guest"
)

// OCI artifact media types. A bundle directory is pushed with its
// manifest.json as the config blob and one layer per payload file (so
// kernels shared by bundles are stored once by the registry); a package
// file is pushed as one layer with a small JSON config describing it.
const (
	ArtifactType          = "application/vnd.vxn.xen-guest-bundle.v1"
	DirConfigMediaType    = "application/vnd.vxn.xen-guest-bundle.manifest.v1+json"
	PkgConfigMediaType    = "application/vnd.vxn.xen-guest-bundle.package.v1+json"
	FileMediaType         = "application/vnd.vxn.xen-guest-bundle.file.v1"
	DebMediaType          = "application/vnd.debian.binary-package"
	IPKMediaType          = "application/vnd.vxn.xen-guest-bundle.ipk.v1"
	annotationTitle       = "org.opencontainers.image.title"
	annotationBundleName  = "dev.vxn.bundle.name"
	annotationBundleVer   = "dev.vxn.bundle.version"
	maxConfigSize         = MaxManifestSize
	maxRegistryManifestSz = 4 << 20
)

// PackageConfig is the config blob of a pushed package file.
type PackageConfig struct {
	Format string `json:"format"`
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// RegistryOptions configure Push and Pull.
type RegistryOptions struct {
	// Insecure allows plain HTTP and unverified TLS for the registry.
	// localhost and 127.0.0.1 registries use HTTP without it.
	Insecure bool
	// Keychain authenticates; nil means the Docker config keychain.
	Keychain authn.Keychain
}

func (o RegistryOptions) parse(ctx context.Context, ref string) (name.Reference, []remote.Option, error) {
	var nopts []name.Option
	if o.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return nil, nil, fmt.Errorf("reference %q: %w", ref, err)
	}
	kc := o.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(kc)}
	return r, ropts, nil
}

// fileLayer is a blob read from a host file.
type fileLayer struct {
	path string
	hash v1.Hash
	size int64
	mt   types.MediaType
}

func newFileLayer(p string, mt types.MediaType) (*fileLayer, error) {
	sum, size, err := hashFile(p)
	if err != nil {
		return nil, err
	}
	return &fileLayer{path: p, hash: v1.Hash{Algorithm: "sha256", Hex: sum}, size: size, mt: mt}, nil
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.hash, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.hash, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return l.mt, nil }
func (l *fileLayer) desc(title string) v1.Descriptor {
	return v1.Descriptor{MediaType: l.mt, Size: l.size, Digest: l.hash, Annotations: map[string]string{annotationTitle: title}}
}

// bytesLayer is a blob held in memory.
type bytesLayer struct {
	data []byte
	mt   types.MediaType
}

func (l *bytesLayer) hash() v1.Hash {
	s := sha256.Sum256(l.data)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(s[:])}
}
func (l *bytesLayer) Digest() (v1.Hash, error) { return l.hash(), nil }
func (l *bytesLayer) DiffID() (v1.Hash, error) { return l.hash(), nil }
func (l *bytesLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
func (l *bytesLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.data)), nil
}
func (l *bytesLayer) Size() (int64, error)                { return int64(len(l.data)), nil }
func (l *bytesLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

// rawManifest is a Taggable with an OCI image manifest.
type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error)        { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// Push publishes src — a bundle directory (with manifest.json) or a .deb
// or .ipk package file — to the registry reference ref as an OCI artifact,
// and returns the manifest digest. The bundle directory is verified first.
func Push(ctx context.Context, src, ref string, opt RegistryOptions) (string, error) {
	r, ropts, err := opt.parse(ctx, ref)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	var config *bytesLayer
	var layers []*fileLayer
	var titles []string
	ann := map[string]string{}
	if st.IsDir() {
		b := &Installed{Name: filepath.Base(src), Dom0Dir: filepath.Base(src), Dir: src}
		b.Manifest, b.Err = readManifest(b)
		if err := b.Verify(); err != nil {
			return "", err
		}
		data, err := os.ReadFile(filepath.Join(src, ManifestFile))
		if err != nil {
			return "", err
		}
		config = &bytesLayer{data: data, mt: DirConfigMediaType}
		titles = append(b.Manifest.Paths(), LineManifestFile)
		for _, rel := range titles {
			l, err := newFileLayer(filepath.Join(src, filepath.FromSlash(rel)), FileMediaType)
			if err != nil {
				return "", err
			}
			layers = append(layers, l)
		}
		ann[annotationBundleName] = b.Manifest.Bundle
		ann[annotationBundleVer] = b.Manifest.Version
	} else {
		format := strings.TrimPrefix(filepath.Ext(src), ".")
		mt := types.MediaType(DebMediaType)
		switch format {
		case FormatDeb:
		case FormatIPK:
			mt = IPKMediaType
		default:
			return "", fmt.Errorf("%s: expected a bundle directory, a .deb or an .ipk file", src)
		}
		l, err := newFileLayer(src, mt)
		if err != nil {
			return "", err
		}
		title := filepath.Base(src)
		cfg, _ := json.Marshal(PackageConfig{Format: format, File: title, Size: l.size, SHA256: l.hash.Hex})
		config = &bytesLayer{data: cfg, mt: PkgConfigMediaType}
		layers = append(layers, l)
		titles = append(titles, title)
	}
	repo := r.Context()
	if err := remote.WriteLayer(repo, config, ropts...); err != nil {
		return "", fmt.Errorf("push config to %s: %w", repo, err)
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: ArtifactType,
		Config: v1.Descriptor{MediaType: config.mt, Size: int64(len(config.data)), Digest: config.hash()}}
	if len(ann) > 0 {
		m.Annotations = ann
	}
	for i, l := range layers {
		if err := remote.WriteLayer(repo, l, ropts...); err != nil {
			return "", fmt.Errorf("push %s to %s: %w", titles[i], repo, err)
		}
		m.Layers = append(m.Layers, l.desc(titles[i]))
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if err := remote.Put(r, rawManifest(raw), ropts...); err != nil {
		return "", fmt.Errorf("push manifest to %s: %w", r, err)
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Pull fetches the bundle artifact ref into directory out: a bundle
// directory out/<bundle>/ (verified against its manifest.json), or the
// package file out/<file>. It returns the path written.
func Pull(ctx context.Context, ref, out string, opt RegistryOptions) (string, error) {
	r, ropts, err := opt.parse(ctx, ref)
	if err != nil {
		return "", err
	}
	desc, err := remote.Get(r, ropts...)
	if err != nil {
		return "", fmt.Errorf("pull %s: %w", r, err)
	}
	if len(desc.Manifest) > maxRegistryManifestSz {
		return "", fmt.Errorf("pull %s: manifest of %d bytes is too large", r, len(desc.Manifest))
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return "", fmt.Errorf("pull %s: manifest: %w", r, err)
	}
	if m.ArtifactType != ArtifactType && m.Config.MediaType != DirConfigMediaType && m.Config.MediaType != PkgConfigMediaType {
		return "", fmt.Errorf("pull %s: not a xen guest bundle (artifactType %q, config %q)", r, m.ArtifactType, m.Config.MediaType)
	}
	repo := r.Context()
	blob := func(d v1.Descriptor, w io.Writer, limit int64) error {
		if d.Size < 0 || (limit > 0 && d.Size > limit) {
			return fmt.Errorf("blob %s: size %d out of range", d.Digest, d.Size)
		}
		l, err := remote.Layer(repo.Digest(d.Digest.String()), ropts...)
		if err != nil {
			return err
		}
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		defer rc.Close()
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), io.LimitReader(rc, d.Size+1))
		if err != nil {
			return err
		}
		if n != d.Size || d.Digest.Algorithm != "sha256" || hex.EncodeToString(h.Sum(nil)) != d.Digest.Hex {
			return fmt.Errorf("blob %s: content does not match its descriptor (%d bytes)", d.Digest, n)
		}
		return nil
	}
	var cfg bytes.Buffer
	if err := blob(m.Config, &cfg, maxConfigSize); err != nil {
		return "", fmt.Errorf("pull %s: config: %w", r, err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	writeFile := func(d v1.Descriptor, dst string) error {
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		f, err := os.Create(dst)
		if err != nil {
			return err
		}
		err = blob(d, f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	}
	switch m.Config.MediaType {
	case PkgConfigMediaType:
		var pc PackageConfig
		if err := json.Unmarshal(cfg.Bytes(), &pc); err != nil {
			return "", fmt.Errorf("pull %s: package config: %w", r, err)
		}
		if len(m.Layers) != 1 || !guest.ValidName(pc.File) || m.Layers[0].Digest.Hex != pc.SHA256 {
			return "", fmt.Errorf("pull %s: package artifact must have one layer matching its config (file %q)", r, pc.File)
		}
		dst := filepath.Join(out, pc.File)
		tmp := dst + ".part"
		if err := writeFile(m.Layers[0], tmp); err != nil {
			os.Remove(tmp)
			return "", fmt.Errorf("pull %s: %w", r, err)
		}
		return dst, os.Rename(tmp, dst)
	case DirConfigMediaType:
		bm, err := ParseManifest(r.String()+" config", cfg.Bytes())
		if err != nil {
			return "", err
		}
		want := map[string]bool{LineManifestFile: true}
		for _, p := range bm.Paths() {
			want[p] = true
		}
		tmp, err := os.MkdirTemp(out, ".pull-")
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(tmp)
		dir := filepath.Join(tmp, bm.Bundle)
		got := map[string]bool{}
		for _, d := range m.Layers {
			title := d.Annotations[annotationTitle]
			if !want[title] || got[title] {
				return "", fmt.Errorf("pull %s: unexpected layer %q (title %q) not in the bundle manifest", r, d.Digest, title)
			}
			got[title] = true
			if err := writeFile(d, filepath.Join(dir, filepath.FromSlash(path.Clean(title)))); err != nil {
				return "", fmt.Errorf("pull %s: %s: %w", r, title, err)
			}
		}
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), cfg.Bytes(), 0o644); err != nil {
			return "", err
		}
		b := &Installed{Name: bm.Bundle, Dom0Dir: bm.Bundle, Dir: dir}
		b.Manifest, b.Err = readManifest(b)
		if err := b.Verify(); err != nil {
			var missing []string
			for t := range want {
				if !got[t] {
					missing = append(missing, t)
				}
			}
			sort.Strings(missing)
			if len(missing) > 0 {
				return "", fmt.Errorf("pull %s: layers missing for %s: %w", r, strings.Join(missing, ", "), err)
			}
			return "", err
		}
		dst := filepath.Join(out, bm.Bundle)
		if err := os.RemoveAll(dst); err != nil {
			return "", err
		}
		return dst, os.Rename(dir, dst)
	}
	return "", errors.New("pull " + r.String() + ": unknown config media type " + string(m.Config.MediaType))
}
