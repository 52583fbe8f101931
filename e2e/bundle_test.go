package e2e

// Issue 4 on real Xen: a guest that comes only from an installed bundle
// package. During the image build (refimage.Options.Packages) the suite
// builds an Alpine-style "third-party" minirootfs tarball from the image's
// busybox, packs examples/bundles/alpine-xen-guest-bundle_3.23.bb's
// equivalent into a .deb with the bundle packer, and installs the .deb
// into the Dom0 staging rootfs with dpkg --root; refimage's merge then
// deploys it (and removes the payload and the dpkg registration).

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/refimage"
)

// Bundle names.
const (
	bundlePkg   = "alpine-xen-guest-bundle"
	bundleGuest = "alpine"
	// bundleMarker is echoed by the guest's shell through $ENV (the
	// kernel passes ENV= from the command line to init).
	bundleMarker = "alpine-bundle: shell up"
	// minirootfsVersion names the tarball alpine-minirootfs-VERSION-ARCH.tar.gz.
	minirootfsVersion = "3.23.3"
)

// minirootfs is the tarball's name for the machine's architecture.
func minirootfs() string {
	return "alpine-minirootfs-" + minirootfsVersion + "-" + s.machine.QEMUArch + ".tar.gz"
}

// bundleRecipe is examples/bundles/alpine-xen-guest-bundle_3.23.bb for
// the machine with the test's tarball, a smaller image and memory to save time,
// and the reference guest initramfs as ramdisk (the Debian kernel needs
// its xen-blkfront and ext4 modules).
func bundleRecipe() string {
	return `
SUMMARY = "Alpine Linux minirootfs Xen guest bundle (test)"
LICENSE = "MIT"
inherit xen-guest-bundle
XEN_GUEST_BUNDLES = "alpine:autostart:external"
XEN_GUEST_SOURCE_TYPE[alpine] = "rootfs_tar"
XEN_GUEST_SOURCE_FILE[alpine] = "` + minirootfs() + `"
XEN_GUEST_IMAGE_SIZE[alpine] = "32"
XEN_GUEST_MEMORY[alpine] = "128"
XEN_GUEST_EXTRA[alpine] = "root=/dev/xvda ro console=hvc0 init=/bin/sh ENV=/etc/e2e-marker.sh"
XEN_GUEST_RAMDISK[alpine] = "xen-guest-initramfs-${MACHINE}.cpio.gz"
XEN_GUEST_VIF[alpine] = ""
`
}

// writeMinirootfs writes an Alpine-minirootfs-like tarball: busybox with
// its applet links, no init system (/sbin/init dangles, as in Alpine).
func writeMinirootfs(busybox, dst string) error {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	mt := time.Unix(1700000000, 0)
	add := func(h *tar.Header, body []byte) error {
		h.ModTime, h.Format = mt, tar.FormatPAX
		if h.Mode == 0 {
			h.Mode = 0o755
		}
		h.Size = int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		_, err := tw.Write(body)
		return err
	}
	for _, d := range []string{"bin/", "sbin/", "etc/", "dev/", "proc/", "sys/", "tmp/", "root/", "usr/", "usr/bin/", "var/"} {
		if err := add(&tar.Header{Name: d, Typeflag: tar.TypeDir}, nil); err != nil {
			return err
		}
	}
	if err := add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg}, bb); err != nil {
		return err
	}
	for _, a := range []string{"sh", "ash", "cat", "echo", "ls", "mount", "uname", "poweroff"} {
		if err := add(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox"}, nil); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/alpine-release":   "3.23.3\n",
		"etc/hostname":         "alpine\n",
		"etc/e2e-marker.sh":    "echo '" + bundleMarker + "'\n",
		"etc/os-release":       "NAME=\"Alpine Linux (e2e stand-in)\"\nID=alpine\n",
		"etc/passwd":           "root:x:0:0:root:/root:/bin/sh\n",
		"etc/group":            "root:x:0:root\n",
		"etc/motd":             "built by the vxn runtime suite from the image's busybox\n",
		"etc/apk/world":        "busybox\n",
		"etc/securetty":        "hvc0\n",
		"etc/shells":           "/bin/sh\n",
		"etc/inittab":          "# no init system in a minirootfs\n",
		"root/.ash_history":    "",
		"usr/bin/.keep":        "",
		"var/.keep":            "",
		"sbin/.keep":           "",
		"etc/apk/.keep":        "",
		"etc/apk/arch":         s.machine.QEMUArch + "\n",
		"etc/apk/repositories": "https://dl-cdn.alpinelinux.org/alpine/v3.23/main\n",
	}
	if err := add(&tar.Header{Name: "etc/apk/", Typeflag: tar.TypeDir}, nil); err != nil {
		return err
	}
	for _, name := range sortedKeys(files) {
		if err := add(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}, []byte(files[name])); err != nil {
			return err
		}
	}
	if err := add(&tar.Header{Name: "sbin/init", Typeflag: tar.TypeSymlink, Linkname: "/bin/openrc-init"}, nil); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}

// bundlePackages is refimage.Options.Packages: it runs in the image
// build, packs the bundle and returns the .deb to install.
func bundlePackages(ctx context.Context, deployDir, rootDir string) ([]string, error) {
	work := filepath.Join(filepath.Dir(deployDir), "bundle-work")
	if err := os.RemoveAll(work); err != nil {
		return nil, err
	}
	unpack := filepath.Join(work, "downloads")
	if err := os.MkdirAll(unpack, 0o755); err != nil {
		return nil, err
	}
	if err := writeMinirootfs(filepath.Join(rootDir, "usr/bin/busybox"), filepath.Join(unpack, minirootfs())); err != nil {
		return nil, fmt.Errorf("minirootfs: %w", err)
	}
	t0 := time.Now()
	res, err := refimage.PackBundle(ctx, refimage.BundleOptions{Name: bundlePkg, Version: "3.23", Recipe: []byte(bundleRecipe()),
		RecipeName: bundlePkg + "_3.23.bb", Machine: *flagMachine, DeployDir: deployDir, UnpackDir: unpack,
		Output: filepath.Join(work, "out"), CacheDir: filepath.Join(filepath.Dir(deployDir), "xenbundle-cache"),
		Log: logf, Notice: func(m string) { logf("pack notice: %s", m) }})
	if err != nil {
		return nil, err
	}
	st, _ := os.Stat(res.Path)
	logf("bundle package %s: %d bytes (payload %d bytes) packed in %.1fs", filepath.Base(res.Path), st.Size(), res.PayloadBytes, time.Since(t0).Seconds())
	return []string{res.Path}, nil
}

// TestBundlePackage checks the guest deployed from the installed bundle
// package: started by xendomains, shell reached on its console, payload
// and package registration gone from Dom0.
func TestBundlePackage(t *testing.T) {
	v := vm(t)
	need(t, "xl")
	scale := time.Duration(v.Scale())
	// The Dom0's autostart check first: its report lines go to the console
	// that command output shares, and it watches this guest, which the
	// test destroys, for its first minute. (This test runs first; on a
	// fast machine the check is still running.)
	if rep := autostartReport(t); !strings.Contains(rep[bundleGuest], " ok") {
		t.Errorf("autostart report for %s: %q, want ok", bundleGuest, rep[bundleGuest])
	}
	t.Run("deployed", func(t *testing.T) {
		r := run(t, "ls /etc/xen/auto/ /var/lib/xen/images/; cat /etc/xen/"+bundleGuest+".cfg")
		if r.Status != 0 || !strings.Contains(r.Output, bundleGuest+".cfg") || !strings.Contains(r.Output, "init=/bin/sh") {
			t.Fatalf("bundle guest not deployed: %d %s", r.Status, r.Output)
		}
	})
	t.Run("payload-removed", func(t *testing.T) {
		if r := run(t, "ls -A /usr/share/xen-guest-bundles/ 2>&1"); strings.Contains(r.Output, bundlePkg) {
			t.Errorf("bundle payload left in Dom0: %s", r.Output)
		}
	})
	t.Run("dpkg-deregistered", func(t *testing.T) {
		r := run(t, "test -f /var/lib/dpkg/status && grep -c '^Package: "+bundlePkg+"$' /var/lib/dpkg/status; ls /var/lib/dpkg/info/ | grep -c '^"+bundlePkg+"\\.'")
		if r.Output != "0\n0\n" {
			t.Errorf("dpkg still knows %s (status stanzas, info files): %q", bundlePkg, r.Output)
		}
	})
	t.Run("autostarted", func(t *testing.T) {
		if ok, out := domState(t, bundleGuest); !ok {
			t.Fatalf("xendomains did not start %s: %s", bundleGuest, out)
		}
	})
	t.Run("shell-prompt", func(t *testing.T) {
		log := "/var/log/xen/console/guest-" + bundleGuest + ".log"
		t0 := time.Now()
		for {
			r := run(t, "cat "+log+" 2>/dev/null")
			if strings.Contains(r.Output, bundleMarker) {
				t.Logf("shell marker on the console %.1fs after the check began; console tail: %q", time.Since(t0).Seconds(), tail(r.Output, 200))
				break
			}
			if time.Since(t0) > 60*time.Second*scale {
				t.Fatalf("no shell on %s's console after %v: %s", bundleGuest, time.Since(t0), tail(r.Output, 1500))
			}
			time.Sleep(2 * time.Second)
		}
	})
	// The shell is PID 1: an orderly shutdown has no /sbin/poweroff to
	// run, so destroy it instead of leaving it to xendomains at poweroff.
	if r := run(t, "xl destroy "+bundleGuest); r.Status != 0 {
		t.Errorf("xl destroy %s: %s", bundleGuest, r.Output)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
