package tarsafe

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
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

// got is a decoded output entry.
type got struct {
	name string
	typ  byte
	link string
	body string
}

func (g got) String() string {
	s := g.name + ":" + TypeName(g.typ)
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
