package bbconf

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
)

// maxIncludeDepth bounds include/require nesting.
const maxIncludeDepth = 64

// Options configures a [Data].
type Options struct {
	// Overrides are the active overrides, lowest priority first, like the
	// colon-separated OVERRIDES variable: e.g. {"linux", "x86-64",
	// "pn-xen-image-minimal", "qemux86-64", "class-target"}. VAR:o and
	// VAR:append:o apply only when o is listed.
	Overrides []string
	// SearchPath lists directories searched (after the including file's own
	// directory) for relative include and require paths, like BBPATH.
	SearchPath []string
}

type origin struct {
	pos Position
	seq int
}

// cond is a queued :append, :prepend or :remove with its override condition.
type cond struct {
	v        val
	override string
}

// variable is everything stored under one name.
type variable struct {
	content    val
	hasContent bool
	weak       val // ??= default
	hasWeak    bool
	appends    []cond
	prepends   []cond
	removes    []cond
	flags      map[string]val
	weakFlags  map[string]val

	origins     []origin
	flagOrigins map[string][]origin
}

func (v *variable) empty() bool {
	return !v.hasContent && !v.hasWeak && len(v.appends) == 0 && len(v.prepends) == 0 &&
		len(v.removes) == 0 && len(v.flags) == 0 && len(v.weakFlags) == 0
}

func (v *variable) clone() *variable {
	c := *v
	c.appends = slices.Clone(v.appends)
	c.prepends = slices.Clone(v.prepends)
	c.removes = slices.Clone(v.removes)
	c.origins = slices.Clone(v.origins)
	if v.flags != nil {
		c.flags = make(map[string]val, len(v.flags))
		for k, x := range v.flags {
			c.flags[k] = x
		}
	}
	if v.weakFlags != nil {
		c.weakFlags = make(map[string]val, len(v.weakFlags))
		for k, x := range v.weakFlags {
			c.weakFlags[k] = x
		}
	}
	if v.flagOrigins != nil {
		c.flagOrigins = make(map[string][]origin, len(v.flagOrigins))
		for k, x := range v.flagOrigins {
			c.flagOrigins[k] = slices.Clone(x)
		}
	}
	return &c
}

// ovEntry records that variable name is VAR:override for some VAR.
type ovEntry struct {
	name     string
	override string
}

// Data holds parsed variables. Create it with [New].
type Data struct {
	overrides   []string
	overrideSet map[string]bool
	search      []string

	vars map[string]*variable
	ovr  map[string][]ovEntry

	inherits []string
	files    []string
	stack    []string // absolute paths of files being parsed
	seq      int

	gen       int        // bumped on every change
	viewMu    sync.Mutex // guards the view cache for concurrent readers
	view      *Data      // cached key-expanded copy (d itself if no name has ${})
	viewValid bool
	viewGen   int
	viewError error
}

// New returns an empty Data.
func New(opts Options) *Data {
	d := &Data{
		overrides:   slices.Clone(opts.Overrides),
		overrideSet: map[string]bool{},
		search:      slices.Clone(opts.SearchPath),
		vars:        map[string]*variable{},
		ovr:         map[string][]ovEntry{},
	}
	for _, o := range opts.Overrides {
		d.overrideSet[o] = true
	}
	return d
}

func (d *Data) rec(name string) *variable {
	v := d.vars[name]
	if v == nil {
		v = &variable{}
		d.vars[name] = v
	}
	return v
}

func (d *Data) touch() { d.gen++ }

func (d *Data) addOrigin(name string, pos Position) {
	d.seq++
	v := d.rec(name)
	v.origins = append(v.origins, origin{pos, d.seq})
}

func (d *Data) addFlagOrigin(name, flag string, pos Position) {
	d.seq++
	v := d.rec(name)
	if v.flagOrigins == nil {
		v.flagOrigins = map[string][]origin{}
	}
	v.flagOrigins[flag] = append(v.flagOrigins[flag], origin{pos, d.seq})
}

// ParseFile parses and evaluates the file at path. Relative include and
// require paths are resolved against the file's directory, then
// [Options.SearchPath]. On error the Data may hold the statements evaluated
// before the failing one.
func (d *Data) ParseFile(path string) error {
	return d.parseFile(path, Position{})
}

// Parse parses and evaluates src as if it were the file name (used in error
// messages and to resolve relative includes).
func (d *Data) Parse(name string, src []byte) error {
	return d.parseSrc(name, src, Position{})
}

func (d *Data) parseFile(path string, from Position) error {
	src, err := os.ReadFile(path)
	if err != nil {
		if from.Line == 0 {
			return err
		}
		return &Error{Pos: from, Msg: err.Error(), Err: err}
	}
	return d.parseSrc(path, src, from)
}

func (d *Data) parseSrc(name string, src []byte, from Position) error {
	abs, err := filepath.Abs(name)
	if err != nil {
		abs = filepath.Clean(name)
	}
	for i, s := range d.stack {
		if s == abs {
			chain := append(slices.Clone(d.stack[i:]), abs)
			return errorf(from, "include cycle: %s", strings.Join(chain, " -> "))
		}
	}
	if len(d.stack) >= maxIncludeDepth {
		return errorf(from, "includes nested more than %d deep", maxIncludeDepth)
	}
	stmts, err := parse(name, src)
	if err != nil {
		return err
	}
	d.files = append(d.files, name)
	d.stack = append(d.stack, abs)
	defer func() { d.stack = d.stack[:len(d.stack)-1] }()
	for _, st := range stmts {
		if err := d.eval(st); err != nil {
			return err
		}
	}
	return nil
}

func (d *Data) eval(st stmt) error {
	d.touch()
	switch st.kind {
	case stAssign:
		return d.assign(st.name, st.flag, st.op, val{st.value}, st.pos, st.export)
	case stExport:
		d.rec(st.name).setFlag("export", textVal("1"))
		d.addFlagOrigin(st.name, "export", st.pos)
	case stUnset:
		d.delVar(st.name)
		d.addOrigin(st.name, st.pos)
	case stUnsetFlag:
		if v := d.vars[st.name]; v != nil {
			if _, ok := v.flags[st.flag]; ok {
				delete(v.flags, st.flag)
				delete(v.weakFlags, st.flag)
			}
		}
		d.addFlagOrigin(st.name, st.flag, st.pos)
	case stInherit:
		s, err := d.expandString(val{st.value})
		if err != nil {
			return err
		}
		d.inherits = append(d.inherits, strings.Fields(s)...)
	case stInclude, stRequire, stIncludeAll:
		return d.include(st)
	}
	return nil
}

func (v *variable) setFlag(flag string, x val) {
	if v.flags == nil {
		v.flags = map[string]val{}
	}
	v.flags[flag] = x
}

func concat(parts ...val) val {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make(val, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var space = val{{text: " "}}

// assign performs one assignment with BitBake's operator semantics.
func (d *Data) assign(name, flag, op string, value val, pos Position, export bool) error {
	d.touch()
	if export {
		d.rec(name).setFlag("export", textVal("1"))
		d.addFlagOrigin(name, "export", pos)
	}
	base, _, override, isKeyword := splitKeywordName(name)
	var cur val
	hasCur := false
	if v := d.vars[name]; v != nil {
		if flag != "" {
			cur, hasCur = v.flags[flag]
		} else if !isKeyword {
			cur, hasCur = v.content, v.hasContent
		}
	}
	var nv val
	switch op {
	case opSet, opWeak:
		nv = value
	case opDefault:
		if hasCur {
			return nil
		}
		nv = value
	case opImmediate:
		owner := name + "[:=]"
		if flag != "" {
			owner = name + "[" + flag + "][:=]"
		}
		s, err := newEvaluator(d).expand(value, owner)
		if err != nil {
			return err
		}
		p := piece{text: s}
		if len(value) > 0 {
			p.src, p.off = value[0].src, value[0].off
		}
		nv = val{p}
	case opAppend:
		// Growing cur in place keeps repeated += linear. This is safe
		// because only the record being assigned holds cur, and readers
		// (the evaluator) copy before they append.
		nv = append(append(cur, space...), value...)
	case opPrepend:
		nv = concat(value, space, cur)
	case opPostDot:
		nv = append(cur, value...)
	case opPreDot:
		nv = concat(value, cur)
	}
	switch {
	case flag != "":
		v := d.rec(name)
		if op == opWeak {
			if v.weakFlags == nil {
				v.weakFlags = map[string]val{}
			}
			v.weakFlags[flag] = nv
		} else {
			v.setFlag(flag, nv)
		}
		d.addFlagOrigin(name, flag, pos)
	case isKeyword:
		v := d.rec(base)
		c := cond{nv, override}
		switch {
		case strings.HasPrefix(name[len(base):], ":append"):
			v.appends = append(v.appends, c)
		case strings.HasPrefix(name[len(base):], ":prepend"):
			v.prepends = append(v.prepends, c)
		default:
			v.removes = append(v.removes, c)
		}
		d.addOrigin(base, pos)
		if strings.Contains(base, ":") {
			d.updateOverrides(base)
		}
	default:
		v := d.rec(name)
		if op == opWeak {
			v.weak, v.hasWeak = nv, true
		} else {
			v.content, v.hasContent = nv, true
		}
		d.addOrigin(name, pos)
		d.updateOverrides(name)
	}
	return nil
}

// updateOverrides registers VAR:a:b as a candidate of VAR:a (override b)
// and of VAR (override a:b), like BitBake's _setvar_update_overrides.
func (d *Data) updateOverrides(name string) {
	c := strings.LastIndexByte(name, ':')
	if c < 0 {
		return
	}
	override, short := name[c+1:], name[:c]
	for override != "" && isOverrideStart(override[0]) {
		e := ovEntry{name, override}
		if !slices.Contains(d.ovr[short], e) {
			d.ovr[short] = append(slices.Clone(d.ovr[short]), e)
		}
		override = ""
		if c2 := strings.LastIndexByte(short, ':'); c2 >= 0 {
			override, short = name[c2+1:], name[:c2]
			if short == "" {
				override = ""
			}
		}
	}
}

// delVar implements "unset VAR": the value, flags, queued operations and
// the link to conditional variants are dropped.
func (d *Data) delVar(name string) {
	d.touch()
	if v := d.vars[name]; v != nil {
		d.vars[name] = &variable{origins: v.origins}
	}
	delete(d.ovr, name)
	c := strings.LastIndexByte(name, ':')
	if c < 0 {
		return
	}
	override, short := name[c+1:], name[:c]
	for override != "" && isOverrideStart(override[0]) {
		if l := d.ovr[short]; l != nil {
			d.ovr[short] = slices.DeleteFunc(slices.Clone(l), func(e ovEntry) bool { return e == ovEntry{name, override} })
		}
		override = ""
		if c2 := strings.LastIndexByte(short, ':'); c2 >= 0 {
			override, short = name[c2+1:], name[:c2]
			if short == "" {
				override = ""
			}
		}
	}
}

func (d *Data) include(st stmt) error {
	s, err := d.expandString(val{st.value})
	if err != nil {
		return err
	}
	parent := st.pos.File
	for _, fn := range strings.Fields(s) {
		if st.kind == stIncludeAll {
			for _, dir := range d.search {
				p := filepath.Join(dir, fn)
				if isFile(p) {
					if err := d.parseFile(p, st.pos); err != nil {
						return err
					}
				}
			}
			continue
		}
		if fn == parent {
			continue
		}
		path, tried := d.resolve(parent, fn)
		if path == "" {
			if st.kind == stRequire {
				msg := "could not require file " + fn + " (tried " + strings.Join(tried, ", ") + ")"
				if strings.Contains(fn, "${") {
					msg += "; the name has an undefined variable reference"
				}
				return errorf(st.pos, "%s", msg)
			}
			continue
		}
		if err := d.parseFile(path, st.pos); err != nil {
			return err
		}
	}
	return nil
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// resolve finds fn relative to the including file, then in the search path.
func (d *Data) resolve(parent, fn string) (string, []string) {
	if filepath.IsAbs(fn) {
		if isFile(fn) {
			return fn, nil
		}
		return "", []string{fn}
	}
	dirs := append([]string{filepath.Dir(parent)}, d.search...)
	var tried []string
	for _, dir := range dirs {
		p := filepath.Join(dir, fn)
		if isFile(p) {
			return p, nil
		}
		tried = append(tried, p)
	}
	return "", tried
}

// Set assigns value to name like a "name = value" line would at this point
// (lazy expansion; :append/:remove/override suffixes in name work as in a
// file). Call it before parsing to act like an environment setting that the
// files may override, or after parsing to force a value.
func (d *Data) Set(name, value string) {
	_ = d.assign(name, "", opSet, textVal(value), Position{}, false)
}

// SetDefault sets a weak default, like "name ??= value". It is ignored for
// names ending in :append, :prepend or :remove (a syntax error in a file).
func (d *Data) SetDefault(name, value string) {
	if _, _, _, kw := splitKeywordName(name); kw {
		return
	}
	_ = d.assign(name, "", opWeak, textVal(value), Position{}, false)
}

// SetFlag sets a varflag, like "name[flag] = value".
func (d *Data) SetFlag(name, flag, value string) {
	_ = d.assign(name, flag, opSet, textVal(value), Position{}, false)
}

// Names returns the sorted names of all variables that have a value, a weak
// default, queued :append/:prepend/:remove operations or flags. Conditional
// variants such as "VAR:pn-foo" are listed under their own names.
func (d *Data) Names() []string {
	v := d
	if x, err := d.finalView(); err == nil {
		v = x
	}
	var names []string
	for n, r := range v.vars {
		if !r.empty() {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// FlagNames returns the sorted names of the flags set on name (including
// weak "??=" flag defaults and "export").
func (d *Data) FlagNames(name string) []string {
	v := d
	if x, err := d.finalView(); err == nil {
		v = x
	}
	r := v.vars[name]
	if r == nil {
		return nil
	}
	var names []string
	for f := range r.flags {
		names = append(names, f)
	}
	for f := range r.weakFlags {
		if _, ok := r.flags[f]; !ok {
			names = append(names, f)
		}
	}
	sort.Strings(names)
	return names
}

// Origin returns, in evaluation order, where name was assigned, appended
// to, removed from or unset, including its conditional variants
// (name:override). Positions with Line 0 come from [Data.Set] and friends.
func (d *Data) Origin(name string) []Position {
	var all []origin
	seen := map[string]bool{}
	var add func(n string)
	add = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		if r := d.vars[n]; r != nil {
			all = append(all, r.origins...)
		}
		for _, e := range d.ovr[n] {
			add(e.name)
		}
	}
	add(name)
	return sortOrigins(all)
}

// FlagOrigin returns, in evaluation order, where name[flag] was assigned or
// unset.
func (d *Data) FlagOrigin(name, flag string) []Position {
	r := d.vars[name]
	if r == nil {
		return nil
	}
	return sortOrigins(slices.Clone(r.flagOrigins[flag]))
}

func sortOrigins(all []origin) []Position {
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	var out []Position
	for _, o := range all {
		out = append(out, o.pos)
	}
	return out
}

// Inherits returns the class names given to inherit, in order (expanded;
// the classes themselves are not read).
func (d *Data) Inherits() []string { return slices.Clone(d.inherits) }

// Files returns every file parsed so far, including included ones, in order.
func (d *Data) Files() []string { return slices.Clone(d.files) }
