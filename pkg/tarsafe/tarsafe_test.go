package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

func sanitize(t testing.TB, in []byte, opt Options) ([]got, []*tar.Header, error) {
	t.Helper()
	r := Sanitize(context.Background(), bytes.NewReader(in), opt)
	defer r.Close()
	return readEntries(t, r)
}

func TestSanitizeTarSafety(t *testing.T) {
	long := strings.Repeat("n", 256)
	tests := []struct {
		name    string
		in      []tent
		want    string // space-separated got.String() values
		wantErr string
	}{
		{"plain", []tent{{name: "./", typ: tar.TypeDir}, {name: "./etc/", typ: tar.TypeDir}, {name: "./etc/passwd", body: "root"}},
			"./:directory etc/:directory etc/passwd:file", ""},
		{"dotdot confined", []tent{{name: "../../escape", body: "x"}}, "escape:file", ""},
		{"dotdot in the middle", []tent{{name: "a/../../b", body: "x"}}, "b:file", ""},
		{"absolute name", []tent{{name: "/abs/file", body: "x"}}, "abs/:directory abs/file:file", ""},
		{"missing parents synthesized", []tent{{name: "a/b/c", body: "x"}, {name: "a/", typ: tar.TypeDir, mode: 0o700}},
			"a/:directory a/b/:directory a/b/c:file a/:directory", ""},
		{"hardlink outside, no target", []tent{{name: "h", typ: tar.TypeLink, link: "../../x"}}, "", "does not appear earlier"},
		{"hardlink outside confined to existing", []tent{{name: "x", body: "data"}, {name: "h", typ: tar.TypeLink, link: "../../x"}},
			"x:file h:hardlink->x", ""},
		{"hardlink absolute", []tent{{name: "x", body: "data"}, {name: "h", typ: tar.TypeLink, link: "/x"}}, "x:file h:hardlink->x", ""},
		{"hardlink to directory", []tent{{name: "d/", typ: tar.TypeDir}, {name: "h", typ: tar.TypeLink, link: "d"}}, "", "is a directory"},
		{"hardlink to itself", []tent{{name: "h", body: "x"}, {name: "h", typ: tar.TypeLink, link: "h"}}, "", "hardlink to itself"},
		{"hardlink through symlinked dir", []tent{{name: "real/f", body: "x"}, {name: "ln", typ: tar.TypeSymlink, link: "real"}, {name: "h", typ: tar.TypeLink, link: "ln/f"}},
			"real/:directory real/f:file ln:symlink->real h:hardlink->real/f", ""},
		{"symlink dir absolute then file below", []tent{{name: "evil", typ: tar.TypeSymlink, link: "/etc"}, {name: "evil/pwned", body: "x"}},
			"evil:symlink->/etc etc/:directory etc/pwned:file", ""},
		{"symlink dir escaping then file below", []tent{{name: "evil", typ: tar.TypeSymlink, link: "../../../../host"}, {name: "evil/pwned", body: "x"}},
			"evil:symlink->../../../../host host/:directory host/pwned:file", ""},
		{"symlink chain", []tent{{name: "a", typ: tar.TypeSymlink, link: "b"}, {name: "b", typ: tar.TypeSymlink, link: "c/d"}, {name: "a/f", body: "x"}},
			"a:symlink->b b:symlink->c/d c/:directory c/d/:directory c/d/f:file", ""},
		{"symlink dotdot after link", []tent{{name: "x/y/", typ: tar.TypeDir}, {name: "l", typ: tar.TypeSymlink, link: "x/y"}, {name: "l/../z", body: "q"}},
			"x/:directory x/y/:directory l:symlink->x/y z:file", ""},
		{"symlink loop", []tent{{name: "l1", typ: tar.TypeSymlink, link: "l2"}, {name: "l2", typ: tar.TypeSymlink, link: "l1"}, {name: "l1/f", body: "x"}},
			"", "too many levels of symbolic links"},
		{"symlink to self subdir loop", []tent{{name: "l", typ: tar.TypeSymlink, link: "l/a"}, {name: "l/f", body: "x"}}, "", "too many levels"},
		{"symlink target kept verbatim", []tent{{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox"}}, "bin/:directory bin/sh:symlink->/bin/busybox", ""},
		{"parent is a file", []tent{{name: "f", body: "x"}, {name: "f/g", body: "y"}}, "", `parent "f" is a file, not a directory`},
		{"symlink to file as parent", []tent{{name: "f", body: "x"}, {name: "l", typ: tar.TypeSymlink, link: "f"}, {name: "l/g", body: "y"}}, "", `parent "f" is a file`},
		{"dir replaced by file", []tent{{name: "d/", typ: tar.TypeDir}, {name: "d", body: "x"}}, "", "would replace the directory"},
		{"file replaced by dir", []tent{{name: "d", body: "x"}, {name: "d/", typ: tar.TypeDir}}, "", "would replace the file"},
		{"symlink replaced by dir", []tent{{name: "d", typ: tar.TypeSymlink, link: "x"}, {name: "d/", typ: tar.TypeDir}}, "", "would replace the symlink"},
		{"file replaced by file", []tent{{name: "f", body: "1"}, {name: "f", body: "2"}}, "f:file f:file", ""},
		{"root entry dir", []tent{{name: ".", typ: tar.TypeDir}, {name: "/", typ: tar.TypeDir}}, "./:directory ./:directory", ""},
		{"root entry file", []tent{{name: "..", body: "x"}}, "", "archive root but is a file"},
		{"long component", []tent{{name: "d/" + long, body: "x"}}, "", "component of 256 bytes"},
		{"empty symlink target", []tent{{name: "l", typ: tar.TypeSymlink}}, "", "empty target"},
		{"unsupported type", []tent{{name: "z", typ: 'Z'}}, "", `unsupported tar entry type "Z"`},
		{"devices and fifo", []tent{{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3}, {name: "dev/sda", typ: tar.TypeBlock, major: 8}, {name: "p", typ: tar.TypeFifo}},
			"dev/:directory dev/null:character device dev/sda:block device p:fifo", ""},
		{"global header dropped", []tent{{name: "g", typ: tar.TypeXGlobalHeader}, {name: "f", body: "x"}}, "f:file", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gs, _, err := sanitize(t, mkTar(t, tc.in), Options{Source: "test.tar"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q (entries %s)", err, tc.wantErr, names(gs))
				}
				if !strings.Contains(err.Error(), "test.tar: entry ") {
					t.Errorf("error %q does not name the source and entry", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := names(gs); g != tc.want {
				t.Errorf("entries\n got %s\nwant %s", g, tc.want)
			}
		})
	}
}

func TestSanitizeTarMetadata(t *testing.T) {
	in := mkTar(t, []tent{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "bin/su", body: "#!", mode: 0o4755, uid: 0, gid: 0},
		{name: "home/u/f", body: "hello", mode: 0o600, uid: 1000, gid: 1001, xattrs: map[string]string{"user.k": "v", "security.capability": "\x01\x00"}},
		{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3, mode: 0o666},
		{name: "tmp/", typ: tar.TypeDir, mode: 0o1777},
	})
	epoch := time.Unix(1700000000, 0).UTC()
	gs, hs, err := sanitize(t, in, Options{Epoch: &epoch})
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*tar.Header{}
	for i, h := range hs {
		byName[h.Name] = h
		_ = gs[i]
	}
	check := func(name string, f func(h *tar.Header) bool, what string) {
		t.Helper()
		h := byName[name]
		if h == nil {
			t.Errorf("%s missing from output (%s)", name, names(gs))
			return
		}
		if !f(h) {
			t.Errorf("%s: %s; header %+v", name, what, h)
		}
	}
	check("bin/su", func(h *tar.Header) bool { return h.Mode == 0o4755 }, "setuid mode lost")
	check("home/u/f", func(h *tar.Header) bool { return h.Uid == 1000 && h.Gid == 1001 && h.Mode == 0o600 }, "owner/mode lost")
	check("home/u/f", func(h *tar.Header) bool {
		return h.PAXRecords["SCHILY.xattr.user.k"] == "v" && h.PAXRecords["SCHILY.xattr.security.capability"] == "\x01\x00"
	}, "xattrs lost")
	check("home/u/f", func(h *tar.Header) bool { return h.ModTime.Equal(testTime) }, "mtime changed")
	check("home/", func(h *tar.Header) bool { return h.ModTime.Equal(epoch) && h.Mode == 0o755 && h.Uid == 0 }, "synthesized parent has wrong metadata")
	check("dev/null", func(h *tar.Header) bool { return h.Devmajor == 1 && h.Devminor == 3 && h.Mode == 0o666 }, "device numbers lost")
	check("tmp/", func(h *tar.Header) bool { return h.Mode == 0o1777 }, "sticky bit lost")
	for _, g := range gs {
		if g.name == "home/u/f" && g.body != "hello" {
			t.Errorf("content = %q", g.body)
		}
	}
}

func TestSanitizeTarCorrupt(t *testing.T) {
	good := mkTar(t, []tent{{name: "a", body: strings.Repeat("A", 3000)}, {name: "b", body: "bbb"}})
	badSum := bytes.Clone(good)
	badSum[0] ^= 0xff // name byte: header checksum no longer matches
	tests := []struct {
		name    string
		in      []byte
		opt     Options
		wantErr string
	}{
		{"truncated in content", good[:1024], Options{}, "truncated"},
		{"truncated in header", good[:100], Options{}, "truncated"},
		{"truncated at entry boundary", good[:512+3072+512+512], Options{}, "without the end-of-archive marker"},
		{"empty", nil, Options{}, "without the end-of-archive marker"},
		{"bad checksum", badSum, Options{}, "reading tar header"},
		{"over content limit", good, Options{MaxContent: 1000}, "exceeds the limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opt.Source = "bad.tar"
			_, _, err := sanitize(t, tc.in, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "bad.tar") {
				t.Fatalf("err = %v, want containing %q and the source name", err, tc.wantErr)
			}
		})
	}
}

func TestSanitizeTarCancel(t *testing.T) {
	in := mkTar(t, []tent{{name: "a", body: strings.Repeat("A", 1<<20)}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Sanitize(ctx, bytes.NewReader(in), Options{})
	defer r.Close()
	_, err := io.Copy(io.Discard, r)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// TestSanitizeTarCloseEarly checks that closing the reader early stops the
// goroutine instead of leaving it blocked on the pipe.
func TestSanitizeTarCloseEarly(t *testing.T) {
	in := mkTar(t, []tent{{name: "a", body: strings.Repeat("A", 1<<20)}, {name: "b", body: "x"}})
	before := runtime.NumGoroutine()
	pr := Sanitize(context.Background(), bytes.NewReader(in), Options{})
	buf := make([]byte, 100)
	if _, err := pr.Read(buf); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	for i := 0; runtime.NumGoroutine() > before; i++ {
		if i == 500 {
			t.Fatalf("sanitizer goroutine still running after Close (%d goroutines, %d before)", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func FuzzSanitizeTar(f *testing.F) {
	f.Add(mkTar(f, []tent{{name: "./", typ: tar.TypeDir}, {name: "a/b", body: "x"}, {name: "l", typ: tar.TypeSymlink, link: "/a"}, {name: "l/c", body: "y"}}))
	f.Add(mkTar(f, []tent{{name: "../../x", body: "x"}, {name: "h", typ: tar.TypeLink, link: "/x"}}))
	f.Add(mkTar(f, []tent{{name: "l1", typ: tar.TypeSymlink, link: "l2"}, {name: "l2", typ: tar.TypeSymlink, link: "../l1"}, {name: "l1/f", body: "x"}}))
	f.Add(mkTar(f, []tent{{name: "dev/null", typ: tar.TypeChar, major: 1, minor: 3}, {name: "f", body: "x", xattrs: map[string]string{"user.a": "b"}}}))
	f.Add([]byte{})
	f.Add(make([]byte, 1024))
	f.Fuzz(func(t *testing.T, in []byte) {
		// walkTar is Sanitize's core, called synchronously so the fuzzer
		// is not slowed down by the pipe goroutine; TestSanitizeTar* cover
		// the pipe.
		opt := Options{Source: "fuzz.tar", MaxContent: 4 << 20}
		seen := map[string]byte{"": tar.TypeDir}
		tw := tar.NewWriter(io.Discard)
		err := Walk(context.Background(), bytes.NewReader(in), opt, func(h *tar.Header, body io.Reader) error {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatalf("sanitized header %q cannot be written: %v", h.Name, err)
			}
			if body != nil {
				if _, err := io.Copy(tw, body); err != nil {
					return err
				}
			}
			// Invariants: clean relative names, parents emitted before
			// children, hardlinks to earlier non-directories.
			if h.Name == "./" {
				return nil
			}
			name := strings.TrimSuffix(h.Name, "/")
			if name == "" || clean(name) != name {
				t.Fatalf("unclean name %q", h.Name)
			}
			if typ, ok := seen[parent(name)]; !ok || typ != tar.TypeDir {
				t.Fatalf("%q emitted before its parent directory", h.Name)
			}
			if h.Typeflag == tar.TypeLink {
				if typ, ok := seen[h.Linkname]; !ok || typ == tar.TypeDir {
					t.Fatalf("hardlink %q to %q which is not an earlier non-directory", h.Name, h.Linkname)
				}
			}
			seen[name] = h.Typeflag
			return nil
		})
		if err != nil && !strings.Contains(err.Error(), "fuzz.tar") {
			t.Fatalf("error does not name the source: %v", err)
		}
	})
}
