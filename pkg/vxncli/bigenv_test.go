package vxncli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/toolstack/faketoolstack"
	"github.com/vxn-dev/vxn/pkg/vxnconf"
)

// TestRunDetachedLargeEnv: `vxn run -d --env-file` with 17 MB of
// environment failed with "unexpected end of JSON input" (the detached
// monitor's options pipe was cut at 16 MiB), and env beyond 64 KiB could
// not reach the guest (one console frame); both now work.
func TestRunDetachedLargeEnv(t *testing.T) {
	if testing.Short() {
		t.Skip("17 MB through a monitor")
	}
	w := t.TempDir()
	rootfs := filepath.Join(w, "rootfs")
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
	for _, f := range []string{"vmlinux", "initramfs.cpio.gz"} {
		os.WriteFile(filepath.Join(w, f), []byte("fake"), 0o644)
	}
	cfg := filepath.Join(w, "config.yaml")
	os.WriteFile(cfg, []byte("kernel: "+filepath.Join(w, "vmlinux")+"\ninitramfs: "+filepath.Join(w, "initramfs.cpio.gz")+
		"\nimage_store: "+filepath.Join(w, "store")+"\nruntime_dir: "+filepath.Join(w, "run")+"\n"), 0o644)
	t.Setenv(toolstack.Env, faketoolstack.Name)
	var envFile bytes.Buffer
	const vars = 17000
	for i := 0; i < vars; i++ {
		fmt.Fprintf(&envFile, "V%05d=%s\n", i, strings.Repeat(string(rune('a'+i%26)), 1000))
	}
	ef := filepath.Join(w, "big.env")
	os.WriteFile(ef, envFile.Bytes(), 0o644)
	vxn := func(args ...string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		a := NewApp()
		a.Signals = nil
		a.IsTerminal = func(io.Writer) bool { return false }
		a.LookupEnv = os.LookupEnv
		a.NewToolstack = func(*vxnconf.Config) toolstack.Toolstack {
			return &faketoolstack.Fake{Guest: faketoolstack.Init(faketoolstack.ScriptProgram)}
		}
		a.Stdin, a.Stdout, a.Stderr = strings.NewReader(""), &stdout, &stderr
		code := a.Main(append([]string{"--config", cfg}, args...))
		return stdout.String(), stderr.String(), code
	}
	start := time.Now()
	out, errOut, code := vxn("run", "-d", "--env-file", ef, "dir:"+rootfs, "env")
	if code != 0 {
		t.Fatalf("run -d with %d bytes of env: exit %d: %s", envFile.Len(), code, errOut)
	}
	id := strings.TrimSpace(out)
	if _, errOut, code := vxn("wait", id); code != 0 {
		t.Fatalf("wait: %d %s", code, errOut)
	}
	logs, errOut, code := vxn("logs", id)
	if code != 0 {
		t.Fatalf("logs: %s", errOut)
	}
	for _, want := range []string{"V00000=aaaa", fmt.Sprintf("V%05d=%s\n", vars-1, strings.Repeat(string(rune('a'+(vars-1)%26)), 1000))} {
		if !strings.Contains(logs, want) {
			t.Errorf("the container's env lacks %.40q (logs: %d bytes)", want, len(logs))
		}
	}
	t.Logf("17 MB env: run, wait, logs in %v", time.Since(start))
	vxn("rm", id)
}
