// Package ext4 builds ext4 file system images from tar streams and
// directories without root privileges, loop devices or extraction to disk,
// and edits existing ext4 images without mounting them (see Image).
//
// # Building images
//
// FromTar, FromDir and FromTrees write the image in one streaming pass with
// our own writer (internal/writer), written from the ext4 on-disk format
// and checked against e2fsprogs. We do not call `mkfs.ext4 -d` because
// mkfs cannot read a tar stream (e2fsprogs 1.47.0), cannot record foreign
// owners or device nodes from a rootless staging directory, and is only
// reproducible with a handful of environment tricks; the writer is also
// faster (see bench_test.go).
//
// File data is copied to its final place as it streams in; all-zero 4 KiB
// blocks are left as holes, and the holes of a sparse source file are
// skipped without reading them. What is kept in memory until the end is
// per entry, not per byte: an inode record (about 200 bytes), the
// directory entry and, for files of more than four extents, nothing more
// (their extent blocks are written next to the data). Directories,
// inode tables, bitmaps and the journal are laid out after the data once
// everything is known.
//
// The images have what a current mkfs.ext4 writes where it matters to a
// guest: 4 KiB blocks and 256-byte inodes with extra_isize (nanosecond
// times and creation time, room for inline xattrs); extent (extent trees
// of any depth, files up to 16 TiB); large_file and huge_file; filetype;
// dir_index (directories larger than one block are htrees with half_md4
// hashes seeded from the superblock, so a 50,000-entry directory is fast
// in the guest); dir_nlink; ext_attr (user.*, trusted.*, security.* such
// as security.capability, system.* and POSIX ACLs converted to ext4's own
// ACL format, inline in the inode or in an xattr block); flex_bg (bitmaps
// and inode tables packed per 16 groups); sparse_super (superblock and
// descriptor backups in groups 0, 1 and powers of 3, 5 and 7); has_journal
// (an empty, valid jbd2 journal in inode 8, sized like mke2fs does, so a
// guest that mounts the image read-write survives a crash); and
// metadata_csum (crc32c on the superblock, descriptors, bitmaps, inodes,
// extent blocks, directory blocks and htree nodes, xattr blocks). Left out:
// 64bit (only needed past 16 TiB), resize_inode (online growth still works
// through meta_bg), orphan_file and the journal's own checksum feature
// (mke2fs 1.47.0 does not set it either; the kernel enables it when it
// first uses the journal). No blocks are reserved for root. lost+found is
// made like mke2fs makes it (16 KiB).
//
// Entries replace earlier ones with the same path, as tar and container
// layers do ("last one wins"): a file replaces a file (hard links to the
// old one keep the old data), a directory entry for an existing directory
// updates its metadata, and anything else removes the old entry (with all
// it contains) first. Parent directories that are symlinks are followed
// inside the image, chroot-style, like tar extraction through a symlinked
// directory. Blocks of replaced files become free space.
//
// # Sizing
//
// With Options.SizeBytes set, the file system spans floor(SizeBytes/4096)
// blocks (less the last group if it would be too small to hold its backup
// superblock) and the image file is exactly SizeBytes long. With SizeBytes
// 0 the size is automatic: the blocks in use (data, directories, inode
// tables, bitmaps, descriptors and journal) plus 10 % plus 16 MiB, rounded
// up to a whole MiB; automatic sizes stop at 1 TiB.
// The inode count is Options.Inodes when set, else the larger of 1.25 x
// the used inodes + 64 and one inode per 16 KiB of file system (mke2fs's
// default ratio), rounded up to whole inode table blocks per group.
// The journal is mke2fs's size for the file system (4 MiB below 128 MiB,
// 16 MiB below 1 GiB, 32 MiB below 2 GiB, 64 MiB below 16 GiB, up to 1
// GiB); when a given size is too tight for it the journal is halved down
// to jbd2's minimum of 4 MiB, and left out below that (and below 8 MiB,
// like mke2fs). When the content does not fit, the error wraps ErrTooSmall
// and is a *TooSmallError carrying the needed and the given size and the
// first entry that did not fit.
//
// # Reproducibility
//
// The same input gives a byte-identical image: directory entries and inode
// numbers follow the input order (FromDir walks in lexical order), the
// UUID, the directory hash seed and the journal UUID are derived from a
// SHA-256 of the entries and their data, and the superblock times are
// Options.Epoch, or the newest mtime of the content when Epoch is nil (but
// not later than now: e2fsck rejects superblock times in the future).
// With Epoch set, every inode time newer than it is clamped to it. Output
// is sparse: all-zero blocks are never written.
package ext4

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/vxn-dev/vxn/pkg/disk/ext4/internal/writer"
)

// Options control how an image is built.
type Options struct {
	// SizeBytes is the image size. 0 means automatic: the blocks in use
	// plus 10 % plus 16 MiB, rounded up to a MiB (see the package comment).
	SizeBytes int64
	// Inodes is the number of inodes the file system has (rounded up to
	// whole inode table blocks per block group). 0 means automatic: 1.25 x
	// the used inodes + 64, at least one per 16 KiB.
	Inodes int64
	// Epoch is SOURCE_DATE_EPOCH: inode times newer than it are clamped to
	// it and it is used for the superblock times. nil keeps times as they are.
	Epoch *time.Time
	// Label is the volume label (at most 16 bytes).
	Label string
}

// ErrTooSmall is returned (wrapped in a *TooSmallError) when the content
// does not fit in the requested size.
var ErrTooSmall = errors.New("ext4: image size too small for the content")

// TooSmallError reports the size the content needs and the size given.
type TooSmallError struct {
	Need  int64 // bytes the image would need at least
	Given int64 // bytes requested in Options.SizeBytes
	// Path is an entry that did not fit: the first one whose data passed
	// the end of the file system or, when only the metadata laid out after
	// the data did not fit, the last entry with data ("" if none).
	Path string
}

// Error implements error.
func (e *TooSmallError) Error() string {
	msg := fmt.Sprintf("ext4: image size too small for the content: need at least %d bytes (%d MiB), given %d bytes",
		e.Need, (e.Need+(1<<20)-1)>>20, e.Given)
	if e.Path != "" {
		msg += fmt.Sprintf(" (at entry %q)", e.Path)
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrTooSmall) true.
func (e *TooSmallError) Unwrap() error { return ErrTooSmall }

const blockSize = writer.BlockSize

// maxFileSize limits regular files (0: only ext4's limit). The fuzz test
// lowers it: a tiny sparse tar entry can expand to gigabytes.
var maxFileSize int64

// builder drives the writer for one image.
type builder struct {
	ctx     context.Context
	opt     Options
	out     string
	tmp     *os.File
	w       *writer.Writer
	maxTime int64
	epoch   int64
}

func newBuilder(ctx context.Context, out string, opt Options) (*builder, error) {
	if len(opt.Label) > 16 {
		return nil, fmt.Errorf("ext4: label %q is longer than 16 bytes", opt.Label)
	}
	if opt.SizeBytes < 0 {
		return nil, fmt.Errorf("ext4: negative image size %d", opt.SizeBytes)
	}
	if opt.SizeBytes > 0 && opt.SizeBytes/blockSize > 1<<32-1 {
		return nil, fmt.Errorf("ext4: image size %d is larger than 16 TiB", opt.SizeBytes)
	}
	if opt.Inodes < 0 || opt.Inodes > 1<<32-1 {
		return nil, fmt.Errorf("ext4: inode count %d out of range (0 or 1..2^32-1)", opt.Inodes)
	}
	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("ext4: create image: %w", err)
	}
	cfg := writer.Config{Inodes: uint64(opt.Inodes), MaxFileSize: maxFileSize}
	if opt.SizeBytes > 0 {
		cfg.SizeBlocks = max(uint64(opt.SizeBytes/blockSize), 1)
	}
	w, err := writer.New(tmp, cfg)
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, fmt.Errorf("ext4: %w", err)
	}
	b := &builder{ctx: ctx, opt: opt, out: out, tmp: tmp, w: w}
	if opt.Epoch != nil {
		b.epoch = opt.Epoch.Unix()
	}
	return b, nil
}

// abort removes the temporary file.
func (b *builder) abort() {
	b.tmp.Close()
	os.Remove(b.tmp.Name())
}

// clamp applies the epoch to t and records the newest time seen.
func (b *builder) clamp(t time.Time) writer.Timestamp {
	if t.IsZero() {
		return writer.Timestamp{}
	}
	if b.opt.Epoch != nil && t.Unix() >= b.epoch {
		t = time.Unix(b.epoch, 0)
	}
	if s := t.Unix(); s > b.maxTime {
		b.maxTime = s
	}
	return writer.Timestamp{Sec: t.Unix(), Nsec: uint32(t.Nanosecond())}
}

// entry is one file to add, from a tar header or a directory walk.
type entry struct {
	name         string // slash separated, relative
	mode         uint16 // S_IF* type and permission bits
	hardlink     string // non-empty: hard link to this earlier name
	symlink      string
	size         int64
	uid, gid     int64
	major, minor int64
	mtime        time.Time
	atime, ctime time.Time // zero: use mtime
	xattrs       map[string][]byte
}

// File type bits of entry.mode.
const (
	typeMask = 0xf000
	sIFSOCK  = 0xc000
	sIFLNK   = 0xa000
	sIFREG   = 0x8000
	sIFBLK   = 0x6000
	sIFDIR   = 0x4000
	sIFCHR   = 0x2000
	sIFIFO   = 0x1000
)

// cleanName turns an archive name into the writer's form ("" is the root).
func cleanName(n string) string {
	c := path.Clean("/" + n)
	return c[1:]
}

func (b *builder) add(e *entry, data io.Reader) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	name := cleanName(e.name)
	if e.hardlink != "" {
		target := cleanName(e.hardlink)
		if target == "" {
			return errors.New("hard link to the root directory")
		}
		return b.w.Link(target, name)
	}
	if e.uid < 0 || e.uid > 1<<32-1 || e.gid < 0 || e.gid > 1<<32-1 {
		return fmt.Errorf("owner %d:%d out of range", e.uid, e.gid)
	}
	if e.major < 0 || e.major > 0xfff || e.minor < 0 || e.minor > 0xfffff {
		return fmt.Errorf("device number %d,%d out of range", e.major, e.minor)
	}
	if len(e.symlink) >= blockSize {
		return fmt.Errorf("symlink target is %d bytes, longer than %d", len(e.symlink), blockSize-1)
	}
	if e.mode&typeMask == sIFLNK && e.symlink == "" {
		return errors.New("symlink with an empty target")
	}
	at, ct := e.atime, e.ctime
	if at.IsZero() {
		at = e.mtime
	}
	if ct.IsZero() {
		ct = e.mtime
	}
	mt := b.clamp(e.mtime)
	f := &writer.File{
		Mode:    e.mode,
		UID:     uint32(e.uid),
		GID:     uint32(e.gid),
		Mtime:   mt,
		Atime:   b.clamp(at),
		Ctime:   b.clamp(ct),
		Crtime:  mt,
		Symlink: e.symlink,
		Major:   uint32(e.major),
		Minor:   uint32(e.minor),
		Xattrs:  e.xattrs,
	}
	if e.mode&typeMask == sIFREG {
		f.Size = e.size
		if data != nil {
			if _, ok := data.(*os.File); !ok {
				data = &ctxReader{ctx: b.ctx, r: data}
			}
		}
	}
	return b.w.Create(name, f, data)
}

// finish lays out the metadata, writes the superblock and renames the image
// into place.
func (b *builder) finish() error {
	t := b.maxTime
	if b.opt.Epoch != nil {
		t = b.epoch
	} else if now := time.Now().Unix(); t > now {
		t = now // e2fsck rejects superblock times in the future
	}
	t = min(max(t, 0), 1<<32-1)
	res, err := b.w.Finish(writer.Params{Label: b.opt.Label, Time: t})
	var need *writer.NeedError
	if errors.As(err, &need) {
		return &TooSmallError{Need: int64(need.NeedBlocks) * blockSize, Given: b.opt.SizeBytes, Path: need.Path}
	}
	if err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	size := b.opt.SizeBytes
	if size == 0 {
		size = int64(res.Blocks) * blockSize
	}
	if err := b.tmp.Truncate(size); err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	if err := b.tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	if err := b.tmp.Close(); err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	if err := os.Rename(b.tmp.Name(), b.out); err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	return nil
}

// protect runs fn and turns a panic into an error, so that odd input can
// never crash the caller (a safety net: the writer returns errors).
func protect(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ext4: internal error: %v", r)
		}
	}()
	return fn()
}
