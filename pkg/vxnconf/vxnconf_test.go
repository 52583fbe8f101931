package vxnconf

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vxn-dev/vxn/pkg/toolstack"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in  string
		err string
		mem int
	}{
		{in: "memory: 96\nvcpus: 2\nkernel: /k\n", mem: 96},
		{in: "", mem: 0},
		{in: "memroy: 96\n", err: `cfg.yaml: error unmarshaling JSON: while decoding JSON: json: unknown field "memroy"`},
		{in: "memory: -1\n", err: "must not be negative"},
		{in: "type: hvm\n", err: `type: "hvm" is not pv or pvh`},
		{in: "memory: [\n", err: "cfg.yaml: error converting YAML to JSON: yaml: line 1"},
		{in: "registry_mirrors: 10.0.2.2:5000", err: "cfg.yaml: "},
		{in: "registry_mirror: [10.0.2.2:5000]", err: `unknown field "registry_mirror"`},
	} {
		c, err := Parse("cfg.yaml", []byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q): err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || c.MemoryMB != tc.mem {
			t.Errorf("Parse(%q) = %+v, %v", tc.in, c, err)
		}
	}
}

func TestParseMirrorsAsWritten(t *testing.T) {
	c, err := Parse("config.yaml", []byte("registry_mirrors:\n  - 10.0.2.2:5000\n  - http://mirror.lan:5000/\n  - ftp://x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.2.2:5000", "http://mirror.lan:5000/", "ftp://x"}; !reflect.DeepEqual(c.RegistryMirrors, want) {
		t.Errorf("mirrors %q, want %q", c.RegistryMirrors, want)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"memory: 96\n", "kernel: /k\ninitramfs: /i\n", "{", "a: [b, {c: d}]", "memory: 1e99\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse("fuzz.yaml", []byte(s))
		if err == nil && (c.MemoryMB < 0 || c.VCPUs < 0) {
			t.Fatalf("negative value accepted: %+v", c)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.yaml") {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

func TestLoadAndFile(t *testing.T) {
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if p, opt := File(lookup); p != DefaultFile || !opt {
		t.Errorf("File() = %q, %v; want the optional default", p, opt)
	}
	missing := filepath.Join(t.TempDir(), "config.yaml")
	env[FileEnv] = missing
	p, opt := File(lookup)
	if p != missing || opt {
		t.Errorf("File() = %q, %v; want %q, required", p, opt, missing)
	}
	if _, err := Load(p, opt); err == nil {
		t.Error("Load of a missing required file: no error")
	}
	if c, err := Load(p, true); err != nil || !reflect.DeepEqual(c, &Config{}) {
		t.Errorf("Load of a missing optional file = %+v, %v", c, err)
	}
	os.WriteFile(missing, []byte("bridge: br1\n"), 0o644)
	if c, err := Load(p, opt); err != nil || c.BridgeName() != "br1" || c.ImageStoreRoot() != DefaultImageStore {
		t.Errorf("Load = %+v, %v", c, err)
	}
	c := &Config{ImageStore: "/s"}
	if c.BridgeName() != DefaultBridge || c.ImageStoreRoot() != "/s" {
		t.Errorf("defaults of %+v: bridge %q, store %q", c, c.BridgeName(), c.ImageStoreRoot())
	}
}

func TestFindAssets(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, AssetArch())
	if _, _, err := FindAssets(root, "", "", "set kernel:"); err == nil || !strings.Contains(err.Error(), "no guest kernel") || !strings.HasSuffix(err.Error(), " (set kernel:)") {
		t.Errorf("empty root: err = %v", err)
	}
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "bzImage"), nil, 0o644)
	if _, _, err := FindAssets(root, "", "", ""); err == nil || !strings.Contains(err.Error(), "initramfs.cpio.gz") || strings.HasSuffix(err.Error(), ")") {
		t.Errorf("no initramfs: err = %v", err)
	}
	os.WriteFile(filepath.Join(dir, "initramfs.cpio.gz"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "vmlinux"), nil, 0o644)
	k, i, err := FindAssets(root, "", "", "")
	if err != nil || k != filepath.Join(dir, "vmlinux") || i != filepath.Join(dir, "initramfs.cpio.gz") {
		t.Errorf("FindAssets = %q %q %v; want vmlinux preferred", k, i, err)
	}
}

func TestToolstack(t *testing.T) {
	env := map[string]string{}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	c := &Config{XL: "/opt/xen/bin/xl"}
	if got, want := c.Toolstack(lookup), (toolstack.Selection{XL: "/opt/xen/bin/xl"}); got != want {
		t.Errorf("Toolstack() = %+v, want %+v", got, want)
	}
	env[toolstack.Env] = "fake"
	if got, want := c.Toolstack(lookup), (toolstack.Selection{Name: "fake", XL: "/opt/xen/bin/xl"}); got != want {
		t.Errorf("Toolstack() with %s=fake = %+v, want %+v", toolstack.Env, got, want)
	}
}

// TestGuest: explicit values win, zero values take the configuration, the
// network selects the configured bridge, a bad network is refused.
func TestGuest(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, AssetArch())
	os.MkdirAll(dir, 0o755)
	for _, f := range []string{"vmlinux", "initramfs.cpio.gz"} {
		os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644)
	}
	c := &Config{MemoryMB: 200, VCPUs: 2, ScratchMB: 64, Type: "pvh", Bridge: "br9"}
	g, err := c.Guest(root, GuestRequest{MemoryMB: 128, Network: "bridge"}, "hint")
	if err != nil {
		t.Fatal(err)
	}
	want := Guest{Kernel: filepath.Join(dir, "vmlinux"), Initramfs: filepath.Join(dir, "initramfs.cpio.gz"),
		MemoryMB: 128, VCPUs: 2, ScratchMB: 64, Type: "pvh", Bridge: "br9"}
	if g != want {
		t.Errorf("Guest = %+v, want %+v", g, want)
	}
	if g, _ := c.Guest(root, GuestRequest{}, "hint"); g.Bridge != "" || g.MemoryMB != 200 {
		t.Errorf("no network/default memory: %+v", g)
	}
	if _, err := c.Guest(root, GuestRequest{Network: "host"}, "hint"); err == nil || !strings.Contains(err.Error(), "none or bridge") {
		t.Errorf("bad network: %v", err)
	}
	if _, err := c.Guest(t.TempDir(), GuestRequest{}, "set kernel: here"); err == nil || !strings.Contains(err.Error(), "set kernel: here") {
		t.Errorf("missing assets: %v", err)
	}
}
