package xlcfg

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the outputs of testdata/golden/*.txtar")

// TestGolden runs testdata/golden/*.txtar. The first line of an archive's
// comment names the operation:
//
//	generate:  domain.json (a Domain) -> out.cfg, or error
//	rewrite:   in.cfg, map ("OLD -> NEW" lines for disk targets and boot
//	           files) -> out.cfg and changes, or error
//	edit:      in.cfg, ops ("set KEY XL-VALUE" / "delete KEY") -> out.cfg
//	canonical: in.cfg -> out.cfg (File.Canonical)
//	error:     in.cfg -> error (Parse must fail)
//
// With -update the output files are rewritten.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "golden", "*.txtar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Errorf("only %d golden cases, want at least 30", len(files))
	}
	for _, fn := range files {
		t.Run(strings.TrimSuffix(filepath.Base(fn), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(fn)
			if err != nil {
				t.Fatal(err)
			}
			op, _, _ := strings.Cut(strings.TrimSpace(string(ar.Comment)), "\n")
			op = strings.TrimSpace(op)
			in := map[string][]byte{}
			for _, f := range ar.Files {
				in[f.Name] = f.Data
			}
			out, inputs := runGolden(t, op, in)
			checkGolden(t, fn, ar, inputs, out)
		})
	}
}

func runGolden(t *testing.T, op string, in map[string][]byte) (out map[string]string, inputs []string) {
	t.Helper()
	out = map[string]string{}
	need := func(name string) []byte {
		b, ok := in[name]
		if !ok {
			t.Fatalf("archive lacks %s", name)
		}
		return b
	}
	switch op {
	case "generate":
		inputs = []string{"domain.json"}
		var d Domain
		dec := json.NewDecoder(bytes.NewReader(need("domain.json")))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("domain.json: %v", err)
		}
		b, err := Generate(d)
		if err != nil {
			out["error"] = err.Error() + "\n"
			return
		}
		out["out.cfg"] = string(b)
		// The output must parse back to the model's values.
		f, err := Parse("out.cfg", b)
		if err != nil {
			t.Fatalf("generated config does not parse: %v", err)
		}
		if v, _ := f.Get("name"); v.Text != d.Name {
			t.Errorf("name read back as %q", v.Text)
		}
		if len(d.Disks) > 0 {
			v, _ := f.Get("disk")
			if got, _ := v.StringList(); strings.Join(got, "\x00") != strings.Join(d.Disks, "\x00") {
				t.Errorf("disks read back as %q", got)
			}
		}
		if d.Extra != "" {
			if v, _ := f.Get("extra"); v.Text != d.Extra {
				t.Errorf("extra read back as %q", v.Text)
			}
		}
	case "rewrite":
		inputs = []string{"in.cfg", "map"}
		src := need("in.cfg")
		f, err := Parse("in.cfg", src)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		m := map[string]string{}
		var bootKeys []string
		for _, line := range strings.Split(string(need("map")), "\n") {
			if k, ok := strings.CutPrefix(line, "bootkeys:"); ok {
				bootKeys = strings.Fields(k)
				continue
			}
			old, nw, ok := strings.Cut(line, " -> ")
			if ok {
				m[old] = nw
			}
		}
		fn := func(old string) (string, bool) { n, ok := m[old]; return n, ok }
		changes, err := Rewrite(f, Rewriter{DiskTarget: fn, BootFile: fn, BootKeys: bootKeys})
		if err != nil {
			out["error"] = err.Error() + "\n"
			if !bytes.Equal(f.Bytes(), src) {
				t.Errorf("failed Rewrite changed the file")
			}
			return
		}
		out["out.cfg"] = string(f.Bytes())
		var cb strings.Builder
		for _, c := range changes {
			fmt.Fprintf(&cb, "%s[%d] line %d: %q -> %q\n", c.Key, c.Index, c.Line, c.Old, c.New)
		}
		out["changes"] = cb.String()
		if _, err := Parse("out.cfg", f.Bytes()); err != nil {
			t.Errorf("rewritten file does not parse: %v", err)
		}
	case "edit":
		inputs = []string{"in.cfg", "ops"}
		f, err := Parse("in.cfg", need("in.cfg"))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(need("ops"))), "\n") {
			fields := strings.SplitN(line, " ", 3)
			switch fields[0] {
			case "set":
				vf, err := Parse("ops", []byte("v = "+fields[2]))
				if err != nil {
					t.Fatalf("ops value %q: %v", fields[2], err)
				}
				v, _ := vf.Get("v")
				if err := f.Set(fields[1], v); err != nil {
					t.Fatalf("Set: %v", err)
				}
				if got, _ := f.Get(fields[1]); !got.Equal(v) {
					t.Errorf("after Set(%s), Get = %+v", fields[1], got)
				}
			case "delete":
				if _, err := f.Delete(fields[1]); err != nil {
					t.Fatalf("Delete: %v", err)
				}
			default:
				t.Fatalf("unknown op %q", line)
			}
		}
		out["out.cfg"] = string(f.Bytes())
	case "canonical":
		inputs = []string{"in.cfg"}
		f, err := Parse("in.cfg", need("in.cfg"))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if !bytes.Equal(f.Bytes(), in["in.cfg"]) {
			t.Errorf("Bytes() != input")
		}
		c, err := f.Canonical()
		if err != nil {
			t.Fatal(err)
		}
		out["out.cfg"] = string(c)
	case "error":
		inputs = []string{"in.cfg"}
		_, err := Parse("in.cfg", need("in.cfg"))
		if err == nil {
			t.Fatalf("Parse succeeded, want an error")
		}
		out["error"] = err.Error() + "\n"
	default:
		t.Fatalf("unknown golden op %q", op)
	}
	return out, inputs
}

func checkGolden(t *testing.T, fn string, ar *txtar.Archive, inputs []string, out map[string]string) {
	t.Helper()
	isInput := map[string]bool{}
	for _, n := range inputs {
		isInput[n] = true
	}
	if *update {
		nar := &txtar.Archive{Comment: ar.Comment}
		for _, f := range ar.Files {
			if isInput[f.Name] {
				nar.Files = append(nar.Files, f)
			}
		}
		names := make([]string, 0, len(out))
		for n := range out {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			nar.Files = append(nar.Files, txtar.File{Name: n, Data: []byte(out[n])})
		}
		if err := os.WriteFile(fn, txtar.Format(nar), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have := map[string]string{}
	for _, f := range ar.Files {
		if !isInput[f.Name] {
			have[f.Name] = string(f.Data)
		}
	}
	for n, got := range out {
		want, ok := have[n]
		if !ok {
			t.Errorf("%s: missing expected file %s (run go test -update); got:\n%s", fn, n, got)
			continue
		}
		if got != want {
			t.Errorf("%s: %s differs\n--- got ---\n%s--- want ---\n%s", fn, n, got, want)
		}
	}
	for n := range have {
		if _, ok := out[n]; !ok {
			t.Errorf("%s: expected file %s was not produced", fn, n)
		}
	}
}
