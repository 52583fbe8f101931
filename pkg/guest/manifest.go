package guest

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/yaml"
)

// ManifestVersion is the only manifest schema version understood.
const ManifestVersion = "xenbundle/v1"

// Manifest is the YAML front-end: the same settings as the bitbake
// variables, one document per guest set. Field names are documented in
// docs/manifest.md.
type Manifest struct {
	APIVersion string `json:"apiVersion"`
	// Variables sets the build variables used for lookups and ${} expansion:
	// DEPLOY_DIR_IMAGE, UNPACKDIR, MACHINE, KERNEL_IMAGETYPE,
	// XEN_GUEST_IMAGE_FSTYPE. Command-line flags take precedence.
	Variables map[string]string `json:"variables,omitempty"`
	Defaults  ManifestDefaults  `json:"defaults,omitempty"`
	Guests    []ManifestGuest   `json:"guests"`
}

// ManifestDefaults are the XEN_GUEST_*_DEFAULT values.
type ManifestDefaults struct {
	Memory      *int    `json:"memory,omitempty"`
	VCPUs       *int    `json:"vcpus,omitempty"`
	Vif         *string `json:"vif,omitempty"`
	Extra       *string `json:"extra,omitempty"`
	DiskDevice  *string `json:"diskDevice,omitempty"`
	ImageSizeMB *int    `json:"imageSizeMB,omitempty"`
}

// ManifestGuest is one guest in the manifest.
type ManifestGuest struct {
	// Name is the entry name; it may carry tags ("alpine:autostart") as in
	// BUNDLED_XEN_GUESTS, or use the boolean fields.
	Name       string   `json:"name"`
	Autostart  bool     `json:"autostart,omitempty"`
	External   bool     `json:"external,omitempty"`
	DomainName string   `json:"domainName,omitempty"`
	Memory     *int     `json:"memory,omitempty"`
	VCPUs      *int     `json:"vcpus,omitempty"`
	Vifs       []string `json:"vifs,omitempty"`
	NoVif      bool     `json:"noVif,omitempty"`
	Extra      *string  `json:"extra,omitempty"`
	DiskDevice string   `json:"diskDevice,omitempty"`
	Disks      []string `json:"disks,omitempty"`
	Type       string   `json:"type,omitempty"`
	Rootfs     string   `json:"rootfs,omitempty"`
	Kernel     string   `json:"kernel,omitempty"`
	Ramdisk    string   `json:"ramdisk,omitempty"`
	ConfigFile string   `json:"configFile,omitempty"`
	Source     *struct {
		Type   string `json:"type"`
		File   string `json:"file"`
		SizeMB int    `json:"sizeMB,omitempty"`
		// BackingDir is XEN_GUEST_SOURCE_BACKING_DIR (qcow2 only).
		BackingDir string `json:"backingDir,omitempty"`
	} `json:"source,omitempty"`
	OnPoweroff string `json:"onPoweroff,omitempty"`
	OnReboot   string `json:"onReboot,omitempty"`
	OnCrash    string `json:"onCrash,omitempty"`
}

// LoadManifest reads and strictly decodes a manifest file: unknown fields
// are errors naming the file.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseManifest(path, data)
}

// ParseManifest decodes manifest bytes; name is used in errors.
func ParseManifest(name string, data []byte) (*Manifest, error) {
	var m Manifest
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: empty manifest", name)
	}
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if m.APIVersion != ManifestVersion {
		return nil, fmt.Errorf("%s: apiVersion %q is not supported (expected %q)", name, m.APIVersion, ManifestVersion)
	}
	return &m, nil
}

// Specs converts the manifest into guest specs with defaults applied;
// name is the manifest file name used as the origin in errors.
func (m *Manifest) Specs(name string) ([]*Spec, error) {
	var errs Errors
	var specs []*Spec
	for i, g := range m.Guests {
		origin := fmt.Sprintf("%s: guests[%d]", name, i)
		entries, err := ParseEntries(g.Name, origin)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(entries) != 1 {
			errs = append(errs, &Error{Setting: "name", Origin: origin, Msg: fmt.Sprintf("expected one guest name, got %q", g.Name)})
			continue
		}
		e := entries[0]
		e.Autostart = e.Autostart || g.Autostart
		e.External = e.External || g.External
		s := New(e)
		for _, k := range []string{SettingEntry, SettingName, SettingMemory, SettingVCPUs, SettingVif, SettingVifs, SettingExtra, SettingDiskDevice, SettingDisks, SettingType, SettingRootfs, SettingKernel, SettingRamdisk, SettingConfigFile, SettingSourceType, SettingSourceFile, SettingBackingDir, SettingImageSize, SettingOnPoweroff, SettingOnReboot, SettingOnCrash} {
			s.Origin[k] = origin
		}
		d := m.Defaults
		setInt := func(dst *int, vals ...*int) {
			for _, v := range vals {
				if v != nil {
					*dst = *v
					return
				}
			}
		}
		setStr := func(dst *string, vals ...*string) {
			for _, v := range vals {
				if v != nil {
					*dst = *v
					return
				}
			}
		}
		setInt(&s.Memory, g.Memory, d.Memory)
		setInt(&s.VCPUs, g.VCPUs, d.VCPUs)
		setStr(&s.Extra, g.Extra, d.Extra)
		if d.Vif != nil {
			s.Vifs = []string{*d.Vif}
		}
		if len(g.Vifs) > 0 {
			s.Vifs = g.Vifs
		}
		if g.NoVif {
			s.Vifs = nil
		}
		var dd string
		setStr(&dd, d.DiskDevice)
		if dd != "" {
			s.DiskDevice = dd
		}
		if g.DiskDevice != "" {
			s.DiskDevice = g.DiskDevice
		}
		if g.DomainName != "" {
			s.DomainName = g.DomainName
		}
		s.Disks = g.Disks
		s.Type = strings.TrimSpace(g.Type)
		s.Rootfs, s.Kernel, s.Ramdisk, s.ConfigFile = g.Rootfs, g.Kernel, g.Ramdisk, g.ConfigFile
		s.OnPoweroff, s.OnReboot, s.OnCrash = g.OnPoweroff, g.OnReboot, g.OnCrash
		if g.Source != nil {
			s.SourceType, s.SourceFile, s.ImageSizeMB = g.Source.Type, g.Source.File, g.Source.SizeMB
			s.SourceBackingDir = g.Source.BackingDir
			if s.SourceType == "" {
				errs = append(errs, &Error{Guest: s.Name, Setting: "source.type", Origin: origin, Msg: "is required when source is given"})
			}
		}
		specs = append(specs, s)
	}
	return specs, errs.Err()
}

// DefaultImageSize is the manifest's default import image size in MB.
func (m *Manifest) DefaultImageSize() int {
	if m.Defaults.ImageSizeMB != nil && *m.Defaults.ImageSizeMB > 0 {
		return *m.Defaults.ImageSizeMB
	}
	return DefaultImageSizeMB
}
