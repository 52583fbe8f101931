package qcow2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

// ConvertOptions tune ConvertToRawOptions and WriteRaw.
type ConvertOptions struct {
	// Workers is the number of goroutines reading and decompressing in
	// parallel; 0 means runtime.GOMAXPROCS(0), capped at 16.
	Workers int
	// ChunkSize is the unit of work in bytes of the virtual disk; memory
	// use is about Workers*ChunkSize*2. 0 means 4 MiB. It is rounded up to
	// a power of two no smaller than the largest cluster size in the chain.
	ChunkSize int64
	// Sync fsyncs the output before it is renamed into place. Off by
	// default, like qemu-img convert (whose default cache mode never
	// flushes); turn it on when the result must survive a power loss.
	Sync bool
	// Open are the options used to open the source image.
	Open Options
}

// sparseBlock is the granularity of hole detection in written data, the
// same as qemu-img convert's default -S 4k.
const sparseBlock = 4096

var zeroBlock [sparseBlock]byte

// ConvertToRaw converts the qcow2 image src (with its backing chain) to a
// sparse raw image dst, like `qemu-img convert -f qcow2 -O raw src dst`.
// The output is written to a temporary file in dst's directory and renamed
// over dst on success; on failure dst is left untouched.
func ConvertToRaw(ctx context.Context, src, dst string) error {
	return ConvertToRawOptions(ctx, src, dst, ConvertOptions{})
}

// ConvertToRawOptions is ConvertToRaw with options.
func ConvertToRawOptions(ctx context.Context, src, dst string, opts ConvertOptions) (err error) {
	img, err := OpenOptions(src, opts.Open)
	if err != nil {
		return err
	}
	defer img.Close()

	dir, base := filepath.Split(dst)
	if dir == "" {
		dir = "."
	}
	var f *os.File
	for range 100 {
		name := filepath.Join(dir, fmt.Sprintf(".%s.tmp-%08x", base, rand.Uint32())) // the project's temporaries' pattern
		f, err = os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("qcow2: creating temporary output for %s: %w", dst, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err = f.Truncate(img.Size()); err != nil {
		return fmt.Errorf("qcow2: sizing %s: %w", tmp, err)
	}
	if err = img.WriteRaw(ctx, f, opts); err != nil {
		return err
	}
	if opts.Sync {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("qcow2: syncing %s: %w", tmp, err)
		}
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("qcow2: closing %s: %w", tmp, err)
	}
	if err = os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("qcow2: renaming %s to %s: %w", tmp, dst, err)
	}
	return nil
}

// convJob is the work for one chunk: runs in [lo, hi) of the chunk at base.
type convJob struct {
	base, lo, hi int64
	runs         []run
}

// WriteRaw writes the virtual disk to w as a raw image, skipping ranges
// that read as zeros (unallocated and zero clusters, and all-zero 4 KiB
// blocks of data). w must therefore read as zeros where nothing is written,
// like a freshly truncated file. Chunks are read and decompressed by
// parallel workers and written with WriteAt in no particular order.
func (img *Image) WriteRaw(ctx context.Context, w io.WriterAt, opts ConvertOptions) error {
	workers := opts.Workers
	if workers <= 0 {
		workers = min(runtime.GOMAXPROCS(0), 16)
	}
	chunk := int64(4 << 20)
	if opts.ChunkSize > 0 {
		chunk = opts.ChunkSize
	}
	maxCluster := img.clusterSize
	for l := img.backing; l != nil; {
		b, ok := l.(*Image)
		if !ok {
			break
		}
		maxCluster = max(maxCluster, b.clusterSize)
		l = b.backing
	}
	c := maxCluster
	for c < chunk {
		c <<= 1
	}
	chunk = c

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan *convJob, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk)
			scratch := new(clusterScratch)
			for j := range jobs {
				if ctx.Err() != nil {
					continue // drain
				}
				if err := convertChunk(w, j, buf, scratch); err != nil {
					cancel(err)
				}
			}
		}()
	}

	var cur *convJob
	emit := func() error {
		if cur == nil {
			return nil
		}
		// Trailing zero runs need no work.
		for len(cur.runs) > 0 && cur.runs[len(cur.runs)-1].kind == runZero {
			cur.runs = cur.runs[:len(cur.runs)-1]
		}
		if len(cur.runs) > 0 {
			last := cur.runs[len(cur.runs)-1]
			cur.hi = last.off + last.n
			select {
			case jobs <- cur:
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		cur = nil
		return nil
	}
	add := func(r run) error {
		for r.n > 0 {
			base := r.off &^ (chunk - 1)
			end := base + chunk
			if cur != nil && cur.base != base {
				if err := emit(); err != nil {
					return err
				}
			}
			if r.kind == runZero {
				// Zeros are only recorded between data runs of one chunk;
				// never split a (possibly huge) zero run chunk by chunk.
				if cur != nil {
					cur.runs = append(cur.runs, run{off: r.off, n: min(r.n, end-r.off), kind: runZero})
				}
				return nil
			}
			k := min(r.n, end-r.off)
			piece := r
			piece.n = k
			if cur == nil {
				cur = &convJob{base: base, lo: r.off}
			}
			cur.runs = append(cur.runs, piece)
			r.off += k
			r.n -= k
			r.host += k
		}
		return nil
	}
	err := walk(img, 0, img.Size(), func(r run) error {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		return add(r)
	})
	if err == nil {
		err = emit()
	}
	close(jobs)
	wg.Wait()
	if err != nil {
		return err
	}
	if cerr := context.Cause(ctx); cerr != nil {
		return cerr
	}
	return nil
}

// convertChunk fills the runs of j into buf and writes the non-zero blocks.
func convertChunk(w io.WriterAt, j *convJob, buf []byte, scratch *clusterScratch) error {
	for _, r := range j.runs {
		if err := fillRun(r, buf[r.off-j.base:r.off-j.base+r.n], scratch); err != nil {
			return err
		}
	}
	return writeNonZero(w, buf[j.lo-j.base:j.hi-j.base], j.lo)
}

// writeNonZero writes b at off, skipping all-zero blocks aligned to
// sparseBlock in the output, and coalescing the rest into few writes.
func writeNonZero(w io.WriterAt, b []byte, off int64) error {
	start := -1 // start in b of pending non-zero data
	i := 0
	for i < len(b) {
		j := min(len(b), i+sparseBlock-int((off+int64(i))%sparseBlock))
		if bytes.Equal(b[i:j], zeroBlock[:j-i]) {
			if start >= 0 {
				if _, err := w.WriteAt(b[start:i], off+int64(start)); err != nil {
					return fmt.Errorf("qcow2: writing output at %#x: %w", off+int64(start), err)
				}
				start = -1
			}
		} else if start < 0 {
			start = i
		}
		i = j
	}
	if start >= 0 {
		if _, err := w.WriteAt(b[start:], off+int64(start)); err != nil {
			return fmt.Errorf("qcow2: writing output at %#x: %w", off+int64(start), err)
		}
	}
	return nil
}
