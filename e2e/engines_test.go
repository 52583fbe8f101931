package e2e

// Dom0 networking, the local test registry and the container engines
// (containerd, Docker, Podman) on real Xen.
//
// The registry is go-containerregistry's in-process registry, started by
// setup before the image is built, on a free port of the build host's
// loopback. Dom0 reaches it through QEMU's user-mode network as
// 10.0.2.2:PORT (slirp maps its gateway address to the host's loopback);
// the address is written into the Dom0 rootfs as /etc/vxn-test/registry.
// The PopulateRootfs hook pushes the test images (the layered image of
// vxn_test.go and a plain busybox image) and declares the registry
// insecure (plain HTTP) to Docker (daemon.json insecure-registries) and
// Podman (registries.conf.d); ctr is given --plain-http; vxn needs nothing:
// pkg/oci follows go-containerregistry, which speaks plain HTTP to
// localhost, loopback and RFC 1918 private addresses such as 10.0.2.2.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vxn-dev/vxn/pkg/oci/testimage"
	"github.com/vxn-dev/vxn/pkg/qemu"
)

// testRegistry is the in-process registry of the suite.
var testRegistry struct {
	// local is its address on the build host (127.0.0.1:PORT), dom0 the
	// same registry seen from Dom0 (10.0.2.2:PORT); empty until started.
	local, dom0 string
	srv         *http.Server
}

// Dom0 path of the file holding the registry address.
const registryFile = "/etc/vxn-test/registry"

// Repositories pushed to the test registry (tag "latest").
const (
	// regLayered is vxn_test.go's layered image (whiteout, opaque dir,
	// user 1000:1000, Env, WorkingDir).
	regLayered = "vxn-test/layered"
	// regBusybox is a plain busybox image (Cmd ["sh"]).
	regBusybox = "vxn-test/busybox"
	// regAlpine stands in for Docker Hub's alpine behind a registry mirror
	// (a busybox image under the name the spec's example pulls).
	regAlpine = "library/alpine"
)

// registryRef is the Dom0 reference of a repository in the test registry,
// e.g. registryRef(regBusybox) = "10.0.2.2:PORT/vxn-test/busybox:latest".
func registryRef(repo string) string {
	return testRegistry.dom0 + "/" + repo + ":latest"
}

// startRegistry starts the in-process registry on a free loopback port.
func startRegistry() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("test registry: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	testRegistry.srv = &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		ReadHeaderTimeout: 30 * time.Second}
	go testRegistry.srv.Serve(ln)
	testRegistry.local = "127.0.0.1:" + strconv.Itoa(port)
	testRegistry.dom0 = "10.0.2.2:" + strconv.Itoa(port)
	logf("test registry on %s (Dom0: %s)", testRegistry.local, testRegistry.dom0)
	return nil
}

// populateAll runs every PopulateRootfs hook of the suite.
func populateAll(ctx context.Context, root string) error {
	if err := vxnPopulate(ctx, root); err != nil {
		return err
	}
	return enginesPopulate(ctx, root)
}

// enginesPopulate pushes the test images to the registry and tells Dom0
// (and its engines) where it is.
func enginesPopulate(ctx context.Context, root string) error {
	if testRegistry.local == "" {
		return nil
	}
	base, err := busyboxLayer(filepath.Join(root, "usr/bin/busybox"))
	if err != nil {
		return err
	}
	layered, err := testimage.Layered(s.machine.DebArch, base)
	if err != nil {
		return err
	}
	bb, err := testimage.Image(s.machine.DebArch, v1.Config{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, base)
	if err != nil {
		return err
	}
	for repo, img := range map[string]v1.Image{regLayered: layered, regBusybox: bb, regAlpine: bb} {
		if err := testimage.Push(ctx, img, testRegistry.local+"/"+repo+":latest"); err != nil {
			return fmt.Errorf("push %s to the test registry: %w", repo, err)
		}
	}
	files := map[string]string{
		registryFile: testRegistry.dom0 + "\n",
		"/etc/containers/registries.conf.d/50-vxn-test.conf": fmt.Sprintf("# The runtime suite's registry (plain HTTP).\n[[registry]]\nlocation = %q\ninsecure = true\n", testRegistry.dom0),
	}
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	// Docker: add the registry to daemon.json's insecure-registries.
	dj := filepath.Join(root, "etc/docker/daemon.json")
	b, err := os.ReadFile(dj)
	if os.IsNotExist(err) {
		return nil // image built without the engines
	}
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("%s: %w", dj, err)
	}
	cfg["insecure-registries"] = []string{testRegistry.dom0}
	if b, err = json.MarshalIndent(cfg, "", "  "); err != nil {
		return err
	}
	return os.WriteFile(dj, append(b, '\n'), 0o644)
}

// TestNetwork checks Dom0's bridge and address, the build host through
// QEMU's user network, and a guest vif on xenbr0.
func TestNetwork(t *testing.T) {
	vm(t)
	t.Run("xenbr0", func(t *testing.T) {
		r := run(t, "ip addr show dev xenbr0; ls /sys/class/net/xenbr0/brif/; ip route")
		if r.Status != 0 || !strings.Contains(r.Output, "inet 10.0.2.15/24") || !strings.Contains(r.Output, "default via 10.0.2.2") {
			t.Fatalf("xenbr0 has no DHCP address from QEMU's user network:\n%s", r.Output)
		}
		t.Logf("%s", r.Output)
	})
	t.Run("host", func(t *testing.T) {
		if testRegistry.dom0 == "" {
			t.Skip("no test registry")
		}
		r := run(t, "wget -q -O /dev/null http://"+testRegistry.dom0+"/v2/; echo rc=$?")
		if !strings.Contains(r.Output, "rc=0") {
			t.Fatalf("the build host's registry is not reachable from Dom0 as %s: %s", testRegistry.dom0, r.Output)
		}
	})
	t.Run("guest-vif", func(t *testing.T) {
		need(t, "xl")
		// A PV guest without a disk (it stops in its initramfs) and one
		// vif on xenbr0: the vif-bridge hotplug script must enslave it.
		cfg := `name="vif-test"\n` + guestTypeLine() + `memory=128\nvcpus=1\nkernel="/var/lib/xen/images/` + s.machine.GuestKernelType + `"\nramdisk="/var/lib/xen/images/xen-guest-initramfs-` + *flagMachine + `.cpio.gz"\nextra="console=hvc0 root=/dev/xvda"\nvif=["bridge=xenbr0"]\non_poweroff="destroy"\n`
		run(t, "printf '"+cfg+"' > /tmp/vif-test.cfg")
		r := runLong(t, "xl create -q /tmp/vif-test.cfg; echo rc=$?; xl network-list vif-test; ls /sys/class/net/xenbr0/brif/", 120*time.Second)
		defer run(t, "xl destroy vif-test 2>/dev/null")
		if !strings.Contains(r.Output, "rc=0") || !strings.Contains(r.Output, "vif") {
			d := run(t, "tail -20 /var/log/xen/xl-vif-test.log 2>/dev/null")
			t.Fatalf("guest with vif=['bridge=xenbr0']:\n%s\n%s", r.Output, d.Output)
		}
		t.Logf("%s", r.Output)
		run(t, "xl destroy vif-test")
		r = run(t, "sleep 1; ls /sys/class/net/xenbr0/brif/")
		if strings.Contains(r.Output, "vif") {
			t.Errorf("vif still on xenbr0 after xl destroy: %s", r.Output)
		}
	})
}

// TestRegistryPull pulls and runs the registry's images with vxn.
func TestRegistryPull(t *testing.T) {
	vm(t)
	need(t, "xl", "vxn")
	if testRegistry.dom0 == "" {
		t.Fatal("setup did not start the test registry")
	}
	img := registryRef(regBusybox)
	t.Run("pull", func(t *testing.T) {
		for _, ref := range []string{img, registryRef(regLayered)} {
			r := runLong(t, "vxn pull "+ref+" 2>&1; echo rc=$?", 120*time.Second)
			if !strings.Contains(r.Output, "rc=0") {
				t.Fatalf("vxn pull %s:\n%s", ref, r.Output)
			}
		}
		r := run(t, "vxn images")
		if !strings.Contains(r.Output, regBusybox) {
			t.Errorf("vxn images does not list %s:\n%s", regBusybox, r.Output)
		}
		t.Logf("%s", r.Output)
	})
	t.Run("run", func(t *testing.T) {
		r := runLong(t, "vxn run --rm "+img+" echo hello 2>/tmp/e; echo rc=$?; cat /tmp/e", 120*time.Second)
		if !strings.HasPrefix(r.Output, "hello\nrc=0") {
			t.Fatalf("vxn run --rm %s echo hello:\n%s", img, r.Output)
		}
	})
}

// enginesReady waits until Dom0's engines script has both daemons up and
// returns when that was, in host time since QEMU start (polled from the
// host once a second: Dom0's uptime clock runs at its own pace under TCG).
func enginesReady(t *testing.T) time.Duration {
	t.Helper()
	v := vm(t)
	need(t, "containerd", "dockerd", "podman")
	deadline := time.Now().Add(900 * time.Second)
	for {
		r := run(t, "cat /run/vxn-engines.ready.failed 2>/dev/null; test -e /run/vxn-engines.ready")
		if r.Status == 0 {
			break
		}
		if strings.TrimSpace(r.Output) != "" || time.Now().After(deadline) {
			d := run(t, "tail -15 /var/log/containerd.log; tail -15 /var/log/dockerd.log")
			t.Fatalf("engines not ready: %q\n%s", r.Output, d.Output)
		}
		time.Sleep(time.Second)
	}
	v.Mark("engines-ready")
	for _, p := range v.Timings() {
		if p.Name == "engines-ready" {
			return p.At
		}
	}
	return 0
}

// TestEngines checks containerd, Docker and Podman in Dom0.
func TestEngines(t *testing.T) {
	v := vm(t)
	at := enginesReady(t)
	for _, p := range v.Timings() {
		if p.Name == qemu.PhaseLoginPrompt {
			t.Logf("engines ready %.1fs after QEMU start (login prompt at %.1fs)", at.Seconds(), p.At.Seconds())
		}
	}
	t.Run("memory", func(t *testing.T) {
		r := run(t, "free -m; ps -o pid,rss,args | grep -e containerd -e dockerd | grep -v grep")
		t.Logf("Dom0 memory with the engines running:\n%s", r.Output)
	})
	t.Run("containerd", func(t *testing.T) {
		r := run(t, "ctr version")
		if r.Status != 0 || !strings.Contains(r.Output, "Server:") {
			t.Fatalf("ctr version: %d\n%s", r.Status, r.Output)
		}
	})
	if testRegistry.dom0 == "" {
		t.Fatal("setup did not start the test registry")
	}
	img := registryRef(regBusybox)
	pulls := []struct{ name, cmd string }{
		{"ctr-pull", "ctr images pull --plain-http " + img},
		{"docker-pull", "docker pull " + img},
		// Podman's default runtime is vxn; until vxn-oci-runtime is in
		// Dom0, name runc so that Podman starts at all.
		{"podman-pull", "rt=; [ -x /usr/bin/vxn-oci-runtime ] || rt='--runtime runc'; podman $rt pull " + img},
	}
	for _, p := range pulls {
		t.Run(p.name, func(t *testing.T) {
			t0 := time.Now()
			r := runLong(t, p.cmd+" 2>&1; echo rc=$?", 300*time.Second)
			if !strings.Contains(r.Output, "rc=0") {
				t.Fatalf("%s:\n%s", p.cmd, tail(r.Output, 3000))
			}
			t.Logf("%s: %.1fs", p.cmd, time.Since(t0).Seconds())
		})
	}
	t.Run("docker-info", func(t *testing.T) {
		r := run(t, "docker info 2>&1")
		if !strings.Contains(r.Output, "Runtimes:") || !strings.Contains(r.Output, "vxn") {
			t.Fatalf("docker info does not show the vxn runtime:\n%s", r.Output)
		}
		for _, l := range strings.Split(r.Output, "\n") {
			if strings.Contains(l, "Runtimes:") || strings.Contains(l, "Storage Driver:") || strings.Contains(l, "Cgroup") {
				t.Log(strings.TrimSpace(l))
			}
		}
	})
}

// Dom0 paths of the OCI runtime and vctr.
const (
	ociRuntime = "/usr/bin/vxn-oci-runtime"
	vctrBinary = "/usr/bin/vctr"
)

// engineDiag collects what explains a failed engine run: the runtime's
// JSON logs in the shim bundles, the daemons' log tails and the domains.
const engineDiag = "for f in $(find /run/containerd/io.containerd.runtime.v2.task -name log.json 2>/dev/null); do echo \"== $f\"; tail -c 2000 $f; done; " +
	"for f in /var/log/vxn-oci-runtime*.log /var/log/containerd.log /var/log/dockerd.log; do [ -f $f ] && { echo \"== $f\"; tail -n 20 $f; }; done; " +
	"echo '== xl list'; xl list; echo '== losetup'; losetup -a"

// engineImage waits for the engines and returns the registry's busybox
// image, failing the test when a runtime binary or the registry is missing.
func engineImage(t *testing.T) string {
	t.Helper()
	vm(t)
	need(t, ociRuntime, vctrBinary)
	enginesReady(t)
	if testRegistry.dom0 == "" {
		t.Fatal("setup did not start the test registry")
	}
	return registryRef(regBusybox)
}

// TestEngineRuns runs containers as Xen guests through every engine:
// vctr and ctr (containerd's runc shim with BinaryName), Docker and Podman,
// checking output and exit codes, and that nothing is left behind.
func TestEngineRuns(t *testing.T) {
	img := engineImage(t)
	r := runLong(t, "ctr images pull --plain-http "+img+" >/dev/null 2>&1; docker pull -q "+img+" >/dev/null 2>&1; podman pull -q "+img+" >/dev/null 2>&1; echo ok", 300*time.Second)
	if !strings.Contains(r.Output, "ok") {
		t.Fatalf("pulls: %s", r.Output)
	}
	before := run(t, "xl list | awk 'NR>1{print $1}' | sort; losetup -a | wc -l").Output
	cases := []struct {
		name, cmd, want string
		rc              int
	}{
		{"vxn-echo", "vxn run --rm " + img + " echo hello", "hello", 0},
		{"vctr-echo", "vctr run --rm " + img + " e2e-vctr echo hello", "hello", 0},
		{"ctr-exit42", "ctr run --rm --runc-binary " + ociRuntime + " " + img + " e2e-ctr sh -c 'exit 42'", "", 42},
		{"docker-echo", "docker run --network=none --rm --runtime vxn " + img + " echo hello", "hello", 0},
		{"docker-exit42", "docker run --network=none --rm --runtime vxn " + img + " sh -c 'exit 42'", "", 42},
		{"podman-echo", "podman run --rm --runtime vxn " + img + " echo hello", "hello", 0},
		{"podman-exit42", "podman run --rm --runtime vxn " + img + " sh -c 'exit 42'", "", 42},
		// vxn is Podman's default runtime (containers.conf.d/vxn.conf).
		{"podman-default-runtime", "podman run --rm " + img + " echo hello", "hello", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t0 := time.Now()
			r := runLong(t, c.cmd+" </dev/null 2>/tmp/engine-err; rc=$?; echo; echo rc=$rc", 300*time.Second)
			// Wall time on the host: Dom0's clock runs at its own pace under TCG.
			t.Logf("%s: %.1fs", c.cmd, time.Since(t0).Seconds())
			want := fmt.Sprintf("rc=%d\n", c.rc)
			ok := strings.Contains(r.Output, want) && (c.want == "" || strings.HasPrefix(r.Output, c.want+"\n"))
			if !ok {
				e := run(t, "cat /tmp/engine-err")
				d := run(t, engineDiag)
				t.Fatalf("%s: want output %q and %s\ngot:\n%s\nstderr:\n%s\ndiagnostics:\n%s", c.cmd, c.want, want, r.Output, e.Output, tail(d.Output, 6000))
			}
		})
	}
	t.Run("nothing-left", func(t *testing.T) {
		after := run(t, "sleep 2; xl list | awk 'NR>1{print $1}' | sort; losetup -a | wc -l").Output
		if after != before {
			d := run(t, "xl list; losetup -a")
			t.Errorf("domains or loop devices left behind by the engines:\nbefore:\n%s\nafter:\n%s\n%s", before, after, d.Output)
		}
	})
}
