package xlcfg

import (
	"fmt"
	"sort"
	"strings"
)

// edit replaces src[start:end] with text.
type edit struct {
	start, end int
	text       string
}

// applyEdits applies non-overlapping edits to src and returns the new bytes.
func applyEdits(src []byte, edits []edit) []byte {
	sort.Slice(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	out := make([]byte, 0, len(src))
	last := 0
	for _, e := range edits {
		out = append(out, src[last:e.start]...)
		out = append(out, e.text...)
		last = e.end
	}
	return append(out, src[last:]...)
}

// formatLike renders v, keeping the quote character of old when both are
// strings so that an in-place edit changes as little as possible.
func formatLike(v Value, old *node) (string, error) {
	q := byte('"')
	if old != nil && old.kind == KindString && old.quote != 0 {
		q = old.quote
	}
	if old != nil && old.kind == KindList && v.Kind == KindList {
		// Keep the quote style of the old list's first string item.
		for _, it := range old.items {
			if it.kind == KindString {
				q = it.quote
				break
			}
		}
	}
	var b strings.Builder
	if err := v.format(&b, q, 0); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Set sets key to v. If the key is assigned in the file, the value of its
// last assignment is replaced in place (a "+=" there becomes "=" so that v is
// the effective value) and every other byte is kept; otherwise a line
// "key = value" is appended. String quote style is kept when replacing a
// string.
func (f *File) Set(key string, v Value) error {
	if !ValidKey(key) {
		return fmt.Errorf("%s: invalid key %q: keys must match [a-z][._0-9a-z]*", f.name, key)
	}
	var last *stmt
	for _, st := range f.stmts {
		if st.key == key {
			last = st
		}
	}
	if last == nil {
		text, err := v.Format()
		if err != nil {
			return fmt.Errorf("%s: key %q: %w", f.name, key, err)
		}
		src := append([]byte(nil), f.src...)
		if len(src) > 0 && src[len(src)-1] != '\n' {
			src = append(src, '\n')
		}
		src = append(src, key+" = "+text+"\n"...)
		return f.reparse(src)
	}
	text, err := formatLike(v, last.val)
	if err != nil {
		return fmt.Errorf("%s: key %q: %w", f.name, key, err)
	}
	edits := []edit{{last.val.start, last.val.end, text}}
	if last.op == Append {
		edits = append(edits, edit{last.opStart, last.opEnd, "="})
	}
	return f.reparse(applyEdits(f.src, edits))
}

// Delete removes every assignment of key and reports whether there was one.
// A statement alone on its line(s) is removed with its line (including a
// trailing comment on the last line); a statement sharing a line with others
// is removed together with its ";" separator.
func (f *File) Delete(key string) (bool, error) {
	var edits []edit
	for i, st := range f.stmts {
		if st.key != key {
			continue
		}
		edits = append(edits, f.stmtRemoval(i))
	}
	if len(edits) == 0 {
		return false, nil
	}
	return true, f.reparse(applyEdits(f.src, edits))
}

func (f *File) stmtRemoval(i int) edit {
	st := f.stmts[i]
	src := f.src
	ls := st.keyStart
	for ls > 0 && (src[ls-1] == ' ' || src[ls-1] == '\t') {
		ls--
	}
	ownLineStart := ls == 0 || src[ls-1] == '\n'
	// After the value: blanks, optional ';', blanks, optional comment, newline.
	j := st.val.end
	for j < len(src) && (src[j] == ' ' || src[j] == '\t') {
		j++
	}
	afterBlanks := j
	semi := false
	if j < len(src) && src[j] == ';' {
		semi = true
		j++
		for j < len(src) && (src[j] == ' ' || src[j] == '\t') {
			j++
		}
	}
	if ownLineStart {
		k := j
		if k < len(src) && src[k] == '#' {
			for k < len(src) && src[k] != '\n' {
				k++
			}
		}
		if k == len(src) {
			return edit{ls, k, ""}
		}
		if src[k] == '\n' {
			return edit{ls, k + 1, ""}
		}
	}
	if semi {
		return edit{st.keyStart, j, ""}
	}
	return edit{st.keyStart, afterBlanks, ""}
}
