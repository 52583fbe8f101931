package bbconf

import (
	"strings"
	"unicode"
)

// srcLine is one logical line: physical lines joined by backslash
// continuations. segs maps byte offsets of the joined text back to the
// physical lines they came from.
type srcLine struct {
	file string
	text string
	segs []seg
}

type seg struct {
	off  int // offset in text where this physical line's content starts
	line int // 1-based line number
}

// pos returns the file position of byte off of the logical line.
func (l *srcLine) pos(off int) Position {
	if l == nil {
		return Position{}
	}
	s := l.segs[0]
	for _, c := range l.segs[1:] {
		if c.off > off {
			break
		}
		s = c
	}
	return Position{File: l.file, Line: s.line, Col: off - s.off + 1}
}

// piece is a substring of a source line (or of an API argument, src == nil)
// remembered with where it came from, so errors found when a value is read
// can point at the right column.
type piece struct {
	text string
	src  *srcLine
	off  int
}

func (p piece) pos(i int) Position {
	if p.src == nil {
		return Position{}
	}
	return p.src.pos(p.off + i)
}

// val is an unexpanded value: the concatenation of its pieces.
type val []piece

func (v val) String() string {
	if len(v) == 1 {
		return v[0].text
	}
	var b strings.Builder
	for _, p := range v {
		b.WriteString(p.text)
	}
	return b.String()
}

// firstPos is the position of the first piece that has one.
func (v val) firstPos() Position {
	for _, p := range v {
		if p.src != nil {
			return p.pos(0)
		}
	}
	return Position{}
}

// locate returns the position of needle inside one of v's pieces, or the
// first known position of v.
func (v val) locate(needle string) Position {
	for _, p := range v {
		if i := strings.Index(p.text, needle); i >= 0 && p.src != nil {
			return p.pos(i)
		}
	}
	return v.firstPos()
}

func textVal(s string) val { return val{{text: s}} }

type stmtKind int

const (
	stAssign stmtKind = iota
	stExport
	stUnset
	stUnsetFlag
	stInclude
	stRequire
	stIncludeAll
	stInherit
)

// stmt is one parsed statement.
type stmt struct {
	kind    stmtKind
	pos     Position // first character of the statement
	name    string
	namePos Position
	flag    string
	op      string
	value   piece // assignment value, or the argument of include/inherit
	export  bool
}

const (
	opSet       = "="
	opImmediate = ":="
	opWeak      = "??="
	opDefault   = "?="
	opAppend    = "+="
	opPrepend   = "=+"
	opPostDot   = ".="
	opPreDot    = "=."
)

// Operators in the order BitBake's regular expression tries them.
var operators = []string{opImmediate, opWeak, opDefault, opAppend, opPrepend, opPreDot, opPostDot, opSet}

// isVarChar reports whether c may appear in a variable name
// (BitBake: [a-zA-Z0-9\-_+.${}/~:]).
func isVarChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("-_+.${}/~:", c) >= 0
}

// isFlagChar reports whether c may appear in a varflag name; first is true
// for the first character ([a-zA-Z0-9\-_+.][a-zA-Z0-9\-_+.@/]*).
func isFlagChar(c byte, first bool) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_+.", c) >= 0 {
		return true
	}
	return !first && (c == '@' || c == '/')
}

// isWordChar matches Python's \w for ASCII.
func isWordChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\f' || c == '\v' || c == '\r' || c == '\n'
}

func skipSpace(s string, i int) int {
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	return i
}

func rstrip(s string) string { return strings.TrimRightFunc(s, unicode.IsSpace) }

// splitLines splits src into lines with Python's universal newlines rule
// (\n, \r\n and \r all end a line).
func splitLines(src []byte) []string {
	s := string(src)
	var lines []string
	for len(s) > 0 {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			lines = append(lines, s)
			break
		}
		lines = append(lines, s[:i])
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		s = s[i+1:]
	}
	return lines
}

type physLine struct {
	text string
	line int
}

// parse turns a file into statements. It never evaluates anything.
func parse(file string, src []byte) ([]stmt, error) {
	var (
		stmts    []stmt
		residue  []physLine
		inFunc   bool
		funcName string
		funcPos  Position
		inPython bool
	)
	lines := splitLines(src)
	for i, raw := range lines {
		lineno := i + 1
		s := rstrip(raw)
		if inFunc {
			if s == "}" {
				inFunc = false
			}
			continue
		}
		if inPython {
			if s == "" || s[0] == '#' || isSpace(s[0]) {
				continue
			}
			inPython = false
		}
		t := strings.TrimLeftFunc(s, unicode.IsSpace)
		isComment := t != "" && t[0] == '#'
		if len(residue) > 0 {
			resComment := strings.HasPrefix(strings.TrimLeftFunc(residue[0].text, unicode.IsSpace), "#")
			if isComment && !resComment {
				return nil, errorf(Position{file, lineno, len(s) - len(t) + 1},
					"comment in the middle of a multi-line expression (line %d ends with a backslash)", residue[len(residue)-1].line)
			}
			if resComment && !isComment {
				return nil, errorf(Position{file, residue[0].line, 1},
					"confusing multi-line, partially commented expression: the comment ends with a backslash but line %d is not a comment; make it all a comment or remove the backslash", lineno)
			}
		}
		if strings.HasSuffix(s, `\`) {
			residue = append(residue, physLine{s[:len(s)-1], lineno})
			continue
		}
		l := joinLogical(file, residue, physLine{s, lineno})
		residue = nil
		st, kind, err := parseLogical(l)
		if err != nil {
			return nil, err
		}
		switch kind {
		case lineFunc:
			inFunc, funcName, funcPos = true, st.name, st.pos
		case linePython:
			inPython = true
		case lineStmt:
			stmts = append(stmts, st)
		}
	}
	if len(residue) > 0 {
		l := joinLogical(file, residue, physLine{"", residue[len(residue)-1].line})
		st, kind, err := parseLogical(l)
		if err != nil {
			return nil, err
		}
		switch kind {
		case lineFunc:
			inFunc, funcName, funcPos = true, st.name, st.pos
		case lineStmt:
			stmts = append(stmts, st)
		}
	}
	if inFunc {
		if funcName == "" {
			funcName = "(anonymous)"
		}
		return nil, errorf(funcPos, "function %s is never closed: expected a line containing only \"}\"", funcName)
	}
	return stmts, nil
}

func joinLogical(file string, residue []physLine, last physLine) *srcLine {
	l := &srcLine{file: file}
	if len(residue) == 0 {
		l.text = last.text
		l.segs = []seg{{0, last.line}}
		return l
	}
	var b strings.Builder
	for _, r := range residue {
		l.segs = append(l.segs, seg{b.Len(), r.line})
		b.WriteString(r.text)
	}
	if last.line != residue[len(residue)-1].line {
		l.segs = append(l.segs, seg{b.Len(), last.line})
	}
	b.WriteString(last.text)
	l.text = b.String()
	return l
}

type lineKind int

const (
	lineSkip lineKind = iota
	lineStmt
	lineFunc
	linePython
)

// parseLogical recognises one logical line.
func parseLogical(l *srcLine) (stmt, lineKind, error) {
	s := l.text
	i := skipSpace(s, 0)
	if i == len(s) || s[i] == '#' {
		return stmt{}, lineSkip, nil
	}
	pos := l.pos(i)
	if name, ok := matchFuncStart(s[i:]); ok {
		return stmt{pos: pos, name: name}, lineFunc, nil
	}
	if matchDef(s[i:]) {
		return stmt{}, linePython, nil
	}
	st, ok, err := parseAssignment(l, i)
	if err != nil || ok {
		return st, lineStmt, err
	}
	word, rest, restOff := splitKeyword(s, i)
	arg := piece{text: rest, src: l, off: restOff}
	switch word {
	case "include", "require", "include_all":
		if rest == "" {
			break
		}
		k := map[string]stmtKind{"include": stInclude, "require": stRequire, "include_all": stIncludeAll}[word]
		return stmt{kind: k, pos: pos, value: arg}, lineStmt, nil
	case "inherit", "inherit_defer":
		if rest == "" {
			break
		}
		return stmt{kind: stInherit, pos: pos, value: arg}, lineStmt, nil
	case "addtask", "deltask", "addhandler", "EXPORT_FUNCTIONS", "addpylib", "addfragments":
		if rest == "" {
			break
		}
		return stmt{}, lineSkip, nil
	case "export", "unset":
		if rest == "" {
			break
		}
		j := 0
		for j < len(rest) && isVarChar(rest[j]) {
			j++
		}
		name := rest[:j]
		if name == "" {
			return stmt{}, lineStmt, errorf(l.pos(restOff), "expected a variable name after %q", word)
		}
		st := stmt{kind: stExport, pos: pos, name: name, namePos: l.pos(restOff)}
		if word == "unset" {
			st.kind = stUnset
		}
		if j == len(rest) {
			return st, lineStmt, checkName(st.name, st.namePos)
		}
		if word == "unset" && rest[j] == '[' {
			k := j + 1
			for k < len(rest) && isFlagChar(rest[k], k == j+1) {
				k++
			}
			if k > j+1 && k == len(rest)-1 && rest[k] == ']' {
				st.kind = stUnsetFlag
				st.flag = rest[j+1 : k]
				return st, lineStmt, nil
			}
			return stmt{}, lineStmt, errorf(l.pos(restOff+j), "malformed varflag in unset: expected unset VAR[flag]")
		}
		return stmt{}, lineStmt, errorf(l.pos(restOff+j), "unexpected %q after %s %s: expected end of line", rest[j:], word, name)
	}
	return stmt{}, lineStmt, errorf(pos, "unparsed line: expected an assignment such as VAR = \"value\", or include, require, inherit, export or unset")
}

// splitKeyword returns the first word of s[i:], the rest after the
// whitespace that follows it, and the offset of the rest. If the word is not
// followed by whitespace (or the end), word is "".
func splitKeyword(s string, i int) (word, rest string, restOff int) {
	j := i
	for j < len(s) && !isSpace(s[j]) {
		j++
	}
	if j == len(s) {
		return s[i:], "", j
	}
	k := skipSpace(s, j)
	return s[i:j], s[k:], k
}

// matchFuncStart implements BitBake's __func_start_regexp__:
// (((python(?=(\s|\()))|(fakeroot(?=\s)))\s*)*([\w.\-+{}$:]+)?\s*\(\s*\)\s*{$
func matchFuncStart(s string) (string, bool) {
	i := 0
	for {
		switch {
		case strings.HasPrefix(s[i:], "python") && i+6 < len(s) && (isSpace(s[i+6]) || s[i+6] == '('):
			i = skipSpace(s, i+6)
			continue
		case strings.HasPrefix(s[i:], "fakeroot") && i+8 < len(s) && isSpace(s[i+8]):
			i = skipSpace(s, i+8)
			continue
		}
		break
	}
	j := i
	for j < len(s) && (isWordChar(s[j]) || strings.IndexByte(".-+{}$:", s[j]) >= 0) {
		j++
	}
	name := s[i:j]
	k := skipSpace(s, j)
	if k >= len(s) || s[k] != '(' {
		return "", false
	}
	k = skipSpace(s, k+1)
	if k >= len(s) || s[k] != ')' {
		return "", false
	}
	k = skipSpace(s, k+1)
	if k != len(s)-1 || s[k] != '{' {
		return "", false
	}
	return name, true
}

// matchDef implements BitBake's __def_regexp__: def\s+(\w+).*:
func matchDef(s string) bool {
	if !strings.HasPrefix(s, "def") || len(s) < 4 || !isSpace(s[3]) {
		return false
	}
	i := skipSpace(s, 3)
	j := i
	for j < len(s) && isWordChar(s[j]) {
		j++
	}
	return j > i && strings.IndexByte(s[j:], ':') >= 0
}

// parseAssignment recognises "[export ]VAR[[flag]] OP 'value'". ok is false
// when the line is not an assignment at all (so other statements are tried);
// err is set when it clearly is one but is malformed.
func parseAssignment(l *srcLine, i int) (stmt, bool, error) {
	s := l.text
	if strings.HasPrefix(s[i:], "export") && i+6 < len(s) && isSpace(s[i+6]) {
		st, ok, err := parseAssignmentBody(l, skipSpace(s, i+6), i)
		if ok || err != nil {
			st.export = true
			return st, ok, err
		}
	}
	return parseAssignmentBody(l, i, i)
}

func parseAssignmentBody(l *srcLine, i, start int) (stmt, bool, error) {
	s := l.text
	j := i
	for j < len(s) && isVarChar(s[j]) {
		j++
	}
	if j == i {
		return stmt{}, false, nil
	}
	end := j
	// BitBake's name pattern is non-greedy: in "A+=", "A.=" and "A:=" the
	// last character belongs to the operator.
	if j < len(s) && s[j] == '=' && strings.IndexByte("+.:", s[j-1]) >= 0 && j-1 > i {
		end = j - 1
	}
	st := stmt{kind: stAssign, pos: l.pos(start), name: s[i:end], namePos: l.pos(i)}
	k := end
	if k < len(s) && s[k] == '[' {
		f := k + 1
		for f < len(s) && isFlagChar(s[f], f == k+1) {
			f++
		}
		if f == k+1 || f >= len(s) || s[f] != ']' {
			if !looksLikeAssignment(s[k:]) {
				return stmt{}, false, nil
			}
			return stmt{}, false, errorf(l.pos(k+1), "malformed varflag: expected a flag name ([a-zA-Z0-9-_+.@/]) and ']'")
		}
		st.flag = s[k+1 : f]
		k = f + 1
		if k < len(s) && s[k] == ':' {
			return stmt{}, false, errorf(l.pos(k), "%s[%s]%s: overrides such as :append cannot follow a varflag (BitBake does not apply them to flags); use %s[%s] += \"...\" (or .=, =+, =.)",
				st.name, st.flag, overrideWord(s[k:]), st.name, st.flag)
		}
	}
	k = skipSpace(s, k)
	opPos := k
	op := ""
	for _, o := range operators {
		if strings.HasPrefix(s[k:], o) {
			op = o
			break
		}
	}
	if op == "" {
		if looksLikeAssignment(s[k:]) {
			return stmt{}, false, errorf(l.pos(k), "expected an assignment operator (=, ?=, ??=, :=, +=, =+, .=, =.) after %s", st.name)
		}
		return stmt{}, false, nil
	}
	st.op = op
	k = skipSpace(s, k+len(op))
	if k >= len(s) {
		return stmt{}, false, errorf(l.pos(k), "missing value after %q: expected a quoted string such as \"value\"", op)
	}
	q := s[k]
	if q != '"' && q != '\'' {
		return stmt{}, false, errorf(l.pos(k), "expected a quoted value after %q, found %q (BitBake values must be in \"...\" or '...')", op, s[k])
	}
	// Trailing white space after the closing quote is ignored, as BitBake
	// strips lines before matching.
	rest := strings.TrimRight(s[k:], " \t\r")
	if len(rest) < 2 || rest[len(rest)-1] != q {
		m := strings.LastIndexByte(rest[1:], q)
		if m < 0 {
			return stmt{}, false, errorf(l.pos(k), "missing closing %c for the value of %s", q, st.name)
		}
		after := k + 1 + m + 1
		a := skipSpace(s, after)
		if a >= len(s) {
			a = len(s) - 1
		}
		if s[a] == '#' {
			return stmt{}, false, errorf(l.pos(a), "a comment may not follow the value on the same line (BitBake rejects it); put the comment on its own line")
		}
		return stmt{}, false, errorf(l.pos(a), "unexpected text %q after the closing %c of the value of %s", s[a:], q, st.name)
	}
	if strings.Count(rest, string(q)) == 3 {
		m := strings.IndexByte(rest[1:], q)
		return stmt{}, false, errorf(l.pos(k+1+m), "stray %c inside the value of %s: BitBake cannot parse a value with a single inner %c; quote the value with the other quote character", q, st.name, q)
	}
	st.value = piece{text: rest[1 : len(rest)-1], src: l, off: k + 1}
	if err := checkName(st.name, st.namePos); err != nil {
		return stmt{}, false, err
	}
	if st.flag != "" {
		if base, kw, _, ok := splitKeywordName(st.name); ok {
			return stmt{}, false, errorf(st.namePos, "%s[%s]: varflags cannot be combined with %s (BitBake would set a flag on an unrelated variable); use %s[%s] += \"...\" (or .=, =+, =.)", st.name, st.flag, kw, base, st.flag)
		}
		if c := strings.IndexByte(st.name, ':'); c >= 0 && c+1 < len(st.name) && isOverrideStart(st.name[c+1]) {
			return stmt{}, false, errorf(l.pos(i+c), "%s[%s]: BitBake does not apply override %q to varflags (it would set a flag on an unrelated variable %s)", st.name, st.flag, st.name[c+1:], st.name)
		}
	} else if _, kw, _, ok := splitKeywordName(st.name); ok && op == opWeak {
		return stmt{}, false, errorf(l.pos(opPos), "%s cannot be combined with %s; use = or +=", op, kw)
	}
	return st, true, nil
}

func overrideWord(s string) string {
	j := 1
	for j < len(s) && (isVarChar(s[j])) {
		j++
	}
	return s[:j]
}

// looksLikeAssignment is a heuristic used to give a precise error instead of
// "unparsed line" when a line has an assignment operator followed by a quote.
func looksLikeAssignment(s string) bool {
	return strings.Contains(s, "=") && strings.ContainsAny(s, `"'`)
}

// checkName rejects the pre-Honister underscore override syntax.
func checkName(name string, pos Position) error {
	if strings.HasPrefix(name, "__anon_") {
		return nil
	}
	for _, kw := range []string{"_append", "_prepend", "_remove"} {
		if i := strings.Index(name, kw); i >= 0 {
			pos.Col += i
			return errorf(pos, "%s uses the old override syntax %s, which BitBake no longer accepts; use %s:%s", name, kw, name[:i], kw[1:]+name[i+len(kw):])
		}
	}
	if name == "" || name[0] == ':' {
		return errorf(pos, "empty variable name")
	}
	return nil
}

func isOverrideStart(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// splitKeywordName implements BitBake's __setvar_regexp__:
// (?P<base>.*?)(?P<keyword>:append|:prepend|:remove)(:(?P<add>[^A-Z]*))?$
func splitKeywordName(name string) (base, keyword, override string, ok bool) {
	for i := 0; i < len(name); i++ {
		if name[i] != ':' {
			continue
		}
		for _, kw := range []string{":append", ":prepend", ":remove"} {
			if !strings.HasPrefix(name[i:], kw) {
				continue
			}
			rest := name[i+len(kw):]
			if rest == "" {
				return name[:i], kw, "", true
			}
			if rest[0] == ':' && !strings.ContainsAny(rest[1:], "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
				return name[:i], kw, rest[1:], true
			}
		}
	}
	return "", "", "", false
}
