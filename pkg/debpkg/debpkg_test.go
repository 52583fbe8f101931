package debpkg

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sampleShow = `Package: linux-image-amd64
Source: linux-signed-amd64 (6.1.172+1)
Version: 6.1.172-1
Architecture: amd64
Depends: linux-image-6.1.0-48-amd64 (= 6.1.172-1)
Description: Linux for 64-bit PCs (meta-package)
 second line
 .
 third
Filename: pool/updates/main/l/linux-signed-amd64/linux-image-amd64_6.1.172-1_amd64.deb
Size: 1480
SHA256: 6aeb6981404aa737857506d094a60fc311ea89b471995d1677b26b516d8bdf2e

# comment
Package: b
Version: 1:2.0
Architecture: all
SHA256: 6AEB6981404AA737857506D094A60FC311EA89B471995D1677B26B516D8BDF2E
`

func TestParseControl(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // Package of each stanza
		wantErr string
	}{
		{"sample", sampleShow, []string{"linux-image-amd64", "b"}, ""},
		{"empty", "", nil, ""},
		{"blank lines only", "\n\n  \n", nil, ""},
		{"crlf", "Package: a\r\nVersion: 1\r\n", []string{"a"}, ""},
		{"continuation first", " foo\n", nil, "x:1: continuation line without a field"},
		{"no colon", "Package: a\nbogus line\n", nil, "x:2: expected \"Field: value\""},
		{"space in name", "Pack age: a\n", nil, "x:1: field name"},
		{"leading colon", ": a\n", nil, "x:1: expected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, err := ParseControl(strings.NewReader(tc.in), "x")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range st {
				got = append(got, s.Get("package"))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("packages (-want +got):\n%s", diff)
			}
		})
	}
	st, _ := ParseControl(strings.NewReader(sampleShow), "x")
	if got, want := st[0].Get("Description"), "Linux for 64-bit PCs (meta-package)\nsecond line\n\nthird"; got != want {
		t.Errorf("Description = %q, want %q", got, want)
	}
}

func TestPackageFromStanza(t *testing.T) {
	st, err := ParseControl(strings.NewReader(sampleShow), "x")
	if err != nil {
		t.Fatal(err)
	}
	p, err := PackageFromStanza(st[0], "x")
	if err != nil {
		t.Fatal(err)
	}
	want := Package{Name: "linux-image-amd64", Version: "6.1.172-1", Arch: "amd64",
		Filename: "pool/updates/main/l/linux-signed-amd64/linux-image-amd64_6.1.172-1_amd64.deb",
		Size:     1480, SHA256: "6aeb6981404aa737857506d094a60fc311ea89b471995d1677b26b516d8bdf2e",
		Depends: "linux-image-6.1.0-48-amd64 (= 6.1.172-1)"}
	if diff := cmp.Diff(want, p); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	p2, err := PackageFromStanza(st[1], "x")
	if err != nil {
		t.Fatal(err)
	}
	if p2.ID() != "b_1%3a2.0_all" || p2.SHA256 != strings.ToLower(p2.SHA256) {
		t.Errorf("ID = %q sha = %q", p2.ID(), p2.SHA256)
	}
	bad := []struct{ in, want string }{
		{"Version: 1\nArchitecture: all\nSHA256: " + strings.Repeat("a", 64), "missing Package"},
		{"Package: a\nArchitecture: all\nSHA256: " + strings.Repeat("a", 64), "missing Version"},
		{"Package: a\nVersion: 1\nSHA256: " + strings.Repeat("a", 64), "missing Architecture"},
		{"Package: a\nVersion: 1\nArchitecture: all\nSHA256: abc", "malformed SHA256"},
		{"Package: a\nVersion: 1\nArchitecture: all\nSize: -1\nSHA256: " + strings.Repeat("a", 64), "bad Size"},
		{"Package: a/../b\nVersion: 1\nArchitecture: all\nSHA256: " + strings.Repeat("a", 64), "path separator"},
	}
	for _, b := range bad {
		st, err := ParseControl(strings.NewReader(b.in), "x")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := PackageFromStanza(st[0], "x"); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%q: err = %v, want %q", b.in, err, b.want)
		}
	}
}

func TestParseRelations(t *testing.T) {
	tests := []struct {
		in      string
		want    [][]Relation
		wantErr bool
	}{
		{"", nil, false},
		{"linux-image-6.1.0-48-amd64 (= 6.1.172-1)", [][]Relation{{{Name: "linux-image-6.1.0-48-amd64", Op: "=", Version: "6.1.172-1"}}}, false},
		{"a | b (>= 2), c:any", [][]Relation{{{Name: "a"}, {Name: "b", Op: ">=", Version: "2"}}, {{Name: "c", Arch: "any"}}}, false},
		{"a [amd64]", [][]Relation{{{Name: "a"}}}, false},
		{"a (= )", nil, true},
		{"a )(", nil, true},
		{"a,,b", nil, true},
		{"a (~ 1)", nil, true},
	}
	for _, tc := range tests {
		got, err := ParseRelations(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err = %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" && !tc.wantErr {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestLockRoundTrip(t *testing.T) {
	dir := t.TempDir()
	l := &Lock{Extra: map[string]string{"kernel_version": "6.1.0-48-amd64"}}
	l.Add(Package{Name: "z", Version: "1", Arch: "all", SHA256: strings.Repeat("a", 64)})
	l.Add(Package{Name: "a", Version: "1", Arch: "amd64", SHA256: strings.Repeat("b", 64)})
	l.Add(Package{Name: "z", Version: "2", Arch: "all", SHA256: strings.Repeat("c", 64)})
	path := filepath.Join(dir, "packages.lock.json")
	if err := l.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := ReadLock(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(l, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if p, _ := got.Find("z"); p.Version != "2" || got.Packages[0].Name != "a" {
		t.Errorf("lock not replaced/sorted: %+v", got.Packages)
	}
	missing, err := ReadLock(filepath.Join(dir, "nope.json"))
	if err != nil || len(missing.Packages) != 0 {
		t.Errorf("missing lock: %v %+v", err, missing)
	}
	for _, bad := range []string{`{`, `{"packages":[{"name":"a"}]}`, `{"bogus":1}`, `{"packages":[{"name":"a","version":"1","arch":"x","sha256":"` + strings.Repeat("g", 64) + `"}]}`} {
		if _, err := ParseLock([]byte(bad), "lock.json"); err == nil || !strings.Contains(err.Error(), "lock.json") {
			t.Errorf("ParseLock(%q) err = %v", bad, err)
		}
	}
}

func TestVerifyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	os.WriteFile(path, []byte("hello"), 0o644)
	if err := VerifyFile(path, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"); err != nil {
		t.Error(err)
	}
	if err := VerifyFile(path, strings.Repeat("0", 64)); err == nil || !strings.Contains(err.Error(), "mismatch") {
		t.Errorf("err = %v", err)
	}
}

// TestFetchExtract downloads a small real package through the host's apt,
// verifies it, extracts it and checks that a second run is served from the
// cache.
func TestFetchExtract(t *testing.T) {
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skipf("no apt-get on this host: %v", err)
	}
	if os.Getenv("VXN_OFFLINE") != "" {
		t.Skipf("VXN_OFFLINE=%s set: not downloading packages", os.Getenv("VXN_OFFLINE"))
	}
	ctx := context.Background()
	f := &Fetcher{CacheDir: t.TempDir(), Logf: t.Logf}
	ps, err := f.Resolve(ctx, "libyajl2")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := f.Extract(ctx, ps[0])
	if err != nil {
		t.Fatal(err)
	}
	m, _ := filepath.Glob(filepath.Join(dir, "usr/lib/*/libyajl.so.2*"))
	if len(m) == 0 {
		t.Errorf("libyajl.so.2 not found under %s", dir)
	}
	// Corrupt the cached .deb: Fetch must notice and download again.
	deb := f.debPath(ps[0])
	if err := os.WriteFile(deb, []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fetch(ctx, ps[0]); err != nil {
		t.Fatal(err)
	}
	if err := VerifyFile(deb, ps[0].SHA256); err != nil {
		t.Error(err)
	}
	// FetchAll into a fresh cache: one apt-get call, verified.
	f3 := &Fetcher{CacheDir: t.TempDir()}
	more, err := f3.Resolve(ctx, "libyajl2", "libxentoollog1")
	if err != nil {
		t.Fatal(err)
	}
	paths, err := f3.FetchAll(ctx, more)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range paths {
		if err := VerifyFile(p, more[i].SHA256); err != nil {
			t.Error(err)
		}
	}
	// A wrong checksum must be rejected.
	bad := ps[0]
	bad.SHA256 = strings.Repeat("0", 64)
	bad.Version = ps[0].Version
	f2 := &Fetcher{CacheDir: t.TempDir(), NoUpdate: true}
	if _, err := f2.Fetch(ctx, bad); err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Errorf("Fetch with wrong sha: err = %v", err)
	}
	if _, err := f2.FetchAll(ctx, []Package{bad}); err == nil || !strings.Contains(err.Error(), "sha256 mismatch") {
		t.Errorf("FetchAll with wrong sha: err = %v", err)
	}
}

func FuzzParseControl(f *testing.F) {
	f.Add(sampleShow)
	f.Add("Package: a\n foo\n\n\nb: c")
	f.Add(" x")
	f.Add("a:b\r\n.\n")
	f.Fuzz(func(t *testing.T, in string) {
		st, err := ParseControl(strings.NewReader(in), "fuzz")
		if err != nil {
			return
		}
		for _, s := range st {
			if len(s.Fields) == 0 {
				t.Fatalf("empty stanza from %q", in)
			}
			p, err := PackageFromStanza(s, "fuzz")
			if err == nil && (strings.Contains(p.ID(), "/") || len(p.SHA256) != 64) {
				t.Fatalf("accepted unsafe package %+v", p)
			}
			ParseRelations(s.Get("Depends"))
		}
	})
}

func FuzzParseLock(f *testing.F) {
	f.Add(`{"packages":[{"name":"a","version":"1","arch":"all","sha256":"` + strings.Repeat("a", 64) + `"}]}`)
	f.Add(`{`)
	f.Add(`{"packages":null,"extra":{"a":"b"}}`)
	f.Fuzz(func(t *testing.T, in string) {
		l, err := ParseLock([]byte(in), "fuzz")
		if err != nil {
			return
		}
		for _, p := range l.Packages {
			if strings.Contains(p.ID(), "/") {
				t.Fatalf("unsafe id %q", p.ID())
			}
		}
	})
}

func FuzzParseRelations(f *testing.F) {
	f.Add("a | b (>= 2), c:any")
	f.Add("a (= 1) [amd64] <!nocheck>")
	f.Add("(")
	f.Fuzz(func(t *testing.T, in string) {
		rs, err := ParseRelations(in)
		if err != nil {
			return
		}
		for _, g := range rs {
			for _, r := range g {
				if r.Name == "" {
					t.Fatalf("empty name from %q", in)
				}
			}
		}
	})
}

func TestDefaultCacheDir(t *testing.T) {
	d, err := DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(d), "go.mod")); err != nil || filepath.Base(d) != ".cache" {
		t.Errorf("DefaultCacheDir() = %q, want <module root>/.cache", d)
	}
}
