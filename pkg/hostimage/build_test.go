package hostimage

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/internal/testutil"

	"github.com/vxn-dev/vxn/pkg/qemu"
)

// TestBuild builds the real images from Debian packages (slow the first
// time: about 100 MB of downloads). Enabled with VXN_BUILD_IMAGE=1;
// VXN_BUILD_CACHE selects another cache directory.
func TestBuild(t *testing.T) {
	if os.Getenv("VXN_BUILD_IMAGE") == "" {
		t.Skip("set VXN_BUILD_IMAGE=1 to build the reference images from Debian packages")
	}
	for _, tool := range []string{"apt-get", "dpkg-deb", "mkfs.ext4", "qemu-img", "bzip2"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("host tool missing: %v", err)
		}
	}
	cache := filepath.Join(testutil.RepoRoot(t), ".cache")
	if c := os.Getenv("VXN_BUILD_CACHE"); c != "" {
		cache = c // e.g. an empty directory to measure a cold build
	}
	out := filepath.Join(cache, "hostimage-test")
	ctx := context.Background()
	var hooked bool
	t0 := time.Now()
	o, err := Build(ctx, Options{OutDir: out, CacheDir: cache, Logf: t.Logf,
		PopulateRootfs: func(ctx context.Context, dir string) error {
			hooked = true
			return os.WriteFile(filepath.Join(dir, "etc/hook-was-here"), []byte("1\n"), 0o644)
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("build took %.1fs", time.Since(t0).Seconds())
	if !hooked {
		t.Error("PopulateRootfs not called")
	}
	for _, p := range []string{o.Hypervisor, o.Kernel, o.Vmlinux, o.Initramfs, o.Rootfs, o.GuestExt4, o.GuestTarBz2, o.GuestQcow2, o.LockPath} {
		if st, err := os.Stat(p); err != nil || st.Size() == 0 {
			t.Errorf("artefact %s: %v", p, err)
		}
	}
	if f, err := elf.Open(o.Vmlinux); err != nil {
		t.Errorf("vmlinux is not ELF: %v", err)
	} else {
		f.Close()
	}
	d, err := qemu.LoadDescriptor(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.XenCmdline, "dom0_mem=512M") {
		t.Errorf("xen cmdline %q lacks dom0_mem=512M", d.XenCmdline)
	}
	// The dom0 rootfs must contain the real xendomains script and the hook file.
	for _, p := range []string{"/etc/init.d/xendomains", "/etc/hook-was-here", "/usr/lib/xen-4.17/bin/xl", "/etc/xen/auto"} {
		outp, err := exec.Command("debugfs", "-R", "stat "+p, o.Rootfs).CombinedOutput()
		if err != nil || strings.Contains(string(outp), "not found") {
			t.Errorf("%s not in rootfs: %v %s", p, err, outp)
		}
	}
}
