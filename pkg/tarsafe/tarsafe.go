// Package tarsafe turns an untrusted tar stream (a guest rootfs tarball, a
// flattened OCI image) into a safe one: every entry lands inside the image
// root, resolved like a chroot, and malformed archives are errors naming
// the source, entry and offset. Both the build side (xenbundle's
// rootfs_tar import) and Dom0's image store use it.
//
// Tar safety policy.
//
// We never extract a guest tarball on the host: the sanitized tar stream goes
// straight into the ext4 writer. So no archive entry can touch a host file;
// the question is only which image path each entry ends up at. The answer is
// "resolve like a chroot whose root is the image root":
//
//   - Names are cleaned as if the archive root were "/": "../../escape"
//     becomes "escape", "/abs" becomes "abs", "a/./b//c/../d" becomes "a/b/d".
//     Nothing is rejected for that; this is what containerd and
//     filepath-securejoin do.
//   - Parent directories are resolved through symlinks created earlier in the
//     archive, chroot-style: absolute targets start at the image root and ".."
//     stops there. An entry "evil/pwned" after "evil -> /etc" is written as
//     "etc/pwned", after "evil -> ../../../host" as "host/pwned". The final
//     component is never followed (a later entry replaces a symlink, as tar
//     does). More than 40 symlink hops is an error.
//   - Hardlink targets are resolved the same way and must name a
//     non-directory entry that appeared earlier; anything else is an error.
//   - Missing parent directories are emitted as synthetic directory entries
//     (mode 0755, root:root, mtime = SOURCE_DATE_EPOCH or 0), so every entry's
//     parent exists, as a directory, before the entry.
//   - Symlink targets are kept verbatim: they are interpreted by the guest's
//     kernel inside the guest, where "/etc" is the guest's /etc.
//   - An entry that would change a directory into a non-directory or the
//     other way round is an error; a non-directory replacing a non-directory
//     and a directory repeated (metadata update) are passed on, later wins.
//   - Names containing NUL, components longer than 255 bytes, empty or
//     oversized symlink targets and unknown entry types are errors. PAX
//     global headers and GNU volume labels are dropped.
//   - Kept: type, permission bits including setuid/setgid/sticky, uid/gid,
//     user/group names, mtime (rounded to seconds), device numbers, hardlinks,
//     symlinks, and extended attributes (PAX SCHILY.xattr.*). Other PAX
//     records, atime and ctime are dropped. GNU sparse files are expanded.
//   - Corrupt or truncated archives (including one that stops between
//     entries without the end-of-archive zero block) and corrupt compressed
//     data are errors that name the source, the entry number and the byte
//     offset in the decompressed stream. After the end-of-archive marker the rest of the
//     input is read (and discarded) so compression checksums are verified.
//
// The output is a plain PAX/USTAR tar stream.
package tarsafe

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// blockSize is the tar record size.
const blockSize = 512

// ErrContentLimit is wrapped by the error for an archive whose file content
// exceeds Options.MaxContent.
var ErrContentLimit = errors.New("archive content exceeds the limit")

// ErrFileSize is wrapped by the error for a file larger than
// Options.MaxFileSize; it wraps ErrContentLimit.
var ErrFileSize = fmt.Errorf("file too large for the image (%w)", ErrContentLimit)

// maxSymlinkHops bounds symlink resolution, like Linux's MAXSYMLINKS.
const maxSymlinkHops = 40

// maxNameComponent is the longest file name ext4 can store.
const maxNameComponent = 255

// maxLinkTarget is the longest symlink target Linux accepts (PATH_MAX - 1).
const maxLinkTarget = 4095

// MaxExt4FileSize is the largest regular file ext4 can hold with 4 KiB
// blocks (2^32 blocks): the default Options.MaxFileSize. A tiny archive can
// declare a far larger size (a PAX sparse entry's GNU.sparse.realsize, a
// base-256 size field); such entries are refused at their header instead
// of expanding terabytes of holes.
const MaxExt4FileSize = 16 << 40

// Options configure Sanitize.
type Options struct {
	// Source names the input in error messages (usually the file name).
	Source string
	// Epoch is the mtime of synthesized parent directories; nil means the
	// Unix epoch (0).
	Epoch *time.Time
	// MaxContent, when positive, bounds the total size of regular file
	// content; an archive holding more is an error. It guards against
	// archives whose declared (e.g. sparse) sizes far exceed the input and
	// is normally the target image size.
	MaxContent int64
	// MaxFileSize bounds the declared size of one regular file; 0 means
	// MaxExt4FileSize. A larger entry is an error wrapping ErrContentLimit,
	// reported as soon as its header is read.
	MaxFileSize int64
}

// Sanitize returns a reader of a sanitized copy of the tar stream r (see
// the policy above). r must already be decompressed (see Decompress). The
// work happens in a goroutine as the result is read; errors, including
// ctx's, are returned by Read. Close the result when done: closing early
// stops the goroutine.
func Sanitize(ctx context.Context, r io.Reader, opt Options) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := Walk(ctx, r, opt, func(h *tar.Header, body io.Reader) error {
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if body != nil {
				_, err := io.Copy(tw, body)
				return err
			}
			return nil
		})
		if err == nil {
			err = tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr
}

// node is what the sanitizer remembers about an emitted path.
type node struct {
	typ    byte   // tar.TypeDir, tar.TypeSymlink or tar.TypeReg for any other non-directory
	target string // symlink target
}

// tarWalker holds the state of one sanitizing pass.
type tarWalker struct {
	ctx context.Context
	opt Options
	// skipped names the previous entry when its content was left to
	// tar.Reader.Next to skip, so that a truncation found there is
	// reported against it.
	skipped string
	nodes   map[string]*node // cleaned path ("" = root) → node
	emit    func(h *tar.Header, body io.Reader) error
	epoch   time.Time
	content int64
}

// ctxReader checks ctx before every read: the content of a sparse entry
// is mostly holes that the tar reader expands without reading its input,
// so the input's own checks never run there.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// countReader counts bytes read, for error offsets, and checks ctx.
type countReader struct {
	ctx context.Context
	r   io.Reader
	n   int64
}

func (c *countReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Walk reads the tar stream r and calls emit with every sanitized entry
// in order (synthesized parents included). body is nil for entries without
// content; emit need not consume it.
func Walk(ctx context.Context, r io.Reader, opt Options, emit func(h *tar.Header, body io.Reader) error) error {
	if opt.Source == "" {
		opt.Source = "tar stream"
	}
	if opt.MaxFileSize <= 0 {
		opt.MaxFileSize = MaxExt4FileSize
	}
	w := &tarWalker{ctx: ctx, opt: opt, nodes: map[string]*node{"": {typ: tar.TypeDir}}, emit: emit, epoch: time.Unix(0, 0).UTC()}
	if opt.Epoch != nil {
		w.epoch = *opt.Epoch
	}
	cr := &countReader{ctx: ctx, r: r}
	tr := tar.NewReader(cr)
	for i := 1; ; i++ {
		at := (cr.n + blockSize - 1) / blockSize * blockSize
		where := fmt.Sprintf("at byte %d", at)
		if w.skipped != "" {
			// The skipped content's length is not known here (sparse).
			where = fmt.Sprintf("after byte %d", at)
		}
		h, err := tr.Next()
		if err == io.EOF {
			if cr.n < at+blockSize {
				// Go's reader also reports io.EOF when the input simply
				// ends between entries; real archives end with zero blocks.
				return fmt.Errorf("%s: archive is truncated: it ends at byte %d after %d entries without the end-of-archive marker", opt.Source, cr.n, i-1)
			}
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.ErrUnexpectedEOF) && w.skipped != "" {
				return fmt.Errorf("%s: entry %d %q: archive is truncated in its content: %w", opt.Source, i-1, w.skipped, err)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%s: entry %d %s: archive is truncated: %w", opt.Source, i, where, err)
			}
			return fmt.Errorf("%s: entry %d %s: reading tar header: %w", opt.Source, i, where, err)
		}
		w.skipped = ""
		if err := w.entry(h, tr); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = fmt.Errorf("archive is truncated: %w", err)
			}
			return fmt.Errorf("%s: entry %d %q %s: %w", opt.Source, i, h.Name, where, err)
		}
	}
	// Read what follows the end-of-archive marker so that decompressors
	// verify their checksums and report corruption.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: after the end-of-archive marker at byte %d: %w", opt.Source, cr.n, err)
	}
	return nil
}

// clean maps an archive name to an image path relative to the root, as if
// the archive root were "/". The root itself is "".
func clean(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// parent returns the directory part of a cleaned path ("" for top level).
func parent(p string) string {
	d := path.Dir(p)
	if d == "." || d == "/" {
		return ""
	}
	return d
}

// join joins a cleaned directory and a name.
func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// TypeName names a tar entry type for errors ("regular file", "symlink", ...).
func TypeName(t byte) string {
	switch t {
	case tar.TypeDir:
		return "directory"
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hardlink"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "fifo"
	default:
		return "file"
	}
}

// resolveDir resolves the cleaned directory path p through the symlinks
// recorded so far, chroot-style. The result contains no symlinks.
func (w *tarWalker) resolveDir(p string) (string, error) {
	rest := strings.Split(p, "/")
	cur, hops := "", 0
	for len(rest) > 0 {
		part := rest[0]
		rest = rest[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			cur = parent(cur)
			continue
		}
		next := join(cur, part)
		n := w.nodes[next]
		if n == nil || n.typ != tar.TypeSymlink {
			cur = next
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return "", fmt.Errorf("too many levels of symbolic links resolving %q", p)
		}
		if strings.HasPrefix(n.target, "/") {
			cur = ""
		}
		rest = append(strings.Split(n.target, "/"), rest...)
	}
	return cur, nil
}

// ensureDir makes sure every component of the resolved directory dir exists
// as a directory, emitting synthetic entries for missing ones.
func (w *tarWalker) ensureDir(dir string) error {
	if dir == "" {
		return nil
	}
	if err := w.ensureDir(parent(dir)); err != nil {
		return err
	}
	n := w.nodes[dir]
	if n == nil {
		w.nodes[dir] = &node{typ: tar.TypeDir}
		return w.emit(&tar.Header{
			Typeflag: tar.TypeDir,
			Name:     dir + "/",
			Mode:     0o755,
			ModTime:  w.epoch,
			Format:   tar.FormatPAX,
		}, nil)
	}
	if n.typ != tar.TypeDir {
		return fmt.Errorf("parent %q is a %s, not a directory", dir, TypeName(n.typ))
	}
	return nil
}

// checkName rejects names the image cannot hold.
func checkName(what, p string) error {
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("%s contains a NUL byte", what)
	}
	for _, c := range strings.Split(p, "/") {
		if len(c) > maxNameComponent {
			return fmt.Errorf("%s has a component of %d bytes; ext4 allows at most %d", what, len(c), maxNameComponent)
		}
	}
	return nil
}

// entry sanitizes and emits one archive entry.
func (w *tarWalker) entry(h *tar.Header, body io.Reader) error {
	typ := h.Typeflag
	switch typ {
	case tar.TypeXGlobalHeader, 'V':
		return nil // PAX global header, GNU volume label: no file
	case tar.TypeReg, tar.TypeRegA, tar.TypeCont, tar.TypeGNUSparse:
		typ = tar.TypeReg
	case tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("unsupported tar entry type %q", string(rune(typ)))
	}
	if err := checkName("name", h.Name); err != nil {
		return err
	}
	name := clean(h.Name)
	if name == "" {
		if typ != tar.TypeDir {
			return fmt.Errorf("entry resolves to the archive root but is a %s, not a directory", TypeName(typ))
		}
		return w.emit(w.header(h, typ, "./", ""), nil)
	}
	dir, err := w.resolveDir(parent(name))
	if err != nil {
		return err
	}
	if err := w.ensureDir(dir); err != nil {
		return err
	}
	name = join(dir, path.Base(name))

	link := ""
	switch typ {
	case tar.TypeSymlink:
		link = h.Linkname
		if link == "" {
			return errors.New("symlink has an empty target")
		}
		if len(link) > maxLinkTarget {
			return fmt.Errorf("symlink target is %d bytes; Linux allows at most %d", len(link), maxLinkTarget)
		}
		if strings.IndexByte(link, 0) >= 0 {
			return errors.New("symlink target contains a NUL byte")
		}
	case tar.TypeLink:
		if err := checkName("hardlink target", h.Linkname); err != nil {
			return err
		}
		t := clean(h.Linkname)
		if t == "" {
			return fmt.Errorf("hardlink target %q is the archive root", h.Linkname)
		}
		tdir, err := w.resolveDir(parent(t))
		if err != nil {
			return fmt.Errorf("hardlink target: %w", err)
		}
		link = join(tdir, path.Base(t))
		tn := w.nodes[link]
		switch {
		case link == name:
			return fmt.Errorf("hardlink to itself (target %q)", h.Linkname)
		case tn == nil:
			return fmt.Errorf("hardlink target %q (%s in the image) does not appear earlier in the archive", h.Linkname, link)
		case tn.typ == tar.TypeDir:
			return fmt.Errorf("hardlink target %q is a directory", h.Linkname)
		}
	}

	if old := w.nodes[name]; old != nil && (old.typ == tar.TypeDir) != (typ == tar.TypeDir) {
		return fmt.Errorf("would replace the %s %q with a %s", TypeName(old.typ), name, TypeName(typ))
	}
	switch typ {
	case tar.TypeDir:
		w.nodes[name] = &node{typ: tar.TypeDir}
	case tar.TypeSymlink:
		w.nodes[name] = &node{typ: tar.TypeSymlink, target: link}
	default:
		w.nodes[name] = &node{typ: tar.TypeReg}
	}

	out := w.header(h, typ, name, link)
	if typ != tar.TypeReg {
		return w.emit(out, nil)
	}
	if h.Size < 0 {
		return fmt.Errorf("negative size %d", h.Size)
	}
	if h.Size > w.opt.MaxFileSize {
		what := "declares"
		if h.Typeflag == tar.TypeGNUSparse || len(h.PAXRecords["GNU.sparse.realsize"]) > 0 || len(h.PAXRecords["GNU.sparse.size"]) > 0 {
			what = "declares a sparse size of"
		}
		return fmt.Errorf("file %s %d bytes, more than the %d bytes a file can have in the image: %w", what, h.Size, w.opt.MaxFileSize, ErrFileSize)
	}
	w.content += h.Size
	if w.opt.MaxContent > 0 && w.content > w.opt.MaxContent {
		return fmt.Errorf("file content so far (%d bytes) exceeds the limit of %d bytes (the image size): %w", w.content, w.opt.MaxContent, ErrContentLimit)
	}
	out.Size = h.Size
	lr := &io.LimitedReader{R: &ctxReader{ctx: w.ctx, r: body}, N: h.Size}
	if err := w.emit(out, lr); err != nil {
		return err
	}
	if lr.N == h.Size && h.Size > 0 {
		// emit read nothing (the size estimate): tar.Reader.Next skips
		// the stored data, without expanding a sparse entry's holes, and
		// reports a short one as truncation (see Walk).
		w.skipped = name
		return nil
	}
	// Consume what emit left unread; a short body means truncation.
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return err
	}
	if lr.N > 0 {
		return fmt.Errorf("content ends %d bytes early: %w", lr.N, io.ErrUnexpectedEOF)
	}
	return nil
}

// header builds the output header for a sanitized entry.
func (w *tarWalker) header(h *tar.Header, typ byte, name, link string) *tar.Header {
	if typ == tar.TypeDir && !strings.HasSuffix(name, "/") {
		name += "/"
	}
	out := &tar.Header{
		Typeflag: typ,
		Name:     name,
		Linkname: link,
		Mode:     h.Mode & 0o7777,
		Uid:      h.Uid,
		Gid:      h.Gid,
		Uname:    h.Uname,
		Gname:    h.Gname,
		ModTime:  h.ModTime.Truncate(time.Second),
		Format:   tar.FormatPAX,
	}
	if typ == tar.TypeChar || typ == tar.TypeBlock {
		out.Devmajor, out.Devminor = h.Devmajor, h.Devminor
	}
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, PAXXattr) && len(k) > len(PAXXattr) {
			if out.PAXRecords == nil {
				out.PAXRecords = map[string]string{}
			}
			out.PAXRecords[k] = v
		}
	}
	return out
}

// PAXXattr is the PAX record prefix for extended attributes.
// PAXXattr is the PAX record prefix of extended attributes.
const PAXXattr = "SCHILY.xattr."
