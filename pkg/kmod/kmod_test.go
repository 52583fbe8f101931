package kmod

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vxn-dev/vxn/internal/testutil"
)

func TestParseModinfo(t *testing.T) {
	tests := []struct {
		in      string
		want    map[string][]string
		wantErr string
	}{
		{"license=GPL\x00depends=a,b\x00\x00alias=x\x00alias=y\x00", map[string][]string{
			"license": {"GPL"}, "depends": {"a,b"}, "alias": {"x", "y"}}, ""},
		{"", map[string][]string{}, ""},
		{"depends=\x00", map[string][]string{"depends": {""}}, ""},
		{"license=GPL\x00garbage\x00", nil, "offset 12: entry \"garbage\""},
		{"=x", nil, "offset 0"},
	}
	for _, tc := range tests {
		got, err := ParseModinfo([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestModulesDep(t *testing.T) {
	s := &ModuleSet{Order: []string{"kernel/lib/crc16.ko", "kernel/fs/ext4/ext4.ko"},
		Deps: map[string][]string{"kernel/fs/ext4/ext4.ko": {"kernel/lib/crc16.ko"}}}
	want := "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko\nkernel/lib/crc16.ko:\n"
	if got := s.ModulesDep(); got != want {
		t.Errorf("ModulesDep = %q, want %q", got, want)
	}
}

// TestResolveModulesRealKernel resolves the dom0 module set against a
// Debian kernel already in the package cache.
func TestResolveModulesRealKernel(t *testing.T) {
	m, _ := filepath.Glob(filepath.Join(testutil.RepoRoot(t), ".cache/root/linux-image-*/lib/modules/*"))
	if len(m) == 0 {
		t.Skip("no extracted Debian kernel in .cache (run TestBuild with VXN_BUILD_IMAGE=1 first)")
	}
	// Dom0's module set of the reference image (hostimage's qemux86-64).
	dom0 := []string{"xen-evtchn", "xen-privcmd", "xenfs", "xen-gntdev", "xen-gntalloc",
		"xen-blkback", "loop", "crc32c_generic", "ext4", "virtio_net", "bridge", "xen-netback"}
	set, err := ResolveModules(m[0], dom0)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, r := range set.Order {
		pos[filepath.Base(r)] = i
	}
	for _, pair := range [][2]string{{"crc16.ko", "ext4.ko"}, {"jbd2.ko", "ext4.ko"}, {"mbcache.ko", "ext4.ko"}} {
		a, okA := pos[pair[0]]
		b, okB := pos[pair[1]]
		if !okA || !okB || a > b {
			t.Errorf("%s must load before %s: order %v", pair[0], pair[1], set.Order)
		}
	}
	if _, err := ResolveModules(m[0], []string{"no_such_module"}); err == nil || !strings.Contains(err.Error(), "no_such_module") {
		t.Errorf("missing module err = %v", err)
	}
}

func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("license=GPL\x00depends=a,b\x00"))
	f.Add([]byte("\x00\x00="))
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := ParseModinfo(in)
		if err != nil {
			return
		}
		for k := range m {
			if k == "" || strings.Contains(k, "\x00") {
				t.Fatalf("bad key %q", k)
			}
		}
	})
}
