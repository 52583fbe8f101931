package oci

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Registry mirrors.
//
// A mirror serves Docker Hub's repositories under the same paths, like the
// "registry-mirrors" of docker's daemon.json: with the mirror 10.0.2.2:5000,
// "alpine" (index.docker.io/library/alpine:latest) is first asked of
// 10.0.2.2:5000/library/alpine:latest. Mirrors are tried in order and Docker
// Hub itself last; any failure to open the image on a mirror (unreachable,
// unknown image, refused credentials) moves on to the next source. Images
// of other registries never go through a mirror. The image keeps its Docker
// Hub name in the store whichever source served it.

// Mirror is one registry mirror for Docker Hub images.
type Mirror struct {
	// Host is the mirror's host[:port] ("10.0.2.2:5000", "[fd00::1]:5000").
	Host string
	// PlainHTTP is set for a mirror given as "http://…": plain HTTP is
	// allowed (go-containerregistry tries HTTPS first and falls back).
	// Localhost, loopback and RFC 1918 addresses get the fallback anyway.
	PlainHTTP bool
}

// String returns the mirror as ParseMirror accepts it: "http://HOST" for a
// plain HTTP mirror, else "HOST".
func (m Mirror) String() string {
	if m.PlainHTTP {
		return "http://" + m.Host
	}
	return m.Host
}

// hostLabel is one label of a DNS name.
var hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// ParseMirror parses a registry mirror: "host[:port]", "http://host[:port]"
// or "https://host[:port]" (a trailing "/" is allowed). The host is a DNS
// name or an IP address (IPv6 in brackets). Paths, queries, fragments and
// user names are errors, as in docker's registry-mirrors.
func ParseMirror(s string) (Mirror, error) {
	bad := func(format string, a ...any) (Mirror, error) {
		return Mirror{}, fmt.Errorf("registry mirror %q: %s (expected host[:port], http://host[:port] or https://host[:port])", s, fmt.Sprintf(format, a...))
	}
	if s == "" {
		return bad("empty")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return bad("contains white space or control characters")
	}
	plain := false
	raw := s
	if scheme, _, ok := strings.Cut(s, "://"); ok {
		switch strings.ToLower(scheme) {
		case "http":
			plain = true
		case "https":
		default:
			return bad("unsupported scheme %q", scheme)
		}
	} else {
		raw = "https://" + s
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad("%v", err)
	}
	switch {
	case u.User != nil:
		return bad("user information is not allowed (credentials come from docker's config.json)")
	case u.Path != "" && u.Path != "/":
		return bad("a path (%q) is not allowed: the mirror serves the repositories at its root", u.Path)
	case u.RawQuery != "" || u.ForceQuery:
		return bad("a query is not allowed")
	case u.Fragment != "":
		return bad("a fragment is not allowed")
	case u.Opaque != "":
		return bad("not a host name")
	}
	host := u.Hostname()
	if host == "" {
		return bad("missing host")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return bad("port %q is not between 1 and 65535", p)
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return bad("empty port")
	}
	if ip := net.ParseIP(host); ip == nil {
		if strings.Contains(u.Host, "[") {
			return bad("%q is not an IPv6 address", host)
		}
		for _, l := range strings.Split(host, ".") {
			if !hostLabel.MatchString(l) {
				return bad("%q is not a valid host name", host)
			}
		}
	} else if ip.To4() == nil && !strings.HasPrefix(u.Host, "[") {
		return bad("an IPv6 address must be in brackets")
	}
	h := strings.ToLower(u.Host)
	if _, err := name.NewRegistry(h, name.StrictValidation); err != nil {
		return bad("%v", err)
	}
	return Mirror{Host: h, PlainHTTP: plain}, nil
}

// ParseMirrors parses a list of mirrors (see ParseMirror); the error names
// the index and value of the first bad entry.
func ParseMirrors(list []string) ([]Mirror, error) {
	var out []Mirror
	for i, s := range list {
		m, err := ParseMirror(s)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// isDockerHub reports whether r names an image on Docker Hub, the only
// registry mirrors stand in for.
func isDockerHub(r name.Reference) bool {
	return r.Context().RegistryStr() == name.DefaultRegistry
}

// onMirror returns r's repository and tag or digest on mirror m.
func onMirror(r name.Reference, m Mirror) (name.Reference, error) {
	var opts []name.Option
	if m.PlainHTTP {
		opts = append(opts, name.Insecure)
	}
	repo := m.Host + "/" + r.Context().RepositoryStr()
	switch r := r.(type) {
	case name.Digest:
		return name.NewDigest(repo+"@"+r.DigestStr(), opts...)
	case name.Tag:
		return name.NewTag(repo+":"+r.TagStr(), opts...)
	}
	return nil, fmt.Errorf("unsupported reference %T", r)
}

// fetchRemote opens a registry image, from opt.Mirrors first when ref is
// a Docker Hub image. The error of a failed fetch lists every source tried.
func fetchRemote(ctx context.Context, ref Reference, opt Options, open func(name.Reference) (v1.Image, error)) (v1.Image, error) {
	if len(opt.Mirrors) == 0 || !isDockerHub(ref.ref) {
		img, err := open(ref.ref)
		if err != nil {
			return nil, fmt.Errorf("pulling %s: %w", ref, err)
		}
		return img, nil
	}
	var errs []error
	var tried []string
	for _, m := range opt.Mirrors {
		mref, err := onMirror(ref.ref, m)
		if err == nil {
			var img v1.Image
			if img, err = open(mref); err == nil {
				return img, nil
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pulling %s from mirror %s: %w", ref, m, err)
		}
		errs = append(errs, err)
		tried = append(tried, fmt.Sprintf("mirror %s: %v", m, err))
	}
	img, err := open(ref.ref)
	if err == nil {
		return img, nil
	}
	errs = append(errs, err)
	tried = append(tried, fmt.Sprintf("%s: %v", name.DefaultRegistry, err))
	return nil, &mirrorError{ref: ref.String(), tried: tried, errs: errs}
}

// mirrorError is a pull that failed on every mirror and on Docker Hub.
type mirrorError struct {
	ref   string
	tried []string
	errs  []error
}

func (e *mirrorError) Error() string {
	return fmt.Sprintf("pulling %s: every source failed: %s", e.ref, strings.Join(e.tried, "; "))
}

// Unwrap returns the error of each source, mirrors first.
func (e *mirrorError) Unwrap() []error { return e.errs }
