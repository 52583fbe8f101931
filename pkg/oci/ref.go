// Package oci is vxn's access to OCI container images: it parses image
// references, fetches images from registries, OCI layout directories,
// docker-archive tarballs and local rootfs directories, and computes the
// process a container runs from the image config and `docker run` style
// overrides (see Resolve).
//
// Registries, layouts and archives are handled by go-containerregistry
// (remote, layout, tarball): registry credentials come from the usual docker
// configuration (authn.DefaultKeychain), plain HTTP is used automatically for
// localhost, loopback and RFC 1918 registries, Docker Hub images can come
// from registry mirrors (Options.Mirrors, like docker's registry-mirrors),
// and multi-platform images are resolved for linux/<host arch> unless
// another platform is asked for.
// Fetch returns a lazy v1.Image; copying its blobs (with progress and
// parallelism) is the job of the caller, normally pkg/imagestore.
//
// We wrote our own reference syntax on top of go-containerregistry's
// name package because it only knows registry references; the transports
// (oci-layout:, docker-archive:, dir:) follow skopeo's spelling. The docker
// run semantics (Resolve, ParseEnvFile) are our own code because they live in
// the docker CLI and daemon, which are not importable as a library.
package oci

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-containerregistry/pkg/name"
)

// Transport says where an image comes from.
type Transport string

// The transports a Reference can name.
const (
	// Registry is a registry reference such as "alpine",
	// "localhost:5000/x:tag" or "ghcr.io/o/r@sha256:…"; "docker://" may
	// prefix it.
	Registry Transport = "docker"
	// Layout is an OCI image layout directory: "oci-layout:DIR[:TAG]".
	Layout Transport = "oci-layout"
	// Archive is a `docker save` tarball: "docker-archive:FILE".
	Archive Transport = "docker-archive"
	// Dir is a local root file system directory: "dir:ROOTFS".
	Dir Transport = "dir"
)

// ErrBadReference is wrapped by every ParseReference error.
var ErrBadReference = errors.New("invalid image reference")

// Reference is a parsed image reference.
type Reference struct {
	// Transport is where the image comes from.
	Transport Transport
	// Path is the absolute path of the layout directory, archive or rootfs
	// directory (empty for Registry).
	Path string
	// Tag selects an image in an OCI layout by its
	// org.opencontainers.image.ref.name annotation; empty means the
	// layout's only image.
	Tag string

	ref name.Reference // Registry only
}

// layoutTag is the OCI ref.name grammar we accept after "oci-layout:DIR:".
var layoutTag = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)

// ParseReference parses an image reference. Registry references use docker's
// rules: "alpine" is "index.docker.io/library/alpine:latest", a missing tag
// is "latest", "@sha256:…" pins a digest. Paths of the other transports are
// made absolute (relative to the working directory). The error wraps
// ErrBadReference and quotes the input.
func ParseReference(s string) (Reference, error) {
	bad := func(format string, a ...any) (Reference, error) {
		return Reference{}, fmt.Errorf("%w %q: %s", ErrBadReference, s, fmt.Sprintf(format, a...))
	}
	if s == "" {
		return bad("empty")
	}
	if !utf8.ValidString(s) {
		return bad("not valid UTF-8")
	}
	for i, r := range s {
		if unicode.IsControl(r) {
			return bad("control character at byte %d", i)
		}
	}
	transport, rest, ok := strings.Cut(s, ":")
	if ok {
		switch Transport(transport) {
		case Layout, Archive, Dir:
			return parsePathRef(s, Transport(transport), rest)
		case Registry:
			if !strings.HasPrefix(rest, "//") {
				return bad(`"docker:" must be followed by "//"`)
			}
			s = rest[2:]
		}
	}
	if strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t") {
		return bad("contains white space")
	}
	var r name.Reference
	var err error
	if strings.Contains(s, "@") {
		r, err = name.NewDigest(s)
	} else {
		r, err = name.NewTag(s)
	}
	if err != nil {
		return bad("%v", err)
	}
	// A Docker Hub name gets "library/" in front: the repository must
	// still be at most 255 characters, or the canonical name would not
	// parse again.
	if repo := r.Context().RepositoryStr(); len(repo) > 255 {
		return bad("repository %q is %d characters, more than 255", repo, len(repo))
	}
	return Reference{Transport: Registry, ref: r}, nil
}

func parsePathRef(s string, t Transport, rest string) (Reference, error) {
	bad := func(format string, a ...any) (Reference, error) {
		return Reference{}, fmt.Errorf("%w %q: %s", ErrBadReference, s, fmt.Sprintf(format, a...))
	}
	tag := ""
	if t == Layout {
		if i := strings.LastIndexByte(rest, ':'); i >= 0 && layoutTag.MatchString(rest[i+1:]) {
			rest, tag = rest[:i], rest[i+1:]
		}
	}
	if rest == "" {
		return bad("missing path after %q", string(t)+":")
	}
	p, err := filepath.Abs(rest)
	if err != nil {
		return bad("%v", err)
	}
	return Reference{Transport: t, Path: p, Tag: tag}, nil
}

// String returns the canonical form of the reference: the full registry
// name ("index.docker.io/library/alpine:latest") or "transport:/abs/path"
// (plus ":TAG" for a tagged layout). Parsing it again gives the same
// Reference.
func (r Reference) String() string {
	switch r.Transport {
	case Registry:
		if r.ref == nil {
			return ""
		}
		return r.ref.Name()
	case Layout:
		if r.Tag != "" {
			return string(Layout) + ":" + r.Path + ":" + r.Tag
		}
	}
	return string(r.Transport) + ":" + r.Path
}

// Name returns the go-containerregistry reference of a Registry reference,
// nil for the other transports.
func (r Reference) Name() name.Reference { return r.ref }

// Digest returns the pinned manifest digest ("sha256:…") of a Registry
// reference given by digest, else "".
func (r Reference) Digest() string {
	if d, ok := r.ref.(name.Digest); ok {
		return d.DigestStr()
	}
	return ""
}
