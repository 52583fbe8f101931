package e2e

// The spec's tier-3 examples as a user types them in the booted Dom0
// (README-xen.txt, "vxn standalone test" and "containerd test"), with the
// offline image the Dom0 ships and, for alpine, a registry mirror.

import (
	"strings"
	"testing"
	"time"
)

// offlineImage is the image the Dom0 ships (pkg/oci/busyboximage), under
// its docker short name and its containerd name.
const (
	offlineImage    = "busybox"
	offlineImageCtr = "docker.io/library/busybox:latest"
)

func TestSpecOffline(t *testing.T) {
	vm(t)
	need(t, "xl", "vxn")
	t.Run("vxn-images", func(t *testing.T) {
		r := run(t, "vxn images")
		if r.Status != 0 || !strings.Contains(r.Output, offlineImage) {
			t.Fatalf("vxn images does not list %s: %d %q", offlineImage, r.Status, r.Output)
		}
	})
	t.Run("vxn-run", func(t *testing.T) {
		t0 := time.Now()
		r := runLong(t, "vxn run --rm "+offlineImage+" echo hello", 180*time.Second)
		if r.Status != 0 || !strings.HasSuffix(r.Output, "hello\n") {
			t.Fatalf("vxn run --rm %s echo hello: %d %q", offlineImage, r.Status, r.Output)
		}
		t.Logf("vxn run --rm %s echo hello: %.1fs", offlineImage, time.Since(t0).Seconds())
	})
	t.Run("ctr-images", func(t *testing.T) {
		need(t, "ctr")
		enginesReady(t)
		r := run(t, "ctr images ls -q")
		if r.Status != 0 || !strings.Contains(r.Output, offlineImageCtr) {
			t.Fatalf("ctr images ls does not list %s: %d %q\nimport log: %s", offlineImageCtr, r.Status, r.Output, run(t, "cat /var/log/vxn-image-import.log").Output)
		}
	})
	t.Run("vctr-run", func(t *testing.T) {
		need(t, "vctr")
		enginesReady(t)
		t0 := time.Now()
		r := runLong(t, "vctr run --rm "+offlineImageCtr+" spec-test1 echo hello", 240*time.Second)
		if r.Status != 0 || !strings.HasSuffix(r.Output, "hello\n") {
			t.Fatalf("vctr run --rm %s spec-test1 echo hello: %d %q", offlineImageCtr, r.Status, r.Output)
		}
		t.Logf("vctr run --rm %s echo hello: %.1fs", offlineImageCtr, time.Since(t0).Seconds())
	})
}

// TestSpecAlpineMirror: the spec's `vxn run --rm alpine echo hello`, with
// registry_mirrors in /etc/vxn/config.yaml pointing at the suite's
// registry, which serves library/alpine.
func TestSpecAlpineMirror(t *testing.T) {
	vm(t)
	need(t, "xl", "vxn")
	if testRegistry.dom0 == "" {
		t.Fatal("the suite's registry is not running")
	}
	r := run(t, "mkdir -p /etc/vxn && cp /etc/vxn/config.yaml /tmp/vxn-config.bak 2>/dev/null; printf 'registry_mirrors: [\"%s\"]\\n' "+testRegistry.dom0+" > /etc/vxn/config.yaml")
	if r.Status != 0 {
		t.Fatalf("writing /etc/vxn/config.yaml: %s", r.Output)
	}
	defer run(t, "if [ -f /tmp/vxn-config.bak ]; then mv /tmp/vxn-config.bak /etc/vxn/config.yaml; else rm -f /etc/vxn/config.yaml; fi; vxn rmi alpine >/dev/null 2>&1; true")
	t0 := time.Now()
	r = runLong(t, "vxn run --rm alpine echo hello", 180*time.Second)
	if r.Status != 0 || !strings.HasSuffix(r.Output, "hello\n") {
		t.Fatalf("vxn run --rm alpine echo hello (mirror %s): %d %q", testRegistry.dom0, r.Status, r.Output)
	}
	t.Logf("vxn run --rm alpine echo hello through the mirror: %.1fs", time.Since(t0).Seconds())
	if r := run(t, "vxn images"); !strings.Contains(r.Output, "alpine") {
		t.Errorf("vxn images after the pull: %q", r.Output)
	}
}
