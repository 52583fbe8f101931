package tarsafe

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/internal/testutil"
)

// The hostile sparse entries of issue 11: a 10 KB archive whose one PAX
// sparse file declares GNU.sparse.realsize = 4 EiB kept the size estimate
// CPU-bound for minutes (expanding holes), deaf to cancellation.

const eib4 = 4 << 60

func sparseFrags() []testutil.SparseFragment {
	return []testutil.SparseFragment{{Offset: 0, Data: bytes.Repeat([]byte("A"), 512)}, {Offset: 1 << 20, Data: []byte("tail")}}
}

// walkDeadline runs Walk with emit in a goroutine and fails when it does not
// return within d.
func walkDeadline(t *testing.T, ctx context.Context, in []byte, opt Options, d time.Duration, emit func(h *tar.Header, body io.Reader) error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- Walk(ctx, bytes.NewReader(in), opt, emit) }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Walk did not return within %v", d)
		return nil
	}
}

// TestSparseHugeRefusedAtHeader: sizes no image can hold are refused as
// soon as the header is read, whatever reads the body.
func TestSparseHugeRefusedAtHeader(t *testing.T) {
	in := testutil.PAXSparseTar("big", eib4, sparseFrags())
	if len(in) > 10<<10 {
		t.Fatalf("crafted archive is %d bytes", len(in))
	}
	for _, read := range []bool{false, true} {
		err := walkDeadline(t, context.Background(), in, Options{Source: "bomb.tar"}, 2*time.Second, func(h *tar.Header, body io.Reader) error {
			if read && body != nil {
				_, err := io.Copy(io.Discard, body)
				return err
			}
			return nil
		})
		if !errors.Is(err, ErrFileSize) || !errors.Is(err, ErrContentLimit) {
			t.Fatalf("read=%v: err = %v, want ErrFileSize", read, err)
		}
		for _, w := range []string{"bomb.tar", `"big"`, "sparse size of 4611686018427387904 bytes", "17592186044416"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q lacks %q", err, w)
			}
		}
	}
	// Below the cap a lower MaxFileSize still applies.
	in = testutil.PAXSparseTar("big", 1<<40, sparseFrags())
	err := walkDeadline(t, context.Background(), in, Options{Source: "bomb.tar", MaxFileSize: 1 << 30}, 2*time.Second, func(*tar.Header, io.Reader) error { return nil })
	if !errors.Is(err, ErrFileSize) {
		t.Fatalf("MaxFileSize: err = %v", err)
	}
}

// TestSparseSkippedUnread: an emit that does not read the body (the size
// estimate) costs nothing for the holes: a 1 TiB sparse file is walked at
// once, with its header's size.
func TestSparseSkippedUnread(t *testing.T) {
	in := testutil.PAXSparseTar("big", 1<<40, sparseFrags())
	var sizes []int64
	err := walkDeadline(t, context.Background(), in, Options{Source: "s.tar"}, 2*time.Second, func(h *tar.Header, body io.Reader) error {
		if h.Typeflag == tar.TypeReg {
			sizes = append(sizes, h.Size)
		}
		return nil
	})
	if err != nil || len(sizes) != 1 || sizes[0] != 1<<40 {
		t.Fatalf("err %v, sizes %v", err, sizes)
	}
	// A truncated sparse entry left unread is still reported, naming it.
	err = walkDeadline(t, context.Background(), in[:len(in)-1024-512], Options{Source: "s.tar"}, 2*time.Second, func(*tar.Header, io.Reader) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "truncated") || !strings.Contains(err.Error(), `"big"`) {
		t.Fatalf("truncated: err = %v", err)
	}
}

// TestSparseCancelInHoles: reading a 1 TiB sparse file's holes (as
// Sanitize does for the ext4 writer) stops within a second of the
// cancellation; the holes never read the input, whose checks never ran.
func TestSparseCancelInHoles(t *testing.T) {
	in := testutil.PAXSparseTar("big", 1<<40, sparseFrags())
	ctx, cancel := context.WithCancel(context.Background())
	r := Sanitize(ctx, bytes.NewReader(in), Options{Source: "s.tar"})
	defer r.Close()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, r)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(time.Second):
		t.Fatal("Sanitize still expanding holes one second after the cancellation")
	}
}

// FuzzPAXSparse fuzzes the sparse map and sizes of a PAX sparse entry (and
// arbitrary bytes after the seed archives). Walk must never take long: the
// declared sizes are bounded by MaxFileSize and MaxContent, the body is
// read through a limit.
func FuzzPAXSparse(f *testing.F) {
	f.Add(testutil.PAXSparseTar("a", 4096, []testutil.SparseFragment{{Offset: 0, Data: []byte("x")}}), false)
	f.Add(testutil.PAXSparseTar("a", eib4, sparseFrags()), true)
	f.Add(testutil.PAXSparseTar("d/a", 1<<20, []testutil.SparseFragment{{Offset: 100, Data: []byte("abc")}, {Offset: 9000, Data: []byte("z")}}), true)
	f.Add(testutil.PAXSparseTar("a", 0, nil), true)
	f.Fuzz(func(t *testing.T, in []byte, read bool) {
		opt := Options{Source: "fuzz.tar", MaxContent: 8 << 20, MaxFileSize: 4 << 20}
		err := Walk(context.Background(), bytes.NewReader(in), opt, func(h *tar.Header, body io.Reader) error {
			if h.Size > opt.MaxFileSize {
				t.Fatalf("entry %q of %d bytes passed MaxFileSize", h.Name, h.Size)
			}
			if read && body != nil {
				n, err := io.Copy(io.Discard, body)
				if err == nil && n != h.Size {
					t.Fatalf("entry %q: read %d bytes of %d", h.Name, n, h.Size)
				}
				return err
			}
			return nil
		})
		if err != nil && !strings.Contains(err.Error(), "fuzz.tar") {
			t.Fatalf("error does not name the source: %v", err)
		}
	})
}
