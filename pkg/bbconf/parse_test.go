package bbconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, src string
		pos       string // "line:col"
		msg       string // substring of the message
	}{
		{"unparsed", "A = \"1\"\nFOO bar", "2:1", "unparsed line"},
		{"bare word", "FOO", "1:1", "unparsed line"},
		{"unquoted", `A = value`, "1:5", "expected a quoted value"},
		{"missing value", `A =`, "1:4", "missing value"},
		{"missing close", `A = "abc`, "1:5", `missing closing "`},
		{"trailing comment", `XEN_GUEST_SOURCE_TYPE[guest] = "rootfs_dir"   # import handler type`, "1:47", "comment may not follow the value"},
		{"junk after quote", `A = "x" y`, "1:9", `unexpected text "y"`},
		{"stray quote", `A = "x"y"`, "1:7", "stray"},
		{"old append", `IMAGE_INSTALL_append = " x"`, "1:14", "use IMAGE_INSTALL:append"},
		{"old remove with override", `FOO_remove_pn-x = "a"`, "1:4", "use FOO:remove_pn-x"},
		{"flag then append", `VAR[flag]:append = "x"`, "1:10", "cannot follow a varflag"},
		{"append then flag", `VAR:append[flag] = "x"`, "1:1", "varflags cannot be combined with :append"},
		{"override then flag", `XEN_GUEST_MEMORY:pn-img[alpine] = "1"`, "1:17", "does not apply override"},
		{"weak append", `A:append ??= "x"`, "1:10", "??= cannot be combined with :append"},
		{"bad flag", `A[ = "x"`, "1:3", "malformed varflag"},
		{"missing operator", `A "x" = "y"`, "1:3", "expected an assignment operator"},
		{"unclosed function", "do_x() {\n  echo\n", "1:1", "function do_x is never closed"},
		{"comment inside continuation", "A = \"a \\\n# c\n b\"", "2:1", "comment in the middle"},
		{"partially commented", "# A = \"a \\\nB = \"b\"", "1:1", "partially commented"},
		{"unset junk", `unset A B`, "1:8", "unexpected"},
		{"unset bad flag", `unset A[`, "1:8", "malformed varflag"},
		{"position after continuation", "A = \"a\" \\\n   junk", "2:4", `unexpected text "junk"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := New(Options{}).Parse("test.conf", []byte(tc.src))
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse(%q) = %v, want *Error", tc.src, err)
			}
			prefix := "test.conf:" + tc.pos + ": "
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("Parse(%q) error = %q, want prefix %q and %q", tc.src, err, prefix, tc.msg)
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	tests := []struct {
		name, src, get string
		pos, msg       string
	}{
		{"python", "A = \"x\"\nB = \"a ${@d.getVar('A')} b\"", "B", "2:8", "python expansion ${@...} is not supported"},
		{"python via reference", "A = \"${B}\"\nB = \"${@1+1}\"", "A", "2:6", "python expansion"},
		{"python in active append", "A = \"x\"\nA:append = \"${@1}\"", "A", "2:13", "python expansion"},
		{"python in flag", `F[x] = "${@1}"`, "F[x]", "1:9", "python expansion"},
		{"self reference", `A = "${A}"`, "A", "1:6", "cycle: A -> A"},
		{"cycle", "A = \"x ${B}\"\nB = \"${C}\"\nC = \"${A}\"", "A", "3:6", "cycle: A -> B -> C -> A"},
		{"cycle via override", "A = \"\"\nA:o = \"${A}\"", "A", "2:8", "cycle"},
		{"cycle via remove", "A = \"a\"\nA:remove = \"${A}\"", "A", "2:13", "cycle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := New(Options{Overrides: []string{"o"}})
			if err := d.Parse("test.conf", []byte(tc.src)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			var err error
			if i := strings.IndexByte(tc.get, '['); i >= 0 {
				_, _, err = d.GetFlag(tc.get[:i], tc.get[i+1:len(tc.get)-1])
			} else {
				_, _, err = d.Get(tc.get)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Get(%s) = %v, want *Error", tc.get, err)
			}
			if got := e.Pos.String(); got != "test.conf:"+tc.pos || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("Get(%s) error = %q, want at test.conf:%s containing %q", tc.get, err, tc.pos, tc.msg)
			}
		})
	}
}

// Python in a variable nobody reads must not stop parsing.
func TestUnreadPythonIsFine(t *testing.T) {
	d := New(Options{})
	src := `DISTRO_FEATURES:append = " ${@bb.utils.contains('X', 'y', 'z', '', d)}"` + "\nA = \"ok\""
	if err := d.Parse("local.conf", []byte(src)); err != nil {
		t.Fatal(err)
	}
	if v, _, err := d.Get("A"); err != nil || v != "ok" {
		t.Fatalf("Get(A) = %q, %v", v, err)
	}
	if err := d.Parse("b.conf", []byte(`B := "${@1}"`)); err == nil || !strings.HasPrefix(err.Error(), "b.conf:1:7: python expansion") {
		t.Fatalf(":= with python: %v", err)
	}
}

func TestBounds(t *testing.T) {
	// Exponential growth must hit the size limit instead of eating memory.
	var b strings.Builder
	b.WriteString("A0 = \"xxxxxxxxxxxxxxxx\"\n")
	for i := 1; i < 40; i++ {
		b.WriteString("A" + itoa(i) + " = \"${A" + itoa(i-1) + "}${A" + itoa(i-1) + "}\"\n")
	}
	d := New(Options{})
	if err := d.Parse("big.conf", []byte(b.String())); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Get("A39"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Get(A39) error = %v, want size limit", err)
	}
	if v, _, err := d.Get("A10"); err != nil || len(v) != 16<<10 {
		t.Fatalf("Get(A10) = %d bytes, %v", len(v), err)
	}
	// Deep chains hit the depth limit.
	b.Reset()
	for i := 0; i < 300; i++ {
		b.WriteString("B" + itoa(i) + " = \"${B" + itoa(i+1) + "}\"\n")
	}
	d = New(Options{})
	if err := d.Parse("deep.conf", []byte(b.String())); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Get("B0"); err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Fatalf("Get(B0) error = %v, want depth limit", err)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

const recipeSrc = `SUMMARY = "example"
inherit xen-guest-bundle ${EXTRA_CLASS}
inherit_defer deferred
EXTRA_CLASS = "late"
addtask deploy after do_install
deltask do_patch
addhandler my_handler
EXPORT_FUNCTIONS do_install
do_install() {
    if [ -n "$X" ]; then {
        echo "} { not the end"
    }
    fi
    echo done \
}
python do_x() {
    d.setVar("A", "broken")
}
fakeroot python do_y () {
	pass
}
python () {
    pass
}
def helper(d):
    x = "A = 'not an assignment'"

    # comment
    return x
AFTER_DEF = "1"
do_install:append() {
    echo more
}
XEN_GUEST_BUNDLES = "alpine:autostart:external"
`

func TestRecipeConstructs(t *testing.T) {
	d := New(Options{})
	if err := d.Parse("alpine-xen-guest-bundle_3.23.bb", []byte(recipeSrc)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"AFTER_DEF", "EXTRA_CLASS", "SUMMARY", "XEN_GUEST_BUNDLES"}, d.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"xen-guest-bundle", "${EXTRA_CLASS}", "deferred"}, d.Inherits()); diff != "" {
		t.Errorf("Inherits (-want +got):\n%s", diff)
	}
}

// write creates files under dir; keys are slash-separated relative paths.
func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIncludeRequire(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"conf/local.conf": `A = "local"
include guests.inc
include missing.inc
require sub/${WHICH}.inc
include layer.inc
include ${TOPDIR}/abs.inc
B += "after"
`,
		"conf/guests.inc":  "B = \"guests\"\nWHICH = \"one\"\n",
		"conf/sub/one.inc": "C = \"one\"\ninclude two.inc\n",
		"conf/sub/two.inc": "D = \"two, relative to sub\"\n",
		"layer/layer.inc":  "E = \"from search path\"\n",
		"abs.inc":          "F = \"absolute\"\n",
	})
	d := New(Options{SearchPath: []string{filepath.Join(dir, "layer")}})
	d.Set("TOPDIR", dir)
	if err := d.ParseFile(filepath.Join(dir, "conf", "local.conf")); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A": "local", "B": "guests after", "C": "one", "D": "two, relative to sub", "E": "from search path", "F": "absolute"}
	for k, w := range want {
		if got, _, err := d.Get(k); err != nil || got != w {
			t.Errorf("Get(%s) = %q, %v; want %q", k, got, err, w)
		}
	}
	if n := len(d.Files()); n != 6 {
		t.Errorf("Files() = %v, want 6 files", d.Files())
	}
	origin := d.Origin("D")
	if len(origin) != 1 || origin[0].File != filepath.Join(dir, "conf", "sub", "two.inc") || origin[0].Line != 1 {
		t.Errorf("Origin(D) = %v", origin)
	}
}

func TestIncludeErrors(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"req.conf":    "A = \"1\"\nrequire nothere.inc\n",
		"reqvar.conf": "require ${NOPE}.inc\n",
		"cyc-a.conf":  "include cyc-b.conf\n",
		"cyc-b.conf":  "\ninclude cyc-a.conf\n",
		"bad.conf":    "include bad.inc\n",
		"bad.inc":     "ok = \"1\"\n\n  broken line\n",
		"py.conf":     "include ${@'x'}.inc\n",
	})
	tests := []struct{ file, want string }{
		{"req.conf", "req.conf:2:1: could not require file nothere.inc"},
		{"reqvar.conf", "undefined variable reference"},
		{"cyc-a.conf", "cyc-b.conf:2:1: include cycle: "},
		{"bad.conf", "bad.inc:3:3: unparsed line"},
		{"py.conf", "py.conf:1:9: python expansion"},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			err := New(Options{}).ParseFile(filepath.Join(dir, tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseFile(%s) = %v, want %q", tc.file, err, tc.want)
			}
		})
	}
	if err := New(Options{}).ParseFile(filepath.Join(dir, "absent.conf")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ParseFile(absent) = %v, want ErrNotExist", err)
	}
}
