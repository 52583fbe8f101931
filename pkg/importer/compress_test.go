package importer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"github.com/vxn-dev/vxn/pkg/tarsafe"
	"io"
	"strings"
	"testing"
)

func TestDetectCompression(t *testing.T) {
	tarball := mkTar(t, []tent{{name: "a", body: "x"}})
	tests := []struct {
		name    string
		head    []byte
		want    Compression
		wantErr string
	}{
		{"tar", tarball, None, ""},
		{"gzip", []byte{0x1f, 0x8b, 8, 0}, Gzip, ""},
		{"bzip2", []byte("BZh91AY&SY"), Bzip2, ""},
		{"bzip2 bad level", append([]byte("BZh0"), make([]byte, 600)...), "", "not a tar"},
		{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 4}, Xz, ""},
		{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x24}, Zstd, ""},
		{"zstd skippable", []byte{0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0}, Zstd, ""},
		{"empty", nil, "", "too short"},
		{"short garbage", []byte("hello"), "", "too short"},
		{"zeros", make([]byte, 1024), "", "all zeros"},
		{"qcow2", append([]byte("QFI\xfb\x00\x00\x00\x03"), make([]byte, 600)...), "", "qcow2"},
		{"zip", append([]byte("PK\x03\x04"), make([]byte, 600)...), "", "zip"},
		{"text", []byte(strings.Repeat("not a tar ", 60)), "", "checksum"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := DetectCompression(tc.head)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrNotTar) {
					t.Fatalf("err = %v, want ErrNotTar containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || c != tc.want {
				t.Fatalf("got %q, %v; want %q", c, err, tc.want)
			}
		})
	}
}

func TestDecompressRoundTrip(t *testing.T) {
	ents := []tent{{name: "./", typ: tar.TypeDir}, {name: "etc/os-release", body: strings.Repeat("ID=test\n", 1000)}}
	plain := mkTar(t, ents)
	for _, c := range allCompressions {
		t.Run(string(c), func(t *testing.T) {
			data := compress(t, c, plain)
			r, got, err := Decompress(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got != c {
				t.Errorf("detected %s, want %s", got, c)
			}
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, plain) {
				t.Errorf("decompressed data differs")
			}
		})
	}
}

// TestDecompressCorrupt checks that corrupt and truncated compressed
// archives give errors through the whole pipeline (decompress + sanitize).
func TestDecompressCorrupt(t *testing.T) {
	plain := mkTar(t, []tent{{name: "big", body: strings.Repeat("0123456789abcdef", 8192)}, {name: "small", body: "x"}})
	for _, c := range []Compression{Gzip, Bzip2, Xz, Zstd} {
		data := compress(t, c, plain)
		cases := map[string][]byte{
			"truncated":      data[:len(data)/2],
			"truncated tail": data[:len(data)-3],
			"flipped middle": flip(data, len(data)/2),
			"flipped tail":   flip(data, len(data)-6),
			"not tar inside": compress(t, c, bytes.Repeat([]byte("garbage!"), 200)),
		}
		for name, in := range cases {
			t.Run(string(c)+"/"+name, func(t *testing.T) {
				err := pipeline(in)
				if err == nil {
					t.Fatalf("corrupt %s input accepted", c)
				}
				t.Logf("%v", err)
			})
		}
	}
	t.Run("gzip trailing zeros ignored", func(t *testing.T) {
		in := append(compress(t, Gzip, plain), make([]byte, 512)...)
		if err := pipeline(in); err != nil {
			t.Fatal(err)
		}
	})
}

func flip(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x55
	return b
}

// pipeline decompresses and sanitizes in, discarding the output.
func pipeline(in []byte) error {
	r, _, err := Decompress(bytes.NewReader(in))
	if err != nil {
		return err
	}
	defer r.Close()
	sr := tarsafe.Sanitize(context.Background(), r, tarsafe.Options{Source: "x.tar", MaxContent: 64 << 20})
	defer sr.Close()
	_, err = io.Copy(io.Discard, sr)
	return err
}

func FuzzDetectCompression(f *testing.F) {
	plain := mkTar(f, []tent{{name: "a/b", body: "hello"}, {name: "l", typ: tar.TypeSymlink, link: "/a"}})
	for _, c := range []Compression{None, Gzip, Xz, Zstd} {
		f.Add(compress(f, c, plain))
	}
	f.Add([]byte("BZh91AY&SY\x00\x00"))
	f.Add([]byte{0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := DetectCompression(in)
		if err == nil && c == "" {
			t.Fatal("no compression and no error")
		}
		if err != nil && !errors.Is(err, ErrNotTar) {
			t.Fatalf("detection error does not wrap ErrNotTar: %v", err)
		}
		// Full decode must end in a result or an error, bounded by
		// MaxContent and the input size (no panics, no hangs).
		r, _, err := Decompress(bytes.NewReader(in))
		if err != nil {
			return
		}
		defer r.Close()
		tw := tar.NewWriter(io.Discard)
		tarsafe.Walk(context.Background(), io.LimitReader(r, 8<<20), tarsafe.Options{MaxContent: 1 << 20}, func(h *tar.Header, body io.Reader) error {
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if body != nil {
				_, err := io.Copy(tw, body)
				return err
			}
			return nil
		})
	})
}
