package oci

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseReference(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in        string
		transport Transport
		want      string // String()
		path, tag string
		digest    string
	}{
		{in: "alpine", transport: Registry, want: "index.docker.io/library/alpine:latest"},
		{in: "alpine:3.20", transport: Registry, want: "index.docker.io/library/alpine:3.20"},
		{in: "docker.io/alpine", transport: Registry, want: "index.docker.io/library/alpine:latest"},
		{in: "docker.io/library/alpine:edge", transport: Registry, want: "index.docker.io/library/alpine:edge"},
		{in: "docker://busybox", transport: Registry, want: "index.docker.io/library/busybox:latest"},
		{in: "user/app:1", transport: Registry, want: "index.docker.io/user/app:1"},
		{in: "ghcr.io/o/r/x:tag", transport: Registry, want: "ghcr.io/o/r/x:tag"},
		{in: "localhost:5000/x", transport: Registry, want: "localhost:5000/x:latest"},
		{in: "127.0.0.1:5000/a/b:c", transport: Registry, want: "127.0.0.1:5000/a/b:c"},
		{in: "alpine@sha256:" + strings.Repeat("ab", 32), transport: Registry,
			want: "index.docker.io/library/alpine@sha256:" + strings.Repeat("ab", 32), digest: "sha256:" + strings.Repeat("ab", 32)},
		{in: "oci-layout:/srv/img", transport: Layout, want: "oci-layout:/srv/img", path: "/srv/img"},
		{in: "oci-layout:/srv/img:v1.2", transport: Layout, want: "oci-layout:/srv/img:v1.2", path: "/srv/img", tag: "v1.2"},
		{in: "oci-layout:rel/dir", transport: Layout, want: "oci-layout:" + filepath.Join(wd, "rel/dir"), path: filepath.Join(wd, "rel/dir")},
		{in: "oci-layout:/a:b/c", transport: Layout, want: "oci-layout:/a:b/c", path: "/a:b/c"},
		{in: "docker-archive:/tmp/x.tar", transport: Archive, want: "docker-archive:/tmp/x.tar", path: "/tmp/x.tar"},
		{in: "docker-archive:/tmp/x.tar:y", transport: Archive, want: "docker-archive:/tmp/x.tar:y", path: "/tmp/x.tar:y"},
		{in: "dir:/rootfs/", transport: Dir, want: "dir:/rootfs", path: "/rootfs"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			r, err := ParseReference(tt.in)
			if err != nil {
				t.Fatalf("ParseReference(%q): %v", tt.in, err)
			}
			if r.Transport != tt.transport || r.String() != tt.want || r.Path != tt.path || r.Tag != tt.tag || r.Digest() != tt.digest {
				t.Errorf("ParseReference(%q) = %s %q path %q tag %q digest %q; want %s %q path %q tag %q digest %q",
					tt.in, r.Transport, r.String(), r.Path, r.Tag, r.Digest(), tt.transport, tt.want, tt.path, tt.tag, tt.digest)
			}
			// The canonical form parses to itself.
			r2, err := ParseReference(r.String())
			if err != nil || r2.String() != r.String() {
				t.Errorf("reparse of %q: %q, %v", r.String(), r2.String(), err)
			}
			if (r.Name() != nil) != (tt.transport == Registry) {
				t.Errorf("Name() = %v for transport %s", r.Name(), r.Transport)
			}
		})
	}
}

func TestParseReferenceErrors(t *testing.T) {
	tests := []struct{ in, msg string }{
		{"", "empty"},
		{"Alpine", "repository can only contain"},
		{"alpine:", "tag"},
		{"alpine@sha256:123", "digest"},
		{"a b", "white space"},
		{"alpine\n", "control character"},
		{"docker:alpine", `"docker:" must be followed by "//"`},
		{"oci-layout:", "missing path"},
		{"dir:", "missing path"},
		{"\xff", "UTF-8"},
	}
	for _, tt := range tests {
		_, err := ParseReference(tt.in)
		if err == nil {
			t.Errorf("ParseReference(%q) succeeded", tt.in)
			continue
		}
		if !errors.Is(err, ErrBadReference) || !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "invalid image reference") {
			t.Errorf("ParseReference(%q) error %q: want ErrBadReference mentioning %q", tt.in, err, tt.msg)
		}
	}
}

func FuzzParseReference(f *testing.F) {
	for _, s := range []string{"alpine", "localhost:5000/x:y", "a@sha256:" + strings.Repeat("0", 64),
		"oci-layout:/d:t", "docker-archive:f", "dir:.", "docker://x", "::", "a:b:c", "UPPER", "x/../y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseReference(s)
		if err != nil {
			if !errors.Is(err, ErrBadReference) {
				t.Fatalf("error does not wrap ErrBadReference: %v", err)
			}
			return
		}
		c := r.String()
		r2, err := ParseReference(c)
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", c, s, err)
		}
		if r2.String() != c {
			t.Fatalf("canonical form not stable: %q -> %q -> %q", s, c, r2.String())
		}
	})
}
