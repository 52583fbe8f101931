package vxncli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/vxn-dev/vxn/pkg/oci"
	"github.com/vxn-dev/vxn/pkg/oci/testimage"
	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/toolstack/faketoolstack"
	"github.com/vxn-dev/vxn/pkg/vxnconf"
)

func TestConfigMirrors(t *testing.T) {
	parse := func(yaml string) ([]oci.Mirror, error) {
		c, err := vxnconf.Parse("config.yaml", []byte(yaml))
		if err != nil {
			return nil, err
		}
		return configMirrors("config.yaml", c)
	}
	ms, err := parse("registry_mirrors:\n  - 10.0.2.2:5000\n  - http://mirror.lan:5000/\n  - https://mirror.gcr.io\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []oci.Mirror{{Host: "10.0.2.2:5000"}, {Host: "mirror.lan:5000", PlainHTTP: true}, {Host: "mirror.gcr.io"}}
	if fmt.Sprint(ms) != fmt.Sprint(want) {
		t.Errorf("mirrors %+v, want %+v", ms, want)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"registry_mirrors: [10.0.2.2:5000, ftp://x]", `config.yaml: registry_mirrors: entry 2: registry mirror "ftp://x": unsupported scheme "ftp"`},
		{"registry_mirrors: ['10.0.2.2:5000/library']", `config.yaml: registry_mirrors: entry 1: registry mirror "10.0.2.2:5000/library": a path`},
		{"registry_mirrors: ['']", `config.yaml: registry_mirrors: entry 1: registry mirror "": empty`},
		{"registry_mirrors: 10.0.2.2:5000", `config.yaml: `},
		{"registry_mirror: [10.0.2.2:5000]", `unknown field "registry_mirror"`},
	} {
		_, err := parse(tt.yaml)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.yaml, err, tt.want)
		}
	}
}

// offlineTransport reaches only the test's registries (127.0.0.1) and
// records the hosts asked.
type offlineTransport struct {
	mu    sync.Mutex
	hosts map[string]int
}

func (o *offlineTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	o.mu.Lock()
	if o.hosts == nil {
		o.hosts = map[string]int{}
	}
	o.hosts[r.URL.Host]++
	o.mu.Unlock()
	if !strings.HasPrefix(r.URL.Host, "127.0.0.1:") {
		return nil, fmt.Errorf("test: no network access to %s", r.URL.Host)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (o *offlineTransport) asked() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]int{}
	for k, v := range o.hosts {
		out[k] = v
	}
	return out
}

// TestPullThroughMirror pulls and runs Docker Hub's "alpine" from a
// configured mirror (an in-process registry) with the fake toolstack and
// without network access.
func TestPullThroughMirror(t *testing.T) {
	start := func() string {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	mirror, empty := start(), start()
	img, err := testimage.Layered(runtime.GOARCH)
	if err != nil {
		t.Fatal(err)
	}
	if err := testimage.Push(context.Background(), img, mirror+"/library/alpine:latest"); err != nil {
		t.Fatal(err)
	}
	w := t.TempDir()
	for _, f := range []string{"vmlinux", "initramfs.cpio.gz"} {
		if err := os.WriteFile(filepath.Join(w, f), []byte("fake"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config := func(name string, mirrors ...string) string {
		p := filepath.Join(w, name)
		cfg := fmt.Sprintf("kernel: %s\ninitramfs: %s\nimage_store: %s\nruntime_dir: %s\nregistry_mirrors: [%s]\n",
			filepath.Join(w, "vmlinux"), filepath.Join(w, "initramfs.cpio.gz"), filepath.Join(w, "store"), filepath.Join(w, "run"),
			strings.Join(mirrors, ", "))
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := config("good.yaml", empty, "http://"+mirror)
	bad := config("bad.yaml", empty)
	vxn := func(args ...string) (int, string, string, map[string]int) {
		var stdout, stderr bytes.Buffer
		tr := &offlineTransport{}
		a := NewApp()
		a.Signals = nil
		a.IsTerminal = func(io.Writer) bool { return false }
		a.LookupEnv = func(string) (string, bool) { return "", false }
		a.NewToolstack = func(*vxnconf.Config) toolstack.Toolstack {
			return &faketoolstack.Fake{Guest: faketoolstack.Init(faketoolstack.ScriptProgram)}
		}
		a.Transport = tr
		a.Stdin, a.Stdout, a.Stderr = strings.NewReader(""), &stdout, &stderr
		code := a.Main(args)
		return code, stdout.String(), stderr.String(), tr.asked()
	}

	// Every source failing: the error names the mirror and Docker Hub.
	code, _, stderr, asked := vxn("--config", bad, "pull", "alpine")
	if code != ExitVxnError || !strings.Contains(stderr, "mirror "+empty) || !strings.Contains(stderr, "index.docker.io: ") {
		t.Errorf("pull from an empty mirror: exit %d, stderr %q; want 125 naming the mirror and index.docker.io", code, stderr)
	}
	if asked[empty] == 0 || asked["index.docker.io"] == 0 {
		t.Errorf("pull from an empty mirror asked %v, want the mirror then Docker Hub", asked)
	}

	// vxn run pulls through the second mirror, never asking Docker Hub.
	code, stdout, stderr, asked := vxn("--config", good, "run", "--rm", "alpine", "echo", "hello")
	if code != 0 || stdout != "hello\n" {
		t.Fatalf("run alpine: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if asked[empty] == 0 || asked[mirror] == 0 || len(asked) != 2 {
		t.Errorf("run alpine asked %v, want only the mirrors %s and %s", asked, empty, mirror)
	}
	// Stored under Docker Hub's name, found without a pull.
	code, stdout, _, _ = vxn("--config", good, "images")
	if code != 0 || !regexp.MustCompile(`(?m)^alpine +latest `).MatchString(stdout) || strings.Contains(stdout, "127.0.0.1") {
		t.Errorf("images: exit %d\n%s\nwant alpine latest", code, stdout)
	}
	code, stdout, _, asked = vxn("--config", bad, "run", "--rm", "docker.io/library/alpine", "echo", "again")
	if code != 0 || stdout != "again\n" || len(asked) != 0 {
		t.Errorf("second run: exit %d, stdout %q, asked %v; want no registry access", code, stdout, asked)
	}
	// vxn pull goes through the mirrors too.
	code, stdout, stderr, asked = vxn("--config", good, "pull", "alpine:latest")
	if code != 0 || !strings.HasPrefix(stdout, "index.docker.io/library/alpine:latest\n") {
		t.Errorf("pull: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if asked[mirror] == 0 || asked["index.docker.io"] != 0 {
		t.Errorf("pull asked %v, want the mirror and not Docker Hub", asked)
	}
	// A bad entry in the config file is refused before anything runs.
	badEntry := filepath.Join(w, "entry.yaml")
	os.WriteFile(badEntry, []byte("registry_mirrors: ['http://user@10.0.2.2']\n"), 0o644)
	code, _, stderr, _ = vxn("--config", badEntry, "images")
	if code != ExitVxnError || !strings.Contains(stderr, badEntry+": registry_mirrors: entry 1") {
		t.Errorf("bad entry: exit %d, stderr %q", code, stderr)
	}
}
