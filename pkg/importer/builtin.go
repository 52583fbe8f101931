package importer

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
	"github.com/vxn-dev/vxn/pkg/disk/qcow2"
	"github.com/vxn-dev/vxn/pkg/sparse"
	"github.com/vxn-dev/vxn/pkg/tarsafe"
)

// The disk writers the built-in handlers call; variables so tests can
// inject failures.
var (
	ext4FromTar     = ext4.FromTar
	ext4FromDir     = ext4.FromDir
	ext4EstimateDir = ext4.EstimateDir
	qcow2ToRaw      = func(ctx context.Context, src, dst string, o qcow2.Options) error {
		return qcow2.ConvertToRawOptions(ctx, src, dst, qcow2.ConvertOptions{Open: o})
	}
	sparseCopy = sparse.Copy
)

// Built-in type names.
const (
	TypeRootfsDir = "rootfs_dir"
	TypeRootfsTar = "rootfs_tar"
	TypeQcow2     = "qcow2"
	TypeExt4      = "ext4"
	TypeRaw       = "raw"
)

func builtins() []Handler {
	return []Handler{
		rootfsDir{},
		&rootfsTar{cache: map[tarKey]*usage{}},
		qcow2Handler{},
		copyHandler{typ: TypeExt4},
		copyHandler{typ: TypeRaw},
	}
}

// tempName returns an unused name for a temporary file next to out.
func tempName(out string) string {
	var b [6]byte
	rand.Read(b[:])
	return filepath.Join(filepath.Dir(out), "."+filepath.Base(out)+".tmp-"+hex.EncodeToString(b[:]))
}

// prepareOutput checks the output path and creates its directory.
func prepareOutput(req Request) error {
	if req.Output == "" {
		return errors.New("no output path given")
	}
	return os.MkdirAll(filepath.Dir(req.Output), 0o755)
}

// label is the ext4 volume label for a guest (at most 16 bytes).
func label(guest string) string {
	if len(guest) > 16 {
		guest = guest[:16]
	}
	return guest
}

// wrapTooSmall turns the ext4 writer's size error into a *SizeError.
func wrapTooSmall(req Request, err error) error {
	var ts *ext4.TooSmallError
	if errors.As(err, &ts) {
		return &SizeError{Guest: req.Guest, Type: req.Type, GivenMB: int(ts.Given / MiB),
			NeededMB: int((ts.Need + MiB - 1) / MiB), What: "the ext4 writer"}
	}
	return err
}

// ---- rootfs_dir ----

// rootfsDir builds an ext4 image from a directory (ext4.FromDir): owners,
// modes, hardlinks, devices and xattrs as found on disk, no root needed for
// writing (reading a tree owned by other users may need it).
type rootfsDir struct{}

func (rootfsDir) Type() string  { return TypeRootfsDir }
func (rootfsDir) Tools() []Tool { return nil }

func (rootfsDir) Check(req Request) error {
	if _, err := statKind(req, true); err != nil {
		return reqError(req, err)
	}
	return nil
}

func (h rootfsDir) Estimate(ctx context.Context, req Request) (int64, error) {
	if err := h.Check(req); err != nil {
		return 0, err
	}
	// ext4.EstimateDir takes no context: run it aside and stop waiting
	// when ctx ends (the walk only reads metadata and ends on its own).
	type result struct {
		n   int64
		err error
	}
	rc := make(chan result, 1)
	src, err := dirSource(req)
	if err != nil {
		return 0, err
	}
	go func() {
		n, err := ext4EstimateDir(src)
		rc <- result{n, err}
	}()
	var r result
	select {
	case r = <-rc:
	case <-ctx.Done():
		return 0, reqError(req, ctx.Err())
	}
	if r.err != nil {
		return 0, reqError(req, r.err)
	}
	n := r.n
	return n, checkFSSize(req, n, fmt.Sprintf("the content of %s (%d MB estimated)", req.Source, (n+MiB-1)/MiB))
}

func (h rootfsDir) Import(ctx context.Context, req Request) error {
	n, err := h.Estimate(ctx, req)
	if err != nil {
		return err
	}
	if err := prepareOutput(req); err != nil {
		return reqError(req, err)
	}
	src, err := dirSource(req)
	if err != nil {
		return err
	}
	opt := ext4.Options{SizeBytes: fsSizeBytes(req, n), Epoch: req.Epoch, Label: label(req.Guest)}
	if err := ext4FromDir(ctx, src, req.Output, opt); err != nil {
		return reqError(req, wrapTooSmall(req, err))
	}
	return nil
}

// dirSource resolves a source directory given through symlinks (a
// XEN_GUEST_SOURCE_FILE that is a link to the tree): the tree is read from
// its real path, never the link itself as its root.
func dirSource(req Request) (string, error) {
	src, err := filepath.EvalSymlinks(req.Source)
	if err != nil {
		return "", reqError(req, err)
	}
	return src, nil
}

// ---- rootfs_tar ----

// rootfsTar builds an ext4 image from a tar archive without extracting it:
// file → decompressor → tarsafe.Sanitize → ext4.FromTar. Estimate reads the whole
// archive once (and caches the result per file size and mtime), so unsafe or
// corrupt archives are reported before any image is written.
type rootfsTar struct {
	mu    sync.Mutex
	cache map[tarKey]*usage
}

type tarKey struct {
	path  string
	size  int64
	mtime time.Time
}

func (*rootfsTar) Type() string  { return TypeRootfsTar }
func (*rootfsTar) Tools() []Tool { return nil }

func (*rootfsTar) Check(req Request) error {
	if _, err := statKind(req, false); err != nil {
		return reqError(req, err)
	}
	f, err := os.Open(req.Source)
	if err != nil {
		return reqError(req, err)
	}
	defer f.Close()
	r, _, err := Decompress(f)
	if err != nil {
		return reqError(req, err)
	}
	r.Close()
	return nil
}

func (h *rootfsTar) usage(ctx context.Context, req Request) (*usage, error) {
	if err := h.Check(req); err != nil {
		return nil, err
	}
	fi, err := os.Stat(req.Source)
	if err != nil {
		return nil, reqError(req, err)
	}
	key := tarKey{req.Source, fi.Size(), fi.ModTime()}
	h.mu.Lock()
	u := h.cache[key]
	h.mu.Unlock()
	if u != nil {
		return u, nil
	}
	f, err := os.Open(req.Source)
	if err != nil {
		return nil, reqError(req, err)
	}
	defer f.Close()
	r, _, err := Decompress(f)
	if err != nil {
		return nil, reqError(req, err)
	}
	defer r.Close()
	u, err = estimateTar(ctx, r, h.sanitizeOptions(req))
	if errors.Is(err, tarsafe.ErrContentLimit) && req.SizeMB > 0 && !errors.Is(err, tarsafe.ErrFileSize) {
		return nil, &SizeError{Guest: req.Guest, Type: req.Type, GivenMB: req.SizeMB, NeededMB: req.SizeMB + 1,
			What: fmt.Sprintf("the content of %s (file data alone is larger than %d MB)", req.Source, req.SizeMB)}
	}
	if errors.Is(err, tarsafe.ErrContentLimit) && req.SizeMB == 0 && !errors.Is(err, tarsafe.ErrFileSize) {
		return nil, reqError(req, fmt.Errorf("%w; the largest image is %d MB (16 TiB)", err, MaxImageMB))
	}
	if err != nil {
		return nil, reqError(req, err)
	}
	h.mu.Lock()
	h.cache[key] = u
	h.mu.Unlock()
	return u, nil
}

func (*rootfsTar) sanitizeOptions(req Request) tarsafe.Options {
	// Content beyond the image size (or the largest image) cannot fit:
	// refused at the header that declares it, not after expanding it.
	opt := tarsafe.Options{Source: req.Source, Epoch: req.Epoch, MaxContent: MaxImageMB * MiB}
	if req.SizeMB > 0 {
		opt.MaxContent = int64(req.SizeMB) * MiB
	}
	return opt
}

func (h *rootfsTar) Estimate(ctx context.Context, req Request) (int64, error) {
	u, err := h.usage(ctx, req)
	if err != nil {
		return 0, err
	}
	n := u.bytes()
	return n, checkFSSize(req, n, fmt.Sprintf("the content of %s (%d entries, %d MB estimated)", req.Source, u.entries, (n+MiB-1)/MiB))
}

func (h *rootfsTar) Import(ctx context.Context, req Request) error {
	u, err := h.usage(ctx, req)
	if err != nil {
		return err
	}
	n := u.bytes()
	if err := checkFSSize(req, n, fmt.Sprintf("the content of %s (%d entries, %d MB estimated)", req.Source, u.entries, (n+MiB-1)/MiB)); err != nil {
		return err
	}
	if err := prepareOutput(req); err != nil {
		return reqError(req, err)
	}
	f, err := os.Open(req.Source)
	if err != nil {
		return reqError(req, err)
	}
	defer f.Close()
	dr, _, err := Decompress(f)
	if err != nil {
		return reqError(req, err)
	}
	defer dr.Close()
	size := fsSizeBytes(req, n)
	opt := h.sanitizeOptions(req)
	opt.MaxContent = size
	sr := tarsafe.Sanitize(ctx, dr, opt)
	defer sr.Close()
	err = ext4FromTar(ctx, sr, req.Output, ext4.Options{SizeBytes: size, Epoch: req.Epoch, Label: label(req.Guest)})
	if err != nil {
		return reqError(req, wrapTooSmall(req, err))
	}
	// The writer may stop at the end-of-archive marker; drain so that a
	// corrupt compressed tail is still reported.
	if _, err := io.Copy(io.Discard, sr); err != nil {
		os.Remove(req.Output)
		return reqError(req, err)
	}
	return nil
}

// ---- qcow2 ----

// qcow2Handler converts a qcow2 image to a sparse raw image in process
// (pkg/disk/qcow2); qemu-img is not needed. Backing files are confined:
// a relative name inside the source's directory (or Request.BackingDir)
// with an explicit format, see qcow2.Options.
type qcow2Handler struct{}

func (qcow2Handler) Type() string  { return TypeQcow2 }
func (qcow2Handler) Tools() []Tool { return nil }

// qcow2Options are the reader options for req: the backing file rules.
func qcow2Options(req Request) qcow2.Options {
	var o qcow2.Options
	if req.BackingDir != "" {
		o.BackingDirs = []string{req.BackingDir}
	}
	return o
}

// backingHint adds to a refused backing file what setting allows another
// directory.
func backingHint(req Request, err error) error {
	if !errors.Is(err, qcow2.ErrBackingRefused) {
		return err
	}
	return fmt.Errorf("%w; to allow backing files in another directory set %s[%s] (manifest: source.backingDir; xenbundle import: --backing-dir DIR)", err, SettingBackingDir, req.Guest)
}

// Qcow2BackingChain returns the backing files of the qcow2 source of req
// (nearest first), checked by the same rules as an import.
func Qcow2BackingChain(req Request) ([]string, error) {
	img, err := qcow2.OpenOptions(req.Source, qcow2Options(req))
	if err != nil {
		return nil, reqError(req, backingHint(req, err))
	}
	defer img.Close()
	return img.BackingChain(), nil
}

// virtualSize opens the image (validating header and backing chain).
func (qcow2Handler) virtualSize(req Request) (int64, error) {
	if _, err := statKind(req, false); err != nil {
		return 0, err
	}
	img, err := qcow2.OpenOptions(req.Source, qcow2Options(req))
	if err != nil {
		return 0, backingHint(req, err)
	}
	defer img.Close()
	return img.Size(), nil
}

func (h qcow2Handler) Check(req Request) error {
	if _, err := h.virtualSize(req); err != nil {
		return reqError(req, err)
	}
	return nil
}

func (h qcow2Handler) Estimate(_ context.Context, req Request) (int64, error) {
	n, err := h.virtualSize(req)
	if err != nil {
		return 0, reqError(req, err)
	}
	return n, checkImageSize(req, n, "the qcow2 image's virtual size")
}

func (h qcow2Handler) Import(ctx context.Context, req Request) error {
	n, err := h.Estimate(ctx, req)
	if err != nil {
		return err
	}
	return writeImage(ctx, req, n, func(tmp string) error {
		return backingHint(req, qcow2ToRaw(ctx, req.Source, tmp, qcow2Options(req)))
	})
}

// ---- ext4, raw ----

// copyHandler copies an image file (reflink or sparse copy, pkg/sparse).
type copyHandler struct{ typ string }

func (h copyHandler) Type() string  { return h.typ }
func (h copyHandler) Tools() []Tool { return nil }

func (h copyHandler) Check(req Request) error {
	_, err := h.imageSize(req)
	return err
}

// imageSize validates the source and returns its size.
func (h copyHandler) imageSize(req Request) (int64, error) {
	fi, err := statKind(req, false)
	if err != nil {
		return 0, reqError(req, err)
	}
	if fi.Size() == 0 {
		return 0, reqError(req, fmt.Errorf("source %s is empty", req.Source))
	}
	if h.typ == TypeExt4 {
		if err := checkExt4(req.Source, fi.Size()); err != nil {
			return 0, reqError(req, err)
		}
	}
	return fi.Size(), nil
}

func (h copyHandler) Estimate(_ context.Context, req Request) (int64, error) {
	n, err := h.imageSize(req)
	if err != nil {
		return 0, err
	}
	return n, checkImageSize(req, n, "the "+h.typ+" image "+req.Source)
}

func (h copyHandler) Import(ctx context.Context, req Request) error {
	n, err := h.Estimate(ctx, req)
	if err != nil {
		return err
	}
	return writeImage(ctx, req, n, func(tmp string) error { return sparseCopy(ctx, req.Source, tmp) })
}

// checkImageSize validates an explicit size for an image import: it may be
// larger than the image (the output is extended) but not smaller.
func checkImageSize(req Request, size int64, what string) error {
	if req.SizeMB == 0 || int64(req.SizeMB)*MiB >= size {
		return nil
	}
	return &SizeError{Guest: req.Guest, Type: req.Type, NeededMB: int((size + MiB - 1) / MiB), GivenMB: req.SizeMB,
		What: fmt.Sprintf("%s (%d bytes)", what, size)}
}

// writeImage runs write to a temporary file next to req.Output, extends it
// to SizeMB when that is larger than size, and renames it into place.
func writeImage(ctx context.Context, req Request, size int64, write func(tmp string) error) error {
	if err := prepareOutput(req); err != nil {
		return reqError(req, err)
	}
	tmp := tempName(req.Output)
	err := write(tmp)
	if err == nil && int64(req.SizeMB)*MiB > size {
		err = sparse.Extend(tmp, int64(req.SizeMB)*MiB)
	}
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = os.Rename(tmp, req.Output)
	}
	if err != nil {
		os.Remove(tmp)
		return reqError(req, err)
	}
	return nil
}

// checkExt4 checks the ext2/3/4 superblock magic and that the file is at
// least as long as the file system it holds.
func checkExt4(path string, fileSize int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		return fmt.Errorf("%s: not an ext4 image: cannot read the superblock at byte 1024: %w", path, err)
	}
	return checkSuperblock(path, sb, fileSize)
}

// checkSuperblock validates a 1024-byte ext2/3/4 superblock.
func checkSuperblock(path string, sb []byte, fileSize int64) error {
	if len(sb) < 1024 {
		return fmt.Errorf("%s: superblock is %d bytes, want 1024", path, len(sb))
	}
	le := binary.LittleEndian
	if m := le.Uint16(sb[56:]); m != 0xef53 {
		what := ""
		if s := sniffHead(path); s != "" {
			what = "; the file looks like " + s
		}
		return fmt.Errorf("%s: not an ext4 image: superblock magic at byte 1080 is %#04x, want 0xef53%s", path, m, what)
	}
	logBlock := le.Uint32(sb[24:])
	if logBlock > 6 {
		return fmt.Errorf("%s: corrupt ext4 superblock: block size 2^(10+%d) at byte 1048", path, logBlock)
	}
	blocks := uint64(le.Uint32(sb[4:]))
	if le.Uint32(sb[0x60:])&0x80 != 0 { // INCOMPAT_64BIT
		blocks |= uint64(le.Uint32(sb[0x150:])) << 32
	}
	fsBytes := blocks << (10 + logBlock)
	if blocks >= 1<<(63-16) || int64(fsBytes) > fileSize {
		return fmt.Errorf("%s: ext4 image is truncated: the file system spans %d blocks of %d bytes (%d bytes) but the file has %d bytes",
			path, blocks, 1024<<logBlock, fsBytes, fileSize)
	}
	return nil
}

// sniffHead names the format of a file's first bytes, if recognisable.
func sniffHead(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if c, err := DetectCompression(head); err == nil {
		if c == None {
			return "a tar archive (use rootfs_tar)"
		}
		return "a " + string(c) + " stream (use rootfs_tar for compressed tarballs)"
	}
	if bytes.HasPrefix(head, []byte("QFI\xfb")) {
		return "a qcow2 image (use qcow2)"
	}
	return ""
}
