package guest

import (
	"fmt"
	"strings"
)

// Vars is the read side of a bitbake-style variable store (package bbconf
// implements it). Values are fully evaluated: overrides applied, ${}
// expanded.
type Vars interface {
	Get(name string) (string, bool, error)
	GetFlag(name, flag string) (string, bool, error)
}

// Originer is optionally implemented by a Vars to say where a variable or
// flag was set ("file:line").
type Originer interface {
	Where(name, flag string) string
}

// ListVariable names the bitbake variables that hold guest lists.
const (
	ListBundled = "BUNDLED_XEN_GUESTS"
	ListBundles = "XEN_GUEST_BUNDLES"
)

// FromVars builds the guest specs listed in the variable list (normally
// BUNDLED_XEN_GUESTS) with every XEN_GUEST_*[guest] varflag and
// XEN_GUEST_*_DEFAULT applied. Import varflags are honoured for every guest
// (upstream reads them only in bundle recipes).
func FromVars(v Vars, list string) ([]*Spec, error) {
	var errs Errors
	where := func(name, flag string) string {
		if o, ok := v.(Originer); ok {
			return o.Where(name, flag)
		}
		return ""
	}
	value, _, err := v.Get(list)
	if err != nil {
		return nil, err
	}
	entries, err := ParseEntries(value, where(list, ""))
	if err != nil {
		errs = append(errs, err)
	}
	str := func(name string, def string) (string, string, error) {
		val, ok, err := v.Get(name)
		if err != nil {
			return "", "", err
		}
		if !ok {
			return def, "default", nil
		}
		return val, where(name, ""), nil
	}
	defaults := map[string]string{}
	defOrigin := map[string]string{}
	for _, d := range []struct{ name, def string }{
		{SettingMemory, fmt.Sprint(DefaultMemory)},
		{SettingVCPUs, fmt.Sprint(DefaultVCPUs)},
		{SettingVif, DefaultVif},
		{SettingExtra, DefaultExtra},
		{SettingDiskDevice, DefaultDiskDevice},
		{SettingImageSize, fmt.Sprint(DefaultImageSizeMB)},
		// Beyond upstream: a default ramdisk, for kernels that need their
		// block and filesystem drivers from an initramfs.
		{SettingRamdisk, ""},
	} {
		val, origin, err := str(d.name+"_DEFAULT", d.def)
		if err != nil {
			return nil, err
		}
		defaults[d.name] = strings.TrimSpace(val)
		defOrigin[d.name] = origin
	}
	var specs []*Spec
	for _, e := range entries {
		s := New(e)
		s.Origin[SettingEntry] = where(list, "")
		get := func(setting string) (string, bool) {
			val, ok, err := v.GetFlag(setting, e.Name)
			if err != nil {
				errs = append(errs, err)
				return "", false
			}
			if ok {
				s.Origin[setting] = where(setting, e.Name)
				return val, true
			}
			if d, ok := defaults[setting]; ok {
				s.Origin[setting] = defOrigin[setting]
				return d, true
			}
			return "", false
		}
		getInt := func(setting string, dst *int) {
			if val, ok := get(setting); ok {
				n, err := parseInt(s, setting, val)
				if err != nil {
					errs = append(errs, err)
					return
				}
				*dst = n
			}
		}
		getInt(SettingMemory, &s.Memory)
		getInt(SettingVCPUs, &s.VCPUs)
		if val, ok := get(SettingVifs); ok {
			s.Vifs = strings.Fields(val)
		} else if val, ok := get(SettingVif); ok {
			s.Vifs = nil
			if val = strings.TrimSpace(val); val != "" {
				s.Vifs = []string{val}
			}
		}
		if val, ok := get(SettingExtra); ok {
			s.Extra = strings.TrimSpace(val)
		}
		if val, ok := get(SettingDiskDevice); ok {
			s.DiskDevice = strings.TrimSpace(val)
		}
		if val, ok := get(SettingDisks); ok {
			s.Disks = SplitDisks(val)
		}
		if val, ok := get(SettingName); ok && strings.TrimSpace(val) != "" {
			s.DomainName = strings.TrimSpace(val)
		}
		strField := func(setting string, dst *string) {
			if val, ok := get(setting); ok {
				*dst = strings.TrimSpace(val)
			}
		}
		strField(SettingType, &s.Type)
		strField(SettingRootfs, &s.Rootfs)
		strField(SettingKernel, &s.Kernel)
		strField(SettingRamdisk, &s.Ramdisk)
		strField(SettingConfigFile, &s.ConfigFile)
		strField(SettingSourceType, &s.SourceType)
		strField(SettingSourceFile, &s.SourceFile)
		strField(SettingBackingDir, &s.SourceBackingDir)
		strField(SettingOnPoweroff, &s.OnPoweroff)
		strField(SettingOnReboot, &s.OnReboot)
		strField(SettingOnCrash, &s.OnCrash)
		// The image size default applies only to imports.
		if val, ok, err := v.GetFlag(SettingImageSize, e.Name); err != nil {
			errs = append(errs, err)
		} else if ok {
			s.Origin[SettingImageSize] = where(SettingImageSize, e.Name)
			n, err := parseInt(s, SettingImageSize, val)
			if err != nil {
				errs = append(errs, err)
			} else if n <= 0 {
				errs = append(errs, s.errorf(SettingImageSize, "image size must be a positive number of MB, got %d", n))
			} else {
				s.ImageSizeMB = n
			}
		}
		specs = append(specs, s)
	}
	return specs, errs.Err()
}

// DefaultImageSize returns XEN_GUEST_IMAGE_SIZE_DEFAULT from v (256 when
// unset): the size upstream gives rootfs_dir imports without an explicit
// size.
func DefaultImageSize(v Vars) (int, error) {
	val, ok, err := v.Get(SettingImageSize + "_DEFAULT")
	if err != nil || !ok {
		return DefaultImageSizeMB, err
	}
	var n int
	if _, err := fmt.Sscan(strings.TrimSpace(val), &n); err != nil || n <= 0 {
		return 0, &Error{Setting: SettingImageSize + "_DEFAULT", Msg: fmt.Sprintf("value %q is not a positive whole number", val)}
	}
	return n, nil
}

// SplitDisks splits an XEN_GUEST_DISKS value into xl disk specs: specs are
// separated by blanks, but blanks next to a comma belong to one spec
// ("phy:/dev/sdb, xvdb, w" is one spec, as xl reads it).
func SplitDisks(v string) []string {
	var out []string
	for _, w := range strings.Fields(v) {
		if n := len(out); n > 0 && (strings.HasSuffix(out[n-1], ",") || strings.HasPrefix(w, ",")) {
			out[n-1] += w
			continue
		}
		out = append(out, w)
	}
	return out
}
