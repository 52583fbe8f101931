package toolstack

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ParseList parses the output of `xl list`: a header line, then one line per
// domain with the columns Name ID Mem VCPUs State Time(s). The name is
// everything before the last five columns, so names with spaces survive.
func ParseList(out []byte) ([]Domain, error) {
	var doms []Domain
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	header := false
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		if !header {
			if f[0] != "Name" {
				return nil, fmt.Errorf("xl list output line %d: expected the header \"Name ID Mem VCPUs State Time(s)\", got %q", line, clip(text))
			}
			header = true
			continue
		}
		if len(f) < 6 {
			return nil, fmt.Errorf("xl list output line %d: expected 6 columns (Name ID Mem VCPUs State Time), got %d in %q", line, len(f), clip(text))
		}
		n := len(f)
		id, err1 := strconv.Atoi(f[n-5])
		mem, err2 := strconv.Atoi(f[n-4])
		vcpus, err3 := strconv.Atoi(f[n-3])
		if err := firstErr(err1, err2, err3); err != nil || id < 0 || mem < 0 || vcpus < 0 {
			return nil, fmt.Errorf("xl list output line %d: expected numbers in the ID, Mem and VCPUs columns, got %q", line, clip(text))
		}
		// The name is the text before the ID column, trimmed.
		name := strings.Join(f[:n-5], " ")
		doms = append(doms, Domain{Name: name, ID: id, MemoryMB: mem, VCPUs: vcpus, State: f[n-2]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("xl list output line %d: %w", line+1, err)
	}
	if !header {
		return nil, fmt.Errorf("xl list output: empty (expected a header line)")
	}
	return doms, nil
}

// ParseInfo parses the "key : value" lines of `xl info`. total_memory and
// free_memory are required; xen_version and nr_cpus are optional.
func ParseInfo(out []byte) (Info, error) {
	var info Info
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		num := func() (int, error) {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return 0, fmt.Errorf("xl info output line %d: %s: expected a non-negative number, got %q", line, k, clip(v))
			}
			return n, nil
		}
		var err error
		switch k {
		case "total_memory":
			info.TotalMemoryMB, err = num()
		case "free_memory":
			info.FreeMemoryMB, err = num()
		case "nr_cpus":
			info.NrCPUs, err = num()
		case "xen_version":
			info.XenVersion = v
		default:
			continue
		}
		if err != nil {
			return Info{}, err
		}
		seen[k] = true
	}
	if err := sc.Err(); err != nil {
		return Info{}, fmt.Errorf("xl info output line %d: %w", line+1, err)
	}
	for _, k := range []string{"total_memory", "free_memory"} {
		if !seen[k] {
			return Info{}, fmt.Errorf("xl info output: no %s line (expected \"%s : <MiB>\")", k, k)
		}
	}
	return info, nil
}

// ParseDomID parses the output of `xl domid NAME`: one decimal number.
func ParseDomID(out []byte) (int, error) {
	s := strings.TrimSpace(string(out))
	id, err := strconv.Atoi(s)
	if err != nil || id < 0 {
		return 0, fmt.Errorf("xl domid output: expected a domain id, got %q", clip(s))
	}
	return id, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// clip shortens text quoted in error messages.
func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
