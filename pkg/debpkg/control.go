package debpkg

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Stanza is one paragraph of a Debian control file (a Packages index entry,
// `apt-cache show` output, a DEBIAN/control file). Field names are kept as
// written; use Get for a case-insensitive lookup.
type Stanza struct {
	// Fields holds the fields in file order.
	Fields []Field
}

// Field is one "Name: value" pair; multi-line values keep their continuation
// lines joined with "\n" (leading single space removed).
type Field struct {
	Name  string
	Value string
}

// Get returns the value of the named field (case-insensitive), or "".
func (s Stanza) Get(name string) string {
	for _, f := range s.Fields {
		if strings.EqualFold(f.Name, name) {
			return f.Value
		}
	}
	return ""
}

// maxControlLine bounds one line of control data so a hostile input cannot
// make the scanner allocate without limit.
const maxControlLine = 1 << 20

// ParseControl parses Debian control-file syntax (deb822 without PGP
// armour) from r. name is used in error messages (a file name or a command).
// Comment lines starting with '#' are ignored. A line that is neither a
// field, a continuation nor blank is an error naming the line.
func ParseControl(r io.Reader, name string) ([]Stanza, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), maxControlLine)
	var out []Stanza
	var cur *Stanza
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" {
			cur = nil
			continue
		}
		if text[0] == '#' {
			continue
		}
		if text[0] == ' ' || text[0] == '\t' {
			if cur == nil || len(cur.Fields) == 0 {
				return nil, fmt.Errorf("%s:%d: continuation line without a field before it", name, line)
			}
			f := &cur.Fields[len(cur.Fields)-1]
			cont := text[1:]
			if strings.TrimSpace(cont) == "." {
				cont = ""
			}
			f.Value += "\n" + cont
			continue
		}
		i := strings.IndexByte(text, ':')
		if i <= 0 {
			return nil, fmt.Errorf("%s:%d: expected \"Field: value\", got %q", name, line, clip(text))
		}
		fname := text[:i]
		if strings.ContainsAny(fname, " \t") {
			return nil, fmt.Errorf("%s:%d: field name %q contains white space", name, line, clip(fname))
		}
		if cur == nil {
			out = append(out, Stanza{})
			cur = &out[len(out)-1]
		}
		cur.Fields = append(cur.Fields, Field{Name: fname, Value: strings.TrimSpace(text[i+1:])})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return out, nil
}

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// Relation is one alternative of a Depends-style field: a package name with
// an optional version constraint, e.g. "linux-image-6.1.0-48-amd64 (= 6.1.172-1)".
type Relation struct {
	Name    string
	Op      string // "", "=", ">=", "<=", ">>", "<<"
	Version string
	Arch    string // after ':' (e.g. "any"), if present
}

// ParseRelations parses a Depends/Pre-Depends value into groups of
// alternatives ("a | b, c" gives [[a b] [c]]).
func ParseRelations(v string) ([][]Relation, error) {
	var out [][]Relation
	v = strings.ReplaceAll(v, "\n", " ")
	if strings.TrimSpace(v) == "" {
		return nil, nil
	}
	for gi, group := range strings.Split(v, ",") {
		var alts []Relation
		for _, alt := range strings.Split(group, "|") {
			alt = strings.TrimSpace(alt)
			if alt == "" {
				return nil, fmt.Errorf("relation %d: empty alternative in %q", gi+1, clip(v))
			}
			// Drop architecture restrictions "[amd64]" and build profiles "<...>".
			if i := strings.IndexAny(alt, "[<"); i >= 0 && !strings.Contains(alt[:i], "(") {
				alt = strings.TrimSpace(alt[:i])
			}
			var r Relation
			name := alt
			if i := strings.IndexByte(alt, '('); i >= 0 {
				j := strings.IndexByte(alt, ')')
				if j < i {
					return nil, fmt.Errorf("relation %d: unbalanced parenthesis in %q", gi+1, clip(alt))
				}
				name = strings.TrimSpace(alt[:i])
				c := strings.TrimSpace(alt[i+1 : j])
				for _, op := range []string{">=", "<=", ">>", "<<", "=", ">", "<"} {
					if strings.HasPrefix(c, op) {
						r.Op = op
						r.Version = strings.TrimSpace(c[len(op):])
						break
					}
				}
				if r.Op == "" || r.Version == "" {
					return nil, fmt.Errorf("relation %d: bad version constraint %q", gi+1, clip(c))
				}
			}
			if i := strings.IndexByte(name, ':'); i >= 0 {
				r.Arch = name[i+1:]
				name = name[:i]
			}
			if name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("relation %d: bad package name %q", gi+1, clip(name))
			}
			r.Name = name
			alts = append(alts, r)
		}
		out = append(out, alts)
	}
	return out, nil
}
