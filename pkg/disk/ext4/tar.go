package ext4

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// FromTar reads an uncompressed tar stream and writes an ext4 image at out.
// Owners, modes, times, symlinks, hard links, device nodes, FIFOs and
// xattrs (PAX SCHILY.xattr.*) are kept. Entries may come in any order:
// missing parent directories are created (mode of the root, time of the
// superblock) and take their real metadata when their entry comes later; a
// later entry for the same name replaces an earlier one where ext4 allows it.
// Odd input (a symlinked parent directory, a hard link to a missing target,
// a non-directory replacing a directory, ...) is an error naming the entry.
// The image is written under a temporary name next to out and renamed into
// place only on success.
func FromTar(ctx context.Context, r io.Reader, out string, opt Options) error {
	return build(ctx, out, opt, func(b *builder) error { return b.addTar(r) })
}

// build runs add on a new builder for out, then finishes the image; on any
// failure (or panic in the writer) the temporary file is removed.
func build(ctx context.Context, out string, opt Options, add func(*builder) error) error {
	b, err := newBuilder(ctx, out, opt)
	if err != nil {
		return err
	}
	err = protect(func() error { return add(b) })
	if err == nil {
		err = protect(b.finish)
	}
	if err != nil {
		b.abort()
		return err
	}
	return nil
}

// ctxReader fails reads once the context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (b *builder) addTar(r io.Reader) error {
	cr := &ctxReader{ctx: b.ctx, r: bufio.NewReaderSize(r, 1<<20)}
	tr := tar.NewReader(cr)
	for i := 0; ; i++ {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("ext4: tar: truncated stream after entry %d (byte %d): %w", i, cr.n, err)
			}
			return fmt.Errorf("ext4: tar: reading header of entry %d (near byte %d): %w", i, cr.n, err)
		}
		e, err := tarEntry(hdr)
		if err == nil && e != nil {
			err = b.add(e, tr)
		}
		if err != nil {
			if b.ctx.Err() != nil {
				return b.ctx.Err()
			}
			return fmt.Errorf("ext4: tar entry %d %q (near byte %d): %w", i, hdr.Name, cr.n, err)
		}
	}
}

// tarEntry converts a tar header; nil means the entry is skipped.
func tarEntry(hdr *tar.Header) (*entry, error) {
	e := &entry{
		name:   hdr.Name,
		size:   hdr.Size,
		uid:    int64(hdr.Uid),
		gid:    int64(hdr.Gid),
		major:  hdr.Devmajor,
		minor:  hdr.Devminor,
		mtime:  hdr.ModTime,
		atime:  hdr.AccessTime,
		ctime:  hdr.ChangeTime,
		xattrs: map[string][]byte{},
	}
	perm := uint16(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse, tar.TypeCont:
		e.mode = sIFREG | perm
	case tar.TypeDir:
		e.mode = sIFDIR | perm
	case tar.TypeSymlink:
		e.mode = sIFLNK | 0o777
		e.symlink = hdr.Linkname
	case tar.TypeLink:
		if hdr.Linkname == "" {
			return nil, errors.New("hard link with an empty target")
		}
		e.hardlink = hdr.Linkname
	case tar.TypeChar:
		e.mode = sIFCHR | perm
	case tar.TypeBlock:
		e.mode = sIFBLK | perm
	case tar.TypeFifo:
		e.mode = sIFIFO | perm
	case tar.TypeXGlobalHeader:
		return nil, nil
	default:
		return nil, fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	if e.mode&typeMask != sIFREG {
		e.size = 0
	}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			e.xattrs[name] = []byte(v)
		}
	}
	return e, nil
}
