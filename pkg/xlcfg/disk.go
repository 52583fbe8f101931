package xlcfg

import (
	"fmt"
	"strconv"
	"strings"
)

// Tristate is an optional boolean disk flag (e.g. discard / no-discard).
type Tristate int8

const (
	// Unset means the flag was not given.
	Unset Tristate = iota
	// True means the positive form was given (e.g. "discard").
	True
	// False means the negative form was given (e.g. "no-discard").
	False
)

// Disk is a parsed xl disk specification (DISK_SPEC_STRING), with the
// defaults xl applies. Spec keeps the original string so that [Disk.WithTarget]
// can change the target without touching the rest.
type Disk struct {
	// Spec is the spec string that was parsed.
	Spec string
	// Target is the backing path or device (pdev_path); "" if none.
	Target string
	// HasTarget reports whether a target was given at all (an empty
	// positional target counts, as for an empty CD-ROM drive).
	HasTarget bool
	// TargetKeyed reports whether the target came from "target=".
	TargetKeyed bool
	// Format is raw, qcow, qcow2, vhd, empty or qed (raw if not given).
	Format string
	// Vdev is the virtual device name, e.g. xvda or hdc.
	Vdev string
	// ReadWrite is false for access r/ro and for CD-ROMs.
	ReadWrite bool
	// CDROM reports devtype=cdrom (or "cdrom", or vdev suffix ":cdrom").
	CDROM bool
	// Removable is set for CD-ROMs.
	Removable bool
	// Backend is the backend domain name (backend=).
	Backend string
	// BackendType is phy, tap, qdisk or standalone; "" if not given.
	BackendType string
	// Script is the block script (script=, or block-<x> from an
	// iscsi:/nbd:/enbd:/drbd: prefix).
	Script string
	// Specification is xen or virtio; "" if not given.
	Specification string
	// DirectIOSafe reports the direct-io-safe flag.
	DirectIOSafe bool
	// Discard, Colo, Trusted and GrantUsage are optional flags.
	Discard, Colo, Trusted, GrantUsage Tristate
	// ColoHost, ColoPort, ColoExport, ActiveDisk and HiddenDisk are the COLO
	// settings.
	ColoHost   string
	ColoPort   int
	ColoExport string
	ActiveDisk string
	HiddenDisk string
	// Prefixes lists deprecated prefixes in order ("phy", "file", "tap",
	// "aio", "raw", ...).
	Prefixes []string

	targetStart, targetEnd int // span of Target in Spec; -1 if none
}

// DiskError is a disk spec parse error.
type DiskError struct {
	// Spec is the whole spec string.
	Spec string
	// Offset is the byte offset in Spec of the offending parameter, or -1
	// for errors about the spec as a whole.
	Offset int
	// Near is the offending text (as xl reports it), if any.
	Near string
	// Msg is xl's message.
	Msg string
}

// Error formats the error like xl does, with the offset.
func (e *DiskError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("disk spec %q: %s", e.Spec, e.Msg)
	}
	return fmt.Sprintf("disk spec %q: offset %d: %s near %q", e.Spec, e.Offset, e.Msg, e.Near)
}

type diskParser struct {
	s          string
	d          *Disk
	err        *DiskError
	format     string // "" = unknown
	vdevSet    bool
	targetSet  bool
	accessSet  bool
	hadPrefix  bool
	backendSet bool
	scriptSet  bool
	strSet     map[string]bool
	nextNL     []int // nextNL[i] is the offset of the first '\n' at or after i
}

func (p *diskParser) lineEnd(i int) int { return p.nextNL[i] }

// ParseDisk parses a disk spec string exactly as xl's libxlu_disk_l.l does,
// in its positional form ("[target],[format],[vdev],[access]" after optional
// deprecated prefixes such as "phy:" or "file:"), keyed form
// ("format=raw, vdev=xvda, access=rw, target=/img") or a mixture.
func ParseDisk(spec string) (Disk, error) {
	d := Disk{Spec: spec, ReadWrite: true, targetStart: -1, targetEnd: -1}
	p := &diskParser{s: spec, d: &d, strSet: map[string]bool{}, nextNL: make([]int, len(spec)+1)}
	p.nextNL[len(spec)] = len(spec)
	for i := len(spec) - 1; i >= 0; i-- {
		if spec[i] == '\n' {
			p.nextNL[i] = i
		} else {
			p.nextNL[i] = p.nextNL[i+1]
		}
	}
	if i := strings.IndexByte(spec, 0); i >= 0 {
		return Disk{}, &DiskError{Spec: spec, Offset: i, Near: spec[i:], Msg: "NUL byte in disk spec"}
	}
	pos := 0
	for pos < len(spec) && p.err == nil {
		n := p.step(pos)
		if n <= 0 { // cannot happen; guards against a hang
			p.fail(pos, spec[pos:], "internal error: no progress")
			break
		}
		pos += n
	}
	if p.err != nil {
		return Disk{}, p.err
	}
	if p.format == "" {
		p.format = "raw"
	}
	d.Format = p.format
	if d.CDROM {
		d.Removable = true
		d.ReadWrite = false
		if d.Target == "" {
			d.Format = "empty"
		}
	}
	if !p.vdevSet {
		return Disk{}, &DiskError{Spec: spec, Offset: -1, Msg: "no vdev specified"}
	}
	if !d.HasTarget && !d.Removable {
		return Disk{}, &DiskError{Spec: spec, Offset: -1, Msg: "no target specified (and device not removable)"}
	}
	return d, nil
}

func (p *diskParser) fail(off int, near, msg string) {
	if p.err == nil {
		p.err = &DiskError{Spec: p.s, Offset: off, Near: near, Msg: msg}
	}
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' }

// keyed rules "name=[^,]*,?" in scanner order, and literal flag rules
// "name,?". Order matters for ties.
type diskRule struct {
	lit   string // literal prefix
	value bool   // followed by [^,]* (keyed) ; otherwise a literal flag
	act   func(p *diskParser, off int, text, val string)
}

var diskRules = []diskRule{
	{"format=", true, func(p *diskParser, off int, text, val string) { p.setFormat(off, text, val) }},
	{"cdrom", false, func(p *diskParser, off int, text, val string) { p.d.CDROM = true }},
	{"devtype=cdrom", false, func(p *diskParser, off int, text, val string) { p.d.CDROM = true }},
	{"devtype=disk", false, func(p *diskParser, off int, text, val string) { p.d.CDROM = false }},
	{"devtype=", true, func(p *diskParser, off int, text, val string) { p.fail(off, text, "unknown value for type") }},
	{"access=", true, func(p *diskParser, off int, text, val string) { p.setAccess(off, text, val) }},
	{"backend=", true, func(p *diskParser, off int, text, val string) { p.saveString(off, "backend", &p.d.Backend, val) }},
	{"backendtype=", true, func(p *diskParser, off int, text, val string) {
		switch val {
		case "phy", "tap", "qdisk", "standalone":
			p.setEnum(off, "backendtype", &p.d.BackendType, val)
		default:
			p.fail(off, val, "unknown value for backendtype")
		}
	}},
	{"specification=", true, func(p *diskParser, off int, text, val string) {
		switch val {
		case "xen", "virtio":
			p.setEnum(off, "specification", &p.d.Specification, val)
		default:
			p.fail(off, val, "unknown value for specification")
		}
	}},
	{"vdev=", true, func(p *diskParser, off int, text, val string) { p.setVdev(off, val) }},
	{"script=", true, func(p *diskParser, off int, text, val string) { p.saveString(off, "script", &p.d.Script, val) }},
	{"direct-io-safe", false, func(p *diskParser, off int, text, val string) { p.d.DirectIOSafe = true }},
	{"discard", false, func(p *diskParser, off int, text, val string) { p.d.Discard = True }},
	{"no-discard", false, func(p *diskParser, off int, text, val string) { p.d.Discard = False }},
	{"colo", false, func(p *diskParser, off int, text, val string) { p.d.Colo = True }},
	{"no-colo", false, func(p *diskParser, off int, text, val string) { p.d.Colo = False }},
	{"colo-host=", true, func(p *diskParser, off int, text, val string) { p.saveString(off, "colo-host", &p.d.ColoHost, val) }},
	{"colo-port=", true, func(p *diskParser, off int, text, val string) {
		n := atoi(val)
		if n == 0 {
			p.fail(off, val, "unknown value for colo_port")
			return
		}
		p.d.ColoPort = n
	}},
	{"colo-export=", true, func(p *diskParser, off int, text, val string) {
		p.saveString(off, "colo-export", &p.d.ColoExport, val)
	}},
	{"active-disk=", true, func(p *diskParser, off int, text, val string) {
		p.saveString(off, "active-disk", &p.d.ActiveDisk, val)
	}},
	{"hidden-disk=", true, func(p *diskParser, off int, text, val string) {
		p.saveString(off, "hidden-disk", &p.d.HiddenDisk, val)
	}},
	{"trusted", false, func(p *diskParser, off int, text, val string) { p.d.Trusted = True }},
	{"untrusted", false, func(p *diskParser, off int, text, val string) { p.d.Trusted = False }},
	{"grant_usage=1", false, func(p *diskParser, off int, text, val string) { p.d.GrantUsage = True }},
	{"grant_usage=0", false, func(p *diskParser, off int, text, val string) { p.d.GrantUsage = False }},
}

// atoi mimics C atoi: optional blanks and sign, then digits; 0 if none.
func atoi(s string) int {
	i := 0
	for i < len(s) && (s[i] == ' ' || (s[i] >= '\t' && s[i] <= '\r')) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	n := 0
	for i < len(s) && isDigit(s[i]) && n < 1<<40 {
		n = n*10 + int(s[i]-'0')
		i++
	}
	if neg {
		n = -n
	}
	return int(int32(n))
}

var deprecatedPrefixes = []struct {
	names []string
	kind  int // 0 format, 1 script, 2 ignored
}{
	{[]string{"raw", "qcow", "qcow2", "vhd"}, 0},
	{[]string{"iscsi", "nbd", "enbd", "drbd"}, 1},
	{[]string{"tapdisk"}, 2},
	{[]string{"tap", "tap2"}, 2},
	{[]string{"aio"}, 2},
	{[]string{"ioemu"}, 2},
	{[]string{"file"}, 2},
	{[]string{"phy"}, 2},
}

// step runs one scanner match at pos and returns the number of bytes consumed.
// Like flex, it picks the longest match (counting trailing context) and the
// earliest rule on ties.
func (p *diskParser) step(pos int) int {
	s := p.s
	rest := s[pos:]
	best, bestText := -1, 0
	var act func()

	try := func(total, text int, a func()) {
		if total > best {
			best, bestText, act = total, text, a
		}
	}

	// [ \t\n]+/([^ \t\n].*)?
	if isBlank(s[pos]) {
		r := pos
		for r < len(s) && isBlank(s[r]) {
			r++
		}
		total := r - pos
		if r < len(s) {
			total = p.lineEnd(r) - pos
		}
		try(total, r-pos, func() {})
	}

	// keyed and flag rules
	for _, rule := range diskRules {
		if !strings.HasPrefix(rest, rule.lit) {
			continue
		}
		n := len(rule.lit)
		val := ""
		if rule.value {
			j := strings.IndexByte(rest[n:], ',')
			if j < 0 {
				j = len(rest) - n
			}
			val = rest[n : n+j]
			n += j
		}
		if n < len(rest) && rest[n] == ',' {
			n++
		}
		rule := rule
		text := rest[:n]
		try(n, n, func() { rule.act(p, pos, strings.TrimSuffix(text, ","), val) })
	}

	// target=.*
	if strings.HasPrefix(rest, "target=") {
		n := p.lineEnd(pos) - pos
		try(n, n, func() {
			text := rest[:n]
			val := text[len("target="):]
			val = strings.TrimSuffix(val, ",")
			start := pos + len("target=")
			p.setTarget(pos, val, start, start+len(val), true)
		})
	}

	// [a-z][-a-z0-9]*=[^,],?
	if isLower(rest[0]) {
		i := 1
		for i < len(rest) && (isLower(rest[i]) || isDigit(rest[i]) || rest[i] == '-') {
			i++
		}
		if i+1 < len(rest) && rest[i] == '=' && rest[i+1] != ',' {
			n := i + 2
			if n < len(rest) && rest[n] == ',' {
				n++
			}
			try(n, n, func() { p.fail(pos, rest[:n], "unknown parameter") })
		}
	}

	// deprecated prefixes: NAME:/.*
	for _, dp := range deprecatedPrefixes {
		for _, name := range dp.names {
			if !strings.HasPrefix(rest, name+":") {
				continue
			}
			text := len(name) + 1
			total := p.lineEnd(pos) - pos
			name, kind := name, dp.kind
			try(total, text, func() {
				p.hadPrefix = true
				p.d.Prefixes = append(p.d.Prefixes, name)
				switch kind {
				case 0:
					p.setFormat(pos, name, name)
				case 1:
					p.saveString(pos, "script", &p.d.Script, "block-"+name)
				}
			})
		}
	}

	// [a-z][a-z0-9]*:/([^a-z0-9].*)?
	if isLower(rest[0]) {
		i := 1
		for i < len(rest) && (isLower(rest[i]) || isDigit(rest[i])) {
			i++
		}
		if i < len(rest) && rest[i] == ':' {
			text := i + 1
			total := text
			if text < len(rest) && !isLower(rest[text]) && !isDigit(rest[text]) {
				total = p.lineEnd(pos+text+1) - pos
			}
			try(total, text, func() { p.fail(pos, rest[:text], "unknown deprecated disk prefix") })
		}
	}

	// [^=,]*,|[^=,]+,?
	{
		r := strings.IndexAny(rest, "=,")
		if r < 0 {
			r = len(rest)
		}
		n := r
		if r < len(rest) && rest[r] == ',' {
			n++
		}
		if n > 0 {
			try(n, n, func() { p.positional(pos, rest[:r]) })
		}
	}

	// . : anything else (not a newline) is bad syntax
	if best < 0 {
		if pos == len(s)-1 {
			// xl quirk: its LEXERR rule only fires on text after the bad
			// character, so a bad last byte is silently ignored.
			return 1
		}
		p.fail(pos, s[pos:p.lineEnd(pos)], "bad disk syntax")
		return len(rest)
	}
	act()
	return bestText
}

func (p *diskParser) setFormat(off int, near, v string) {
	switch v {
	case "":
		v = "raw"
	case "raw", "qcow", "qcow2", "vhd", "empty", "qed":
	default:
		p.fail(off, near, "unknown value for format")
		return
	}
	if p.format != "" && p.format != v {
		p.fail(off, near, "format respecified")
		return
	}
	p.format = v
}

func (p *diskParser) setEnum(off int, what string, dst *string, v string) {
	if *dst != "" && *dst != v {
		p.fail(off, v, what+" respecified")
		return
	}
	*dst = v
}

func (p *diskParser) setAccess(off int, near, v string) {
	switch v {
	case "r", "ro":
		p.d.ReadWrite = false
	case "rw", "w", "":
		p.d.ReadWrite = true
	default:
		p.fail(off, v, "unknown value for access")
	}
}

// saveString mimics savestring: an already set non-empty value may not be
// respecified; an empty one may be overwritten.
func (p *diskParser) saveString(off int, what string, dst *string, v string) {
	if p.strSet[what] && *dst != "" {
		p.fail(off, v, what+" respecified")
		return
	}
	p.strSet[what] = true
	*dst = v
}

func (p *diskParser) setVdev(off int, v string) {
	if p.vdevSet && p.d.Vdev != "" {
		p.fail(off, v, "vdev respecified")
		return
	}
	p.vdevSet = true
	p.d.Vdev = v
}

func (p *diskParser) setTarget(off int, v string, start, end int, keyed bool) {
	if p.d.HasTarget && p.d.Target != "" {
		p.fail(off, v, "target respecified")
		return
	}
	p.d.HasTarget = true
	p.d.Target = v
	p.d.TargetKeyed = keyed
	p.d.targetStart, p.d.targetEnd = start, end
}

// vdevAndDevtype handles a positional "<vdev>:<devtype>".
func (p *diskParser) vdevAndDevtype(off int, s string) bool {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return false
	}
	p.setVdev(off, s[:i])
	switch s[i+1:] {
	case "cdrom":
		p.d.CDROM = true
	case "disk":
		p.d.CDROM = false
	default:
		p.fail(off, s[i+1:], "unknown deprecated type")
	}
	return true
}

func (p *diskParser) positional(off int, text string) {
	switch {
	case !p.d.HasTarget:
		p.setTarget(off, text, off, off+len(text), false)
	case !p.hadPrefix && p.format == "":
		if p.d.Target == "" && p.vdevAndDevtype(off, text) {
			p.format = "empty"
		} else {
			p.setFormat(off, text, text)
		}
	case !p.vdevSet:
		if !p.vdevAndDevtype(off, text) {
			p.setVdev(off, text)
		}
	case !p.accessSet:
		p.accessSet = true
		p.setAccess(off, text, text)
	default:
		p.fail(off, text, "too many positional parameters")
	}
}

// sameExceptTarget reports whether d and o differ at most in their target
// and spec string.
func (d Disk) sameExceptTarget(o Disk) bool {
	a, b := d, o
	a.Spec, b.Spec = "", ""
	a.Target, b.Target = "", ""
	a.TargetKeyed, b.TargetKeyed = false, false
	a.targetStart, a.targetEnd, b.targetStart, b.targetEnd = 0, 0, 0, 0
	if a.Format == "empty" || b.Format == "empty" {
		// An empty CD-ROM becomes a raw one when given a target.
		a.Format, b.Format = "", ""
	}
	ap, bp := strings.Join(a.Prefixes, ":"), strings.Join(b.Prefixes, ":")
	a.Prefixes, b.Prefixes = nil, nil
	return ap == bp && a.equalFields(b)
}

func (d Disk) equalFields(o Disk) bool {
	return d.Spec == o.Spec && d.Target == o.Target && d.HasTarget == o.HasTarget &&
		d.TargetKeyed == o.TargetKeyed && d.Format == o.Format && d.Vdev == o.Vdev &&
		d.ReadWrite == o.ReadWrite && d.CDROM == o.CDROM && d.Removable == o.Removable &&
		d.Backend == o.Backend && d.BackendType == o.BackendType && d.Script == o.Script &&
		d.Specification == o.Specification && d.DirectIOSafe == o.DirectIOSafe &&
		d.Discard == o.Discard && d.Colo == o.Colo && d.Trusted == o.Trusted &&
		d.GrantUsage == o.GrantUsage && d.ColoHost == o.ColoHost && d.ColoPort == o.ColoPort &&
		d.ColoExport == o.ColoExport && d.ActiveDisk == o.ActiveDisk && d.HiddenDisk == o.HiddenDisk
}

// WithTarget returns the spec string with the target replaced by target and
// every other byte kept. If the target cannot be written in place (a
// positional target cannot contain ',' or '=', for instance) the positional
// target is emptied and "target=<target>" is appended, which xl accepts.
// The result is checked by parsing it again: it must give the new target and
// the same other settings, else an error is returned.
func (d Disk) WithTarget(target string) (string, error) {
	if d.targetStart < 0 {
		return "", fmt.Errorf("disk spec %q has no target to replace", d.Spec)
	}
	if strings.ContainsAny(target, "\n\x00") {
		return "", fmt.Errorf("disk target %q contains a newline or NUL byte, which a disk spec cannot hold", target)
	}
	cand := d.Spec[:d.targetStart] + target + d.Spec[d.targetEnd:]
	if d.checkTarget(cand, target) {
		return cand, nil
	}
	if !d.TargetKeyed {
		base := d.Spec[:d.targetStart] + d.Spec[d.targetEnd:]
		// The positional target token keeps its comma (or is followed by
		// nothing); make sure it is still a token.
		sep := ","
		if strings.HasSuffix(base, ",") {
			sep = ""
		}
		if d.targetEnd == len(d.Spec) && d.targetStart == len(base) {
			// target was the last token and had no comma: "phy:" + "" would
			// vanish, so write an explicit empty token.
			base += ","
			sep = ""
		}
		cand = base + sep + "target=" + target
		if d.checkTarget(cand, target) {
			return cand, nil
		}
	}
	return "", fmt.Errorf("disk spec %q: cannot replace target with %q: xl would not read it back", d.Spec, target)
}

func (d Disk) checkTarget(spec, target string) bool {
	nd, err := ParseDisk(spec)
	return err == nil && nd.Target == target && nd.HasTarget && d.sameExceptTarget(nd)
}

// KeyedSpec renders d in the keyed form xl and libvirt write, with the
// target last ("format=raw, vdev=xvda, access=rw, ..., target=/img").
func (d Disk) KeyedSpec() string {
	var parts []string
	add := func(s string) { parts = append(parts, s) }
	if d.Format != "" && d.Format != "empty" {
		add("format=" + d.Format)
	}
	add("vdev=" + d.Vdev)
	if d.CDROM {
		add("devtype=cdrom")
	} else if d.ReadWrite {
		add("access=rw")
	} else {
		add("access=ro")
	}
	if d.Backend != "" {
		add("backend=" + d.Backend)
	}
	if d.BackendType != "" {
		add("backendtype=" + d.BackendType)
	}
	if d.Specification != "" {
		add("specification=" + d.Specification)
	}
	if d.Script != "" {
		add("script=" + d.Script)
	}
	if d.DirectIOSafe {
		add("direct-io-safe")
	}
	flag := func(t Tristate, on, off string) {
		switch t {
		case True:
			add(on)
		case False:
			add(off)
		}
	}
	flag(d.Discard, "discard", "no-discard")
	flag(d.Colo, "colo", "no-colo")
	if d.ColoHost != "" {
		add("colo-host=" + d.ColoHost)
	}
	if d.ColoPort != 0 {
		add("colo-port=" + strconv.Itoa(d.ColoPort))
	}
	if d.ColoExport != "" {
		add("colo-export=" + d.ColoExport)
	}
	if d.ActiveDisk != "" {
		add("active-disk=" + d.ActiveDisk)
	}
	if d.HiddenDisk != "" {
		add("hidden-disk=" + d.HiddenDisk)
	}
	flag(d.Trusted, "trusted", "untrusted")
	flag(d.GrantUsage, "grant_usage=1", "grant_usage=0")
	if d.HasTarget && d.Target != "" {
		add("target=" + d.Target)
	}
	return strings.Join(parts, ", ")
}
