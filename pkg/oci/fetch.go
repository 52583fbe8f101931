package oci

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// RefNameAnnotation is the OCI annotation naming an image in a layout's
// index.json; "oci-layout:DIR:TAG" selects the manifest whose value is TAG.
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// Progress reports how far a pull is: bytes of blobs copied so far and
// the total to copy (blobs already present count as copied).
type Progress struct {
	Complete int64
	Total    int64
}

// Options configure Fetch and, through pkg/imagestore, Pull.
type Options struct {
	// Platform selects the image of a multi-platform index; nil means
	// linux/<host GOARCH>. A single-platform image for another OS or
	// architecture is an error.
	Platform *v1.Platform
	// Keychain supplies registry credentials; nil means
	// authn.DefaultKeychain (docker's config.json and credential helpers).
	Keychain authn.Keychain
	// Jobs is the number of blobs copied in parallel; 0 means 4.
	Jobs int
	// Progress, when set, is called (from one goroutine at a time) as blob
	// bytes are copied.
	Progress func(Progress)
	// Mirrors are tried in order before Docker Hub for Docker Hub images
	// (see ParseMirror); other registries are not mirrored.
	Mirrors []Mirror
	// Transport carries registry HTTP requests; nil means
	// go-containerregistry's default (proxy settings from the environment).
	Transport http.RoundTripper
}

// HostPlatform returns linux/<GOARCH> of the running program.
func HostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

func (o Options) platform() v1.Platform {
	if o.Platform != nil {
		return *o.Platform
	}
	return HostPlatform()
}

// JobsOrDefault returns Jobs, or 4 when it is not positive.
func (o Options) JobsOrDefault() int {
	if o.Jobs > 0 {
		return o.Jobs
	}
	return 4
}

// Fetch opens the image ref names and returns it as a lazy v1.Image: for a
// registry only the manifest and config are fetched here, layer blobs are
// read when used. A multi-platform index is resolved for opt.Platform.
// A Docker Hub image is opened on each of opt.Mirrors in turn, then on
// Docker Hub; its layers are later read from the source that served the
// manifest.
func Fetch(ctx context.Context, ref Reference, opt Options) (v1.Image, error) {
	var img v1.Image
	var err error
	switch ref.Transport {
	case Registry:
		if ref.ref == nil {
			return nil, fmt.Errorf("%w: zero Reference", ErrBadReference)
		}
		kc := opt.Keychain
		if kc == nil {
			kc = authn.DefaultKeychain
		}
		ropts := []remote.Option{
			remote.WithContext(ctx),
			remote.WithAuthFromKeychain(kc),
			remote.WithPlatform(opt.platform()),
			remote.WithJobs(opt.JobsOrDefault()),
		}
		if opt.Transport != nil {
			ropts = append(ropts, remote.WithTransport(opt.Transport))
		}
		img, err = fetchRemote(ctx, ref, opt, func(r name.Reference) (v1.Image, error) {
			return remote.Image(r, ropts...)
		})
		if err != nil {
			return nil, err
		}
	case Layout:
		img, err = fromLayout(ref, opt.platform())
	case Archive:
		img, err = tarball.ImageFromPath(ref.Path, nil)
		if err != nil {
			return nil, fmt.Errorf("docker archive %s: %w", ref.Path, err)
		}
	case Dir:
		img, err = fromDir(ref.Path, opt.platform())
	default:
		return nil, fmt.Errorf("%w: unknown transport %q", ErrBadReference, ref.Transport)
	}
	if err != nil {
		return nil, err
	}
	if err := checkPlatform(ref, img, opt.platform()); err != nil {
		return nil, err
	}
	return img, nil
}

// checkPlatform refuses an image built for another OS or architecture.
func checkPlatform(ref Reference, img v1.Image, want v1.Platform) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("%s: reading image config: %w", ref, err)
	}
	if (cf.OS != "" && cf.OS != want.OS) || (cf.Architecture != "" && cf.Architecture != want.Architecture) {
		return fmt.Errorf("%s: image is for %s/%s, need %s/%s", ref, cf.OS, cf.Architecture, want.OS, want.Architecture)
	}
	return nil
}

// fromLayout picks the image of an OCI layout: the manifest tagged ref.Tag,
// or the only manifest when no tag is given.
func fromLayout(ref Reference, plat v1.Platform) (v1.Image, error) {
	where := "OCI layout " + ref.Path
	ii, err := layout.ImageIndexFromPath(ref.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", where, err)
	}
	var pick []v1.Descriptor
	var names []string
	for _, d := range im.Manifests {
		n := d.Annotations[RefNameAnnotation]
		if n != "" {
			names = append(names, n)
		}
		if ref.Tag == "" || n == ref.Tag {
			pick = append(pick, d)
		}
	}
	sort.Strings(names)
	switch {
	case len(pick) == 0 && ref.Tag != "":
		return nil, fmt.Errorf("%s: no image tagged %q (tags: %s)", where, ref.Tag, strings.Join(names, ", "))
	case len(pick) == 0:
		return nil, fmt.Errorf("%s: index.json lists no images", where)
	case len(pick) > 1:
		return nil, fmt.Errorf("%s: %d images; add \":TAG\" to pick one (tags: %s)", where, len(pick), strings.Join(names, ", "))
	}
	d := pick[0]
	switch {
	case d.MediaType.IsImage():
		img, err := ii.Image(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: image %s: %w", where, d.Digest, err)
		}
		return img, nil
	case d.MediaType.IsIndex():
		child, err := ii.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%s: index %s: %w", where, d.Digest, err)
		}
		return platformImage(where, child, plat)
	}
	return nil, fmt.Errorf("%s: %s has unsupported media type %q", where, d.Digest, d.MediaType)
}

// platformImage selects plat from a multi-platform index.
func platformImage(where string, ii v1.ImageIndex, plat v1.Platform) (v1.Image, error) {
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	var have []string
	for _, d := range im.Manifests {
		if d.Platform == nil || !d.MediaType.IsImage() {
			continue
		}
		have = append(have, d.Platform.String())
		if d.Platform.Satisfies(plat) {
			return ii.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("%s: no image for %s (have %s)", where, plat.String(), strings.Join(have, ", "))
}

// fromDir wraps a root file system directory as a one-layer image with an
// empty config. The layer is a tar stream of the directory (see DirTar),
// compressed with zstd when its blobs are read.
func fromDir(dir string, plat v1.Platform) (v1.Image, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("rootfs directory: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("rootfs directory %s: not a directory", dir)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return DirTar(dir), nil },
		tarball.WithCompression(compression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		return nil, fmt.Errorf("rootfs directory %s: %w", dir, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("rootfs directory %s: %w", dir, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = plat.OS, plat.Architecture
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("rootfs directory %s: %w", dir, err)
	}
	return mutate.MediaType(mutate.ConfigMediaType(img, types.OCIConfigJSON), types.OCIManifestSchema1), nil
}
