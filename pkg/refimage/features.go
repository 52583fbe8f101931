package refimage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vxn-dev/vxn/pkg/bbconf"
)

// Features is what a local.conf's image lines ask of the Dom0 image, read
// the way the spec's "To enable vxn and containerd on a Dom0 image" and its
// test tier 3 write them:
//
//	DISTRO_FEATURES:append = " virtualization vcontainer vxn"
//	IMAGE_INSTALL:append:pn-xen-image-minimal = " vxn"
//	BBMULTICONFIG = "vruntime-aarch64 vruntime-x86-64"
//
// "vxn" in both DISTRO_FEATURES and IMAGE_INSTALL installs vxn (vxn, vdkr,
// vpdmn, vxn-oci-runtime, vctr and the guest assets); "vcontainer" in
// DISTRO_FEATURES adds the container engines (containerd, Docker, Podman)
// configured with the vxn runtime. BBMULTICONFIG is accepted and ignored:
// the guest assets are built for MACHINE without a multiconfig.
type Features struct {
	// Vxn installs vxn and its guest assets into Dom0.
	Vxn bool
	// Engines installs containerd, Docker and Podman into Dom0.
	Engines bool
	// Notes say what the lines added (or why one is ignored), with the
	// file:line they came from.
	Notes []string
}

// FeaturesOf reads DISTRO_FEATURES, IMAGE_INSTALL (with the image's :pn-
// overrides active in d) and BBMULTICONFIG.
func FeaturesOf(d *bbconf.Data) (Features, error) {
	var f Features
	words := func(name string) (map[string]bool, string, error) {
		v, _, err := d.Get(name)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", name, err)
		}
		m := map[string]bool{}
		for _, w := range strings.Fields(v) {
			m[w] = true
		}
		return m, origin(d, name), nil
	}
	df, dfAt, err := words("DISTRO_FEATURES")
	if err != nil {
		return f, err
	}
	ii, iiAt, err := words("IMAGE_INSTALL")
	if err != nil {
		return f, err
	}
	switch {
	case ii["vxn"] && !df["vxn"]:
		return f, fmt.Errorf("IMAGE_INSTALL has vxn (%s) but DISTRO_FEATURES lacks vxn: the vxn recipe needs the distro feature; add DISTRO_FEATURES:append = \" virtualization vcontainer vxn\"", iiAt)
	case ii["vxn"]:
		f.Vxn = true
		f.Notes = append(f.Notes, fmt.Sprintf("IMAGE_INSTALL vxn (%s) with DISTRO_FEATURES vxn (%s): vxn, vdkr, vpdmn, vxn-oci-runtime, vctr, the guest kernel and initramfs, the offline image busybox", iiAt, dfAt))
	case df["vxn"]:
		f.Notes = append(f.Notes, fmt.Sprintf("DISTRO_FEATURES has vxn (%s) but IMAGE_INSTALL of the image lacks vxn: vxn is not installed (add IMAGE_INSTALL:append:pn-xen-image-minimal = \" vxn\")", dfAt))
	}
	if df["vcontainer"] {
		f.Engines = true
		f.Notes = append(f.Notes, fmt.Sprintf("DISTRO_FEATURES vcontainer (%s): containerd, Docker and Podman with the vxn runtime configured", dfAt))
	}
	if v, ok, _ := d.Get("BBMULTICONFIG"); ok && strings.TrimSpace(v) != "" {
		f.Notes = append(f.Notes, fmt.Sprintf("BBMULTICONFIG %q (%s) ignored: the vxn guest assets are built for MACHINE without a multiconfig", strings.TrimSpace(v), origin(d, "BBMULTICONFIG")))
	}
	return f, nil
}

// origin is the file:line of a variable's last assignment, or "default".
func origin(d *bbconf.Data, name string) string {
	o := d.Origin(name)
	if len(o) == 0 {
		return "not set"
	}
	return o[len(o)-1].String()
}

// FindModuleDir finds the vxn source tree that Dom0's vxn is built from:
// $VXN_SOURCE_DIR, else the directory holding vxn's go.mod at or above the
// working directory, else at or above the running program's directory.
func FindModuleDir() (string, error) {
	if d := os.Getenv("VXN_SOURCE_DIR"); d != "" {
		if isVxnModule(d) {
			return filepath.Abs(d)
		}
		return "", fmt.Errorf("VXN_SOURCE_DIR=%s: no go.mod of %s there", d, modulePath)
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			starts = append(starts, filepath.Dir(exe))
		}
	}
	for _, dir := range starts {
		for {
			if isVxnModule(dir) {
				return dir, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", errors.New("vxn in the Dom0 image is built from vxn's source tree: run xenbundle inside a checkout, or set VXN_SOURCE_DIR to one")
}

const modulePath = "github.com/vxn-dev/vxn"

func isVxnModule(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(first) == "module "+modulePath
}
