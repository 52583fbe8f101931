package xlcfg

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kind is the type of a [Value].
type Kind int

const (
	// KindString is a quoted string.
	KindString Kind = iota
	// KindNumber is an unquoted number literal ([0-9][0-9a-fx]*).
	KindNumber
	// KindList is a bracketed list of values; lists may nest.
	KindList
)

// String names the kind.
func (k Kind) String() string {
	switch k {
	case KindString:
		return "string"
	case KindNumber:
		return "number"
	case KindList:
		return "list"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Value is a typed xl value. For strings Text is the decoded string; for
// numbers it is the literal as written (xl keeps numbers as text and converts
// them with strtol base 0 when a number is wanted); for lists Items holds the
// elements.
type Value struct {
	// Kind is the value's type.
	Kind Kind
	// Text is the decoded string or the number literal.
	Text string
	// Items are the elements of a list.
	Items []Value
}

// Str returns a string value.
func Str(s string) Value { return Value{Kind: KindString, Text: s} }

// Int returns a number value for n. xl's number syntax has no sign, so a
// negative n is returned as a string value, which xl converts the same way.
func Int(n int64) Value {
	if n < 0 {
		return Value{Kind: KindString, Text: strconv.FormatInt(n, 10)}
	}
	return Value{Kind: KindNumber, Text: strconv.FormatInt(n, 10)}
}

// List returns a list value.
func List(items ...Value) Value { return Value{Kind: KindList, Items: items} }

// Strs returns a list of string values.
func Strs(ss ...string) Value {
	items := make([]Value, len(ss))
	for i, s := range ss {
		items[i] = Str(s)
	}
	return List(items...)
}

// Equal reports whether v and w have the same kind and contents.
func (v Value) Equal(w Value) bool {
	if v.Kind != w.Kind || v.Text != w.Text || len(v.Items) != len(w.Items) {
		return false
	}
	for i := range v.Items {
		if !v.Items[i].Equal(w.Items[i]) {
			return false
		}
	}
	return true
}

// Int64 converts a number or string value as xl's xlu_cfg_get_long does
// (strtol base 0: decimal, 0-prefixed octal, 0x-prefixed hex, optional
// leading blanks and sign).
func (v Value) Int64() (int64, error) {
	if v.Kind == KindList {
		return 0, errors.New("value is a list, not a number")
	}
	bad := fmt.Errorf("%q is not a valid number", v.Text)
	s := strings.TrimLeft(v.Text, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	base := 10
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	if s == "" || strings.ContainsAny(s, "_+-") {
		return 0, bad
	}
	u, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		return 0, bad
	}
	if neg {
		if u > 1<<63 {
			return 0, fmt.Errorf("%q is out of range", v.Text)
		}
		return -int64(u), nil
	}
	if u > 1<<63-1 {
		return 0, fmt.Errorf("%q is out of range", v.Text)
	}
	return int64(u), nil
}

// StringList returns the strings of a list whose items are all strings or
// numbers, as xlu_cfg_get_list_as_string_list does.
func (v Value) StringList() ([]string, error) {
	if v.Kind != KindList {
		return nil, fmt.Errorf("value is a %s, not a list", v.Kind)
	}
	out := make([]string, len(v.Items))
	for i, it := range v.Items {
		if it.Kind == KindList {
			return nil, fmt.Errorf("item %d is a list, not a string", i)
		}
		out[i] = it.Text
	}
	return out, nil
}

// Format renders v in xl syntax: strings double-quoted via [Quote], numbers
// as written, lists as [a, b]. It fails for a string xl cannot represent or
// a number that is not a valid xl number literal.
func (v Value) Format() (string, error) {
	var b strings.Builder
	if err := v.format(&b, '"', 0); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (v Value) format(b *strings.Builder, q byte, depth int) error {
	switch v.Kind {
	case KindString:
		s, err := quoteWith(v.Text, q)
		if err != nil {
			return err
		}
		b.WriteString(s)
	case KindNumber:
		if !validNumber(v.Text) {
			return fmt.Errorf("number %q is not an xl number literal (want [0-9][0-9a-fx]*)", v.Text)
		}
		b.WriteString(v.Text)
	case KindList:
		if depth >= maxDepth {
			return fmt.Errorf("lists nested more than %d deep", maxDepth)
		}
		b.WriteByte('[')
		for i, it := range v.Items {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := it.format(b, q, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		return fmt.Errorf("unknown value kind %d", int(v.Kind))
	}
	return nil
}

func validNumber(s string) bool {
	if s == "" || !isDigit(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) && !(c >= 'a' && c <= 'f') && c != 'x' {
			return false
		}
	}
	return true
}

// ValidKey reports whether key is a valid xl key ([a-z][._0-9a-z]*).
func ValidKey(key string) bool {
	if key == "" || !isLower(key[0]) {
		return false
	}
	for i := 1; i < len(key); i++ {
		c := key[i]
		if !isLower(c) && !isDigit(c) && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// Quote returns s as a double-quoted xl string that xl reads back as exactly
// s. Quotes, backslashes and control characters with a named escape are
// escaped. The only string xl cannot represent is one containing a NUL byte
// (xl stores strings as C strings and has no working numeric escape); Quote
// returns an error naming the value for it.
func Quote(s string) (string, error) { return quoteWith(s, '"') }

// QuoteSingle is like [Quote] but uses single quotes, the style of
// upstream's generated list entries (disk = ['...']).
func QuoteSingle(s string) (string, error) { return quoteWith(s, '\'') }

func quoteWith(s string, q byte) (string, error) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return "", fmt.Errorf("string %q contains a NUL byte at offset %d, which xl cannot represent", s, i)
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte(q)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case q, '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\a':
			b.WriteString(`\a`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\v':
			b.WriteString(`\v`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
	return b.String(), nil
}
