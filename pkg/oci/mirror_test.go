package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vxn-dev/vxn/pkg/oci/testimage"
)

func TestParseMirror(t *testing.T) {
	good := []struct {
		in   string
		want Mirror
	}{
		{"10.0.2.2:5000", Mirror{Host: "10.0.2.2:5000"}},
		{"http://10.0.2.2:5000", Mirror{Host: "10.0.2.2:5000", PlainHTTP: true}},
		{"HTTP://Mirror.Example.com/", Mirror{Host: "mirror.example.com", PlainHTTP: true}},
		{"https://mirror.gcr.io", Mirror{Host: "mirror.gcr.io"}},
		{"localhost:5000", Mirror{Host: "localhost:5000"}},
		{"[fd00::1]:5000", Mirror{Host: "[fd00::1]:5000"}},
		{"http://[::1]", Mirror{Host: "[::1]", PlainHTTP: true}},
	}
	for _, tt := range good {
		m, err := ParseMirror(tt.in)
		if err != nil || m != tt.want {
			t.Errorf("ParseMirror(%q) = %+v, %v; want %+v", tt.in, m, err, tt.want)
			continue
		}
		// String gives a form that parses to the same mirror.
		if m2, err := ParseMirror(m.String()); err != nil || m2 != m {
			t.Errorf("ParseMirror(%q) (String of %q) = %+v, %v", m.String(), tt.in, m2, err)
		}
	}
	bad := []struct{ in, why string }{
		{"", "empty"},
		{" 10.0.2.2:5000", "white space"},
		{"ftp://10.0.2.2", `unsupported scheme "ftp"`},
		{"10.0.2.2:5000/library", "path"},
		{"http://10.0.2.2:5000/v2/", "path"},
		{"http://user:pw@10.0.2.2", "user information"},
		{"10.0.2.2:http", "port"},
		{"10.0.2.2:0", "port"},
		{"10.0.2.2:70000", "port"},
		{"10.0.2.2:", "empty port"},
		{"mirror_.example.com", "not a valid host name"},
		{"-bad.example.com", "not a valid host name"},
		{"http://", "missing host"},
		{"10.0.2.2?x=1", "query"},
		{"10.0.2.2#x", "fragment"},
		{"[zz::1]:5000", "invalid host"},
	}
	for _, tt := range bad {
		_, err := ParseMirror(tt.in)
		if err == nil {
			t.Errorf("ParseMirror(%q) succeeded, want an error about %s", tt.in, tt.why)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, fmt.Sprintf("%q", tt.in)) || !strings.Contains(msg, tt.why) || !strings.Contains(msg, "expected host[:port]") {
			t.Errorf("ParseMirror(%q) error %q: want the entry, %q and the expected forms", tt.in, msg, tt.why)
		}
	}
	if _, err := ParseMirrors([]string{"10.0.2.2:5000", "ftp://x"}); err == nil || !strings.Contains(err.Error(), "entry 2") {
		t.Errorf("ParseMirrors with a bad second entry: %v, want an error naming entry 2", err)
	}
}

// offline is a registry transport reaching only the test's in-process
// registries (127.0.0.1): every other host fails without network access.
// It records the hosts asked, in order.
type offline struct {
	mu    sync.Mutex
	hosts []string
}

var errOffline = errors.New("test transport: no network access")

func (o *offline) RoundTrip(r *http.Request) (*http.Response, error) {
	o.mu.Lock()
	if n := len(o.hosts); n == 0 || o.hosts[n-1] != r.URL.Host {
		o.hosts = append(o.hosts, r.URL.Host)
	}
	o.mu.Unlock()
	if !strings.HasPrefix(r.URL.Host, "127.0.0.1:") {
		return nil, fmt.Errorf("%w: %s", errOffline, r.URL.Host)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// asked returns the hosts asked so far, each once, in first-asked order.
func (o *offline) asked() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	seen := map[string]bool{}
	for _, h := range o.hosts {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// testRegistry runs an in-process registry and returns its host
// ("127.0.0.1:PORT", plain HTTP).
func testRegistry(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// readAll reads every layer of img (verifying digests) and returns the
// manifest digest.
func readAll(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		if err := rc.Close(); err != nil {
			t.Fatal(err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestFetchMirrors(t *testing.T) {
	ctx := context.Background()
	empty := testRegistry(t)
	full := testRegistry(t)
	img, err := testimage.Layered(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := testimage.Push(ctx, img, full+"/library/alpine:latest"); err != nil {
		t.Fatal(err)
	}
	mirror := func(s string) Mirror {
		m, err := ParseMirror(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	fetch := func(ref string, mirrors ...Mirror) (v1.Image, []string, error) {
		r, err := ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		tr := &offline{}
		img, err := Fetch(ctx, r, Options{Mirrors: mirrors, Transport: tr, Keychain: authn.NewMultiKeychain()})
		if err == nil {
			if got := readAll(t, img); got != want {
				t.Errorf("%s: digest %s, want %s", ref, got, want)
			}
		}
		return img, tr.asked(), err
	}
	hosts := func(hs ...string) string { return strings.Join(hs, " ") }

	t.Run("mirror serves docker hub image", func(t *testing.T) {
		_, asked, err := fetch("alpine", mirror(full))
		if err != nil {
			t.Fatal(err)
		}
		if hosts(asked...) != full {
			t.Errorf("hosts asked: %v, want only the mirror %s", asked, full)
		}
	})
	t.Run("mirrors in order", func(t *testing.T) {
		_, asked, err := fetch("docker.io/library/alpine:latest", mirror(empty), mirror("http://"+full))
		if err != nil {
			t.Fatal(err)
		}
		if hosts(asked...) != hosts(empty, full) {
			t.Errorf("hosts asked: %v, want %s then %s", asked, empty, full)
		}
	})
	t.Run("digest reference", func(t *testing.T) {
		if _, _, err := fetch("alpine@"+want.String(), mirror(full)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("every source fails", func(t *testing.T) {
		_, asked, err := fetch("alpine", mirror(empty))
		if err == nil {
			t.Fatal("fetch succeeded from an empty mirror and no network")
		}
		msg := err.Error()
		for _, s := range []string{"index.docker.io/library/alpine:latest", "mirror " + empty + ":", empty + "/v2/library/alpine/manifests/latest", "index.docker.io: ", errOffline.Error()} {
			if !strings.Contains(msg, s) {
				t.Errorf("error %q does not mention %q", msg, s)
			}
		}
		if !errors.Is(err, errOffline) {
			t.Errorf("error %v does not wrap Docker Hub's error", err)
		}
		if len(asked) != 2 || asked[0] != empty || !strings.Contains(asked[1], "docker.io") {
			t.Errorf("hosts asked: %v, want the mirror %s then Docker Hub", asked, empty)
		}
	})
	t.Run("other registries are not mirrored", func(t *testing.T) {
		_, asked, err := fetch(empty+"/library/alpine", mirror(full))
		if err == nil {
			t.Fatal("an image of another registry was served by the mirror")
		}
		if hosts(asked...) != empty {
			t.Errorf("hosts asked: %v, want only %s", asked, empty)
		}
		if strings.Contains(err.Error(), "mirror") {
			t.Errorf("error %q mentions a mirror", err)
		}
	})
	t.Run("no mirrors", func(t *testing.T) {
		_, asked, err := fetch("alpine")
		if !errors.Is(err, errOffline) || len(asked) != 1 || !strings.Contains(asked[0], "docker.io") {
			t.Errorf("without mirrors: error %v, hosts %v; want Docker Hub only", err, asked)
		}
	})
}
