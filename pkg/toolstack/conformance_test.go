package toolstack_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/toolstack/faketoolstack"
	"github.com/vxn-dev/vxn/pkg/xlcfg"
)

// conformance checks the behaviour vxn relies on, against any Toolstack.
// cfg is an xl config for a guest that sends a guestproto Ready frame.
func conformance(t *testing.T, ts toolstack.Toolstack, cfgPath, name string, memMB int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	info, err := ts.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.TotalMemoryMB <= 0 || info.FreeMemoryMB > info.TotalMemoryMB {
		t.Fatalf("Info = %+v: want 0 < free <= total", info)
	}
	doms, err := ts.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(doms) == 0 || doms[0].ID != 0 {
		t.Fatalf("List = %+v: want Domain-0 first", doms)
	}
	if _, err := ts.DomID(ctx, "vxn-conformance-no-such-domain"); !errors.Is(err, toolstack.ErrNoDomain) {
		t.Errorf("DomID of a missing domain: err = %v, want ErrNoDomain", err)
	}
	if err := ts.Destroy(ctx, 32000); !errors.Is(err, toolstack.ErrNoDomain) {
		t.Errorf("Destroy of a missing domain: err = %v, want ErrNoDomain", err)
	}

	id, err := ts.Create(ctx, cfgPath, true)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	destroyed := false
	defer func() {
		if !destroyed {
			ts.Destroy(context.Background(), id)
		}
	}()
	if got, err := ts.DomID(ctx, name); err != nil || got != id {
		t.Errorf("DomID(%q) = %d, %v; want %d", name, got, err, id)
	}
	doms, _ = ts.List(ctx)
	found := false
	for _, d := range doms {
		if d.ID == id {
			found = true
			if d.Name != name || !strings.Contains(d.State, "p") {
				t.Errorf("listed as %+v, want name %q and paused state", d, name)
			}
		}
	}
	if !found {
		t.Errorf("domain %d not in List %+v", id, doms)
	}
	if info2, err := ts.Info(ctx); err != nil || info2.FreeMemoryMB > info.FreeMemoryMB-memMB/2 {
		t.Errorf("free memory after create = %+v, %v; before %d, guest %d MB", info2, err, info.FreeMemoryMB, memMB)
	}

	con, err := ts.Console(ctx, id)
	if err != nil {
		t.Fatalf("Console: %v", err)
	}
	defer con.Close()
	if err := ts.Unpause(ctx, id); err != nil {
		t.Fatalf("Unpause: %v", err)
	}
	r := guestproto.NewReader(con)
	for {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("console ended before Ready: %v; tail %q", err, r.GarbageTail())
		}
		if f.Type == guestproto.TypeReady {
			break
		}
	}
	if err := ts.Destroy(ctx, id); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	destroyed = true
	// The console ends once the domain is gone.
	done := make(chan struct{})
	go func() {
		for {
			if _, err := r.Next(); err != nil {
				close(done)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("console still open 30s after Destroy")
	}
	if _, err := ts.DomID(ctx, name); !errors.Is(err, toolstack.ErrNoDomain) {
		t.Errorf("DomID after Destroy: err = %v, want ErrNoDomain", err)
	}
	if err := ts.Unpause(ctx, id); !errors.Is(err, toolstack.ErrNoDomain) {
		t.Errorf("Unpause after Destroy: err = %v, want ErrNoDomain", err)
	}
}

func writeCfg(t *testing.T, d xlcfg.Domain) string {
	b, err := xlcfg.Generate(d)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "guest.cfg")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConformanceFake(t *testing.T) {
	f := &faketoolstack.Fake{Guest: faketoolstack.Init(faketoolstack.ScriptProgram)}
	cfg := writeCfg(t, xlcfg.Domain{Name: "vxn-conf", Type: "pv", Memory: 64, Kernel: "/k", OnPoweroff: "destroy"})
	conformance(t, f, cfg, "vxn-conf", 64)
}

// TestConformanceXL runs the same checks against real Xen. It needs Dom0
// with xl and a guest kernel plus vxn initramfs: VXN_TEST_KERNEL and
// VXN_TEST_INITRAMFS, or the installed /usr/share/vxn/<arch>/ assets.
func TestConformanceXL(t *testing.T) {
	x := &toolstack.XL{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := x.Available(ctx); err != nil {
		t.Skipf("xl toolstack not usable here (not a Xen Dom0): %v", err)
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[runtime.GOARCH]
	kernel, initrd := os.Getenv("VXN_TEST_KERNEL"), os.Getenv("VXN_TEST_INITRAMFS")
	if kernel == "" {
		for _, k := range []string{"vmlinux", "bzImage"} {
			p := filepath.Join("/usr/share/vxn", arch, k)
			if _, err := os.Stat(p); err == nil {
				kernel = p
				break
			}
		}
	}
	if initrd == "" {
		initrd = filepath.Join("/usr/share/vxn", arch, "initramfs.cpio.gz")
	}
	for _, p := range []string{kernel, initrd} {
		if _, err := os.Stat(p); p == "" || err != nil {
			t.Skipf("no guest kernel/initramfs (set VXN_TEST_KERNEL, VXN_TEST_INITRAMFS): %q: %v", p, err)
		}
	}
	name := "vxn-conformance-" + time.Now().Format("150405")
	cfg := writeCfg(t, xlcfg.Domain{Name: name, Type: "pv", Memory: 128, VCPUs: 1, Kernel: kernel, Ramdisk: initrd,
		Extra: "console=hvc0 quiet loglevel=0 vxn.console=hvc0", OnPoweroff: "destroy", OnCrash: "destroy"})
	conformance(t, x, cfg, name, 128)
}
