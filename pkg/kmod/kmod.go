// Package kmod resolves Linux kernel modules and their dependencies on the
// build machine for an image's kernel: the modules named, every module they
// depend on (from each module's .modinfo section, as depmod reads it) in
// load order, and a modules.dep for the image.
//
// We compute the dependencies ourselves instead of running depmod or
// modprobe on the build machine: it needs no kmod there, works for any
// target architecture, and only reads the handful of modules an image
// needs. depmod is still run on a finished root filesystem when available
// so that modprobe works inside it.
package kmod

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// normMod normalises a module name the way the kernel does ('-' == '_').
func normMod(s string) string { return strings.ReplaceAll(s, "-", "_") }

// ParseModinfo parses the contents of a .modinfo ELF section: a sequence of
// NUL-terminated "key=value" strings. It returns the values by key.
func ParseModinfo(b []byte) (map[string][]string, error) {
	out := map[string][]string{}
	off := 0
	for _, ent := range bytes.Split(b, []byte{0}) {
		if len(ent) == 0 {
			off++
			continue
		}
		i := bytes.IndexByte(ent, '=')
		if i <= 0 {
			return nil, fmt.Errorf("modinfo offset %d: entry %q is not key=value", off, clip(string(ent)))
		}
		k := string(ent[:i])
		out[k] = append(out[k], string(ent[i+1:]))
		off += len(ent) + 1
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// moduleDeps reads the "depends" list of a .ko file.
func moduleDeps(path string) ([]string, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("%s: no .modinfo section", path)
	}
	b, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("%s: .modinfo: %w", path, err)
	}
	mi, err := ParseModinfo(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var deps []string
	for _, d := range mi["depends"] {
		for _, n := range strings.Split(d, ",") {
			if n = strings.TrimSpace(n); n != "" {
				deps = append(deps, normMod(n))
			}
		}
	}
	return deps, nil
}

// ModuleSet is the result of resolving wanted modules: the files to copy
// (relative to lib/modules/<kver>) in load order, dependencies first.
type ModuleSet struct {
	// Order lists module files (relative paths) so that each module comes
	// after all of its dependencies.
	Order []string
	// Deps maps a relative module path to its dependencies' relative paths
	// (full closure, kmod's modules.dep order: nearest first).
	Deps map[string][]string
	// Builtin lists wanted modules that are built into the kernel.
	Builtin []string
}

// ResolveModules finds the wanted modules (names, '-' or '_') under
// modDir (lib/modules/<kver>) and returns their dependency closure. A wanted
// module that is neither a .ko file nor listed in modules.builtin is an
// error.
func ResolveModules(modDir string, wanted []string) (*ModuleSet, error) {
	index := map[string]string{} // normalised name -> relative path
	err := filepath.WalkDir(modDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() || !strings.HasSuffix(name, ".ko") {
			return nil
		}
		rel, _ := filepath.Rel(modDir, p)
		index[normMod(strings.TrimSuffix(name, ".ko"))] = filepath.ToSlash(rel)
		return nil
	})
	if err != nil {
		return nil, err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(modDir, "modules.builtin")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				builtin[normMod(strings.TrimSuffix(filepath.Base(l), ".ko"))] = true
			}
		}
	}
	set := &ModuleSet{Deps: map[string][]string{}}
	direct := map[string][]string{}
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		rel, ok := index[name]
		if !ok {
			if builtin[name] {
				return nil
			}
			return fmt.Errorf("kernel module %q (needed by %v) not found under %s and not built in", name, chain, modDir)
		}
		switch state[rel] {
		case 1:
			return fmt.Errorf("kernel module dependency cycle: %v -> %s", chain, name)
		case 2:
			return nil
		}
		state[rel] = 1
		deps, err := moduleDeps(filepath.Join(modDir, rel))
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
			if r, ok := index[d]; ok {
				direct[rel] = append(direct[rel], r)
			}
		}
		state[rel] = 2
		set.Order = append(set.Order, rel)
		return nil
	}
	for _, w := range wanted {
		n := normMod(w)
		if _, ok := index[n]; !ok && builtin[n] {
			set.Builtin = append(set.Builtin, w)
			continue
		}
		if err := visit(n, nil); err != nil {
			return nil, err
		}
	}
	// Full closure per module, nearest dependencies first (modules.dep style).
	for _, rel := range set.Order {
		seen := map[string]bool{}
		var out []string
		queue := append([]string{}, direct[rel]...)
		for len(queue) > 0 {
			d := queue[0]
			queue = queue[1:]
			if seen[d] {
				continue
			}
			seen[d] = true
			out = append(out, d)
			queue = append(queue, direct[d]...)
		}
		set.Deps[rel] = out
	}
	return set, nil
}

// ModulesDep renders a modules.dep file for the set (kmod text format).
func (s *ModuleSet) ModulesDep() string {
	var b strings.Builder
	keys := append([]string{}, s.Order...)
	sort.Strings(keys)
	for _, rel := range keys {
		b.WriteString(rel + ":")
		for _, d := range s.Deps[rel] {
			b.WriteString(" " + d)
		}
		b.WriteString("\n")
	}
	return b.String()
}
