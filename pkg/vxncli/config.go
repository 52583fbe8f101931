package vxncli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"sigs.k8s.io/yaml"

	"github.com/vxn-dev/vxn/pkg/oci"
)

// DefaultConfigFile is read when --config (and VXN_CONFIG) are not given;
// it may be absent.
const DefaultConfigFile = "/etc/vxn/config.yaml"

// DefaultAssetRoot holds the guest assets, per architecture:
// <root>/<arch>/{vmlinux|bzImage|Image, initramfs.cpio.gz}.
const DefaultAssetRoot = "/usr/share/vxn"

// Config is /etc/vxn/config.yaml. Every field is optional; command-line
// flags override it. Unknown keys are errors.
type Config struct {
	// Kernel and Initramfs are the guest kernel and vxn initramfs.
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
	// Bridge is the bridge of --network bridge (default xenbr0).
	Bridge string `json:"bridge,omitempty"`
	// ImageStore is the image store root (default /var/lib/vxn).
	ImageStore string `json:"image_store,omitempty"`
	// RuntimeDir holds running containers' state (default
	// /run/vxn/containers).
	RuntimeDir string `json:"runtime_dir,omitempty"`
	// XL is the xl program (default "xl" from PATH).
	XL string `json:"xl,omitempty"`
	// RegistryMirrors are Docker Hub mirrors, like docker's
	// "registry-mirrors": "host[:port]", "http://host[:port]" (plain HTTP)
	// or "https://host[:port]". A pull of a Docker Hub image (alpine,
	// docker.io/library/alpine:latest) tries each mirror in order, at the
	// same repository path, then Docker Hub; the image is stored under its
	// Docker Hub name. Images of other registries are not mirrored.
	RegistryMirrors []string `json:"registry_mirrors,omitempty"`
}

// Mirrors returns RegistryMirrors parsed (see oci.ParseMirror).
func (c *Config) Mirrors() ([]oci.Mirror, error) {
	return oci.ParseMirrors(c.RegistryMirrors)
}

// ParseConfig parses a config file's content; name is used in errors.
func ParseConfig(name string, b []byte) (*Config, error) {
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
	if _, err := c.Mirrors(); err != nil {
		return nil, fmt.Errorf("%s: registry_mirrors: %w", name, err)
	}
	return &c, nil
}

// LoadConfig reads the config file at path; a missing file is an empty
// config when optional is set.
func LoadConfig(path string, optional bool) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && optional {
		return &Config{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseConfig(path, b)
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

// FindAssets returns the guest kernel and initramfs: the given paths, else
// the first of vmlinux, bzImage, Image and initramfs.cpio.gz in
// root/<arch>/. The error lists what was searched.
func FindAssets(root, kernel, initramfs string) (string, string, error) {
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
			return "", "", fmt.Errorf("no guest kernel: none of %v exists (use --kernel or kernel: in %s)", tried, DefaultConfigFile)
		}
	}
	if initramfs == "" {
		initramfs = filepath.Join(dir, "initramfs.cpio.gz")
	}
	for _, p := range []string{kernel, initramfs} {
		if _, err := os.Stat(p); err != nil {
			return "", "", fmt.Errorf("guest asset: %w (use --kernel/--initramfs or %s)", err, DefaultConfigFile)
		}
	}
	return kernel, initramfs, nil
}
