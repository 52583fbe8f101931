package xlcfg

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// Op is the assignment operator of a setting.
type Op int

const (
	// Assign is "KEY = VALUE": the value replaces any earlier one.
	Assign Op = iota
	// Append is "KEY += VALUE": the value is appended to the earlier one
	// (string to string, list to list), or assigned if there is none.
	Append
)

// String returns the operator as written in a file.
func (o Op) String() string {
	if o == Append {
		return "+="
	}
	return "="
}

// Setting is one assignment statement of a file, in file order.
type Setting struct {
	// Key is the setting's name.
	Key string
	// Op is the operator used.
	Op Op
	// Value is the value written in this statement (before any += merge).
	Value Value
	// Line and Col are the 1-based position of the key (Col counts bytes).
	Line, Col int
}

// File is a parsed xl configuration file. It keeps the source bytes, so
// [File.Bytes] returns exactly what was parsed (plus any edits).
type File struct {
	name  string
	src   []byte
	stmts []*stmt
	keys  []string         // distinct keys in order of first appearance
	eff   map[string]Value // effective value of each key (after += merges)
}

type stmt struct {
	key              string
	op               Op
	keyStart, keyEnd int
	opStart, opEnd   int
	val              *node
	line, col        int
}

// node is a parsed value with its byte span in the source.
type node struct {
	kind       Kind
	start, end int    // span in src (quotes / brackets included)
	text       string // decoded string or number literal
	quote      byte   // quote character used for a string
	items      []*node
}

func (n *node) value() Value {
	switch n.kind {
	case KindList:
		items := make([]Value, len(n.items))
		for i, it := range n.items {
			items[i] = it.value()
		}
		return Value{Kind: KindList, Items: items}
	default:
		return Value{Kind: n.kind, Text: n.text}
	}
}

// Error is a syntax error with its position.
type Error struct {
	// Name is the file name given to Parse.
	Name string
	// Line and Col are 1-based; Col counts bytes.
	Line, Col int
	// Offset is the 0-based byte offset.
	Offset int
	// Msg describes what was wrong and what was expected.
	Msg string
}

// Error formats the error as "name:line:col: message".
func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.Name, e.Line, e.Col, e.Msg)
}

// token kinds
type tokKind int

const (
	tEOF tokKind = iota
	tIdent
	tNumber
	tString
	tNewline // "\n" or "# comment\n"
	tComma
	tLBrack
	tRBrack
	tAssign
	tAppend
	tSemi
)

func (k tokKind) String() string {
	switch k {
	case tEOF:
		return "end of file"
	case tIdent:
		return "key"
	case tNumber:
		return "number"
	case tString:
		return "string"
	case tNewline:
		return "newline"
	case tComma:
		return "','"
	case tLBrack:
		return "'['"
	case tRBrack:
		return "']'"
	case tAssign:
		return "'='"
	case tAppend:
		return "'+='"
	case tSemi:
		return "';'"
	}
	return "?"
}

type token struct {
	kind       tokKind
	start, end int
	text       string // decoded string / literal
	quote      byte
}

type parser struct {
	name  string
	src   []byte
	pos   int
	tok   token
	lines []int // offsets of line starts, built lazily
}

// Parse parses an xl configuration file. name is used in error messages,
// which have the form "name:line:col: message". A nil error means xl would
// accept the file's syntax too.
func Parse(name string, src []byte) (*File, error) {
	p := &parser{name: name, src: src}
	f := &File{name: name, src: src}
	if err := p.parseFile(f); err != nil {
		return nil, err
	}
	if err := f.index(); err != nil {
		return nil, err
	}
	return f, nil
}

// lineCol returns the 1-based line and column of off, using an index of
// line starts built on first use so that positions cost O(log n).
func (p *parser) lineCol(off int) (int, int) {
	if p.lines == nil {
		p.lines = []int{0}
		for i, c := range p.src {
			if c == '\n' {
				p.lines = append(p.lines, i+1)
			}
		}
	}
	i := sort.Search(len(p.lines), func(i int) bool { return p.lines[i] > off }) - 1
	return i + 1, off - p.lines[i] + 1
}

func (p *parser) errAt(off int, format string, args ...any) *Error {
	line, col := p.lineCol(off)
	return &Error{Name: p.name, Line: line, Col: col, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func lineCol(src []byte, off int) (int, int) {
	if off > len(src) {
		off = len(src)
	}
	line := 1 + bytes.Count(src[:off], []byte{'\n'})
	col := off - (bytes.LastIndexByte(src[:off], '\n') + 1) + 1
	return line, col
}

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// next scans the next token, skipping blanks. It follows libxlu_cfg_l.l.
func (p *parser) next() error {
	src := p.src
	for p.pos < len(src) && (src[p.pos] == ' ' || src[p.pos] == '\t') {
		p.pos++
	}
	start := p.pos
	if start >= len(src) {
		p.tok = token{kind: tEOF, start: start, end: start}
		return nil
	}
	c := src[start]
	one := func(k tokKind) error {
		p.pos = start + 1
		p.tok = token{kind: k, start: start, end: p.pos}
		return nil
	}
	switch {
	case isLower(c):
		i := start + 1
		for i < len(src) && (isLower(src[i]) || isDigit(src[i]) || src[i] == '_' || src[i] == '.') {
			i++
		}
		p.pos = i
		p.tok = token{kind: tIdent, start: start, end: i, text: string(src[start:i])}
		return nil
	case isDigit(c):
		i := start + 1
		for i < len(src) && (isDigit(src[i]) || (src[i] >= 'a' && src[i] <= 'f') || src[i] == 'x') {
			i++
		}
		p.pos = i
		p.tok = token{kind: tNumber, start: start, end: i, text: string(src[start:i])}
		return nil
	case c == ',':
		return one(tComma)
	case c == '[':
		return one(tLBrack)
	case c == ']':
		return one(tRBrack)
	case c == '=':
		return one(tAssign)
	case c == ';':
		return one(tSemi)
	case c == '+' && start+1 < len(src) && src[start+1] == '=':
		p.pos = start + 2
		p.tok = token{kind: tAppend, start: start, end: p.pos}
		return nil
	case c == '\n':
		return one(tNewline)
	case c == '#':
		nl := bytes.IndexByte(src[start:], '\n')
		if nl < 0 && start == len(src)-1 {
			break // a lone '#' as the last byte: see the quirk below
		}
		if nl < 0 {
			return p.errAt(start, "lexical error: comment at end of file is not followed by a newline (xl requires one)")
		}
		p.pos = start + nl + 1
		p.tok = token{kind: tNewline, start: start, end: p.pos}
		return nil
	case c == '\'' || c == '"':
		if err := p.scanString(start, c); err == nil || start != len(src)-1 {
			return err
		}
	}
	if start == len(src)-1 {
		// xl quirk: its lexer reports a lexical error only when it scans
		// the text after the offending character; a single bad character
		// that is the very last byte of the input is silently dropped.
		p.pos = len(src)
		p.tok = token{kind: tEOF, start: len(src), end: len(src)}
		return nil
	}
	switch c {
	case '\r':
		return p.errAt(start, "lexical error: carriage return outside a string (xl does not accept CRLF line endings)")
	case '+', '-', '.', '(', ')', ':':
		return p.errAt(start, "lexical error near %q: unexpected %q (arbitrary Python is not supported in xl configs)", lexeme(src, start), c)
	case 0:
		return p.errAt(start, "lexical error: NUL byte")
	}
	if isUpper(c) {
		return p.errAt(start, "lexical error near %q: keys must start with a lower-case letter a-z", lexeme(src, start))
	}
	return p.errAt(start, "lexical error near %q: unexpected %q", lexeme(src, start), c)
}

func isUpper(c byte) bool { return c >= 'A' && c <= 'Z' }

// lexeme returns the run of non-blank bytes at off, as xl's lexerr state
// reports it (truncated for readability).
func lexeme(src []byte, off int) string {
	i := off
	for i < len(src) && src[i] != ' ' && src[i] != '\t' && src[i] != '\n' && i-off < 40 {
		i++
	}
	return string(src[off:i])
}

// scanString scans a quoted string starting at src[start] == q and decodes it
// as xlu__cfgl_dequote does.
func (p *parser) scanString(start int, q byte) error {
	src := p.src
	var b strings.Builder
	i := start + 1
	for {
		if i >= len(src) || src[i] == '\n' {
			return p.errAt(start, "lexical error: unterminated %c-quoted string (strings cannot span lines)", q)
		}
		c := src[i]
		if c == q {
			i++
			break
		}
		if c == 0 {
			return p.errAt(i, "NUL byte inside a string (xl truncates or aborts on it)")
		}
		if c != '\\' {
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 >= len(src) || src[i+1] == '\n' {
			return p.errAt(start, "lexical error: unterminated %c-quoted string (backslash before end of line)", q)
		}
		e := src[i+1]
		switch e {
		case '"', '\'', '\\':
			b.WriteByte(e)
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case 'x':
			return p.errAt(i, "invalid escape \\x in quoted string (xl's hex escapes never work)")
		default:
			if e >= '0' && e <= '7' {
				return p.errAt(i, "unsupported octal escape \\%c in quoted string (xl drops the character; write it literally)", e)
			}
			return p.errAt(i, "invalid character %q after backslash in quoted string; expected one of \\\" \\' \\\\ \\a \\b \\f \\n \\r \\t \\v", e)
		}
		i += 2
	}
	p.pos = i
	p.tok = token{kind: tString, start: start, end: i, text: b.String(), quote: q}
	return nil
}

func (p *parser) unexpected(expected string) error {
	t := p.tok
	what := t.kind.String()
	switch t.kind {
	case tIdent, tNumber:
		what = fmt.Sprintf("%s %q", t.kind, t.text)
	case tString:
		what = fmt.Sprintf("string %s", p.src[t.start:t.end])
	}
	return p.errAt(t.start, "syntax error: unexpected %s, expected %s", what, expected)
}

// parseFile implements:
//
//	file: stmts | stmts assignment
//	stmt: assignment endstmt | endstmt
//	endstmt: NEWLINE | ';'
func (p *parser) parseFile(f *File) error {
	if err := p.next(); err != nil {
		return err
	}
	for {
		switch p.tok.kind {
		case tEOF:
			return nil
		case tNewline, tSemi:
			if err := p.next(); err != nil {
				return err
			}
		case tIdent:
			st, err := p.parseAssignment()
			if err != nil {
				return err
			}
			f.stmts = append(f.stmts, st)
			switch p.tok.kind {
			case tEOF:
				return nil
			case tNewline, tSemi:
				if err := p.next(); err != nil {
					return err
				}
			default:
				return p.unexpected("newline or ';' after the value")
			}
		default:
			return p.unexpected("a key (lower-case name)")
		}
	}
}

func (p *parser) parseAssignment() (*stmt, error) {
	st := &stmt{key: p.tok.text, keyStart: p.tok.start, keyEnd: p.tok.end}
	st.line, st.col = p.lineCol(p.tok.start)
	if err := p.next(); err != nil {
		return nil, err
	}
	switch p.tok.kind {
	case tAssign:
		st.op = Assign
	case tAppend:
		st.op = Append
	default:
		return nil, p.unexpected(fmt.Sprintf("'=' or '+=' after key %q", st.key))
	}
	st.opStart, st.opEnd = p.tok.start, p.tok.end
	if err := p.next(); err != nil {
		return nil, err
	}
	v, err := p.parseValue(0)
	if err != nil {
		return nil, err
	}
	st.val = v
	return st, nil
}

const maxDepth = 1000

// parseValue implements:
//
//	value: atom | '[' nlok valuelist ']'
//	valuelist: /* empty */ | values | values ',' nlok
//	values: value nlok | values ',' nlok value nlok
func (p *parser) parseValue(depth int) (*node, error) {
	t := p.tok
	switch t.kind {
	case tString:
		n := &node{kind: KindString, start: t.start, end: t.end, text: t.text, quote: t.quote}
		return n, p.next()
	case tNumber:
		n := &node{kind: KindNumber, start: t.start, end: t.end, text: t.text}
		return n, p.next()
	case tLBrack:
	default:
		return nil, p.unexpected("a value (string, number or '[')")
	}
	if depth >= maxDepth {
		return nil, p.errAt(t.start, "lists nested more than %d deep", maxDepth)
	}
	n := &node{kind: KindList, start: t.start}
	if err := p.next(); err != nil {
		return nil, err
	}
	if err := p.skipNewlines(); err != nil {
		return nil, err
	}
	for {
		if p.tok.kind == tRBrack {
			n.end = p.tok.end
			return n, p.next()
		}
		it, err := p.parseValue(depth + 1)
		if err != nil {
			return nil, err
		}
		n.items = append(n.items, it)
		if err := p.skipNewlines(); err != nil {
			return nil, err
		}
		switch p.tok.kind {
		case tRBrack:
			continue
		case tComma:
			if err := p.next(); err != nil {
				return nil, err
			}
			if err := p.skipNewlines(); err != nil {
				return nil, err
			}
		default:
			return nil, p.unexpected("',' or ']' in list")
		}
	}
}

func (p *parser) skipNewlines() error {
	for p.tok.kind == tNewline {
		if err := p.next(); err != nil {
			return err
		}
	}
	return nil
}

// index computes the key order and the effective values, applying +=.
func (f *File) index() error {
	f.keys = nil
	f.eff = make(map[string]Value)
	for _, st := range f.stmts {
		v := st.val.value()
		prev, ok := f.eff[st.key]
		if !ok {
			f.keys = append(f.keys, st.key)
		}
		if st.op == Append && ok {
			pl, vl := prev.Kind == KindList, v.Kind == KindList
			if pl != vl {
				line, col := lineCol(f.src, st.opStart)
				return &Error{Name: f.name, Line: line, Col: col, Offset: st.opStart,
					Msg: fmt.Sprintf("can't add [list] to \"string\" or vice versa (key %q)", st.key)}
			}
			if vl {
				items := append(append([]Value{}, prev.Items...), v.Items...)
				v = Value{Kind: KindList, Items: items}
			} else {
				v = Value{Kind: KindString, Text: prev.Text + v.Text}
			}
		}
		f.eff[st.key] = v
	}
	return nil
}

// Name returns the name given to Parse.
func (f *File) Name() string { return f.name }

// Bytes returns the file's current bytes: the parsed input, with any edits.
func (f *File) Bytes() []byte { return append([]byte(nil), f.src...) }

// Keys returns the distinct keys in order of first appearance.
func (f *File) Keys() []string { return append([]string(nil), f.keys...) }

// Get returns the effective value of key as xl sees it: the last assignment,
// with += appends applied.
func (f *File) Get(key string) (Value, bool) {
	v, ok := f.eff[key]
	return v, ok
}

// Settings returns every assignment statement in file order.
func (f *File) Settings() []Setting {
	out := make([]Setting, len(f.stmts))
	for i, st := range f.stmts {
		out[i] = Setting{Key: st.key, Op: st.op, Value: st.val.value(), Line: st.line, Col: st.col}
	}
	return out
}

// Canonical renders the file's effective settings, one "key = value" line
// per key in order of first appearance, without comments. Parsing the result
// gives the same keys and values.
func (f *File) Canonical() ([]byte, error) {
	var b bytes.Buffer
	for _, k := range f.keys {
		s, err := f.eff[k].Format()
		if err != nil {
			return nil, fmt.Errorf("%s: key %q: %w", f.name, k, err)
		}
		fmt.Fprintf(&b, "%s = %s\n", k, s)
	}
	return b.Bytes(), nil
}

// reparse replaces the source with src after an edit and re-parses it. On
// error the file is left unchanged.
func (f *File) reparse(src []byte) error {
	nf, err := Parse(f.name, src)
	if err != nil {
		return fmt.Errorf("internal error: edit produced an invalid file: %w", err)
	}
	*f = *nf
	return nil
}
