package xlcfg

import (
	"bytes"
	"os"
	"testing"
)

func FuzzParse(f *testing.F) {
	seeds := []string{
		"name = \"x\"\nmemory = 512\n",
		"a = 1; b = 'x';\n# comment\n\n",
		"disk = [ 'phy:/dev/loop0,xvda,w',\n  \"format=raw, vdev=xvdb, target=/x\", # c\n]\n",
		"vnuma = [ [ \"pnode=0\" ], [ 1, [ ] ] ]",
		"a = 'x'\na += 'y'\nl = [1]\nl += [2]\n",
		"a = \"q\\\"\\n\\t\\\\\"\n",
		"a = 1\r\n", "# eof", "a = [", "x.y = 0x1f\n", "a = '\\x41'", "a = '\\101'",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	if files, err := corpusFilesQuiet(); err == nil {
		for _, fn := range files[:min(5, len(files))] {
			if b, err := os.ReadFile(fn); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, err := Parse("fuzz.cfg", src)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %T is not *Error: %v", err, err)
			}
			return
		}
		if !bytes.Equal(file.Bytes(), src) {
			t.Fatalf("Bytes() != input")
		}
		canon, err := file.Canonical()
		if err != nil {
			t.Fatalf("Canonical: %v", err)
		}
		g, err := Parse("canon", canon)
		if err != nil {
			t.Fatalf("canonical form does not parse: %v\n%q", err, canon)
		}
		assertSameValues(t, file, g)
		keys := file.Keys()
		if len(keys) > 0 {
			k := keys[0]
			if err := file.Set(k, Strs("a", "b'c")); err != nil {
				t.Fatalf("Set: %v", err)
			}
			if v, _ := file.Get(k); !v.Equal(Strs("a", "b'c")) {
				t.Fatalf("Set then Get = %+v", v)
			}
			if ok, err := file.Delete(k); !ok || err != nil {
				t.Fatalf("Delete: %v %v", ok, err)
			}
			if _, ok := file.Get(k); ok {
				t.Fatalf("key %q still present after Delete", k)
			}
		}
	})
}
