package bbconf

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Bounds that keep hostile input from hanging or exhausting memory.
const (
	maxExpandDepth = 100      // nested variable references
	maxValueSize   = 1 << 20  // bytes of one expanded value
	maxPasses      = 100      // re-expansion passes over one value
	maxWork        = 32 << 20 // bytes produced by all expansions of one read
)

// Value is an evaluated variable or flag.
type Value struct {
	// Text is the fully expanded value.
	Text string
	// Unresolved lists, in order of first appearance, the names in ${NAME}
	// references left in Text because NAME is not set (BitBake keeps them
	// literally).
	Unresolved []string
}

// Get returns the evaluated value of name: conditional overrides, :append,
// :prepend, ${} expansion and :remove applied. ok is false if name is not
// set at all.
func (d *Data) Get(name string) (string, bool, error) {
	v, ok, err := d.Lookup(name)
	return v.Text, ok, err
}

// GetFlag returns the expanded value of the varflag name[flag]. BitBake
// applies no overrides or :append to flags; a "??=" flag default is used
// when the flag is not set otherwise.
func (d *Data) GetFlag(name, flag string) (string, bool, error) {
	v, ok, err := d.LookupFlag(name, flag)
	return v.Text, ok, err
}

// Lookup is [Data.Get] that also reports unresolved references.
func (d *Data) Lookup(name string) (Value, bool, error) {
	v, err := d.finalView()
	if err != nil {
		return Value{}, false, err
	}
	s, ok, err := newEvaluator(v).value(name, nil)
	if err != nil || !ok {
		return Value{}, ok, err
	}
	return Value{Text: s, Unresolved: unresolved(s)}, true, nil
}

// LookupFlag is [Data.GetFlag] that also reports unresolved references.
func (d *Data) LookupFlag(name, flag string) (Value, bool, error) {
	v, err := d.finalView()
	if err != nil {
		return Value{}, false, err
	}
	r := v.vars[name]
	if r == nil {
		return Value{}, false, nil
	}
	raw, ok := r.flags[flag]
	if !ok {
		raw, ok = r.weakFlags[flag]
	}
	if !ok {
		return Value{}, false, nil
	}
	s, err := newEvaluator(v).expand(raw, name+"["+flag+"]")
	if err != nil {
		return Value{}, false, err
	}
	return Value{Text: s, Unresolved: unresolved(s)}, true, nil
}

// Expand expands ${} references in s against the current variables.
func (d *Data) Expand(s string) (Value, error) {
	v, err := d.finalView()
	if err != nil {
		return Value{}, err
	}
	out, err := v.expandString(textVal(s))
	if err != nil {
		return Value{}, err
	}
	return Value{Text: out, Unresolved: unresolved(out)}, nil
}

func (d *Data) expandString(v val) (string, error) {
	return newEvaluator(d).expand(v, "")
}

// unresolved lists the names of ${NAME} references in s.
func unresolved(s string) []string {
	var names []string
	for i := 0; ; {
		j := strings.Index(s[i:], "${")
		if j < 0 {
			return names
		}
		j += i
		k := j + 2
		for k < len(s) && isRefChar(s[k]) {
			k++
		}
		if k > j+2 && k < len(s) && s[k] == '}' {
			if n := s[j+2 : k]; !slices.Contains(names, n) {
				names = append(names, n)
			}
			i = k + 1
		} else {
			i = j + 1
		}
	}
}

// isRefChar reports whether c may appear in ${NAME} ([a-zA-Z0-9\-_+./~:]).
func isRefChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_+./~:", c) >= 0
}

type memoEntry struct {
	s  string
	ok bool
}

// evaluator expands values of one Data. It memoises expanded variables (like
// BitBake's expand cache), which also keeps repeated references linear.
type evaluator struct {
	d     *Data
	memo  map[string]memoEntry
	stack []string
	work  int
}

func newEvaluator(d *Data) *evaluator {
	return &evaluator{d: d, memo: map[string]memoEntry{}}
}

func (d *Data) isActive(o string) bool {
	if o == "" {
		return true
	}
	for _, p := range strings.Split(o, ":") {
		if !d.overrideSet[p] {
			return false
		}
	}
	return true
}

// selectOverride picks the conditional variant of a variable to use, a port
// of the loop in BitBake's getVarFlag: the override listed last wins, and
// VAR:a:b beats VAR:a when b is active.
func (d *Data) selectOverride(entries []ovEntry) string {
	// active is an insertion-ordered map like a Python dict.
	var keys []string
	vals := map[string]string{}
	put := func(k, v string) {
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	del := func(k string) {
		delete(vals, k)
		keys = slices.DeleteFunc(keys, func(x string) bool { return x == k })
	}
	for _, e := range entries {
		if d.isActive(e.override) {
			put(e.override, e.name)
		}
	}
	match := ""
	for mod := true; mod; {
		mod = false
		for _, o := range d.overrides {
			for _, a := range slices.Clone(keys) {
				t, ok := vals[a]
				if !ok {
					continue
				}
				if strings.HasSuffix(a, ":"+o) {
					del(a)
					put(strings.ReplaceAll(a, ":"+o, ""), t)
					mod = true
				} else if a == o {
					match = t
					del(a)
				}
			}
		}
	}
	return match
}

// raw returns name's unexpanded value with the selected conditional
// variant, :append and :prepend applied, and the :remove values to apply
// after expansion.
func (e *evaluator) raw(name string) (val, bool, []val) {
	d := e.d
	var (
		value   val
		set     bool
		removes []val
	)
	if entries := d.ovr[name]; len(entries) > 0 {
		if match := d.selectOverride(entries); match != "" {
			value, set, removes = e.raw(match)
		}
	}
	r := d.vars[name]
	if r == nil {
		return value, set, removes
	}
	if !set {
		if r.hasContent {
			value, set = r.content, true
		} else if r.hasWeak {
			value, set = r.weak, true
		}
	}
	owned := false // value may alias a record's slice until copied
	for _, c := range r.appends {
		if d.isActive(c.override) {
			if !owned {
				value, owned = slices.Clone(value), true
			}
			value, set = append(value, c.v...), true
		}
	}
	var pre []val
	for _, c := range r.prepends {
		if d.isActive(c.override) {
			pre = append(pre, c.v)
		}
	}
	if len(pre) > 0 {
		slices.Reverse(pre)
		value, set = concat(append(pre, value)...), true
	}
	for _, c := range r.removes {
		if d.isActive(c.override) {
			removes = append(slices.Clip(removes), c.v)
		}
	}
	return value, set, removes
}

// value returns the expanded value of a variable; from is the value that
// referenced it (for error positions), nil at top level.
func (e *evaluator) value(name string, from val) (string, bool, error) {
	if m, ok := e.memo[name]; ok {
		return m.s, m.ok, nil
	}
	for i, s := range e.stack {
		if s == name {
			chain := append(slices.Clone(e.stack[i:]), name)
			return "", false, &Error{Pos: from.locate("${" + name + "}"), Msg: "variable expansion cycle: " + strings.Join(chain, " -> ")}
		}
	}
	if len(e.stack) >= maxExpandDepth {
		return "", false, &Error{Pos: from.locate("${" + name + "}"),
			Msg: fmt.Sprintf("variable references nested more than %d deep while expanding %s", maxExpandDepth, e.stack[0])}
	}
	e.stack = append(e.stack, name)
	defer func() { e.stack = e.stack[:len(e.stack)-1] }()
	v, set, removes := e.raw(name)
	if !set {
		e.memo[name] = memoEntry{}
		return "", false, nil
	}
	s, err := e.expand(v, name)
	if err != nil {
		return "", false, err
	}
	if s != "" && len(removes) > 0 {
		if s, err = e.applyRemoves(s, removes, name); err != nil {
			return "", false, err
		}
	}
	e.memo[name] = memoEntry{s, true}
	return s, true, nil
}

// expand replaces ${NAME} references in v until nothing changes, like
// BitBake's expandWithRefs. owner names the value for error messages.
func (e *evaluator) expand(v val, owner string) (string, error) {
	in := owner
	if in != "" {
		in = " (in " + owner + ")"
	}
	for _, p := range v {
		if i := strings.Index(p.text, "${@"); i >= 0 {
			return "", &Error{Pos: p.pos(i), Msg: "python expansion ${@...} is not supported" + in}
		}
	}
	s := v.String()
	for pass := 0; strings.Contains(s, "${"); pass++ {
		if pass >= maxPasses {
			return "", &Error{Pos: v.firstPos(), Msg: fmt.Sprintf("expansion%s did not settle after %d passes", in, maxPasses)}
		}
		ns, err := e.substitute(s, v, owner)
		if err != nil {
			return "", err
		}
		if ns == s {
			break
		}
		s = ns
		if strings.Contains(s, "${@") {
			return "", &Error{Pos: v.firstPos(), Msg: "python expansion ${@...} is not supported (produced by expanding " + owner + ")"}
		}
	}
	return s, nil
}

func (e *evaluator) substitute(s string, v val, owner string) (string, error) {
	var b strings.Builder
	i := 0
	for {
		j := strings.Index(s[i:], "${")
		if j < 0 {
			break
		}
		j += i
		k := j + 2
		for k < len(s) && isRefChar(s[k]) {
			k++
		}
		if k == j+2 || k >= len(s) || s[k] != '}' {
			b.WriteString(s[i : j+1])
			i = j + 1
			continue
		}
		b.WriteString(s[i:j])
		x, ok, err := e.value(s[j+2:k], v)
		if err != nil {
			return "", err
		}
		if ok {
			b.WriteString(x)
		} else {
			b.WriteString(s[j : k+1])
		}
		i = k + 1
		if b.Len() > maxValueSize {
			return "", &Error{Pos: v.firstPos(), Msg: fmt.Sprintf("expanded value of %s is larger than %d bytes", ownerName(owner), maxValueSize)}
		}
	}
	b.WriteString(s[i:])
	if e.work += b.Len(); e.work > maxWork {
		return "", &Error{Pos: v.firstPos(), Msg: fmt.Sprintf("expanding %s produces more than %d bytes in total", ownerName(owner), maxWork)}
	}
	if b.Len() > maxValueSize {
		return "", &Error{Pos: v.firstPos(), Msg: fmt.Sprintf("expanded value of %s is larger than %d bytes", ownerName(owner), maxValueSize)}
	}
	return b.String(), nil
}

func ownerName(o string) string {
	if o == "" {
		return "the string"
	}
	return o
}

// applyRemoves drops every whitespace-separated word of s that appears in
// one of the expanded :remove values, keeping the whitespace around it
// (BitBake splits on single whitespace characters and joins again).
func (e *evaluator) applyRemoves(s string, removes []val, owner string) (string, error) {
	drop := map[string]bool{}
	for _, r := range removes {
		x, err := e.expand(r, owner+":remove")
		if err != nil {
			return "", err
		}
		for _, w := range strings.Fields(x) {
			drop[w] = true
		}
	}
	var b strings.Builder
	word := 0
	flush := func(end int) {
		if w := s[word:end]; !drop[w] {
			b.WriteString(w)
		}
	}
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if unicode.IsSpace(r) {
			flush(i)
			b.WriteString(s[i : i+n])
			word = i + n
		}
		i += n
	}
	flush(len(s))
	return b.String(), nil
}

// finalView returns d with variable names containing ${...} expanded, like
// BitBake's expandKeys after parsing. The copy is cached until d changes.
func (d *Data) finalView() (*Data, error) {
	d.viewMu.Lock()
	defer d.viewMu.Unlock()
	if d.viewValid && d.viewGen == d.gen {
		return d.view, d.viewError
	}
	var keys []string
	for k, r := range d.vars {
		if strings.Contains(k, "${") && !r.empty() {
			keys = append(keys, k)
		}
	}
	d.viewValid, d.viewGen = true, d.gen
	if len(keys) == 0 {
		d.view, d.viewError = d, nil
		return d, nil
	}
	sort.Strings(keys)
	c := d.clone()
	ev := newEvaluator(c)
	type rename struct{ from, to string }
	var todo []rename
	for _, k := range keys {
		ek, err := ev.expand(val{{text: k, src: nil}}, "variable name "+k)
		if err != nil {
			if o := d.vars[k].origins; len(o) > 0 {
				if e, ok := err.(*Error); ok && e.Pos.Line == 0 {
					e.Pos = o[len(o)-1].pos
				}
			}
			d.view, d.viewError = nil, err
			return nil, err
		}
		if ek != k {
			todo = append(todo, rename{k, ek})
		}
	}
	for _, r := range todo {
		c.renameVar(r.from, r.to, 0)
	}
	d.view, d.viewError = c, nil
	return c, nil
}

func (d *Data) clone() *Data {
	c := &Data{
		overrides:   d.overrides,
		overrideSet: d.overrideSet,
		search:      d.search,
		inherits:    d.inherits,
		files:       d.files,
		seq:         d.seq,
		gen:         d.gen,
	}
	c.vars = make(map[string]*variable, len(d.vars))
	for k, v := range d.vars {
		c.vars[k] = v.clone()
	}
	c.ovr = make(map[string][]ovEntry, len(d.ovr))
	for k, v := range d.ovr {
		c.ovr[k] = slices.Clone(v)
	}
	return c
}

// renameVar is a port of BitBake's renameVar used by expandKeys: the value
// replaces the target's, queued operations are added to the target's, and
// conditional variants are renamed too.
func (d *Data) renameVar(key, newkey string, depth int) {
	if depth > maxExpandDepth || key == newkey {
		return
	}
	src := d.vars[key]
	if src == nil {
		return
	}
	if src.hasContent || src.hasWeak {
		x := src.content
		if !src.hasContent {
			x = src.weak
		}
		_ = d.assign(newkey, "", opSet, x, Position{}, false)
	}
	dst := d.rec(newkey)
	dst.appends = append(slices.Clip(dst.appends), src.appends...)
	dst.prepends = append(slices.Clip(dst.prepends), src.prepends...)
	dst.removes = append(slices.Clip(dst.removes), src.removes...)
	dst.origins = append(slices.Clip(dst.origins), src.origins...)
	if entries, ok := d.ovr[key]; ok {
		var ne []ovEntry
		for _, e := range entries {
			ne = append(ne, ovEntry{strings.ReplaceAll(e.name, key, newkey), e.override})
		}
		d.ovr[newkey] = ne
		for _, e := range entries {
			d.renameVar(e.name, strings.ReplaceAll(e.name, key, newkey), depth+1)
		}
	}
	d.delVar(key)
}
