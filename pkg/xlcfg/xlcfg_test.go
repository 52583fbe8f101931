package xlcfg

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vxn-dev/vxn/internal/testutil"
)

// corpusFilesQuiet lists the corpus without a testing.TB (for fuzz seeds).
func corpusFilesQuiet() ([]string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, os.ErrNotExist
		}
		dir = parent
	}
	return filepath.Glob(filepath.Join(dir, "..", "shared", "corpus", "xl-cfg", "*", "*"))
}

func corpusFiles(t testing.TB) []string {
	t.Helper()
	root := filepath.Join(testutil.SharedDir(t), "corpus", "xl-cfg")
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && d.Name() != "README.md" {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Skipf("corpus not readable: %v", err)
	}
	if len(files) == 0 {
		t.Skipf("corpus %s is empty", root)
	}
	return files
}

func TestCorpusRoundTrip(t *testing.T) {
	files := corpusFiles(t)
	if len(files) < 51 {
		t.Errorf("corpus has %d files, want 51", len(files))
	}
	for _, fn := range files {
		t.Run(filepath.Base(fn), func(t *testing.T) {
			src, err := os.ReadFile(fn)
			if err != nil {
				t.Fatal(err)
			}
			f, err := Parse(filepath.Base(fn), src)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !bytes.Equal(f.Bytes(), src) {
				t.Fatalf("Bytes() differs from input")
			}
			if len(f.Keys()) == 0 {
				t.Fatalf("no keys parsed")
			}
			canon, err := f.Canonical()
			if err != nil {
				t.Fatalf("Canonical: %v", err)
			}
			g, err := Parse("canonical", canon)
			if err != nil {
				t.Fatalf("Parse(canonical): %v\n%s", err, canon)
			}
			assertSameValues(t, f, g)
			// Every disk entry parses as xl parses it.
			if v, ok := f.Get("disk"); ok {
				for i, it := range v.Items {
					if _, err := ParseDisk(it.Text); err != nil {
						t.Errorf("disk %d: %v", i, err)
					}
				}
			}
		})
	}
}

func assertSameValues(t *testing.T, f, g *File) {
	t.Helper()
	fk, gk := f.Keys(), g.Keys()
	if strings.Join(fk, " ") != strings.Join(gk, " ") {
		t.Fatalf("keys differ:\n%v\n%v", fk, gk)
	}
	for _, k := range fk {
		a, _ := f.Get(k)
		b, _ := g.Get(k)
		if !a.Equal(b) {
			t.Errorf("key %s: %+v != %+v", k, a, b)
		}
	}
}

func TestParseValues(t *testing.T) {
	tests := []struct {
		name, src, key string
		want           Value
	}{
		{"dq", `name = "a b"`, "name", Str("a b")},
		{"sq", `name='a b'`, "name", Str("a b")},
		{"escapes", `x = "q\"s\'b\\n\n t\t"`, "x", Str("q\"s'b\\n\n t\t")},
		{"sq has dq", `x = 'say "hi"'`, "x", Str(`say "hi"`)},
		{"number", "memory = 512\n", "memory", Value{Kind: KindNumber, Text: "512"}},
		{"hex", "x = 0x1f", "x", Value{Kind: KindNumber, Text: "0x1f"}},
		{"empty list", "x = []", "x", List()},
		{"list", "x = [ 'a', \"b\" ]", "x", Strs("a", "b")},
		{"trailing comma", "x = ['a',\n 'b',\n]\n", "x", Strs("a", "b")},
		{"multiline with comments", "x = [ # c\n 'a', # d\n\n 'b' # e\n ]\n", "x", Strs("a", "b")},
		{"nested", `vnuma = [ [ "pnode=0", "size=512" ], [ 1, [ ] ] ]`, "vnuma",
			List(Strs("pnode=0", "size=512"), List(Value{Kind: KindNumber, Text: "1"}, List()))},
		{"semicolons", `a = 1; b = "x";`, "b", Str("x")},
		{"last wins", "a = 1\na = 2\n", "a", Value{Kind: KindNumber, Text: "2"}},
		{"append string", "a = 'x'\na += 'y'\n", "a", Str("xy")},
		{"append list", "a = ['x']\na += ['y', 'z']\n", "a", Strs("x", "y", "z")},
		{"append to nothing", "a += ['y']\n", "a", Strs("y")},
		{"dotted key", "x.y_z9 = 1", "x.y_z9", Value{Kind: KindNumber, Text: "1"}},
		{"tab and blank", "\t a\t=\t'v' \t\n", "a", Str("v")},
		{"no final newline", "a = 'v'", "a", Str("v")},
		{"utf8 and high bytes", "a = 'héllo\xff'", "a", Str("héllo\xff")},
		{"cr in string", "a = 'x\ry'\n", "a", Str("x\ry")},
		{"comment with NUL", "# a\x00b\na = 1\n", "a", Value{Kind: KindNumber, Text: "1"}},
		{"empty string", `a = ""`, "a", Str("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t.cfg", []byte(tt.src))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if string(f.Bytes()) != tt.src {
				t.Fatalf("Bytes() = %q, want %q", f.Bytes(), tt.src)
			}
			got, ok := f.Get(tt.key)
			if !ok {
				t.Fatalf("key %q missing; keys %v", tt.key, f.Keys())
			}
			if !got.Equal(tt.want) {
				t.Fatalf("Get(%q) = %+v, want %+v", tt.key, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"crlf", "a = 1\r\n", "t.cfg:1:6: lexical error: carriage return"},
		{"comment at eof", "a = 1\n# end", "t.cfg:2:1: lexical error: comment at end of file"},
		{"python", "a = foo()\n", "t.cfg:1:5: syntax error: unexpected key \"foo\""},
		{"python paren", "a = (1)\n", "t.cfg:1:5: lexical error"},
		{"upper key", "Name = 'x'\n", "t.cfg:1:1: lexical error near \"Name\": keys must start"},
		{"unterminated", "a = 'x\nb = 1\n", "t.cfg:1:5: lexical error: unterminated '-quoted string"},
		{"hex escape", `a = "\x41"`, `t.cfg:1:6: invalid escape \x`},
		{"octal escape", `a = "\101"`, `t.cfg:1:6: unsupported octal escape`},
		{"bad escape", `a = "\q"`, `t.cfg:1:6: invalid character 'q' after backslash`},
		{"missing value", "a =\n", "t.cfg:1:4: syntax error: unexpected newline, expected a value"},
		{"missing eq", "a 1\n", "t.cfg:1:3: syntax error: unexpected number \"1\", expected '=' or '+='"},
		{"two on a line", "a = 1 b = 2\n", "t.cfg:1:7: syntax error: unexpected key \"b\", expected newline or ';'"},
		{"leading comma", "a = [,'x']\n", "t.cfg:1:6: syntax error: unexpected ','"},
		{"double comma", "a = ['x',,'y']\n", "t.cfg:1:10: syntax error: unexpected ','"},
		{"unclosed list", "a = ['x'\n", "t.cfg:2:1: syntax error: unexpected end of file, expected ',' or ']'"},
		{"append mismatch", "a = 'x'\na += ['y']\n", "t.cfg:2:3: can't add [list] to \"string\""},
		{"NUL in string", "a = 'x\x00'\n", "t.cfg:1:7: NUL byte inside a string"},
		{"NUL outside", "a = 1\x00\n", "t.cfg:1:6: lexical error: NUL byte"},
		{"value is key", "a = b\n", "t.cfg:1:5: syntax error: unexpected key \"b\", expected a value"},
		{"stray bracket", "]\n", "t.cfg:1:1: syntax error: unexpected ']', expected a key"},
		{"number then ident", "a = 1x2g\n", "t.cfg:1:8: syntax error: unexpected key \"g\""},
		{"minus", "a = -1\n", "t.cfg:1:5: lexical error near \"-1\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.cfg", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded, want error %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error = %q, want prefix %q", err, tt.want)
			}
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not *Error", err)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	var all []byte
	for c := 1; c < 256; c++ {
		all = append(all, byte(c))
	}
	tests := []string{"", "plain", `a"b`, `a'b`, `back\slash`, "new\nline", "tab\t", "\a\b\f\v\r", string(all), `rbd:a\:6321\;b`}
	for _, s := range tests {
		for _, quote := range []func(string) (string, error){Quote, QuoteSingle} {
			q, err := quote(s)
			if err != nil {
				t.Fatalf("Quote(%q): %v", s, err)
			}
			if strings.ContainsAny(q, "\n\x00") {
				t.Errorf("Quote(%q) = %q contains a raw newline or NUL", s, q)
			}
			f, err := Parse("q", []byte("k = "+q+"\n"))
			if err != nil {
				t.Fatalf("Parse(Quote(%q)=%s): %v", s, q, err)
			}
			if v, _ := f.Get("k"); v.Text != s || v.Kind != KindString {
				t.Errorf("Quote(%q) read back as %q", s, v.Text)
			}
		}
	}
	if _, err := Quote("a\x00b"); err == nil || !strings.Contains(err.Error(), `"a\x00b"`) {
		t.Errorf("Quote with NUL: err = %v, want an error naming the value", err)
	}
}

func TestInt64(t *testing.T) {
	tests := []struct {
		text    string
		want    int64
		wantErr bool
	}{
		{"512", 512, false}, {"0x1f", 31, false}, {"010", 8, false}, {"0", 0, false},
		{" -3", -3, false}, {"08", 0, true}, {"0b1", 0, true}, {"1_0", 0, true}, {"", 0, true},
		{"12abc", 0, true}, {"99999999999999999999", 0, true},
	}
	for _, tt := range tests {
		got, err := Value{Kind: KindNumber, Text: tt.text}.Int64()
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("Int64(%q) = %d, %v; want %d, err=%v", tt.text, got, err, tt.want, tt.wantErr)
		}
	}
	if _, err := List().Int64(); err == nil {
		t.Errorf("Int64 of a list succeeded")
	}
}

func TestSetDelete(t *testing.T) {
	tests := []struct {
		name, src string
		do        func(f *File) error
		want      string
	}{
		{"replace keeps rest", "# c\nname = 'a'  # tail\nmemory = 1\n",
			func(f *File) error { return f.Set("name", Str("b")) },
			"# c\nname = 'b'  # tail\nmemory = 1\n"},
		{"replace number", "memory=128\n", func(f *File) error { return f.Set("memory", Int(512)) }, "memory=512\n"},
		{"replace multiline list", "disk = [\n  'a',\n  'b',\n]\nx = 1\n",
			func(f *File) error { return f.Set("disk", Strs("c")) }, "disk = ['c']\nx = 1\n"},
		{"append new", "a = 1", func(f *File) error { return f.Set("b", Str("x")) }, "a = 1\nb = \"x\"\n"},
		{"append new to empty", "", func(f *File) error { return f.Set("b", Int(-1)) }, "b = \"-1\"\n"},
		{"set over +=", "a = 'x'\na += 'y'\n", func(f *File) error { return f.Set("a", Str("z")) }, "a = 'x'\na = 'z'\n"},
		{"delete line", "a = 1\nb = 2 # c\nc = 3\n", func(f *File) error { _, err := f.Delete("b"); return err }, "a = 1\nc = 3\n"},
		{"delete all", "a = 1\nb = 2\na += 3\n", func(f *File) error { _, err := f.Delete("a"); return err }, "b = 2\n"},
		{"delete semicolon first", "a = 1; b = 2\n", func(f *File) error { _, err := f.Delete("a"); return err }, "b = 2\n"},
		{"delete semicolon last", "a = 1; b = 2\n", func(f *File) error { _, err := f.Delete("b"); return err }, "a = 1; \n"},
		{"delete multiline", "x = [\n 1,\n 2 ]\ny = 1\n", func(f *File) error { _, err := f.Delete("x"); return err }, "y = 1\n"},
		{"delete last no newline", "a = 1\nb = 2", func(f *File) error { _, err := f.Delete("b"); return err }, "a = 1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.do(f); err != nil {
				t.Fatal(err)
			}
			if got := string(f.Bytes()); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	f, _ := Parse("t", []byte("a = 1\n"))
	if err := f.Set("Bad", Int(1)); err == nil {
		t.Errorf("Set with invalid key succeeded")
	}
	if err := f.Set("a", Str("x\x00")); err == nil {
		t.Errorf("Set with NUL succeeded")
	}
	if err := f.Set("a", Value{Kind: KindNumber, Text: "-1"}); err == nil {
		t.Errorf("Set with invalid number literal succeeded")
	}
	if ok, err := f.Delete("zz"); ok || err != nil {
		t.Errorf("Delete(absent) = %v, %v", ok, err)
	}
	if string(f.Bytes()) != "a = 1\n" {
		t.Errorf("failed edits changed the file: %q", f.Bytes())
	}
}
