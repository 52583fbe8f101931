package bbconf

import "strings"

// TargetOverrides returns the OVERRIDES a bitbake build has for recipe pn
// on machine: class-target, linux, pn-<pn>, the machine, its architecture
// (x86-64 or aarch64) and qemuall for QEMU machines.
func TargetOverrides(machine, pn string) []string {
	o := []string{"class-target", "linux", "pn-" + pn, machine}
	switch {
	case strings.Contains(machine, "x86-64"), strings.Contains(machine, "x86_64"):
		o = append(o, "x86-64")
	case strings.Contains(machine, "arm64"), strings.Contains(machine, "aarch64"):
		o = append(o, "aarch64")
	}
	if strings.HasPrefix(machine, "qemu") {
		o = append(o, "qemuall")
	}
	return o
}

// Source is one configuration input: a file (Text nil: Name is read) or
// text reported under Name.
type Source struct {
	Name string
	Text []byte
}

// Load parses sources in order into a datastore with the overrides of
// recipe pn on machine active: every command reads a local.conf the same
// way through it.
func Load(machine, pn string, sources ...Source) (*Data, error) {
	d := New(Options{Overrides: TargetOverrides(machine, pn)})
	for _, s := range sources {
		var err error
		if s.Text == nil {
			err = d.ParseFile(s.Name)
		} else {
			err = d.Parse(s.Name, s.Text)
		}
		if err != nil {
			return nil, err
		}
	}
	return d, nil
}
