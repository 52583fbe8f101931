package xlcfg

import (
	"fmt"
	"strings"
)

// ValidateValue reports a string value that xl cannot hold or that is almost
// certainly a mistake in a config: a NUL byte (xl cannot represent it at all)
// or another control character such as a newline or carriage return (xl can
// read "\n" escapes, but no name, path, command line or device spec should
// contain one, and line-based tools that process configs break on them).
func ValidateValue(s string) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 {
			return fmt.Errorf("value %q contains a NUL byte at offset %d, which xl cannot represent", s, i)
		}
		if c < 0x20 || c == 0x7f {
			return fmt.Errorf("value %q contains control character %q at offset %d", s, c, i)
		}
	}
	return nil
}

// ValidateName checks a domain name: non-empty, and valid per [ValidateValue].
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("empty domain name")
	}
	return ValidateValue(name)
}

// specUnsafe are characters rejected in disk and vif specs. xl itself could
// read them from a properly escaped string, but they break the line- and
// quote-based tools that process configs (upstream rewrites custom configs
// with sed), and no device spec needs them.
const specUnsafe = "\"'[]"

func checkSpecChars(kind, s string) error {
	if err := ValidateValue(s); err != nil {
		return fmt.Errorf("%s spec: %w", kind, err)
	}
	if i := strings.IndexAny(s, specUnsafe); i >= 0 {
		return fmt.Errorf("%s spec %q: character %q at offset %d would break xl config syntax for tools that do not escape it", kind, s, s[i], i)
	}
	return nil
}

// ValidateDiskSpec checks a full disk spec string: it must parse as xl
// parses it ([ParseDisk]) and contain no control characters, quotes or
// brackets.
func ValidateDiskSpec(spec string) error {
	if err := checkSpecChars("disk", spec); err != nil {
		return err
	}
	if _, err := ParseDisk(spec); err != nil {
		return err
	}
	return nil
}

// ValidateDiskTarget checks a disk target (a path or device) before it is put
// into a disk spec. In the positional form (keyed=false) a target cannot
// contain ',' or '=' (xl splits specs on commas) or start with a blank, and
// must not look like a keyword or a deprecated prefix; in the keyed form
// ("target=..." as the last parameter) commas are fine. Both forms reject
// control characters, quotes and brackets.
func ValidateDiskTarget(target string, keyed bool) error {
	if target == "" {
		return fmt.Errorf("empty disk target")
	}
	if err := checkSpecChars("disk target", target); err != nil {
		return err
	}
	var spec string
	if keyed {
		spec = "format=raw, vdev=xvda, access=rw, target=" + target
	} else {
		if i := strings.IndexAny(target, ",="); i >= 0 {
			return fmt.Errorf("disk target %q: %q at offset %d cannot appear in a positional disk spec (xl splits on it); use the keyed form target=...", target, target[i], i)
		}
		spec = target + ",raw,xvda,rw"
	}
	d, err := ParseDisk(spec)
	if err != nil {
		return fmt.Errorf("disk target %q: %w", target, err)
	}
	if d.Target != target {
		return fmt.Errorf("disk target %q would be read back by xl as %q", target, d.Target)
	}
	return nil
}

// vifKeys are the NET_SPEC_STRING keys xl's parse_nic_config knows.
var vifKeys = []string{
	"type", "mac", "bridge", "netdev", "gatewaydev", "ip", "script", "backend",
	"vifname", "model", "rate", "forwarddev", "accel", "devid", "mtu", "vid", "vlan",
}

// ValidateVifSpec checks a network spec string (xl-network-configuration(5)):
// comma-separated KEY=VALUE settings with keys xl knows (values cannot
// contain commas), no control characters, quotes or brackets. The empty
// string (a default vif) is valid.
func ValidateVifSpec(spec string) error {
	if err := checkSpecChars("vif", spec); err != nil {
		return err
	}
	off := 0
	for _, tok := range strings.Split(spec, ",") {
		start := off
		off += len(tok) + 1
		t := strings.TrimLeft(tok, " ")
		if t == "" {
			continue
		}
		if t == "trusted" || t == "untrusted" {
			continue
		}
		k, _, ok := strings.Cut(t, "=")
		if !ok {
			return fmt.Errorf("vif spec %q: offset %d: %q is not KEY=VALUE", spec, start, t)
		}
		known := strings.HasPrefix(k, "colo_")
		for _, vk := range vifKeys {
			if k == vk {
				known = true
			}
		}
		if !known {
			return fmt.Errorf("vif spec %q: offset %d: unrecognized key %q", spec, start, k)
		}
	}
	return nil
}
