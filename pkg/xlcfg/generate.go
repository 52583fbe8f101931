package xlcfg

import (
	"bytes"
	"fmt"
	"strings"
)

// KV is an extra key/value pair for [Domain].
type KV struct {
	// Key is the xl key.
	Key string
	// Value is its value.
	Value Value
}

// Domain is the model [Generate] renders.
type Domain struct {
	// Name is the domain name (required).
	Name string
	// Type is "pv", "pvh", "hvm", or "" to write no type key (xl's default
	// applies, as in upstream's generated configs).
	Type string
	// Memory is in MiB; 0 omits the key.
	Memory int
	// VCPUs is the vCPU count; 0 omits the key.
	VCPUs int
	// Kernel, Ramdisk and Extra (the kernel command line) are written when
	// non-empty. PV and PVH guests need a kernel (or a "bootloader" in
	// Additional); for HVM a kernel means direct kernel boot.
	Kernel, Ramdisk, Extra string
	// Disks are full disk spec strings; each must parse with [ParseDisk].
	Disks []string
	// Vifs are network spec strings ("" is a default vif).
	Vifs []string
	// OnPoweroff, OnReboot and OnCrash are actions (destroy, restart,
	// rename-restart, preserve, coredump-destroy, coredump-restart,
	// soft-reset); "" omits the key.
	OnPoweroff, OnReboot, OnCrash string
	// Additional keys are written last, in order.
	Additional []KV
}

var actions = map[string]bool{
	"destroy": true, "restart": true, "rename-restart": true, "preserve": true,
	"coredump-destroy": true, "coredump-restart": true, "soft-reset": true,
}

// modelKeys are the keys Generate writes from Domain fields.
var modelKeys = map[string]bool{
	"name": true, "type": true, "memory": true, "vcpus": true, "kernel": true,
	"ramdisk": true, "extra": true, "disk": true, "vif": true,
	"on_poweroff": true, "on_reboot": true, "on_crash": true,
}

// Generate renders d as an xl config. Keys come in upstream's order: name,
// type, memory, vcpus, kernel, ramdisk, extra, disk, vif, on_poweroff,
// on_reboot, on_crash, then Additional. Scalars are double-quoted and list
// entries single-quoted, as upstream writes them. Every value is validated;
// the result always parses with [Parse] to the same values.
func Generate(d Domain) ([]byte, error) {
	var b bytes.Buffer
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("xlcfg: generate %q: %s", d.Name, fmt.Sprintf(format, args...))
	}
	str := func(key, v string) error {
		if err := ValidateValue(v); err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		q, err := Quote(v)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s = %s\n", key, q)
		return nil
	}
	list := func(key string, vs []string) error {
		qs := make([]string, len(vs))
		for i, v := range vs {
			q, err := QuoteSingle(v)
			if err != nil {
				return fmt.Errorf("%s entry %d: %w", key, i, err)
			}
			qs[i] = q
		}
		fmt.Fprintf(&b, "%s = [%s]\n", key, strings.Join(qs, ", "))
		return nil
	}
	if d.Name == "" {
		return fail("name is required")
	}
	if err := ValidateName(d.Name); err != nil {
		return fail("%v", err)
	}
	switch d.Type {
	case "", "pv", "pvh", "hvm":
	default:
		return fail("type %q is not pv, pvh or hvm", d.Type)
	}
	if d.Memory < 0 || d.VCPUs < 0 {
		return fail("memory (%d) and vcpus (%d) must not be negative", d.Memory, d.VCPUs)
	}
	hasBootloader := false
	for _, kv := range d.Additional {
		if kv.Key == "bootloader" {
			hasBootloader = true
		}
	}
	if (d.Type == "pv" || d.Type == "pvh") && d.Kernel == "" && !hasBootloader {
		return fail("a %s guest needs a kernel (or a bootloader)", d.Type)
	}
	if d.Kernel == "" && (d.Ramdisk != "" || d.Extra != "") {
		return fail("ramdisk and extra need a kernel")
	}
	for i, s := range d.Disks {
		if err := ValidateDiskSpec(s); err != nil {
			return fail("disk %d: %v", i, err)
		}
	}
	for i, s := range d.Vifs {
		if err := ValidateVifSpec(s); err != nil {
			return fail("vif %d: %v", i, err)
		}
	}
	for _, a := range []struct{ key, v string }{{"on_poweroff", d.OnPoweroff}, {"on_reboot", d.OnReboot}, {"on_crash", d.OnCrash}} {
		if a.v != "" && !actions[a.v] {
			return fail("%s: unknown action %q", a.key, a.v)
		}
	}

	steps := []func() error{
		func() error { return str("name", d.Name) },
		func() error {
			if d.Type == "" {
				return nil
			}
			return str("type", d.Type)
		},
		func() error {
			if d.Memory > 0 {
				fmt.Fprintf(&b, "memory = %d\n", d.Memory)
			}
			if d.VCPUs > 0 {
				fmt.Fprintf(&b, "vcpus = %d\n", d.VCPUs)
			}
			return nil
		},
		func() error {
			for _, kv := range []struct{ k, v string }{{"kernel", d.Kernel}, {"ramdisk", d.Ramdisk}, {"extra", d.Extra}} {
				if kv.v == "" {
					continue
				}
				if err := str(kv.k, kv.v); err != nil {
					return err
				}
			}
			return nil
		},
		func() error {
			if len(d.Disks) == 0 {
				return nil
			}
			return list("disk", d.Disks)
		},
		func() error {
			if len(d.Vifs) == 0 {
				return nil
			}
			return list("vif", d.Vifs)
		},
		func() error {
			for _, kv := range []struct{ k, v string }{{"on_poweroff", d.OnPoweroff}, {"on_reboot", d.OnReboot}, {"on_crash", d.OnCrash}} {
				if kv.v != "" {
					if err := str(kv.k, kv.v); err != nil {
						return err
					}
				}
			}
			return nil
		},
		func() error {
			seen := map[string]bool{}
			for _, kv := range d.Additional {
				if !ValidKey(kv.Key) {
					return fmt.Errorf("additional key %q is not a valid xl key", kv.Key)
				}
				if modelKeys[kv.Key] {
					return fmt.Errorf("additional key %q duplicates a Domain field", kv.Key)
				}
				if seen[kv.Key] {
					return fmt.Errorf("additional key %q given twice", kv.Key)
				}
				seen[kv.Key] = true
				s, err := kv.Value.Format()
				if err != nil {
					return fmt.Errorf("additional key %q: %w", kv.Key, err)
				}
				fmt.Fprintf(&b, "%s = %s\n", kv.Key, s)
			}
			return nil
		},
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return fail("%v", err)
		}
	}
	out := b.Bytes()
	if _, err := Parse(d.Name+".cfg", out); err != nil { // belt and braces
		return fail("internal error: generated config does not parse: %v", err)
	}
	return out, nil
}
