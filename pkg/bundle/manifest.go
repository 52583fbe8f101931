package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/vxn-dev/vxn/pkg/guest"
)

// SchemaVersion is the manifest.json schema written by Pack and the newest
// one ParseManifest understands. Version 1 fields are documented on
// Manifest, Guest and File. A reader rejects a newer version with a clear
// error instead of guessing; a new field that old readers may ignore does
// not need a new version, a changed meaning does.
const SchemaVersion = 1

// ManifestFile and LineManifestFile are the names of the two manifests in a
// bundle directory: our versioned JSON one, and upstream's line format
// (`guest:rootfs_file:kernel_file:autostart`) kept for compatibility with
// meta-virtualization's merge_installed_xen_bundles.
const (
	ManifestFile     = "manifest.json"
	LineManifestFile = "manifest"
)

// File roles in Guest.Files.
const (
	RoleRootfs  = "rootfs"
	RoleKernel  = "kernel"
	RoleRamdisk = "ramdisk"
	RoleConfig  = "config"
)

// Kernel modes (upstream's three XEN_GUEST_KERNEL modes).
const (
	KernelShared = "shared" // the host's ${KERNEL_IMAGETYPE}
	KernelCustom = "custom" // XEN_GUEST_KERNEL names a file
	KernelNone   = "none"   // HVM without a kernel
)

// RedistributionNotice is printed once at pack time when a bundle holds
// `:external` guests, as upstream's do_compile prefunc warns, and recorded
// in the manifest of each such guest.
const RedistributionNotice = "guest image is third-party (:external): check that you have the right to redistribute it before publishing this bundle"

// Manifest is the content of manifest.json: what a bundle holds, with a
// digest of every payload file so that merge can verify it.
type Manifest struct {
	// SchemaVersion is SchemaVersion when written by this version.
	SchemaVersion int `json:"schemaVersion"`
	// Bundle is the bundle (package) name: the directory name under
	// /usr/share/xen-guest-bundles.
	Bundle string `json:"bundle"`
	// Version is the bundle (package) version.
	Version string `json:"version"`
	// Guests are the bundled guests, sorted by name.
	Guests []Guest `json:"guests"`
}

// Guest is one bundled guest.
type Guest struct {
	// Name is the entry name: cfg file name and autostart link name.
	Name string `json:"name"`
	// DomainName is the xl `name =` value.
	DomainName string `json:"domainName"`
	Autostart  bool   `json:"autostart"`
	External   bool   `json:"external"`
	// Type is pv, pvh or hvm; empty on Arm machines, whose Xen has one
	// guest type (the xl config then has no type key).
	Type string `json:"type"`
	// KernelMode is shared, custom or none (see the Kernel* constants).
	KernelMode string `json:"kernelMode"`
	// Memory is in MB; VCPUs the vcpu count.
	Memory int `json:"memory"`
	VCPUs  int `json:"vcpus"`
	// DiskDevice is the root disk's vdev (xvda), needed to find the root
	// disk in the config at merge time.
	DiskDevice string `json:"diskDevice"`
	// ConfigFrom is "generated" or "custom".
	ConfigFrom string `json:"configFrom"`
	// Files are the payload files of this guest (paths relative to the
	// bundle directory: images/… and configs/<name>.cfg). A kernel shared
	// by several guests is listed under each of them.
	Files []File `json:"files"`
	// Notice is RedistributionNotice for external guests.
	Notice string `json:"notice,omitempty"`
}

// File is one payload file.
type File struct {
	Role   string `json:"role"`
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// File returns the guest's file with role, if any.
func (g *Guest) File(role string) (File, bool) {
	for _, f := range g.Files {
		if f.Role == role {
			return f, true
		}
	}
	return File{}, false
}

// Marshal returns the canonical manifest.json bytes: indented, guests in
// name order, files in role order, and a final newline.
func (m *Manifest) Marshal() ([]byte, error) {
	c := *m
	c.Guests = append([]Guest(nil), m.Guests...)
	sort.Slice(c.Guests, func(i, j int) bool { return c.Guests[i].Name < c.Guests[j].Name })
	for i := range c.Guests {
		fs := append([]File(nil), c.Guests[i].Files...)
		sort.SliceStable(fs, func(a, b int) bool { return roleOrder(fs[a].Role) < roleOrder(fs[b].Role) })
		c.Guests[i].Files = fs
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func roleOrder(r string) int {
	switch r {
	case RoleRootfs:
		return 0
	case RoleKernel:
		return 1
	case RoleRamdisk:
		return 2
	case RoleConfig:
		return 3
	}
	return 4
}

// LineManifest returns upstream's line manifest: one
// `guest:rootfs_file:kernel_file:autostart_flag` line per guest, with an
// empty kernel field for HVM guests.
func (m *Manifest) LineManifest() []byte {
	var b strings.Builder
	for _, g := range m.Guests {
		rootfs, _ := g.File(RoleRootfs)
		kernel, _ := g.File(RoleKernel)
		auto := ""
		if g.Autostart {
			auto = "autostart"
		}
		fmt.Fprintf(&b, "%s:%s:%s:%s\n", g.Name, path.Base(rootfs.Path), baseOrEmpty(kernel.Path), auto)
	}
	return []byte(b.String())
}

func baseOrEmpty(p string) string {
	if p == "" {
		return ""
	}
	return path.Base(p)
}

// ManifestError is a problem in a manifest.json, with its position.
type ManifestError struct {
	// Name is the file name (or another label) given to ParseManifest.
	Name string
	// Line and Col are 1-based; 0 when the problem is not at one place.
	Line, Col int
	Msg       string
}

func (e *ManifestError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.Name, e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.Name, e.Msg)
}

// MaxManifestSize bounds manifest.json; a larger file is rejected before
// decoding.
const MaxManifestSize = 4 << 20

// ParseManifest decodes and validates manifest.json bytes; name labels
// errors. Unknown fields, a schema version other than 1, invalid names,
// paths outside images/ and configs/, malformed digests and guests without
// a rootfs or config are errors.
func ParseManifest(name string, data []byte) (*Manifest, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &ManifestError{Name: name, Msg: "empty file: expected a JSON manifest object"}
	}
	if len(data) > MaxManifestSize {
		return nil, &ManifestError{Name: name, Msg: fmt.Sprintf("%d bytes, more than the %d allowed", len(data), MaxManifestSize)}
	}
	// Version first, so that a newer manifest gets the right message and
	// not an "unknown field" one.
	var head struct {
		SchemaVersion *int `json:"schemaVersion"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, jsonError(name, data, err)
	}
	switch {
	case head.SchemaVersion == nil:
		return nil, &ManifestError{Name: name, Msg: "schemaVersion is missing: not a xen guest bundle manifest.json"}
	case *head.SchemaVersion > SchemaVersion:
		return nil, &ManifestError{Name: name, Msg: fmt.Sprintf("schemaVersion %d is newer than this xenbundle understands (%d): upgrade xenbundle", *head.SchemaVersion, SchemaVersion)}
	case *head.SchemaVersion < 1:
		return nil, &ManifestError{Name: name, Msg: fmt.Sprintf("schemaVersion %d is invalid (expected %d)", *head.SchemaVersion, SchemaVersion)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, jsonError(name, data, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		off := int(dec.InputOffset())
		l, c := lineCol(data, off)
		return nil, &ManifestError{Name: name, Line: l, Col: c, Msg: "unexpected data after the manifest object"}
	}
	if err := m.Validate(); err != nil {
		return nil, &ManifestError{Name: name, Msg: err.Error()}
	}
	return &m, nil
}

func jsonError(name string, data []byte, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		l, c := lineCol(data, int(syn.Offset)-1) // Offset counts the bad byte
		return &ManifestError{Name: name, Line: l, Col: c, Msg: "invalid JSON: " + syn.Error()}
	case errors.As(err, &typ):
		l, c := lineCol(data, int(typ.Offset))
		field := typ.Field
		if field == "" {
			field = "(top level)"
		}
		return &ManifestError{Name: name, Line: l, Col: c, Msg: fmt.Sprintf("field %s: expected %s, found JSON %s", field, typ.Type, typ.Value)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &ManifestError{Name: name, Msg: "invalid JSON: unexpected end of file"}
	}
	return &ManifestError{Name: name, Msg: err.Error()}
}

// lineCol converts a byte offset to a 1-based line and column.
func lineCol(data []byte, off int) (int, int) {
	if off > len(data) {
		off = len(data)
	}
	if off < 0 {
		off = 0
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}

var (
	bundleNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]*$`)
	versionRE    = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidBundleName reports whether n is usable as a bundle and package name
// (Debian rules: lower case letters, digits, '+', '-', '.', starting with a
// letter or digit, at least two characters).
func ValidBundleName(n string) bool {
	return len(n) >= 2 && len(n) <= 100 && bundleNameRE.MatchString(n)
}

// ValidVersion reports whether v is usable as a package version (starts
// with a digit; letters, digits, '.', '+', '~', '-').
func ValidVersion(v string) bool { return len(v) <= 100 && versionRE.MatchString(v) }

// Validate checks the manifest's content; ParseManifest calls it.
func (m *Manifest) Validate() error {
	var errs []string
	add := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if m.SchemaVersion != SchemaVersion {
		add("schemaVersion %d, expected %d", m.SchemaVersion, SchemaVersion)
	}
	if !ValidBundleName(m.Bundle) {
		add("bundle %q: invalid bundle name (lower case letters, digits, '+', '-', '.')", m.Bundle)
	}
	if !ValidVersion(m.Version) {
		add("version %q: invalid (must start with a digit; letters, digits, '.', '+', '~', '-')", m.Version)
	}
	if len(m.Guests) == 0 {
		add("no guests")
	}
	names := map[string]bool{}
	domains := map[string]string{}
	digests := map[string]string{} // path → sha256, identical for shared files
	for i, g := range m.Guests {
		where := fmt.Sprintf("guests[%d]", i)
		if g.Name != "" {
			where = fmt.Sprintf("guest %q", g.Name)
		}
		if !guest.ValidName(g.Name) {
			add("%s: invalid guest name %q", where, g.Name)
		} else if names[g.Name] {
			add("%s: listed twice", where)
		}
		names[g.Name] = true
		if !guest.ValidName(g.DomainName) {
			add("%s: invalid domainName %q", where, g.DomainName)
		} else if prev, ok := domains[g.DomainName]; ok {
			add("%s: domainName %q is also used by guest %q", where, g.DomainName, prev)
		} else {
			domains[g.DomainName] = g.Name
		}
		switch g.Type {
		case guest.TypePV, guest.TypePVH, guest.TypeHVM, "":
		default:
			add("%s: type %q (expected pv, pvh, hvm, or empty for the machine's one guest type on Arm)", where, g.Type)
		}
		switch g.KernelMode {
		case KernelShared, KernelCustom:
		case KernelNone:
			if g.Type != guest.TypeHVM {
				add("%s: kernelMode none needs type hvm, not %q", where, g.Type)
			}
		default:
			add("%s: kernelMode %q (expected shared, custom or none)", where, g.KernelMode)
		}
		if g.Memory < guest.MinMemory || g.Memory > guest.MaxMemory {
			add("%s: memory %d MB out of range (%d..%d)", where, g.Memory, guest.MinMemory, guest.MaxMemory)
		}
		if g.VCPUs < 1 || g.VCPUs > guest.MaxVCPUs {
			add("%s: vcpus %d out of range (1..%d)", where, g.VCPUs, guest.MaxVCPUs)
		}
		if g.DiskDevice == "" || strings.ContainsAny(g.DiskDevice, ",/ \"'") {
			add("%s: invalid diskDevice %q", where, g.DiskDevice)
		}
		switch g.ConfigFrom {
		case "generated", "custom":
		default:
			add("%s: configFrom %q (expected generated or custom)", where, g.ConfigFrom)
		}
		roles := map[string]bool{}
		for _, f := range g.Files {
			if roles[f.Role] {
				add("%s: two %s files", where, f.Role)
			}
			roles[f.Role] = true
			if msg := checkFile(g, f); msg != "" {
				add("%s: file %q: %s", where, f.Path, msg)
				continue
			}
			if prev, ok := digests[f.Path]; ok && prev != f.SHA256 {
				add("%s: file %q is listed with two different digests", where, f.Path)
			}
			digests[f.Path] = f.SHA256
		}
		for _, r := range []string{RoleRootfs, RoleConfig} {
			if !roles[r] {
				add("%s: no %s file", where, r)
			}
		}
		if g.KernelMode == KernelNone && roles[RoleKernel] {
			add("%s: kernelMode none but a kernel file is listed", where)
		}
		if g.KernelMode != KernelNone && !roles[RoleKernel] && g.Type != guest.TypeHVM {
			add("%s: kernelMode %s but no kernel file", where, g.KernelMode)
		}
	}
	if len(errs) > 0 {
		if len(errs) > 20 {
			errs = append(errs[:20], fmt.Sprintf("… and %d more problems", len(errs)-20))
		}
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// checkFile validates one payload file entry; "" means fine.
func checkFile(g Guest, f File) string {
	switch f.Role {
	case RoleRootfs, RoleKernel, RoleRamdisk:
		if !strings.HasPrefix(f.Path, "images/") {
			return "a " + f.Role + " must be under images/"
		}
	case RoleConfig:
		if f.Path != "configs/"+g.Name+".cfg" {
			return "the config must be configs/" + g.Name + ".cfg"
		}
	default:
		return fmt.Sprintf("unknown role %q (expected rootfs, kernel, ramdisk or config)", f.Role)
	}
	base := path.Base(f.Path)
	if path.Clean(f.Path) != f.Path || strings.Count(f.Path, "/") != 1 || !guest.ValidName(base) {
		return "invalid path (expected images/NAME or configs/NAME with a plain file name)"
	}
	if !sha256RE.MatchString(f.SHA256) {
		return fmt.Sprintf("sha256 %q is not 64 lower-case hex digits", f.SHA256)
	}
	if f.Size < 0 {
		return fmt.Sprintf("negative size %d", f.Size)
	}
	return ""
}

// Paths returns every distinct payload file path, sorted.
func (m *Manifest) Paths() []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range m.Guests {
		for _, f := range g.Files {
			if !seen[f.Path] {
				seen[f.Path] = true
				out = append(out, f.Path)
			}
		}
	}
	sort.Strings(out)
	return out
}
