// Package vxnconf is the Dom0 configuration shared by vxn and
// vxn-oci-runtime: the file /etc/vxn/config.yaml (Config) and the host
// defaults it overrides — the bridge, the image store, the containers'
// state directory, the guest kernel and initramfs, and the toolstack.
//
// Every key of the file is optional and unknown keys are errors. vxn's
// command-line flags override the file; the OCI runtime has no such flags
// and takes everything from it. registry_mirrors is kept as written: only
// vxn pulls images, and it parses the mirrors (pkg/oci) itself.
package vxnconf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"sigs.k8s.io/yaml"

	"github.com/vxn-dev/vxn/pkg/toolstack"
)

// Host defaults.
const (
	// DefaultFile is the config file read when VXN_CONFIG (and vxn's
	// --config) are not given; it may be absent.
	DefaultFile = "/etc/vxn/config.yaml"
	// FileEnv is the environment variable naming another config file,
	// which must then exist.
	FileEnv = "VXN_CONFIG"
	// DefaultAssetRoot holds the guest assets, per architecture:
	// <root>/<arch>/{vmlinux|bzImage|Image, initramfs.cpio.gz}.
	DefaultAssetRoot = "/usr/share/vxn"
	// DefaultBridge is the bridge guests with a network are attached to.
	DefaultBridge = "xenbr0"
	// DefaultImageStore is the root of vxn's image store (pulled images,
	// their guest disks, and the OCI runtime's disk cache).
	DefaultImageStore = "/var/lib/vxn"
	// DefaultRuntimeDir holds running containers' state: a tmpfs on
	// systemd hosts, so nothing survives a reboot (and nor do domains).
	DefaultRuntimeDir = "/run/vxn/containers"
)

// Config is /etc/vxn/config.yaml. Every field is optional; command-line
// flags override it. Unknown keys are errors.
type Config struct {
	// Kernel and Initramfs are the guest kernel and vxn initramfs
	// (default: found under DefaultAssetRoot, see FindAssets).
	Kernel    string `json:"kernel,omitempty"`
	Initramfs string `json:"initramfs,omitempty"`
	// MemoryMB and VCPUs are the default guest size.
	MemoryMB int `json:"memory,omitempty"`
	VCPUs    int `json:"vcpus,omitempty"`
	// ScratchMB, when set, gives containers a scratch disk of that size
	// for their writable layer instead of a tmpfs.
	ScratchMB int `json:"scratch,omitempty"`
	// Type is the guest type (pv, pvh).
	Type string `json:"type,omitempty"`
	// Bridge is the bridge of guests with a network (DefaultBridge).
	Bridge string `json:"bridge,omitempty"`
	// ImageStore is the image store root (DefaultImageStore).
	ImageStore string `json:"image_store,omitempty"`
	// RuntimeDir holds running containers' state (DefaultRuntimeDir).
	RuntimeDir string `json:"runtime_dir,omitempty"`
	// XL is the xl program (default "xl" from PATH).
	XL string `json:"xl,omitempty"`
	// RegistryMirrors are Docker Hub mirrors, like docker's
	// "registry-mirrors": "host[:port]", "http://host[:port]" (plain HTTP)
	// or "https://host[:port]". A pull of a Docker Hub image (alpine,
	// docker.io/library/alpine:latest) tries each mirror in order, at the
	// same repository path, then Docker Hub; the image is stored under its
	// Docker Hub name. Images of other registries are not mirrored. They
	// are not checked here: vxn, which pulls, parses them.
	RegistryMirrors []string `json:"registry_mirrors,omitempty"`
}

// Parse parses a config file's content; name is used in errors.
func Parse(name string, b []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if c.MemoryMB < 0 || c.VCPUs < 0 || c.ScratchMB < 0 {
		return nil, fmt.Errorf("%s: memory, vcpus and scratch must not be negative", name)
	}
	switch c.Type {
	case "", "pv", "pvh":
	default:
		return nil, fmt.Errorf("%s: type: %q is not pv or pvh", name, c.Type)
	}
	return &c, nil
}

// Load reads the config file at path; a missing file is an empty config
// when optional is set.
func Load(path string, optional bool) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && optional {
		return &Config{}, nil
	}
	if err != nil {
		return nil, err
	}
	return Parse(path, b)
}

// File returns the config file of a process whose environment lookupEnv
// reads: $VXN_CONFIG, which must exist, else DefaultFile, which may not
// (optional).
func File(lookupEnv func(string) (string, bool)) (path string, optional bool) {
	if p, ok := lookupEnv(FileEnv); ok && p != "" {
		return p, false
	}
	return DefaultFile, true
}

// BridgeName is the bridge of guests with a network: Bridge, else
// DefaultBridge.
func (c *Config) BridgeName() string {
	if c.Bridge != "" {
		return c.Bridge
	}
	return DefaultBridge
}

// ImageStoreRoot is the image store root: ImageStore, else
// DefaultImageStore.
func (c *Config) ImageStoreRoot() string {
	if c.ImageStore != "" {
		return c.ImageStore
	}
	return DefaultImageStore
}

// Toolstack is the toolstack of a process whose environment lookupEnv
// reads: the one named by $VXN_TOOLSTACK (toolstack.Env; unset is xl),
// running the xl program of the xl: key. It is the one place vxn and the
// OCI runtime choose it; their container monitors are told the choice.
func (c *Config) Toolstack(lookupEnv func(string) (string, bool)) toolstack.Selection {
	name, _ := lookupEnv(toolstack.Env)
	return toolstack.Selection{Name: name, XL: c.XL}
}

// AssetArch is the directory name of the running architecture's assets
// (Yocto's names: x86_64, aarch64).
func AssetArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}

// guestTypes is the default guest type per asset architecture: PV on
// x86 (no nested paging needed, the fastest start under TCG), and PVH on
// Arm, whose Xen has no other guest type (type "pv" is converted with a
// warning, "hvm" refused).
var guestTypes = map[string]string{"x86_64": "pv", "aarch64": "pvh"}

// DefaultGuestType is the guest type used when the configuration sets
// none, for the running architecture ("" lets xl choose).
func DefaultGuestType() string { return guestTypes[AssetArch()] }

// FindAssets returns the guest kernel and initramfs: the given paths, else
// the first of vmlinux, bzImage, Image and initramfs.cpio.gz in
// root/<arch>/. The error lists what was searched and ends with hint, in
// parentheses, when hint is not empty: how the caller's user gives the
// paths.
func FindAssets(root, kernel, initramfs, hint string) (string, string, error) {
	if hint != "" {
		hint = " (" + hint + ")"
	}
	dir := filepath.Join(root, AssetArch())
	if kernel == "" {
		var tried []string
		for _, k := range []string{"vmlinux", "bzImage", "Image"} {
			p := filepath.Join(dir, k)
			tried = append(tried, p)
			if _, err := os.Stat(p); err == nil {
				kernel = p
				break
			}
		}
		if kernel == "" {
			return "", "", fmt.Errorf("no guest kernel: none of %v exists%s", tried, hint)
		}
	}
	if initramfs == "" {
		initramfs = filepath.Join(dir, "initramfs.cpio.gz")
	}
	for _, p := range []string{kernel, initramfs} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("guest asset: %w%s", err, hint)
		}
	}
	return kernel, initramfs, nil
}

// GuestRequest is what a front asks of one container's guest: explicit
// values (flags, config.json) win over the configuration; zero values take
// it. Network is "none" (or "") or "bridge".
type GuestRequest struct {
	Kernel, Initramfs          string
	MemoryMB, VCPUs, ScratchMB int
	Network                    string
}

// Guest is the host side of one container's guest, resolved from a
// GuestRequest and the configuration: the kernel and initramfs found, the
// size, the guest type and the bridge ("" without a network).
type Guest struct {
	Kernel, Initramfs          string
	MemoryMB, VCPUs, ScratchMB int
	Type, Bridge               string
}

// Guest resolves r against the configuration and the asset root; hint
// tells the user where to set the kernel when none is found.
func (c *Config) Guest(assetRoot string, r GuestRequest, hint string) (Guest, error) {
	g := Guest{MemoryMB: r.MemoryMB, VCPUs: r.VCPUs, ScratchMB: r.ScratchMB, Type: c.Type}
	if g.Type == "" {
		g.Type = DefaultGuestType()
	}
	switch r.Network {
	case "none", "":
	case "bridge":
		g.Bridge = c.BridgeName()
	default:
		return Guest{}, fmt.Errorf("network %q: expected none or bridge", r.Network)
	}
	kernel, initramfs := r.Kernel, r.Initramfs
	if kernel == "" {
		kernel = c.Kernel
	}
	if initramfs == "" {
		initramfs = c.Initramfs
	}
	var err error
	if g.Kernel, g.Initramfs, err = FindAssets(assetRoot, kernel, initramfs, hint); err != nil {
		return Guest{}, err
	}
	if g.MemoryMB == 0 {
		g.MemoryMB = c.MemoryMB
	}
	if g.VCPUs == 0 {
		g.VCPUs = c.VCPUs
	}
	if g.ScratchMB == 0 {
		g.ScratchMB = c.ScratchMB
	}
	return g, nil
}
