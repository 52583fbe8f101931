package xlcfg

import (
	"fmt"
)

// PathFunc maps an old path to a new one. ok=false (or an unchanged path)
// leaves the entry alone.
type PathFunc func(old string) (newPath string, ok bool)

// Rewriter says which paths [Rewrite] changes.
type Rewriter struct {
	// DiskTarget, if set, is called for the target of every entry of every
	// "disk" assignment (positional and keyed specs).
	DiskTarget PathFunc
	// BootFile, if set, is called for the string value of every assignment
	// of each key in BootKeys.
	BootFile PathFunc
	// BootKeys are the keys BootFile applies to; nil means kernel and
	// ramdisk. (device_tree is a common addition.)
	BootKeys []string
}

// Change records one value changed by [Rewrite].
type Change struct {
	// Key is the setting's key ("disk", "kernel", ...).
	Key string
	// Index is the entry's index in a disk list, or -1 for a scalar.
	Index int
	// Line is the 1-based line of the changed value in the original file.
	Line int
	// Old and New are the old and new decoded values (for disks, the whole
	// spec strings).
	Old, New string
}

// Rewrite changes disk targets and boot file paths in f through the
// callbacks of r, replacing only the bytes of the changed strings (their
// quote style is kept). Keys that are absent (e.g. no kernel in an HVM
// config) are left alone. It returns the changes made; on error f is
// unchanged.
func Rewrite(f *File, r Rewriter) ([]Change, error) {
	bootKeys := r.BootKeys
	if bootKeys == nil {
		bootKeys = []string{"kernel", "ramdisk"}
	}
	isBoot := map[string]bool{}
	for _, k := range bootKeys {
		isBoot[k] = true
	}
	var edits []edit
	var changes []Change
	replace := func(n *node, key string, idx int, newText string) error {
		q, err := quoteWith(newText, n.quote)
		if err != nil {
			return fmt.Errorf("%s: key %q: %w", f.name, key, err)
		}
		line, _ := lineCol(f.src, n.start)
		edits = append(edits, edit{n.start, n.end, q})
		changes = append(changes, Change{Key: key, Index: idx, Line: line, Old: n.text, New: newText})
		return nil
	}
	for _, st := range f.stmts {
		switch {
		case st.key == "disk" && r.DiskTarget != nil:
			if st.val.kind != KindList {
				line, col := lineCol(f.src, st.val.start)
				return nil, fmt.Errorf("%s:%d:%d: disk must be a list, got a %s", f.name, line, col, st.val.kind)
			}
			for i, it := range st.val.items {
				if it.kind != KindString {
					continue
				}
				d, err := ParseDisk(it.text)
				if err != nil {
					line, col := lineCol(f.src, it.start)
					return nil, fmt.Errorf("%s:%d:%d: disk entry %d: %w", f.name, line, col, i, err)
				}
				if !d.HasTarget || d.Target == "" {
					continue
				}
				nt, ok := r.DiskTarget(d.Target)
				if !ok || nt == d.Target {
					continue
				}
				spec, err := d.WithTarget(nt)
				if err != nil {
					line, col := lineCol(f.src, it.start)
					return nil, fmt.Errorf("%s:%d:%d: disk entry %d: %w", f.name, line, col, i, err)
				}
				if err := replace(it, "disk", i, spec); err != nil {
					return nil, err
				}
			}
		case isBoot[st.key] && r.BootFile != nil:
			if st.val.kind != KindString {
				continue
			}
			np, ok := r.BootFile(st.val.text)
			if !ok || np == st.val.text {
				continue
			}
			if err := replace(st.val, st.key, -1, np); err != nil {
				return nil, err
			}
		}
	}
	if len(edits) == 0 {
		return nil, nil
	}
	if err := f.reparse(applyEdits(f.src, edits)); err != nil {
		return nil, err
	}
	return changes, nil
}
