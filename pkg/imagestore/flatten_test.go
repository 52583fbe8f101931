package imagestore

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/vxn-dev/vxn/pkg/oci/testimage"
)

type F = testimage.File

// flatList flattens layers and lists "name[ -> link] [body]" per entry.
func flatList(t testing.TB, layers ...[]F) ([]string, error) {
	var ls []v1.Layer
	for _, files := range layers {
		l, err := testimage.Layer(files)
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	rc := Flatten(bg, ls)
	defer rc.Close()
	return listTar(rc)
}

func listTar(r io.Reader) ([]string, error) {
	var out []string
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		s := h.Name
		switch h.Typeflag {
		case tar.TypeLink:
			s += " => " + h.Linkname
		case tar.TypeSymlink:
			s += " -> " + h.Linkname
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			s += " " + string(b)
		}
		out = append(out, s)
	}
}

func TestFlatten(t *testing.T) {
	tests := []struct {
		name   string
		layers [][]F
		want   []string
	}{
		{name: "single layer passes through, names cleaned",
			layers: [][]F{{{Name: "./"}, {Name: "./a/"}, {Name: "a/f", Body: "1"}, {Name: "/abs", Body: "2"}, {Name: "../../up", Body: "3"}}},
			want:   []string{"./", "a/", "a/f 1", "abs 2", "up 3"}},
		{name: "later layer replaces a file, in layer order",
			layers: [][]F{{{Name: "a", Body: "old"}, {Name: "b", Body: "b"}}, {{Name: "a", Body: "new"}}},
			want:   []string{"b b", "a new"}},
		{name: "whiteout deletes a file and a directory tree",
			layers: [][]F{{{Name: "f", Body: "x"}, {Name: "d/"}, {Name: "d/x", Body: "x"}, {Name: "keep", Body: "k"}}, {{Name: ".wh.f"}, {Name: ".wh.d"}}},
			want:   []string{"keep k"}},
		{name: "whiteout only affects lower layers",
			layers: [][]F{{{Name: "f", Body: "1"}}, {{Name: ".wh.f"}}, {{Name: "f", Body: "3"}}},
			want:   []string{"f 3"}},
		{name: "whiteout of a name, then recreated as a directory",
			layers: [][]F{{{Name: "p", Body: "file"}}, {{Name: ".wh.p"}, {Name: "p/"}, {Name: "p/c", Body: "c"}}},
			want:   []string{"p/", "p/c c"}},
		{name: "opaque directory hides lower content, keeps its own",
			layers: [][]F{{{Name: "d/"}, {Name: "d/old", Body: "o"}, {Name: "d/s/"}, {Name: "d/s/x", Body: "x"}, {Name: "e", Body: "e"}},
				{{Name: "d/"}, {Name: "d/.wh..wh..opq"}, {Name: "d/new", Body: "n"}}},
			want: []string{"e e", "d/", "d/new n"}},
		{name: "opaque marker before the directory's own entries",
			layers: [][]F{{{Name: "d/"}, {Name: "d/old", Body: "o"}}, {{Name: "d/.wh..wh..opq"}, {Name: "d/new", Body: "n"}}, {{Name: "d/top", Body: "t"}}},
			want:   []string{"d/", "d/new n", "d/top t"}},
		{name: "file replaces directory: children gone",
			layers: [][]F{{{Name: "x/"}, {Name: "x/c", Body: "c"}}, {{Name: "x", Body: "file"}}},
			want:   []string{"x file"}},
		{name: "directory replaces file",
			layers: [][]F{{{Name: "x", Body: "file"}}, {{Name: "x/"}, {Name: "x/c", Body: "c"}}},
			want:   []string{"x/", "x/c c"}},
		{name: "symlinked parent from a lower layer comes first",
			layers: [][]F{{{Name: "run/"}, {Name: "var/"}, {Name: "var/run", Type: tar.TypeSymlink, Linkname: "/run"}}, {{Name: "var/run/pid", Body: "1"}}},
			want:   []string{"run/", "var/", "var/run -> /run", "var/run/pid 1"}},
		{name: "same-layer duplicates: both passed on, last last",
			layers: [][]F{{{Name: "a", Body: "1"}, {Name: "a", Body: "2"}}},
			want:   []string{"a 1", "a 2"}},
		{name: "hard link survives deletion of its target",
			layers: [][]F{{{Name: "t", Body: "data"}, {Name: "l1", Type: tar.TypeLink, Linkname: "t"}, {Name: "l2", Type: tar.TypeLink, Linkname: "./t"}}, {{Name: ".wh.t"}}},
			want:   []string{"l1 data", "l2 => l1"}},
		{name: "hard link survives replacement of its target",
			layers: [][]F{{{Name: "t", Body: "old"}, {Name: "l", Type: tar.TypeLink, Linkname: "t"}}, {{Name: "t", Body: "new"}}},
			want:   []string{"l old", "t new"}},
		{name: "hard link and target both kept",
			layers: [][]F{{{Name: "t", Body: "d"}, {Name: "l", Type: tar.TypeLink, Linkname: "t"}}},
			want:   []string{"t d", "l => t"}},
		{name: "whiteout with dot-dot names is confined",
			layers: [][]F{{{Name: "etc/"}, {Name: "etc/passwd", Body: "p"}}, {{Name: "../../etc/.wh.passwd"}}},
			want:   []string{"etc/"}},
		{name: "root opaque hides everything below",
			layers: [][]F{{{Name: "a", Body: "a"}}, {{Name: ".wh..wh..opq"}, {Name: "b", Body: "b"}}},
			want:   []string{"b b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := flatList(t, tt.layers...)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("flattened (-want +got):\n%s", d)
			}
		})
	}
}

func TestFlattenErrors(t *testing.T) {
	good, _ := testimage.Layer([]F{{Name: "a", Body: "a"}})
	truncated, _ := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		b, _ := testimage.TarBytes([]F{{Name: "a", Body: strings.Repeat("x", 2000)}})
		return io.NopCloser(bytes.NewReader(b[:1000])), nil
	})
	garbage, _ := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(strings.Repeat("not a tar ", 100))), nil
	})
	for _, tt := range []struct {
		name   string
		layers []v1.Layer
		msg    string
	}{
		{"truncated", []v1.Layer{good, truncated}, "layer 2 (sha256:"},
		{"garbage", []v1.Layer{garbage, good}, "layer 1 (sha256:"},
	} {
		rc := Flatten(bg, tt.layers)
		_, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.msg)
		}
	}
}

// FuzzFlatten feeds arbitrary bytes as two layers (split at a fuzzed
// offset) through Flatten: errors are fine; panics, hangs, uncleaned names
// and whiteouts in the output are not. (tarsafe.Sanitize, which reads Flatten's
// output in Disk, has its own fuzz test in pkg/tarsafe; TestDisk* cover the
// combination.)
func FuzzFlatten(f *testing.F) {
	// Tiny seeds (empty bodies, no end-of-archive blocks: Go's reader
	// accepts a clean end): the engine minimizes every input with new
	// coverage, which takes long for big inputs.
	tiny := func(files ...F) []byte {
		b, err := testimage.TarBytes(files)
		if err != nil {
			f.Fatal(err)
		}
		return bytes.TrimRight(b, "\x00")[:512*len(files)]
	}
	pair := func(a, b []byte) { f.Add(append(append([]byte{}, a...), b...), uint16(len(a))) }
	pair(tiny(F{Name: "d/"}, F{Name: "d/x"}, F{Name: "f"}), tiny(F{Name: "d/.wh..wh..opq"}, F{Name: ".wh.f"}))
	pair(tiny(F{Name: "t"}, F{Name: "l", Type: tar.TypeLink, Linkname: "t"}), tiny(F{Name: ".wh.t"}))
	pair(tiny(F{Name: "v", Type: tar.TypeSymlink, Linkname: "/r"}), tiny(F{Name: "../v/x"}))
	f.Add([]byte("junk"), uint16(2))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		if len(data) > 1<<16 {
			return
		}
		k := int(split)
		if k > len(data) {
			k = len(data)
		}
		var layers []v1.Layer
		for _, part := range [][]byte{data[:k], data[k:]} {
			layers = append(layers, rawLayer(part))
		}
		// Synchronous (no pipe) so that coverage is deterministic.
		plans, err := planLayers(bg, layers)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := emitLayers(bg, layers, plans, &buf); err != nil {
			return
		}
		tr := tar.NewReader(&buf)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Flatten wrote an unreadable tar: %v", err)
			}
			if h.Name != "./" && (strings.HasPrefix(h.Name, "/") || h.Name == ".." || strings.HasPrefix(h.Name, "../") || strings.Contains(h.Name, "/../") || strings.HasPrefix(h.Name, "./")) {
				t.Fatalf("entry name not cleaned: %q", h.Name)
			}
			if strings.HasPrefix(pathBase(h.Name), whiteoutPrefix) {
				t.Fatalf("whiteout passed through: %q", h.Name)
			}
		}
	})
}

func pathBase(p string) string {
	p = strings.TrimSuffix(p, "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}

// rawLayer is an uncompressed in-memory layer (no goroutines, no
// compression sniffing: deterministic for the fuzzer).
type rawLayer []byte

func (r rawLayer) Digest() (v1.Hash, error)             { return v1.Hash{Algorithm: "sha256", Hex: "fuzz"}, nil }
func (r rawLayer) DiffID() (v1.Hash, error)             { return r.Digest() }
func (r rawLayer) Compressed() (io.ReadCloser, error)   { return r.Uncompressed() }
func (r rawLayer) Uncompressed() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(r)), nil }
func (r rawLayer) Size() (int64, error)                 { return int64(len(r)), nil }
func (r rawLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
