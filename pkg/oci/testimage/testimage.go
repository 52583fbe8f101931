// Package testimage builds small OCI images in Go for tests: a multi-layer
// image exercising whiteouts, an opaque directory, hard links, a non-root
// user, Env and WorkingDir (Layered), and one with path escapes (Malicious),
// plus helpers to push them to a registry or write them as an OCI layout or
// docker archive. Images are reproducible: the same call gives the same
// digests. The runtime test suite uses it to serve images from a registry in
// the Xen test host; pass a base layer holding a static shell or busybox to
// make the image runnable.
package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Epoch is the mtime of every entry and the image's creation time.
var Epoch = time.Unix(1700000000, 0).UTC()

// File is one tar entry of a test layer.
type File struct {
	Name     string // path in the layer, as written to the tar
	Type     byte   // tar type flag; 0 means tar.TypeReg (tar.TypeDir when Name ends in "/")
	Body     string // regular file content
	Mode     int64  // permission bits; 0 means 0644 (0755 for directories)
	UID, GID int
	Linkname string // symlink or hard link target
}

// TarBytes returns the uncompressed tar of files, in order.
func TarBytes(files []File) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Typeflag: f.Type, Mode: f.Mode, Uid: f.UID, Gid: f.GID,
			Linkname: f.Linkname, ModTime: Epoch, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
			if len(f.Name) > 0 && f.Name[len(f.Name)-1] == '/' {
				h.Typeflag = tar.TypeDir
			}
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.Body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("testimage: %s: %w", f.Name, err)
		}
		if _, err := io.WriteString(tw, f.Body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Layer returns a gzip-compressed layer of files.
func Layer(files []File) (v1.Layer, error) {
	b, err := TarBytes(files)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// Image stacks layers (bottom first) into an OCI image for linux/arch with
// cfg as its run configuration.
func Image(arch string, cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: Epoch}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// The layers of Layered, bottom first.
var (
	// LayeredBase is layer 1: the files later layers change.
	LayeredBase = []File{
		{Name: "etc/"},
		{Name: "etc/app/"},
		{Name: "etc/app/conf", Body: "version=1\n"},
		{Name: "removed.txt", Body: "deleted by a whiteout in layer 2\n"},
		{Name: "gone/"},
		{Name: "gone/inner", Body: "deleted with its directory\n"},
		{Name: "data/"},
		{Name: "data/old", Body: "hidden by the opaque directory\n"},
		{Name: "data/sub/"},
		{Name: "data/sub/older", Body: "hidden too\n"},
		{Name: "bin/"},
		{Name: "bin/tool", Body: "#!/bin/sh\necho tool\n", Mode: 0o755},
		{Name: "bin/tool-link", Type: tar.TypeLink, Linkname: "bin/tool"},
		{Name: "conf-link", Type: tar.TypeSymlink, Linkname: "/etc/app/conf"},
		{Name: "home/"},
		{Name: "home/app/", Mode: 0o750, UID: 1000, GID: 1000},
	}
	// LayeredUpdate is layer 2: whiteouts, an opaque directory, changes.
	LayeredUpdate = []File{
		{Name: ".wh.removed.txt"},
		{Name: ".wh.gone"},
		{Name: "data/"},
		{Name: "data/.wh..wh..opq"},
		{Name: "data/new", Body: "replaces the old content\n"},
		{Name: "etc/app/conf", Body: "version=2\n"},
		{Name: "bin/.wh.tool"},
	}
	// LayeredUser is layer 3: files of the non-root user.
	LayeredUser = []File{
		{Name: "home/app/notes.txt", Body: "owned by 1000:1000\n", Mode: 0o640, UID: 1000, GID: 1000},
		{Name: "home/app/run.sh", Body: "#!/bin/sh\nid\n", Mode: 0o4755, UID: 1000, GID: 1000},
	}
	// LayeredConfig is Layered's run configuration.
	LayeredConfig = v1.Config{
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "GREETING=hello from the image", "EMPTY="},
		WorkingDir: "/home/app",
		User:       "1000:1000",
		Cmd:        []string{"/bin/sh", "-c", "echo $GREETING"},
	}
)

// Expectation is a path's state in the flattened root file system.
type Expectation struct {
	Path     string
	Absent   bool   // must not exist
	Body     string // regular file content (when Body != "" or Type == Reg)
	Mode     int64  // permission bits including setuid, when non-zero
	UID, GID int
}

// LayeredExpect describes Layered's flattened root file system.
var LayeredExpect = []Expectation{
	{Path: "removed.txt", Absent: true},
	{Path: "gone", Absent: true},
	{Path: "gone/inner", Absent: true},
	{Path: "data/old", Absent: true},
	{Path: "data/sub", Absent: true},
	{Path: "data/new", Body: "replaces the old content\n", Mode: 0o644},
	{Path: "etc/app/conf", Body: "version=2\n", Mode: 0o644},
	// bin/tool was deleted by layer 2 but its hard link keeps the data.
	{Path: "bin/tool", Absent: true},
	{Path: "bin/tool-link", Body: "#!/bin/sh\necho tool\n", Mode: 0o755},
	{Path: "home/app", Mode: 0o750, UID: 1000, GID: 1000},
	{Path: "home/app/notes.txt", Body: "owned by 1000:1000\n", Mode: 0o640, UID: 1000, GID: 1000},
	{Path: "home/app/run.sh", Body: "#!/bin/sh\nid\n", Mode: 0o4755, UID: 1000, GID: 1000},
}

// Layered returns the three-layer test image (LayeredBase, LayeredUpdate,
// LayeredUser) with LayeredConfig for linux/arch, on top of the optional
// base layers (for example one holding a static busybox).
func Layered(arch string, base ...v1.Layer) (v1.Image, error) {
	var layers []v1.Layer
	layers = append(layers, base...)
	for _, files := range [][]File{LayeredBase, LayeredUpdate, LayeredUser} {
		l, err := Layer(files)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	return Image(arch, LayeredConfig, layers...)
}

// The layers of Malicious: names and symlinks trying to leave the root.
var (
	MaliciousLinks = []File{
		{Name: "etc/"},
		{Name: "evil", Type: tar.TypeSymlink, Linkname: "../../../../../host"},
		{Name: "absl", Type: tar.TypeSymlink, Linkname: "/etc"},
	}
	MaliciousWrites = []File{
		{Name: "../../escape.txt", Body: "escape\n"},
		{Name: "/abs.txt", Body: "absolute\n"},
		{Name: "evil/pwned", Body: "through a symlinked parent\n"},
		{Name: "absl/viaabs", Body: "through an absolute symlink\n"},
		{Name: "./a/../../../up.txt", Body: "dot-dot in the middle\n"},
	}
)

// MaliciousExpect is where Malicious's writes must land: inside the image.
var MaliciousExpect = []Expectation{
	{Path: "escape.txt", Body: "escape\n"},
	{Path: "abs.txt", Body: "absolute\n"},
	{Path: "host/pwned", Body: "through a symlinked parent\n"},
	{Path: "etc/viaabs", Body: "through an absolute symlink\n"},
	{Path: "up.txt", Body: "dot-dot in the middle\n"},
}

// Malicious returns a two-layer image whose second layer tries to escape
// the root with "..", absolute names and symlinked parents.
func Malicious(arch string) (v1.Image, error) {
	l1, err := Layer(MaliciousLinks)
	if err != nil {
		return nil, err
	}
	l2, err := Layer(MaliciousWrites)
	if err != nil {
		return nil, err
	}
	return Image(arch, v1.Config{Cmd: []string{"/bin/true"}}, l1, l2)
}

// Push writes img to the registry reference ref (plain HTTP for localhost).
func Push(ctx context.Context, img v1.Image, ref string) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return err
	}
	return remote.Write(r, img, remote.WithContext(ctx))
}

// WriteLayout appends img to the OCI layout at dir (created if needed),
// tagged with the ref.name annotation tag unless tag is empty.
func WriteLayout(dir string, img v1.Image, tag string) error {
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	var opts []layout.Option
	if tag != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
	}
	return p.AppendImage(img, opts...)
}

// WriteArchive writes img as a docker-archive (`docker save`) tarball
// tagged ref.
func WriteArchive(file string, img v1.Image, ref string) error {
	t, err := name.NewTag(ref)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(file, t, img)
}
