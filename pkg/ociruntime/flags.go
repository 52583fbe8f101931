package ociruntime

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// flagSpec declares one command-line flag.
type flagSpec struct {
	names  []string // long name first, then aliases ("b" for -b)
	isBool bool
	multi  bool // may repeat (values accumulate)
	usage  string
}

// flagSet parses runc-style flags: "--name value", "--name=value", "-name"
// (Go's single dash long form, which runc's CLI library accepts), "-n
// value" for one-letter aliases, and "--" to end flags. interspersed lets
// flags follow positional arguments (runc reorders them for most verbs);
// otherwise the first positional ends the flags (exec: the rest is the
// command).
type flagSet struct {
	verb         string
	specs        []*flagSpec
	byName       map[string]*flagSpec
	interspersed bool

	values map[string][]string // by long name
	args   []string
}

func newFlagSet(verb string, interspersed bool, specs ...*flagSpec) *flagSet {
	fs := &flagSet{verb: verb, specs: specs, byName: map[string]*flagSpec{}, interspersed: interspersed, values: map[string][]string{}}
	for _, s := range specs {
		for _, n := range s.names {
			fs.byName[n] = s
		}
	}
	return fs
}

func strFlag(usage string, names ...string) *flagSpec { return &flagSpec{names: names, usage: usage} }
func boolFlag(usage string, names ...string) *flagSpec {
	return &flagSpec{names: names, isBool: true, usage: usage}
}
func multiFlag(usage string, names ...string) *flagSpec {
	return &flagSpec{names: names, multi: true, usage: usage}
}

// UsageError is a command-line mistake (exit status 1, like runc).
type UsageError struct{ msg string }

func (e *UsageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &UsageError{fmt.Sprintf(format, a...)} }

func (fs *flagSet) parse(args []string) error {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			fs.args = append(fs.args, args[i+1:]...)
			return nil
		}
		if len(a) < 2 || a[0] != '-' {
			if !fs.interspersed {
				fs.args = append(fs.args, args[i:]...)
				return nil
			}
			fs.args = append(fs.args, a)
			continue
		}
		name := strings.TrimLeft(a, "-")
		val, hasVal := "", false
		if k := strings.IndexByte(name, '='); k >= 0 {
			name, val, hasVal = name[:k], name[k+1:], true
		}
		s := fs.byName[name]
		if s == nil {
			where := "global option"
			if fs.verb != "" {
				where = fs.verb + " option"
			}
			return usagef("unknown %s %q (expected one of: %s)", where, a, fs.names())
		}
		long := s.names[0]
		if s.isBool {
			if hasVal {
				if _, err := strconv.ParseBool(val); err != nil {
					return usagef("option --%s=%s: expected true or false", long, val)
				}
			} else {
				val = "true"
			}
		} else if !hasVal {
			if i+1 >= len(args) {
				return usagef("option --%s needs a value", long)
			}
			i++
			val = args[i]
		}
		if s.multi {
			fs.values[long] = append(fs.values[long], val)
		} else {
			fs.values[long] = []string{val}
		}
	}
	return nil
}

func (fs *flagSet) names() string {
	var ns []string
	for _, s := range fs.specs {
		ns = append(ns, "--"+s.names[0])
	}
	sort.Strings(ns)
	return strings.Join(ns, ", ")
}

func (fs *flagSet) str(name string) string {
	v := fs.values[name]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func (fs *flagSet) bool(name string) bool {
	b, _ := strconv.ParseBool(fs.str(name))
	return b
}

func (fs *flagSet) all(name string) []string { return fs.values[name] }

func (fs *flagSet) set(name string) bool { return len(fs.values[name]) > 0 }

// help lists the flags of a verb.
func (fs *flagSet) help() string {
	var b strings.Builder
	for _, s := range fs.specs {
		var ns []string
		for _, n := range s.names {
			if len(n) == 1 {
				ns = append(ns, "-"+n)
			} else {
				ns = append(ns, "--"+n)
			}
		}
		arg := ""
		if !s.isBool {
			arg = " value"
		}
		fmt.Fprintf(&b, "   %-28s %s\n", strings.Join(ns, ", ")+arg, s.usage)
	}
	return b.String()
}
