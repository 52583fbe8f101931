// Package guest is the model of one Xen guest to bundle into a Dom0 root
// filesystem: its entry tags, per-guest settings with upstream defaults, and
// the validation of those settings.
//
// Two front-ends build the same model: bitbake-style variables (see
// FromVars, fed by package bbconf) and the YAML manifest (see LoadManifest).
// Everything that needs the file system (rootfs, kernel and source lookup)
// happens later, in package plan.
package guest

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Upstream defaults (meta-virtualization xen-guest-cross-install.bbclass).
const (
	DefaultMemory      = 512
	DefaultVCPUs       = 1
	DefaultVif         = "bridge=xenbr0"
	DefaultExtra       = "root=/dev/xvda ro ip=dhcp"
	DefaultDiskDevice  = "xvda"
	DefaultImageSizeMB = 256
	DefaultImageFstype = "ext4"
)

// Limits for numeric settings.
const (
	MinMemory = 16
	MaxMemory = 1 << 20 // 1 TiB in MB
	MaxVCPUs  = 512
)

// Guest types written to the xl config.
const (
	TypePV  = "pv"
	TypePVH = "pvh"
	TypeHVM = "hvm"
)

// KernelNone is the XEN_GUEST_KERNEL value that selects an HVM guest without
// a kernel.
const KernelNone = "none"

// Tag names valid in an entry.
const (
	TagAutostart = "autostart"
	TagExternal  = "external"
)

// ValidTags lists the tags accepted in an entry, for error messages.
var ValidTags = []string{TagAutostart, TagExternal}

// Spec is one guest with every setting resolved to a value (defaults
// applied), but no file looked up yet.
type Spec struct {
	// Name is the entry (recipe) name: the cfg file name, the autostart link
	// name and the key of every varflag.
	Name string `json:"name"`
	// DomainName is the xl `name =` value (XEN_GUEST_NAME); defaults to Name.
	DomainName string `json:"domainName"`
	Autostart  bool   `json:"autostart"`
	External   bool   `json:"external"`

	Memory     int      `json:"memory"`
	VCPUs      int      `json:"vcpus"`
	Vifs       []string `json:"vifs"`
	Extra      string   `json:"extra"`
	DiskDevice string   `json:"diskDevice"`
	// Disks are additional xl disk specs, written after the root disk.
	Disks []string `json:"disks,omitempty"`

	// Type is pv, pvh or hvm; empty means pv, or hvm when Kernel is "none".
	Type string `json:"type,omitempty"`
	// Rootfs is XEN_GUEST_ROOTFS: a file name relative to DEPLOY_DIR_IMAGE
	// (or an absolute path); empty means the standard name.
	Rootfs string `json:"rootfs,omitempty"`
	// Kernel is empty (shared host kernel), "none" (HVM) or a file name
	// looked up in UNPACKDIR then DEPLOY_DIR_IMAGE (or an absolute path).
	Kernel  string `json:"kernel,omitempty"`
	Ramdisk string `json:"ramdisk,omitempty"`
	// ConfigFile is a custom xl config replacing generation.
	ConfigFile string `json:"configFile,omitempty"`

	// SourceType selects an import handler; empty means no import.
	SourceType  string `json:"sourceType,omitempty"`
	SourceFile  string `json:"sourceFile,omitempty"`
	ImageSizeMB int    `json:"imageSizeMB,omitempty"`
	// SourceBackingDir is XEN_GUEST_SOURCE_BACKING_DIR: another directory
	// than the source's own that a qcow2 source's backing files may be in.
	SourceBackingDir string `json:"sourceBackingDir,omitempty"`

	OnPoweroff string `json:"onPoweroff,omitempty"`
	OnReboot   string `json:"onReboot,omitempty"`
	OnCrash    string `json:"onCrash,omitempty"`

	// From names where the guest was declared, for conflict messages:
	// "BUNDLED_XEN_GUESTS", "manifest guests.yaml", "bundle my-guests".
	// Empty means the variable list.
	From string `json:"from,omitempty"`

	// Origin tells, per setting name (as in Setting* constants), where its
	// value came from, for error messages ("local.conf:12" or "default").
	Origin map[string]string `json:"-"`
}

// Setting names used in errors; they are the bitbake varflag names so that
// a Yocto user recognises them. The manifest front-end maps its field names
// onto the same settings.
const (
	SettingEntry      = "BUNDLED_XEN_GUESTS"
	SettingName       = "XEN_GUEST_NAME"
	SettingMemory     = "XEN_GUEST_MEMORY"
	SettingVCPUs      = "XEN_GUEST_VCPUS"
	SettingVif        = "XEN_GUEST_VIF"
	SettingVifs       = "XEN_GUEST_VIFS"
	SettingExtra      = "XEN_GUEST_EXTRA"
	SettingDiskDevice = "XEN_GUEST_DISK_DEVICE"
	SettingDisks      = "XEN_GUEST_DISKS"
	SettingType       = "XEN_GUEST_TYPE"
	SettingRootfs     = "XEN_GUEST_ROOTFS"
	SettingKernel     = "XEN_GUEST_KERNEL"
	SettingRamdisk    = "XEN_GUEST_RAMDISK"
	SettingConfigFile = "XEN_GUEST_CONFIG_FILE"
	SettingSourceType = "XEN_GUEST_SOURCE_TYPE"
	SettingSourceFile = "XEN_GUEST_SOURCE_FILE"
	SettingBackingDir = "XEN_GUEST_SOURCE_BACKING_DIR"
	SettingImageSize  = "XEN_GUEST_IMAGE_SIZE"
	SettingOnPoweroff = "XEN_GUEST_ON_POWEROFF"
	SettingOnReboot   = "XEN_GUEST_ON_REBOOT"
	SettingOnCrash    = "XEN_GUEST_ON_CRASH"
)

// Error is a validation error about one setting of one guest.
type Error struct {
	Guest   string
	Setting string
	Origin  string
	Msg     string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Origin != "" && e.Origin != "default" {
		b.WriteString(e.Origin)
		b.WriteString(": ")
	}
	if e.Guest != "" {
		fmt.Fprintf(&b, "guest %q: ", e.Guest)
	}
	if e.Setting != "" {
		if e.Guest != "" && strings.HasPrefix(e.Setting, "XEN_GUEST_") {
			fmt.Fprintf(&b, "%s[%s]: ", e.Setting, e.Guest)
		} else {
			fmt.Fprintf(&b, "%s: ", e.Setting)
		}
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is a list of validation errors, reported together.
type Errors []error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Unwrap gives errors.Is/As access to every error.
func (es Errors) Unwrap() []error { return es }

// Err returns nil for an empty list, else the list.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Entry is one parsed element of BUNDLED_XEN_GUESTS.
type Entry struct {
	Name      string
	Autostart bool
	External  bool
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)

// MaxNameLen is the longest guest name: it becomes file names
// (<name>.cfg, <name>.img) and xl's domain name.
const MaxNameLen = 200

// ValidName reports whether name can be used as a guest (file) name.
func ValidName(name string) bool { return len(name) <= MaxNameLen && nameRE.MatchString(name) }

// nameProblem says what is wrong with a guest or domain name.
func nameProblem(name string) string {
	if len(name) > MaxNameLen {
		return fmt.Sprintf("is %d characters long; at most %d are allowed", len(name), MaxNameLen)
	}
	return "may only hold letters, digits, '.', '_', '+', '-' and must start with a letter or digit"
}

// ParseEntries splits a BUNDLED_XEN_GUESTS value into entries
// `name[:autostart][:external]` (tags in any order). Unknown tags, empty
// names and repeated tags are errors.
func ParseEntries(value, origin string) ([]Entry, error) {
	var out []Entry
	var errs Errors
	for _, word := range strings.Fields(value) {
		parts := strings.Split(word, ":")
		e := Entry{Name: parts[0]}
		if !ValidName(e.Name) {
			errs = append(errs, &Error{Setting: SettingEntry, Origin: origin,
				Msg: fmt.Sprintf("entry %.60q: invalid guest name %.60q: it %s", word, e.Name, nameProblem(e.Name))})
			continue
		}
		seen := map[string]bool{}
		for _, tag := range parts[1:] {
			if seen[tag] {
				errs = append(errs, &Error{Guest: e.Name, Setting: SettingEntry, Origin: origin,
					Msg: fmt.Sprintf("entry %q: tag %q given twice", word, tag)})
				continue
			}
			seen[tag] = true
			switch tag {
			case TagAutostart:
				e.Autostart = true
			case TagExternal:
				e.External = true
			default:
				errs = append(errs, &Error{Guest: e.Name, Setting: SettingEntry, Origin: origin,
					Msg: fmt.Sprintf("entry %q: unknown tag %q (valid tags: %s)", word, tag, strings.Join(ValidTags, ", "))})
			}
		}
		out = append(out, e)
	}
	return out, errs.Err()
}

// New returns a spec for entry e with every upstream default applied.
func New(e Entry) *Spec {
	return &Spec{
		Name:       e.Name,
		DomainName: e.Name,
		Autostart:  e.Autostart,
		External:   e.External,
		Memory:     DefaultMemory,
		VCPUs:      DefaultVCPUs,
		Vifs:       []string{DefaultVif},
		Extra:      DefaultExtra,
		DiskDevice: DefaultDiskDevice,
		Origin:     map[string]string{},
	}
}

// EffectiveType returns the guest type: the explicit one, else hvm for a
// "none" kernel, else pv.
func (s *Spec) EffectiveType() string {
	if s.Type != "" {
		return s.Type
	}
	if s.Kernel == KernelNone {
		return TypeHVM
	}
	return TypePV
}

// HasKernel reports whether the guest boots a kernel given by the host
// (pv/pvh, or an hvm guest with direct kernel boot).
func (s *Spec) HasKernel() bool {
	return s.Kernel != KernelNone && !(s.EffectiveType() == TypeHVM && s.Kernel == "")
}

func (s *Spec) errorf(setting, format string, args ...any) error {
	return &Error{Guest: s.Name, Setting: setting, Origin: s.Origin[setting], Msg: fmt.Sprintf(format, args...)}
}

var validActions = []string{"destroy", "restart", "rename-restart", "preserve", "coredump-destroy", "coredump-restart", "soft-reset"}

// Validate checks every setting that can be checked without the file
// system. It returns all problems found, each naming guest and setting.
func (s *Spec) Validate() error {
	var errs Errors
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if !ValidName(s.Name) {
		add(s.errorf(SettingEntry, "invalid guest name %.60q: it %s", s.Name, nameProblem(s.Name)))
	}
	if s.DomainName == "" {
		add(s.errorf(SettingName, "domain name is empty"))
	} else if !ValidName(s.DomainName) {
		add(s.errorf(SettingName, "invalid domain name %.60q: it %s", s.DomainName, nameProblem(s.DomainName)))
	}
	if s.Memory < MinMemory || s.Memory > MaxMemory {
		add(s.errorf(SettingMemory, "memory %d MB out of range (%d..%d)", s.Memory, MinMemory, MaxMemory))
	}
	if s.VCPUs < 1 || s.VCPUs > MaxVCPUs {
		add(s.errorf(SettingVCPUs, "vcpus %d out of range (1..%d)", s.VCPUs, MaxVCPUs))
	}
	switch s.Type {
	case "", TypePV, TypePVH, TypeHVM:
	default:
		add(s.errorf(SettingType, "unknown guest type %q (valid: pv, pvh, hvm)", s.Type))
	}
	if s.Kernel == KernelNone && (s.Type == TypePV || s.Type == TypePVH) {
		add(s.errorf(SettingKernel, "kernel \"none\" needs an hvm guest, but %s is %q", SettingType, s.Type))
	}
	if s.Kernel == KernelNone && s.Ramdisk != "" {
		add(s.errorf(SettingRamdisk, "a ramdisk needs a kernel, but %s is \"none\"", SettingKernel))
	}
	if !validVdev(s.DiskDevice) {
		add(s.errorf(SettingDiskDevice, "invalid disk device %q (expected a name like xvda, hda, sda)", s.DiskDevice))
	}
	if s.ImageSizeMB < 0 || s.ImageSizeMB > 16<<20 {
		add(s.errorf(SettingImageSize, "image size %d MB out of range (1..%d)", s.ImageSizeMB, 16<<20))
	}
	if s.SourceType == "" && s.SourceFile != "" {
		add(s.errorf(SettingSourceFile, "is set but %s[%s] is not: set the import type (rootfs_dir, rootfs_tar, qcow2, ext4, raw)", SettingSourceType, s.Name))
	}
	if s.SourceType != "" && s.SourceFile == "" {
		add(s.errorf(SettingSourceFile, "is required when %s[%s] is set", SettingSourceType, s.Name))
	}
	if s.SourceBackingDir != "" && s.SourceType != "qcow2" {
		add(s.errorf(SettingBackingDir, "applies to qcow2 sources only, but %s[%s] is %q", SettingSourceType, s.Name, s.SourceType))
	}
	for _, a := range []struct{ setting, v string }{{SettingOnPoweroff, s.OnPoweroff}, {SettingOnReboot, s.OnReboot}, {SettingOnCrash, s.OnCrash}} {
		if a.v != "" && !contains(validActions, a.v) {
			add(s.errorf(a.setting, "unknown action %q (valid: %s)", a.v, strings.Join(validActions, ", ")))
		}
	}
	// Values that end up inside quoted xl strings or comma-separated specs.
	add(checkText(s, SettingExtra, s.Extra))
	for _, v := range s.Vifs {
		add(checkText(s, vifSetting(s), v))
	}
	for _, d := range s.Disks {
		add(checkText(s, SettingDisks, d))
	}
	for _, f := range []struct{ setting, v string }{{SettingRootfs, s.Rootfs}, {SettingKernel, s.Kernel}, {SettingRamdisk, s.Ramdisk}, {SettingConfigFile, s.ConfigFile}, {SettingSourceFile, s.SourceFile}, {SettingBackingDir, s.SourceBackingDir}} {
		add(checkText(s, f.setting, f.v))
	}
	for _, f := range []struct{ setting, v string }{{SettingRootfs, s.Rootfs}, {SettingKernel, s.Kernel}, {SettingRamdisk, s.Ramdisk}} {
		// Only the file name reaches the xl config (files are copied to
		// /var/lib/xen/images), so a comma elsewhere in a host path is fine.
		if strings.Contains(filepath.Base(f.v), ",") {
			add(s.errorf(f.setting, "value %q contains a comma, which xl disk and path specs cannot hold", f.v))
		}
	}
	return errs.Err()
}

func vifSetting(s *Spec) string {
	if _, ok := s.Origin[SettingVifs]; ok {
		return SettingVifs
	}
	return SettingVif
}

// checkText rejects characters that would break the xl syntax of the value:
// control characters (newlines), quotes and brackets.
func checkText(s *Spec, setting, v string) error {
	for i, r := range v {
		switch {
		case r == '\n' || r == '\r':
			return s.errorf(setting, "value %q contains a newline at offset %d; xl values must be one line", v, i)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029:
			// C0, DEL, C1 (U+0085 is a newline to some readers) and the
			// Unicode line and paragraph separators.
			return s.errorf(setting, "value %q contains control character %U at offset %d", v, r, i)
		case r == utf8.RuneError:
			if _, n := utf8.DecodeRuneInString(v[i:]); n <= 1 {
				return s.errorf(setting, "value %q is not valid UTF-8 at offset %d", v, i)
			}
		case r == '"' || r == '\'':
			return s.errorf(setting, "value %q contains a quote (%c) at offset %d, which would break the xl config", v, r, i)
		case r == '[' || r == ']':
			return s.errorf(setting, "value %q contains a bracket (%c) at offset %d, which would break the xl config", v, r, i)
		}
	}
	return nil
}

var vdevRE = regexp.MustCompile(`^(xvd|hd|sd)[a-z]+[0-9]*$|^d[0-9]+(p[0-9]+)?$`)

func validVdev(v string) bool { return vdevRE.MatchString(v) }

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// CheckDuplicates reports guests listed twice and guests whose domain names
// collide (also after XEN_GUEST_NAME overrides).
func CheckDuplicates(specs []*Spec) error {
	var errs Errors
	byName := map[string]*Spec{}
	byDomain := map[string]*Spec{}
	for _, s := range specs {
		if prev, ok := byName[s.Name]; ok && prev != s {
			msg := "guest is listed more than once"
			if prev.From != s.From {
				msg = fmt.Sprintf("guest is declared twice: in %s and in %s", from(prev), from(s))
			}
			errs = append(errs, &Error{Guest: s.Name, Setting: SettingEntry, Origin: s.Origin[SettingEntry], Msg: msg})
			continue
		}
		byName[s.Name] = s
		if prev, ok := byDomain[s.DomainName]; ok {
			errs = append(errs, &Error{Guest: s.Name, Setting: SettingName, Origin: s.Origin[SettingName],
				Msg: fmt.Sprintf("domain name %q is also used by guest %q (%s); xl needs unique domain names", s.DomainName, prev.Name, from(prev))})
			continue
		}
		byDomain[s.DomainName] = s
	}
	return errs.Err()
}

func from(s *Spec) string {
	if s.From == "" {
		return SettingEntry
	}
	return s.From
}

// parseInt parses a decimal setting value.
func parseInt(s *Spec, setting, v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, s.errorf(setting, "value %q is not a whole number", v)
	}
	return n, nil
}

// SortedNames returns the guest names in s, sorted.
func SortedNames(specs []*Spec) []string {
	out := make([]string, len(specs))
	for i, s := range specs {
		out[i] = s.Name
	}
	sort.Strings(out)
	return out
}
