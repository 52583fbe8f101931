package qcow2

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testdataSums reads testdata/SHA256SUMS (sha256 of qemu-img's raw output).
func testdataSums(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open("testdata/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sums := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if sum, name, ok := strings.Cut(sc.Text(), " "); ok {
			sums[name] = sum
		}
	}
	return sums
}

// TestTestdata converts the checked-in seed images and compares with the
// sha256 qemu-img produced when they were generated (no qemu needed).
func TestTestdata(t *testing.T) {
	sums := testdataSums(t)
	if len(sums) < 5 {
		t.Fatalf("testdata/SHA256SUMS has %d entries, want >= 5", len(sums))
	}
	for name, want := range sums {
		t.Run(name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "out.raw")
			if err := ConvertToRaw(context.Background(), filepath.Join("testdata", name), out); err != nil {
				t.Fatal(err)
			}
			if got := sha256File(t, out); got != want {
				t.Errorf("sha256 %s, want %s", got, want)
			}
		})
	}
}

// TestTestdataReadAt checks that ReadAt of every seed image equals the
// converted output, and the overlay's extents.
func TestTestdataReadAt(t *testing.T) {
	want, err := readAll("testdata/v3-512.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"v2-512.qcow2", "zlib-512.qcow2", "zstd-512.qcow2"} {
		got, err := readAll(filepath.Join("testdata", name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if string(got) != string(want) {
			t.Errorf("%s: content differs from v3-512.qcow2", name)
		}
	}
	img, err := Open("testdata/overlay-512.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if chain := img.BackingChain(); len(chain) != 1 || filepath.Base(chain[0]) != "v3-512.qcow2" {
		t.Errorf("BackingChain() = %q", chain)
	}
	if h := img.Header(); h.BackingFormat != "qcow2" || h.BackingFile != "v3-512.qcow2" {
		t.Errorf("header backing = %q %q", h.BackingFile, h.BackingFormat)
	}
	var got []string
	for e, err := range img.Extents(0, img.Size()) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d+%d:%v", e.Offset, e.Length, e.Kind))
	}
	// From `qemu-img map`: data up to 8192, zero (write -z) to 11264,
	// base data to 12288, zeros/holes to 28672, tail data.
	wantExt := []string{"0+8192:data", "8192+3072:zero", "11264+1024:data", "12288+16384:zero", "28672+4096:data"}
	if strings.Join(got, " ") != strings.Join(wantExt, " ") {
		t.Errorf("Extents:\n got %v\nwant %v", got, wantExt)
	}
}

func readAll(path string) ([]byte, error) {
	img, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer img.Close()
	b := make([]byte, img.Size())
	if _, err := img.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// patch returns a copy of b with v written big-endian at off.
func patch(b []byte, off int, v any) []byte {
	c := append([]byte(nil), b...)
	switch v := v.(type) {
	case uint8:
		c[off] = v
	case uint32:
		binary.BigEndian.PutUint32(c[off:], v)
	case uint64:
		binary.BigEndian.PutUint64(c[off:], v)
	case string:
		copy(c[off:], v)
	}
	return c
}

// TestHeaderErrors corrupts header fields of a seed image and checks the
// error class and message.
func TestHeaderErrors(t *testing.T) {
	v3, err := os.ReadFile("testdata/v3-512.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	v2, err := os.ReadFile("testdata/v2-512.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	ov, err := os.ReadFile("testdata/overlay-512.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	l1off := int(binary.BigEndian.Uint64(v3[40:]))
	fmtExt := bytes.Index(ov[:512], []byte{0xe2, 0x79, 0x2a, 0xca})
	if fmtExt < 0 {
		t.Fatal("overlay seed has no backing format extension")
	}
	tests := []struct {
		name    string
		data    []byte
		opts    Options
		wantErr error  // nil: opens and reads
		wantMsg string // substring of the error
	}{
		{"ok v3", v3, Options{}, nil, ""},
		{"ok v2", v2, Options{}, nil, ""},
		{"empty", nil, Options{}, ErrNotQcow2, "magic"},
		{"bad magic", patch(v3, 0, "QFI\x00"), Options{}, ErrNotQcow2, "magic"},
		{"truncated header", v3[:50], Options{}, ErrNotQcow2, "shorter than"},
		{"version 1", patch(v3, 4, uint32(1)), Options{}, ErrUnsupported, "version 1"},
		{"version 4", patch(v3, 4, uint32(4)), Options{}, ErrUnsupported, "version 4"},
		{"cluster bits 8", patch(v3, 20, uint32(8)), Options{}, ErrCorrupt, "cluster_bits 8"},
		{"cluster bits 22", patch(v3, 20, uint32(22)), Options{}, ErrCorrupt, "cluster_bits 22"},
		{"aes", patch(v3, 32, uint32(1)), Options{}, ErrUnsupported, "encryption"},
		{"luks", patch(v3, 32, uint32(2)), Options{}, ErrUnsupported, "encryption"},
		{"dirty ok", patch(v3, 72, uint64(1)), Options{}, nil, ""},
		{"corrupt bit", patch(v3, 72, uint64(2)), Options{}, ErrCorrupt, "marked corrupt"},
		{"corrupt bit allowed", patch(v3, 72, uint64(2)), Options{AllowCorrupt: true}, nil, ""},
		{"data file", patch(v3, 72, uint64(4)), Options{}, ErrUnsupported, "external data file"},
		{"extended l2", patch(v3, 72, uint64(16)), Options{}, ErrUnsupported, "extended L2"},
		{"unknown incompat", patch(v3, 72, uint64(1<<40)), Options{}, ErrUnsupported, "unknown incompatible feature bits 0x10000000000"},
		{"compression bit no field", patch(patch(v3, 72, uint64(8)), 100, uint32(104)), Options{}, ErrCorrupt, "no compression_type field"},
		{"compression type without bit", patch(patch(v3, 100, uint32(112)), 104, uint8(1)), Options{}, ErrCorrupt, "without the compression type"},
		{"compression type 2", patch(patch(patch(v3, 100, uint32(112)), 104, uint8(2)), 72, uint64(8)), Options{}, ErrUnsupported, "compression_type 2"},
		{"refcount order", patch(v3, 96, uint32(7)), Options{}, ErrCorrupt, "refcount_order"},
		{"header length short", patch(v3, 100, uint32(96)), Options{}, ErrCorrupt, "header_length 96"},
		{"header length huge", patch(v3, 100, uint32(4096)), Options{}, ErrCorrupt, "exceeds the cluster size"},
		{"size huge", patch(v3, 24, uint64(1<<63)), Options{}, ErrCorrupt, "too large"},
		{"l1 too big", patch(v3, 36, uint32(1<<30)), Options{}, ErrCorrupt, "more than the"},
		{"l1 too small", patch(v3, 36, uint32(0)), Options{}, ErrCorrupt, "needs 1"},
		{"l1 beyond eof", patch(v3, 40, uint64(1<<40)), Options{}, ErrCorrupt, "beyond the end of the file"},
		{"l1 unaligned", patch(v3, 40, uint64(l1off+8)), Options{}, ErrCorrupt, "not aligned"},
		{"l2 beyond eof", patch(v3, l1off, uint64(1<<40)), Options{}, ErrCorrupt, "L2 table at 0x10000000000"},
		{"truncated data", v3[:len(v3)-2048], Options{}, ErrCorrupt, "beyond the end of the file"},
		{"zero flag in v2", patch(v2, int(binary.BigEndian.Uint64(v2[int(binary.BigEndian.Uint64(v2[40:])):])&l1OffsetMask), binary.BigEndian.Uint64(v2[int(binary.BigEndian.Uint64(v2[int(binary.BigEndian.Uint64(v2[40:])):])&l1OffsetMask):])|1), Options{}, ErrCorrupt, "zero cluster flag in a version 2 image"},
		{"backing name too long", patch(ov, 16, uint32(2000)), Options{}, ErrCorrupt, "exceeds 1023"},
		{"backing name outside", patch(ov, 8, uint64(510)), Options{}, ErrCorrupt, "outside the header cluster"},
		{"backing missing", patch(ov, int(binary.BigEndian.Uint64(ov[8:])), "x"), Options{}, os.ErrNotExist, "opening backing file"},
		{"backing format vmdk", patch(patch(ov, fmtExt+4, uint32(4)), fmtExt+8, "vmdk"), Options{}, ErrUnsupported, `backing file format "vmdk"`},
		{"backing format too long", patch(ov, fmtExt+4, uint32(16)), Options{}, ErrCorrupt, "backing format name length 16"},
		{"extension runs past", patch(ov, fmtExt+4, uint32(4000)), Options{}, ErrCorrupt, "runs past"},
		{"backing refused", ov, Options{MaxBackingDepth: -1}, ErrUnsupported, "backing chain deeper"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, n := range []string{"v3-512.qcow2"} { // backing of the overlay
				b, _ := os.ReadFile(filepath.Join("testdata", n))
				os.WriteFile(filepath.Join(dir, n), b, 0o644)
			}
			path := filepath.Join(dir, "img.qcow2")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			err := openAndRead(path, tc.opts)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %v", tc.wantErr)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q does not wrap %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) || !strings.Contains(err.Error(), "img.qcow2") {
				t.Errorf("error %q does not name the file and contain %q", err, tc.wantMsg)
			}
		})
	}
}

// openAndRead opens path and reads the whole virtual disk.
func openAndRead(path string, opts Options) error {
	img, err := OpenOptions(path, opts)
	if err != nil {
		return err
	}
	defer img.Close()
	b := make([]byte, min(img.Size(), 1<<20))
	_, err = img.ReadAt(b, 0)
	return err
}

// TestBackingLoop makes an image its own backing file, and a two-image
// cycle.
func TestBackingLoop(t *testing.T) {
	ov, err := os.ReadFile("testdata/overlay-512.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	bo := int(binary.BigEndian.Uint64(ov[8:]))
	rename := func(name string) []byte {
		c := patch(ov, 16, uint32(len(name)))
		copy(c[bo:], name)
		return c
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "self.qcow2"), rename("self.qcow2"), 0o644)
	os.WriteFile(filepath.Join(dir, "a.qcow2"), rename("b.qcow2"), 0o644)
	os.WriteFile(filepath.Join(dir, "b.qcow2"), rename("a.qcow2"), 0o644)
	for _, n := range []string{"self.qcow2", "a.qcow2"} {
		_, err := Open(filepath.Join(dir, n))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(fmt.Sprint(err), "loops back") {
			t.Errorf("%s: err = %v, want a backing loop error", n, err)
		}
	}
	// Depth limit: a chain of 4 with a limit of 2.
	os.WriteFile(filepath.Join(dir, "c0.qcow2"), rename("v3-512.qcow2"), 0o644)
	os.WriteFile(filepath.Join(dir, "c1.qcow2"), rename("c0.qcow2"), 0o644)
	os.WriteFile(filepath.Join(dir, "c2.qcow2"), rename("c1.qcow2"), 0o644)
	b, _ := os.ReadFile("testdata/v3-512.qcow2")
	os.WriteFile(filepath.Join(dir, "v3-512.qcow2"), b, 0o644)
	if _, err := OpenOptions(filepath.Join(dir, "c2.qcow2"), Options{MaxBackingDepth: 2}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("depth limit: err = %v, want ErrUnsupported", err)
	}
	img, err := OpenOptions(filepath.Join(dir, "c2.qcow2"), Options{MaxBackingDepth: 3})
	if err != nil {
		t.Fatalf("depth 3: %v", err)
	}
	if n := len(img.BackingChain()); n != 3 {
		t.Errorf("BackingChain has %d entries, want 3", n)
	}
	img.Close()
}

func TestZstdFrameLen(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want int // -1: error
	}{
		{"empty", nil, -1},
		{"bad magic", []byte{1, 2, 3, 4, 5, 6}, -1},
		// single segment, FCS 1 byte, one raw last block of 2 bytes, then garbage.
		{"raw block", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 2, 0x11, 0, 0, 'h', 'i', 0xff, 0xff}, 11},
		// RLE block of size 5 (one byte of payload) then checksum.
		{"rle+checksum", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x24, 5, 0x2b, 0, 0, 'a', 1, 2, 3, 4, 9}, 14},
		{"truncated block", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 2, 0x11, 0, 0, 'h'}, -1},
		{"reserved block type", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x20, 2, 0x07, 0, 0}, -1},
		{"reserved header bit", []byte{0x28, 0xb5, 0x2f, 0xfd, 0x28, 2, 0x11, 0, 0}, -1},
	}
	for _, tc := range tests {
		got, err := zstdFrameLen(tc.in)
		if tc.want < 0 {
			if err == nil {
				t.Errorf("%s: got %d, want error", tc.name, got)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("%s: got %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
}

// TestWriteNonZero checks hole detection at 4 KiB output alignment.
func TestWriteNonZero(t *testing.T) {
	tests := []struct {
		name   string
		off    int64
		data   []int // indexes of non-zero bytes
		size   int
		writes []string
	}{
		{"all zero", 0, nil, 16384, nil},
		{"one block", 0, []int{5000}, 16384, []string{"4096+4096"}},
		{"coalesced", 0, []int{10, 5000}, 16384, []string{"0+8192"}},
		{"two", 0, []int{10, 9000}, 16384, []string{"0+4096", "8192+4096"}},
		{"unaligned start", 1024, []int{0, 4000}, 8192, []string{"1024+7168"}},
		{"tail", 0, []int{8999}, 9000, []string{"8192+808"}},
	}
	for _, tc := range tests {
		b := make([]byte, tc.size)
		for _, i := range tc.data {
			b[i] = 1
		}
		var w recWriter
		if err := writeNonZero(&w, b, tc.off); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(w.writes) != fmt.Sprint(tc.writes) {
			t.Errorf("%s: writes %v, want %v", tc.name, w.writes, tc.writes)
		}
	}
}

type recWriter struct{ writes []string }

func (w *recWriter) WriteAt(p []byte, off int64) (int, error) {
	w.writes = append(w.writes, fmt.Sprintf("%d+%d", off, len(p)))
	return len(p), nil
}

// TestConvertCancel checks that a cancelled context stops conversion and
// leaves no output.
func TestConvertCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out := filepath.Join(t.TempDir(), "out.raw")
	err := ConvertToRaw(ctx, "testdata/v3-512.qcow2", out)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Errorf("left files behind: %v", ents)
	}
}

// TestConcurrentReadAt reads one image from many goroutines (run with
// -race) and compares with a sequential read.
func TestConcurrentReadAt(t *testing.T) {
	for _, name := range []string{"zlib-512.qcow2", "zstd-512.qcow2", "overlay-512.qcow2"} {
		want, err := readAll(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := Open(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 8)
		for g := range 8 {
			go func() {
				buf := make([]byte, 700)
				for off := int64(g * 37); off < img.Size(); off += 331 {
					n, err := img.ReadAt(buf, off)
					if err != nil && n+int(off) != int(img.Size()) {
						errs <- err
						return
					}
					if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
						errs <- fmt.Errorf("%s: data at %d differs", name, off)
						return
					}
				}
				errs <- nil
			}()
		}
		for range 8 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
		img.Close()
	}
}

func TestReadAfterClose(t *testing.T) {
	img, err := Open("testdata/zstd-512.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	if err := img.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := img.ReadAt(make([]byte, 4096), 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadAt after Close: %v, want os.ErrClosed", err)
	}
}
