package importer

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/vxn-dev/vxn/pkg/tarsafe"
)

// tent is a test tar entry.
type tent struct {
	name   string
	typ    byte
	body   string
	link   string
	mode   int64
	uid    int
	gid    int
	major  int64
	minor  int64
	xattrs map[string]string
	size   int64 // overrides len(body) in the header when non-zero
}

var testTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// mkTar builds an uncompressed tar archive.
func mkTar(t testing.TB, ents []tent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: testTime, Devmajor: e.major, Devminor: e.minor, Format: tar.FormatPAX}
		if e.typ == tar.TypeXGlobalHeader {
			if err := tw.WriteHeader(&tar.Header{Typeflag: e.typ, PAXRecords: map[string]string{"comment": e.name}}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatalf("writing test tar entry %q: %v", e.name, err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, e.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compress compresses b with c, in Go where a Go encoder exists (bzip2 has
// none in the standard library or the allowed modules: the bzip2 tool is
// used and the test skipped without it).
func compress(t testing.TB, c Compression, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	switch c {
	case None:
		return b
	case Gzip:
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
	case Xz:
		w, err := xz.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		w.Close()
	case Zstd:
		w, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(b)
		w.Close()
	case Bzip2:
		p, err := exec.LookPath("bzip2")
		if err != nil {
			t.Skipf("no Go bzip2 encoder and the bzip2 tool is missing: %v", err)
		}
		cmd := exec.Command(p, "-c")
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("bzip2: %v", err)
		}
		return out
	}
	return buf.Bytes()
}

var allCompressions = []Compression{None, Gzip, Bzip2, Xz, Zstd}

// got is a decoded output entry.
type got struct {
	name string
	typ  byte
	link string
	body string
}

func (g got) String() string {
	s := g.name + ":" + tarsafe.TypeName(g.typ)
	if g.link != "" {
		s += "->" + g.link
	}
	return s
}

// readEntries decodes a tar stream into entries.
func readEntries(t testing.TB, r io.Reader) ([]got, []*tar.Header, error) {
	t.Helper()
	tr := tar.NewReader(r)
	var out []got
	var hdrs []*tar.Header
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out, hdrs, nil
		}
		if err != nil {
			return out, hdrs, err
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return out, hdrs, err
		}
		out = append(out, got{h.Name, h.Typeflag, h.Linkname, string(b)})
		hdrs = append(hdrs, h)
	}
}

func names(gs []got) string {
	var s []string
	for _, g := range gs {
		s = append(s, g.String())
	}
	return strings.Join(s, " ")
}

// needTool skips the test when a program is missing.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, d := range []string{"/sbin", "/usr/sbin"} {
			if _, serr := os.Stat(filepath.Join(d, name)); serr == nil {
				return filepath.Join(d, name)
			}
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

// e2fsck runs e2fsck -fn on an image and fails the test if it is not clean.
func e2fsck(t *testing.T, img string) {
	t.Helper()
	p := needTool(t, "e2fsck")
	out, err := exec.Command(p, "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

// debugfs runs one debugfs request on an image and returns its output.
func debugfs(t *testing.T, img, req string) string {
	t.Helper()
	p := needTool(t, "debugfs")
	out, err := exec.Command(p, "-R", req, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", req, err, out)
	}
	return string(out)
}
