package importer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/internal/testutil"
	"github.com/vxn-dev/vxn/pkg/tarsafe"
)

// estimateWithin runs Estimate in a goroutine and fails when it takes more
// than d.
func estimateWithin(t *testing.T, ctx context.Context, h Handler, req Request, d time.Duration) (int64, error) {
	t.Helper()
	type res struct {
		n   int64
		err error
	}
	c := make(chan res, 1)
	go func() {
		n, err := h.Estimate(ctx, req)
		c <- res{n, err}
	}()
	select {
	case r := <-c:
		return r.n, r.err
	case <-time.After(d):
		t.Fatalf("Estimate did not return within %v", d)
		return 0, nil
	}
}

// TestEstimateSparseBomb: a 10 KB tar whose PAX sparse entry declares
// GNU.sparse.realsize = 4 EiB kept the estimate (no --size) CPU-bound for
// minutes; it is refused at once, naming guest, file and entry. Declared
// sizes within the file limit but beyond the largest image are refused too.
func TestEstimateSparseBomb(t *testing.T) {
	dir := t.TempDir()
	frags := []testutil.SparseFragment{{Offset: 0, Data: []byte("data")}}
	bomb := filepath.Join(dir, "bomb.tar")
	os.WriteFile(bomb, testutil.PAXSparseTar("big", 4<<60, frags), 0o644)
	h, _ := NewRegistry().Lookup(TypeRootfsTar)
	_, err := estimateWithin(t, context.Background(), h, Request{Guest: "g", Type: TypeRootfsTar, Source: bomb}, 2*time.Second)
	if !errors.Is(err, tarsafe.ErrFileSize) {
		t.Fatalf("err = %v, want ErrFileSize", err)
	}
	for _, w := range []string{`guest "g"`, bomb, `"big"`, "sparse size"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}

	// Several 15 TiB files: each fits in ext4, together no image.
	var many []byte
	for _, n := range []string{"a", "b"} {
		many = append(many, testutil.PAXSparseEntry(n, 15<<40, frags)...)
	}
	many = append(many, testutil.EndOfArchive()...)
	p := filepath.Join(dir, "many.tar")
	os.WriteFile(p, many, 0o644)
	h, _ = NewRegistry().Lookup(TypeRootfsTar) // fresh cache
	_, err = estimateWithin(t, context.Background(), h, Request{Guest: "g", Type: TypeRootfsTar, Source: p}, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "largest image") || !strings.Contains(err.Error(), p) {
		t.Fatalf("err = %v, want the largest-image refusal naming %s", err, p)
	}
	// One 14 TiB file: its automatic image (content + 25%) is too big.
	p = filepath.Join(dir, "one.tar")
	os.WriteFile(p, testutil.PAXSparseTar("a", 14<<40, frags), 0o644)
	_, err = estimateWithin(t, context.Background(), h, Request{Guest: "g", Type: TypeRootfsTar, Source: p}, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "more than the maximum") {
		t.Fatalf("err = %v, want the automatic size refused", err)
	}
	// An explicit size above the largest image is refused before reading.
	_, err = estimateWithin(t, context.Background(), h, Request{Guest: "g", Type: TypeRootfsTar, Source: p, SizeMB: MaxImageMB + 1}, 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "larger than the maximum image size") {
		t.Fatalf("err = %v", err)
	}
}

// TestEstimateCancel: the estimate of a tar.zst that decompresses to 1 TiB
// of zeros ends within a second of its context's cancellation (Estimate
// took no context before).
func TestEstimateCancel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "zeros.tar.zst")
	os.WriteFile(p, testutil.ZstdZeroTar("zeros", 1<<40), 0o644)
	h, _ := NewRegistry().Lookup(TypeRootfsTar)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := estimateWithin(t, ctx, h, Request{Guest: "g", Type: TypeRootfsTar, Source: p}, 1300*time.Millisecond)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v after %v, want context.Canceled", err, time.Since(start))
	}
}
