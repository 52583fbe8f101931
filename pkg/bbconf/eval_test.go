package bbconf

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const unset = "<unset>"

// evalCase parses src with the given overrides and checks variables.
// A want value of unset means the variable must not be set. Keys of the
// form "VAR[flag]" check a flag.
type evalCase struct {
	name      string
	overrides []string
	src       string
	want      map[string]string
}

func runEvalCases(t *testing.T, cases []evalCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := New(Options{Overrides: tc.overrides})
			if err := d.Parse("test.conf", []byte(tc.src)); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got := map[string]string{}
			for k := range tc.want {
				var (
					v   string
					ok  bool
					err error
				)
				if i := strings.IndexByte(k, '['); i >= 0 && strings.HasSuffix(k, "]") {
					v, ok, err = d.GetFlag(k[:i], k[i+1:len(k)-1])
				} else {
					v, ok, err = d.Get(k)
				}
				if err != nil {
					t.Fatalf("Get(%s): %v", k, err)
				}
				if !ok {
					v = unset
				}
				got[k] = v
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("values mismatch (-want +got):\n%s\nsource:\n%s", diff, tc.src)
			}
		})
	}
}

// Cases follow the BitBake user manual, "Syntax and Operators".
func TestOperators(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "plain", src: `VARIABLE = "value"`, want: map[string]string{"VARIABLE": "value"}},
		{name: "spaces kept", src: `VARIABLE = " value "`, want: map[string]string{"VARIABLE": " value "}},
		{name: "no spaces around operator", src: `A="x"`, want: map[string]string{"A": "x"}},
		{name: "single quotes", src: `VARIABLE = 'I have a " in my value'`, want: map[string]string{"VARIABLE": `I have a " in my value`}},
		{name: "escapes are literal", src: `A = "a \"b\" c"`, want: map[string]string{"A": `a \"b\" c`}},
		{name: "empty", src: `A = ""`, want: map[string]string{"A": "", "B": unset}},
		{name: "last assignment wins", src: "A = \"1\"\nA = \"2\"", want: map[string]string{"A": "2"}},
		{name: "?= sets when unset", src: `A ?= "aval"`, want: map[string]string{"A": "aval"}},
		{name: "?= keeps earlier", src: "A = \"x\"\nA ?= \"aval\"", want: map[string]string{"A": "x"}},
		{name: "?= first wins", src: "A ?= \"1\"\nA ?= \"2\"", want: map[string]string{"A": "1"}},
		{name: "??= weak default", src: `W ??= "somevalue"`, want: map[string]string{"W": "somevalue"}},
		{name: "??= last wins", src: "W ??= \"x\"\nW ??= \"y\"", want: map[string]string{"W": "y"}},
		{name: "??= loses to =", src: "W = \"hard\"\nW ??= \"weak\"", want: map[string]string{"W": "hard"}},
		{name: "??= loses to later =", src: "W ??= \"weak\"\nW = \"hard\"", want: map[string]string{"W": "hard"}},
		{name: "?= ignores weak default", src: "W ??= \"weak\"\nW ?= \"set\"", want: map[string]string{"W": "set"}},
		{name: "+= ignores weak default", src: "W ??= \"weak\"\nW += \"more\"", want: map[string]string{"W": " more"}},
		{name: ":append applies to weak default", src: "W ??= \"weak\"\nW:append = \" more\"", want: map[string]string{"W": "weak more"}},
		{name: "+=", src: "B = \"bval\"\nB += \"additionaldata\"", want: map[string]string{"B": "bval additionaldata"}},
		{name: "+= on unset has leading space", src: `B += "x"`, want: map[string]string{"B": " x"}},
		{name: "=+", src: "C = \"cval\"\nC =+ \"test\"", want: map[string]string{"C": "test cval"}},
		{name: ".=", src: "B = \"bval\"\nB .= \"additionaldata\"", want: map[string]string{"B": "bvaladditionaldata"}},
		{name: "=.", src: "C = \"cval\"\nC =. \"test\"", want: map[string]string{"C": "testcval"}},
		{name: "A+= splits operator", src: "A = \"a\"\nA+= \"b\"\nA.= \"c\"", want: map[string]string{"A": "a bc"}},
		{name: ":= immediate", src: `T = "123"
A := "test ${T}"
T = "456"
B := "${T} ${C}"
C = "cval"
C := "${C}append"`, want: map[string]string{"A": "test 123", "B": "456 cvalappend", "C": "cvalappend", "T": "456"}},
		{name: "= is lazy", src: "A = \"${B}\"\nB = \"late\"", want: map[string]string{"A": "late"}},
		{name: ":= with own old value", src: "A = \"x\"\nA := \"${A} y\"", want: map[string]string{"A": "x y"}},
		{name: "nested expansion", src: "A = \"${B}\"\nB = \"${C}-b\"\nC = \"c\"", want: map[string]string{"A": "c-b"}},
		{name: "dynamic name", src: "X = \"Y\"\nY = \"yes\"\nA = \"${${X}}\"", want: map[string]string{"A": "yes"}},
		{name: "undefined stays literal", src: `A = "${UNDEFINED} x"`, want: map[string]string{"A": "${UNDEFINED} x"}},
		{name: "dollar alone", src: `A = "$ ${ {} $HOME"`, want: map[string]string{"A": "$ ${ {} $HOME"}},
		{name: "export assignment", src: `export A = "1"`, want: map[string]string{"A": "1", "A[export]": "1"}},
		{name: "export alone", src: "export A\nA = \"v\"", want: map[string]string{"A": "v", "A[export]": "1"}},
		{name: "variable named export", src: `export = "1"`, want: map[string]string{"export": "1"}},
		{name: "unset", src: "A = \"1\"\nA[f] = \"x\"\nA:append = \"y\"\nunset A", want: map[string]string{"A": unset, "A[f]": unset}},
		{name: "unset then set", src: "A = \"1\"\nA:append = \"y\"\nunset A\nA = \"2\"", want: map[string]string{"A": "2"}},
		{name: "unset flag", src: "A = \"1\"\nA[f] = \"x\"\nA[g] = \"y\"\nunset A[f]", want: map[string]string{"A": "1", "A[f]": unset, "A[g]": "y"}},
		{name: "continuation", src: "A = \"a \\\n  b\"", want: map[string]string{"A": "a   b"}},
		{name: "crlf", src: "A = \"1\"\r\nB = \"2\"\r\n", want: map[string]string{"A": "1", "B": "2"}},
		{name: "comments", src: "# A = \"1\"\n  # indented\nB = \"#not a comment\"", want: map[string]string{"A": unset, "B": "#not a comment"}},
		{name: "continued comment", src: "# a \\\n# b\nA = \"1\"", want: map[string]string{"A": "1"}},
		{name: "value with both quotes", src: `A = "it's"`, want: map[string]string{"A": "it's"}},
		{name: "four inner quotes", src: `A = "x"y"z"`, want: map[string]string{"A": `x"y"z`}},
		{name: "names with dots and slashes", src: `PREFERRED_PROVIDER_virtual/kernel = "linux-yocto"`, want: map[string]string{"PREFERRED_PROVIDER_virtual/kernel": "linux-yocto"}},
	})
}

func TestVarflags(t *testing.T) {
	runEvalCases(t, []evalCase{
		{name: "set", src: `XEN_GUEST_MEMORY[alpine] = "256"`, want: map[string]string{"XEN_GUEST_MEMORY[alpine]": "256", "XEN_GUEST_MEMORY": unset}},
		{name: "flag name chars", src: `SRC_URI[sha256sum] = "abc"` + "\n" + `P[a.b-c+d@e/f] = "1"`, want: map[string]string{"SRC_URI[sha256sum]": "abc", "P[a.b-c+d@e/f]": "1"}},
		{name: "flag expands", src: "G = \"vendor\"\nXEN_GUEST_ROOTFS[x] = \"${G}-rootfs.ext4\"", want: map[string]string{"XEN_GUEST_ROOTFS[x]": "vendor-rootfs.ext4"}},
		{name: "?=", src: "V[f] = \"1\"\nV[f] ?= \"2\"\nV[g] ?= \"3\"", want: map[string]string{"V[f]": "1", "V[g]": "3"}},
		{name: "??=", src: "V[f] ??= \"1\"\nV[g] ??= \"1\"\nV[g] = \"2\"", want: map[string]string{"V[f]": "1", "V[g]": "2"}},
		{name: "+= .= =+ =.", src: "V[a] = \"x\"\nV[a] += \"y\"\nV[b] = \"x\"\nV[b] .= \"y\"\nV[c] = \"x\"\nV[c] =+ \"y\"\nV[d] = \"x\"\nV[d] =. \"y\"",
			want: map[string]string{"V[a]": "x y", "V[b]": "xy", "V[c]": "y x", "V[d]": "yx"}},
		{name: ":=", src: "B = \"1\"\nV[f] := \"${B}\"\nB = \"2\"", want: map[string]string{"V[f]": "1"}},
		{name: "flags independent of value", src: "V = \"v\"\nV[f] = \"x\"\nV:append = \" more\"", want: map[string]string{"V": "v more", "V[f]": "x"}},
		{name: "export flag", src: `export V[f] = "x"`, want: map[string]string{"V[f]": "x", "V[export]": "1"}},
	})
}

func TestOverrides(t *testing.T) {
	img := []string{"linux", "x86-64", "pn-xen-image-minimal", "qemux86-64", "class-target"}
	runEvalCases(t, []evalCase{
		{name: "append", src: "B = \"bval\"\nB:append = \" additional data\"", want: map[string]string{"B": "bval additional data"}},
		{name: "prepend", src: "C = \"cval\"\nC:prepend = \"additional data \"", want: map[string]string{"C": "additional data cval"}},
		{name: "append before set", src: "A:append = \"x\"\nA = \"y\"", want: map[string]string{"A": "yx"}},
		{name: "append on unset", src: `A:append = "x"`, want: map[string]string{"A": "x"}},
		{name: "appends in order, prepends reversed", src: "A = \"m\"\nA:append = \"1\"\nA:append = \"2\"\nA:prepend = \"a\"\nA:prepend = \"b\"", want: map[string]string{"A": "bam12"}},
		{name: "append after += keeps both", src: "A = \"a\"\nA:append = \" z\"\nA += \"b\"", want: map[string]string{"A": "a b z"}},
		{name: "remove keeps whitespace (manual)", src: `FOO = "123 456 789 123456 123 456 123 456"
FOO:remove = "123"
FOO:remove = "456"
FOO2 = " abc def ghi abcdef abc def abc def def"
FOO2:remove = "\
    def \
    abc \
    ghi \
    "`, want: map[string]string{"FOO": "  789 123456    ", "FOO2": "    abcdef     "}},
		{name: "remove after append", src: "A = \"a b\"\nA:append = \" c\"\nA:remove = \"b\"", want: map[string]string{"A": "a  c"}},
		{name: "remove expands both sides", src: "X = \"b\"\nA = \"a ${X} c\"\nA:remove = \"${X}\"", want: map[string]string{"A": "a  c"}},
		{name: "remove on empty value", src: "A = \"\"\nA:remove = \"x\"", want: map[string]string{"A": ""}},
		{name: "conditional value (manual)", overrides: []string{"architecture", "os", "machine"},
			src: "TEST = \"default\"\nTEST:os = \"osspecific\"\nTEST:nooverride = \"othercondvalue\"", want: map[string]string{"TEST": "osspecific"}},
		{name: "conditional append (manual)", overrides: []string{"machine", "local"},
			src: "DEPENDS = \"glibc ncurses\"\nDEPENDS:append:machine = \" libmad\"", want: map[string]string{"DEPENDS": "glibc ncurses libmad"}},
		{name: "inactive conditional ignored", overrides: []string{"pn-other"},
			src: "IMAGE_INSTALL = \"base\"\nIMAGE_INSTALL:append:pn-xen-image-minimal = \" my-guests\"\nA:pn-xen-image-minimal = \"x\"", want: map[string]string{"IMAGE_INSTALL": "base", "A": unset}},
		{name: "spec image install", overrides: img,
			src: "IMAGE_INSTALL = \"base\"\nIMAGE_INSTALL:append:pn-xen-image-minimal = \" my-guests\"", want: map[string]string{"IMAGE_INSTALL": "base my-guests"}},
		{name: "last override wins", overrides: []string{"a", "b"},
			src: "V = \"0\"\nV:b = \"b\"\nV:a = \"a\"", want: map[string]string{"V": "b"}},
		{name: "double override beats single", overrides: []string{"a", "b"},
			src: "V = \"0\"\nV:a:b = \"ab\"\nV:a = \"a\"", want: map[string]string{"V": "ab"}},
		{name: "double override needs both", overrides: []string{"a"},
			src: "V = \"0\"\nV:a:b = \"ab\"\nV:a = \"a\"", want: map[string]string{"V": "a"}},
		{name: "append on conditional variant", overrides: []string{"foo"},
			src: "V = \"0\"\nV:foo = \"f\"\nV:foo:append = \"+\"\nV:append = \"!\"", want: map[string]string{"V": "f+!", "V:foo": "f+"}},
		{name: "append on variant alone replaces base", overrides: []string{"foo"},
			src: "V = \"base\"\nV:foo:append = \" x\"", want: map[string]string{"V": " x"}},
		{name: "multi-part conditional append", overrides: []string{"pn-a", "qemux86-64"},
			src: "V = \"v\"\nV:append:pn-a:qemux86-64 = \" both\"\nV:append:pn-a:qemuarm64 = \" no\"", want: map[string]string{"V": "v both"}},
		{name: "conditional remove", overrides: []string{"x"},
			src: "V = \"a b c\"\nV:remove:x = \"b\"\nV:remove:y = \"c\"", want: map[string]string{"V": "a  c"}},
		{name: "remove from override carried", overrides: []string{"x"},
			src: "V = \"a b\"\nV:x = \"p q\"\nV:x:remove = \"q\"\nV:append = \" r\"", want: map[string]string{"V": "p  r"}},
		{name: "override var read directly", overrides: nil,
			src: "V:pn-foo = \"x\"", want: map[string]string{"V:pn-foo": "x", "V": unset}},
		{name: "uppercase after colon is not an override", overrides: []string{"B"},
			src: "A:B = \"x\"\nA = \"base\"", want: map[string]string{"A": "base", "A:B": "x"}},
		{name: "unset variant", overrides: []string{"foo"},
			src: "V = \"base\"\nV:foo = \"f\"\nunset V:foo", want: map[string]string{"V": "base"}},
		{name: "expansion uses override", overrides: []string{"foo"},
			src: "V = \"base\"\nV:foo = \"f\"\nW = \"${V}\"", want: map[string]string{"W": "f"}},
		{name: ":= sees appends", src: "V = \"a\"\nV:append = \"b\"\nW := \"${V}\"\nV:append = \"c\"", want: map[string]string{"W": "ab", "V": "abc"}},
		{name: "key expansion (manual)", src: "A${B} = \"X\"\nB = \"2\"\nA2 = \"Y\"", want: map[string]string{"A2": "X"}},
		{name: "key expansion unresolved stays", src: "A${B} = \"X\"", want: map[string]string{"A${B}": "X"}},
		{name: "key expansion carries appends", src: "RDEPENDS:${PN} = \"a\"\nRDEPENDS:${PN}:append = \" b\"\nPN = \"foo\"", want: map[string]string{"RDEPENDS:foo": "a b"}},
	})
}

func TestSetAndDefaults(t *testing.T) {
	d := New(Options{Overrides: []string{"qemuarm64"}})
	d.Set("MACHINE", "qemuarm64")
	d.SetDefault("XEN_GUEST_MEMORY_DEFAULT", "512")
	d.SetDefault("DISTRO", "poky")
	src := "MACHINE ?= \"qemux86-64\"\nXEN_GUEST_MEMORY_DEFAULT ?= \"1024\"\nDISTRO ??= \"other\"\nK = \"${MACHINE}\"\nK:append:qemuarm64 = \"-arm\""
	if err := d.Parse("local.conf", []byte(src)); err != nil {
		t.Fatal(err)
	}
	d.SetFlag("XEN_GUEST_MEMORY", "alpine", "${XEN_GUEST_MEMORY_DEFAULT}")
	for name, want := range map[string]string{"MACHINE": "qemuarm64", "XEN_GUEST_MEMORY_DEFAULT": "1024", "DISTRO": "other", "K": "qemuarm64-arm"} {
		if got, _, err := d.Get(name); err != nil || got != want {
			t.Errorf("Get(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	if got, ok, err := d.GetFlag("XEN_GUEST_MEMORY", "alpine"); err != nil || !ok || got != "1024" {
		t.Errorf("GetFlag = %q %v %v", got, ok, err)
	}
	d.Set("A:append", " x")
	d.Set("A", "a")
	if got, _, _ := d.Get("A"); got != "a x" {
		t.Errorf("Set with :append: got %q", got)
	}
}

func TestLookupUnresolved(t *testing.T) {
	d := New(Options{})
	src := "A = \"${UNPACKDIR}/my-custom-guest.cfg ${B} ${UNPACKDIR}\"\nB = \"${C}\""
	if err := d.Parse("x.conf", []byte(src)); err != nil {
		t.Fatal(err)
	}
	v, ok, err := d.Lookup("A")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	want := Value{Text: "${UNPACKDIR}/my-custom-guest.cfg ${C} ${UNPACKDIR}", Unresolved: []string{"UNPACKDIR", "C"}}
	if diff := cmp.Diff(want, v); diff != "" {
		t.Errorf("Lookup mismatch (-want +got):\n%s", diff)
	}
	e, err := d.Expand("${B}/x ${NOPE}")
	if err != nil || e.Text != "${C}/x ${NOPE}" || !cmp.Equal(e.Unresolved, []string{"C", "NOPE"}) {
		t.Errorf("Expand = %+v, %v", e, err)
	}
}

func TestNamesFlagsOrigins(t *testing.T) {
	d := New(Options{Overrides: []string{"pn-img"}})
	src := `BUNDLED_XEN_GUESTS = "a:autostart"
XEN_GUEST_MEMORY[a] = "1"
XEN_GUEST_MEMORY[b] ??= "2"
XEN_GUEST_MEMORY[c] = "3"
BUNDLED_XEN_GUESTS:append:pn-img = " b"
BUNDLED_XEN_GUESTS:pn-other = "zzz"
EMPTY = "1"
unset EMPTY
`
	if err := d.Parse("local.conf", []byte(src)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"BUNDLED_XEN_GUESTS", "BUNDLED_XEN_GUESTS:pn-other", "XEN_GUEST_MEMORY"}, d.Names()); diff != "" {
		t.Errorf("Names (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, d.FlagNames("XEN_GUEST_MEMORY")); diff != "" {
		t.Errorf("FlagNames (-want +got):\n%s", diff)
	}
	want := []Position{{"local.conf", 1, 1}, {"local.conf", 5, 1}, {"local.conf", 6, 1}}
	if diff := cmp.Diff(want, d.Origin("BUNDLED_XEN_GUESTS")); diff != "" {
		t.Errorf("Origin (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Position{{"local.conf", 3, 1}}, d.FlagOrigin("XEN_GUEST_MEMORY", "b")); diff != "" {
		t.Errorf("FlagOrigin (-want +got):\n%s", diff)
	}
}

func TestConcurrentReads(t *testing.T) {
	d := New(Options{})
	if err := d.Parse("x.conf", []byte("A${B} = \"x\"\nB = \"2\"\nC = \"${A2}\"")); err != nil {
		t.Fatal(err)
	}
	done := make(chan string)
	for i := 0; i < 8; i++ {
		go func() {
			v, _, err := d.Get("C")
			if err != nil {
				v = err.Error()
			}
			done <- v
		}()
	}
	for i := 0; i < 8; i++ {
		if v := <-done; v != "x" {
			t.Errorf("Get(C) = %q, want x", v)
		}
	}
}
