package hostimage

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// blockEnv runs the Dom0 block hotplug script on this machine with real
// loop devices and a xenstore kept in files (xenstore-read/-write on PATH
// are small shell stand-ins), as libxl would: XENBUS_PATH in the
// environment, add or remove as the argument.
type blockEnv struct {
	t      *testing.T
	dir    string
	script string
	path   string
}

func newBlockEnv(t *testing.T) *blockEnv {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("loop devices need root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skipf("no losetup: %v", err)
	}
	e := &blockEnv{t: t, dir: t.TempDir()}
	bin := filepath.Join(e.dir, "bin")
	os.MkdirAll(bin, 0o755)
	xs := filepath.Join(e.dir, "xs")
	os.WriteFile(filepath.Join(bin, "xenstore-read"), []byte("#!/bin/sh\ncat \""+xs+"$1\" 2>/dev/null\n"), 0o755)
	os.WriteFile(filepath.Join(bin, "xenstore-write"), []byte("#!/bin/sh\nwhile [ $# -ge 2 ]; do mkdir -p \""+xs+"$(dirname \"$1\")\"; printf %s \"$2\" > \""+xs+"$1\"; shift 2; done\n"), 0o755)
	e.script = filepath.Join(e.dir, "block")
	os.WriteFile(e.script, []byte(fmt.Sprintf(blockScript, "usr/lib/xen-4.17")), 0o755)
	e.path = bin + ":" + os.Getenv("PATH")
	return e
}

func (e *blockEnv) xs(key string) string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "xs", key))
	return string(b)
}

func (e *blockEnv) run(be, action string) (string, error) {
	c := exec.Command("sh", e.script, action)
	c.Env = append(os.Environ(), "PATH="+e.path, "XENBUS_PATH="+be)
	out, err := c.CombinedOutput()
	return string(out), err
}

// add writes params and mode for backend be and runs add.
func (e *blockEnv) add(be, params, mode string) (string, error) {
	p := filepath.Join(e.dir, "xs", be)
	os.MkdirAll(p, 0o755)
	os.WriteFile(filepath.Join(p, "params"), []byte(params), 0o644)
	os.WriteFile(filepath.Join(p, "mode"), []byte(mode), 0o644)
	return e.run(be, "add")
}

func TestBlockScript(t *testing.T) {
	e := newBlockEnv(t)
	img := filepath.Join(e.dir, "disk.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("losetup", "-f").CombinedOutput(); err != nil {
		t.Skipf("no free loop device here: %v %s", err, out)
	}
	be1, be2, be3 := "/backend/vbd/1/51712", "/backend/vbd/2/51712", "/backend/vbd/3/51712"
	detach := func(be string) {
		if n := e.xs(be + "/node"); strings.HasPrefix(n, "/dev/loop") {
			exec.Command("losetup", "-d", n).Run()
		}
	}
	t.Cleanup(func() { detach(be1); detach(be2); detach(be3) })

	// Read-write attach: loop device, physical-device, connected.
	if out, err := e.add(be1, img, "w"); err != nil {
		t.Fatalf("add rw: %v\n%s", err, out)
	}
	dev := e.xs(be1 + "/physical-device-path")
	if !strings.HasPrefix(dev, "/dev/loop") || e.xs(be1+"/hotplug-status") != "connected" {
		t.Fatalf("after add: path %q status %q", dev, e.xs(be1+"/hotplug-status"))
	}
	st, err := exec.Command("stat", "-L", "-c", "%t:%T", dev).Output()
	if err != nil || e.xs(be1+"/physical-device") != strings.TrimSpace(string(st)) {
		t.Errorf("physical-device %q, stat says %q (%v)", e.xs(be1+"/physical-device"), st, err)
	}
	ro, _ := exec.Command("losetup", "-n", "-O", "RO", dev).Output()
	if strings.TrimSpace(string(ro)) != "0" {
		t.Errorf("mode w attached read-only (RO=%q)", ro)
	}
	// The sharing checks: no second attach of a file attached for writing.
	for _, mode := range []string{"w", "r"} {
		out, err := e.add(be2, img, mode)
		if err == nil {
			t.Fatalf("second attach (mode %s) of an image attached for writing succeeded:\n%s", mode, out)
		}
		if e.xs(be2+"/hotplug-status") != "error" || !strings.Contains(e.xs(be2+"/hotplug-error"), img) {
			t.Errorf("mode %s refusal: status %q error %q", mode, e.xs(be2+"/hotplug-status"), e.xs(be2+"/hotplug-error"))
		}
	}
	// Remove detaches the loop device.
	if out, err := e.run(be1, "remove"); err != nil {
		t.Fatalf("remove: %v\n%s", err, out)
	}
	if out, _ := exec.Command("losetup", "-n", "-j", img).Output(); len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("loop device still attached after remove: %s", out)
	}
	// Two read-only attaches share the image; a writer is then refused.
	for _, be := range []string{be1, be2} {
		if out, err := e.add(be, img, "r"); err != nil {
			t.Fatalf("add ro %s: %v\n%s", be, err, out)
		}
		ro, _ := exec.Command("losetup", "-n", "-O", "RO", e.xs(be+"/node")).Output()
		if strings.TrimSpace(string(ro)) != "1" {
			t.Errorf("mode r attached writable (RO=%q)", ro)
		}
	}
	if out, err := e.add(be3, img, "w"); err == nil {
		t.Fatalf("rw attach of an image shared read-only succeeded:\n%s", out)
	}
	// A block device is used as it is, and not detached on remove.
	dev = e.xs(be1 + "/node")
	if out, err := e.add(be3, dev, "r"); err != nil || e.xs(be3+"/physical-device-path") != dev {
		t.Fatalf("phy add: %v %q\n%s", err, e.xs(be3+"/physical-device-path"), out)
	}
	e.run(be3, "remove")
	if _, err := os.Stat(dev); err != nil {
		t.Errorf("phy remove touched %s: %v", dev, err)
	}
	// Not a file nor a device: a clear error.
	if out, err := e.add(be3, filepath.Join(e.dir, "missing.img"), "r"); err == nil || !strings.Contains(e.xs(be3+"/hotplug-error"), "neither a block device nor a regular file") {
		t.Errorf("missing file: err %v, hotplug-error %q\n%s", err, e.xs(be3+"/hotplug-error"), out)
	}
}
