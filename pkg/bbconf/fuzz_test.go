package bbconf

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that no input makes the parser or the evaluator panic or
// hang, and that every error carries a position.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/spec/*")
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		recipeSrc,
		"A = \"${B}\"\nB = \"${A}\"",
		"A${B} = \"X\"\nB = \"2\"\nA2 = \"Y\"",
		"V:a:b = \"1\"\nV:b:a = \"2\"\nV:append:a = \"x\"\nV:remove:b = \"1\"",
		"A = \"${@x}\"\nB := \"${A}\"",
		"A = \"a \\\n b\"\n# c \\\n# d\n",
		"export A\nunset A[f]\nA[f] ??= \"x\"\nA[f] += \"y\"",
		"do_x() {\n}\ndef f():\n  pass\nA = '1'",
		"A = \"x\"y\"",
		"A = \"$\"\nB = \"${A}{A}\"",
		"X = \"${${${Y}}}\"\nY = \"Z\"\nZ = \"Y\"",
		"A:append:pn-xen-image-minimal = \" b\"\nA:pn-xen-image-minimal:remove = \"b\"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		// The statement parser sees everything, including include lines.
		if _, err := parse("fuzz.conf", src); err != nil {
			checkErr(t, err, true)
		}
		// Evaluation only without includes, so the fuzzer cannot read
		// arbitrary files from the machine.
		if bytes.Contains(src, []byte("include")) || bytes.Contains(src, []byte("require")) {
			return
		}
		d := New(Options{Overrides: []string{"a", "b", "pn-xen-image-minimal"}})
		if err := d.Parse("fuzz.conf", src); err != nil {
			checkErr(t, err, false)
			return
		}
		for _, n := range d.Names() {
			if _, _, err := d.Lookup(n); err != nil {
				checkErr(t, err, false)
			}
			for _, fl := range d.FlagNames(n) {
				if _, _, err := d.LookupFlag(n, fl); err != nil {
					checkErr(t, err, false)
				}
			}
			_ = d.Origin(n)
		}
	})
}

func checkErr(t *testing.T, err error, needPos bool) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not an *Error", err, err)
	}
	if e.Msg == "" {
		t.Fatalf("empty error message: %#v", e)
	}
	if needPos && (e.Pos.File != "fuzz.conf" || e.Pos.Line < 1 || e.Pos.Col < 1) {
		t.Fatalf("syntax error without position: %v", err)
	}
}
