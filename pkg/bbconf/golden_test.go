package bbconf

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/vxn-dev/vxn/internal/testutil"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/spec/*.golden")

// specOverrides are the overrides active when xen-image-minimal is built for
// qemux86-64.
var specOverrides = []string{"linux", "x86-64", "pn-xen-image-minimal", "qemux86-64", "class-target"}

// dump renders every variable and flag of d, one per line.
func dump(d *Data) string {
	var b strings.Builder
	if inh := d.Inherits(); len(inh) > 0 {
		fmt.Fprintf(&b, "# inherit %s\n", strings.Join(inh, " "))
	}
	for _, n := range d.Names() {
		v, ok, err := d.Lookup(n)
		switch {
		case err != nil:
			fmt.Fprintf(&b, "%s: error: %v\n", n, err)
		case ok:
			fmt.Fprintf(&b, "%s = %q", n, v.Text)
			if len(v.Unresolved) > 0 {
				fmt.Fprintf(&b, "  # unresolved: %s", strings.Join(v.Unresolved, " "))
			}
			b.WriteString("\n")
		}
		for _, f := range d.FlagNames(n) {
			v, _, err := d.LookupFlag(n, f)
			if err != nil {
				fmt.Fprintf(&b, "%s[%s]: error: %v\n", n, f, err)
				continue
			}
			fmt.Fprintf(&b, "%s[%s] = %q", n, f, v.Text)
			if len(v.Unresolved) > 0 {
				fmt.Fprintf(&b, "  # unresolved: %s", strings.Join(v.Unresolved, " "))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// TestSpecGolden evaluates the spec's local.conf and recipe examples and
// compares every variable with testdata/spec/*.golden (go test -update).
func TestSpecGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/spec/*[.][cb]*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no spec examples found: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".golden") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			d := New(Options{Overrides: specOverrides})
			var got string
			if err := d.ParseFile(filepath.ToSlash(f)); err != nil {
				got = "error: " + err.Error() + "\n"
			} else {
				got = dump(d)
			}
			golden := f + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("%s mismatch (-want +got):\n%s", golden, diff)
			}
		})
	}
}

var specAssignment = regexp.MustCompile(`^\s+[A-Z][A-Z0-9_]*(\[[^\]]*\])?(:[a-z0-9:_-]+)?\s*(\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*["']`)

var trailingComment = regexp.MustCompile(`["']\s+#`)

// TestSpecREADMEAssignments feeds every assignment shown in the shared spec
// through the parser: each must parse, except lines with a trailing comment,
// which BitBake rejects and which must get the explanatory error.
func TestSpecREADMEAssignments(t *testing.T) {
	path := filepath.Join(testutil.RepoRoot(t), "..", "shared", "spec", "README-xen.txt")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("shared spec not available: %v", err)
	}
	n := 0
	for i, line := range strings.Split(string(src), "\n") {
		if !specAssignment.MatchString(line) {
			continue
		}
		n++
		d := New(Options{Overrides: specOverrides})
		err := d.Parse(fmt.Sprintf("README-xen.txt:%d", i+1), []byte(strings.TrimSpace(line)))
		if trailingComment.MatchString(line) {
			if err == nil || !strings.Contains(err.Error(), "comment may not follow the value") {
				t.Errorf("line %d %q: err = %v, want trailing comment error", i+1, line, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("line %d %q: %v", i+1, line, err)
		}
	}
	if n < 25 {
		t.Errorf("found only %d assignments in %s; the extraction pattern is broken", n, path)
	}
	t.Logf("%d assignments from the spec parsed", n)
}
