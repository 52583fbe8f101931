// Package ext4 builds ext4 file system images from tar streams and
// directories without root privileges, loop devices or extraction to disk,
// and edits existing ext4 images without mounting them (see Image).
//
// # Building images
//
// FromTar and FromDir write the image in one streaming pass with a pure-Go
// writer (internal/compactext4, a fork of hcsshim's ext4 writer). We use our
// own writer instead of `mkfs.ext4 -d` because mkfs cannot read a tar stream
// (e2fsprogs 1.47.0), cannot record foreign owners or device nodes from a
// rootless staging directory, and is only reproducible with a handful of
// environment tricks; the fork is also 2-3x faster. We forked instead of
// calling hcsshim's tar2ext4 because its writer is internal and only emits a
// compact image with zero free blocks, the read-only feature flag, an inode
// count fitted to the content and an inode bitmap that e2fsck rejects.
//
// The images have the features ext_attr, dir_index, filetype, extent,
// flex_bg, sparse_super2, large_file, huge_file and extra_isize, 4 KiB blocks
// and 256-byte inodes. They have no journal: they are build artifacts that a
// guest mounts read-write fine without one, and leaving it out keeps them
// small and byte-reproducible (add one later with `tune2fs -O has_journal`
// if wanted). No blocks are reserved for root.
//
// # Sizing
//
// With Options.SizeBytes set, the file system spans floor(SizeBytes/4096)
// blocks and the image file is exactly SizeBytes long. With SizeBytes 0 the
// size is automatic: the blocks the content needs (data, directories,
// xattr blocks, inode tables, bitmaps, group descriptors) plus 10 % of that
// plus 16 MiB of free space, rounded up to a whole MiB.
// Either way the inode count is the larger of 1.25 x the used inodes + 64
// and one inode per 16 KiB of file system (mke2fs's default ratio). When the
// content does not fit, the error wraps ErrTooSmall and is a *TooSmallError
// carrying the needed and the given size.
//
// # Reproducibility
//
// The same input gives a byte-identical image: directory entries and inode
// numbers follow the input order (FromDir walks in lexical order), the UUID
// and directory hash seed are derived from a SHA-256 of everything written,
// and the superblock times are Options.Epoch, or the newest mtime of the
// content when Epoch is nil. With Epoch set, every inode time newer than it
// is clamped to it. Output is sparse: all-zero blocks are never written.
package ext4

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/vxn-dev/vxn/pkg/disk/ext4/internal/compactext4"
)

// Options control how an image is built.
type Options struct {
	// SizeBytes is the image size. 0 means automatic: the content's blocks
	// plus 10 % plus 16 MiB, rounded up to a MiB (see the package comment).
	SizeBytes int64
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
}

// Error implements error.
func (e *TooSmallError) Error() string {
	return fmt.Sprintf("ext4: image size too small for the content: need at least %d bytes (%d MiB), given %d bytes",
		e.Need, (e.Need+(1<<20)-1)>>20, e.Given)
}

// Unwrap makes errors.Is(err, ErrTooSmall) true.
func (e *TooSmallError) Unwrap() error { return ErrTooSmall }

const (
	blockSize = compactext4.BlockSize
	// gdReserve is the file system size the group descriptor area is
	// reserved for when writing starts; unused descriptor blocks are freed.
	gdReserve = 1 << 40
	// inodeRatio is mke2fs's default bytes-per-inode.
	inodeRatio = 16384
	// autoHeadroom is the fixed part of the free space of an automatic size.
	autoHeadroom = 16 << 20
)

// maxFileSize limits regular files (0: only the writer's 128 GiB limit). The
// fuzz test lowers it: a tiny sparse tar entry can expand to gigabytes.
var maxFileSize int64

// builder drives the writer for one image.
type builder struct {
	ctx     context.Context
	opt     Options
	out     string
	tmp     *os.File
	sf      *sparseFile
	w       *compactext4.Writer
	maxTime int64
	epoch   int64
	buf     []byte
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
	dir, base := filepath.Split(out)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("ext4: create image: %w", err)
	}
	b := &builder{ctx: ctx, opt: opt, out: out, tmp: tmp}
	b.sf = &sparseFile{f: tmp, h: sha256.New()}
	max := int64(gdReserve)
	if opt.SizeBytes > max {
		max = opt.SizeBytes
	}
	b.w = compactext4.NewWriter(b.sf, compactext4.MaximumDiskSize(max))
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
func (b *builder) clamp(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	if b.opt.Epoch != nil && t.Unix() >= b.epoch {
		t = time.Unix(b.epoch, 0)
	}
	if s := t.Unix(); s > b.maxTime {
		b.maxTime = s
	}
	return t
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
		if err := b.w.MakeParents(name); err != nil {
			return err
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
	if e.mode&compactext4.TypeMask == compactext4.S_IFLNK && e.symlink == "" {
		return errors.New("symlink with an empty target")
	}
	for k, v := range e.xattrs {
		if len(k) == 0 || len(k) > 255 {
			return fmt.Errorf("xattr name %q: length must be 1..255", k)
		}
		if len(v) > blockSize-64 {
			return fmt.Errorf("xattr %q: value of %d bytes does not fit in a block", k, len(v))
		}
	}
	mt := b.clamp(e.mtime)
	at, ct := e.atime, e.ctime
	if at.IsZero() {
		at = e.mtime
	}
	if ct.IsZero() {
		ct = e.mtime
	}
	f := &compactext4.File{
		Linkname: e.symlink,
		Mode:     e.mode,
		Uid:      uint32(e.uid),
		Gid:      uint32(e.gid),
		Mtime:    mt,
		Atime:    b.clamp(at),
		Ctime:    b.clamp(ct),
		Crtime:   mt,
		Devmajor: uint32(e.major),
		Devminor: uint32(e.minor),
		Xattrs:   e.xattrs,
	}
	if e.mode&compactext4.TypeMask == compactext4.S_IFREG {
		f.Size = e.size
		if maxFileSize > 0 && f.Size > maxFileSize {
			return fmt.Errorf("file of %d bytes exceeds the limit of %d", f.Size, maxFileSize)
		}
	}
	if err := b.w.MakeParents(name); err != nil {
		return err
	}
	if err := b.w.Create(name, f); err != nil {
		return err
	}
	if f.Size > 0 {
		if b.buf == nil {
			b.buf = make([]byte, 1<<20)
		}
		src := &ctxReader{ctx: b.ctx, r: io.LimitReader(data, f.Size)}
		n, err := io.CopyBuffer(b.w, src, b.buf)
		if err != nil {
			return err
		}
		if n != f.Size {
			return fmt.Errorf("short file data: got %d of %d bytes", n, f.Size)
		}
	}
	return nil
}

// finish lays out the metadata, writes the superblock and renames the image
// into place.
func (b *builder) finish() error {
	w := b.w
	if err := w.Flush(); err != nil {
		return err
	}
	data, inodes, gd := w.DataBlocks(), w.Inodes(), w.GDBlocks()
	minInodes := func(blocks uint32) uint32 {
		n := uint64(inodes) + uint64(inodes)/4 + 64
		if r := uint64(blocks) * blockSize / inodeRatio; r > n {
			n = r
		}
		if n > 1<<32-1 {
			n = 1<<32 - 1
		}
		return uint32(n)
	}
	// need finds the smallest size >= start (in blocks) that fits, adding
	// extra blocks of headroom on top of the metadata.
	need := func(start uint32, headroom func(uint32) uint32) (compactext4.Layout, error) {
		s := start
		for i := 0; i < 64; i++ {
			l, ok := compactext4.Plan(data, gd, s, minInodes(s))
			if ok {
				return l, nil
			}
			next := uint64(l.EndBlocks) + uint64(headroom(l.EndBlocks))
			if next <= uint64(s) {
				next = uint64(s) + uint64(s)/64 + 1
			}
			if next > 1<<32-1 {
				break
			}
			s = uint32(next)
		}
		return compactext4.Layout{}, fmt.Errorf("ext4: content of %d blocks and %d inodes does not fit in any supported file system size", data, inodes)
	}
	var l compactext4.Layout
	size := b.opt.SizeBytes
	if size > 0 {
		var ok bool
		blocks := uint32(size / blockSize)
		l, ok = compactext4.Plan(data, gd, blocks, minInodes(blocks))
		if !ok {
			nl, err := need(blocks, func(uint32) uint32 { return 0 })
			if err != nil {
				return err
			}
			return &TooSmallError{Need: int64(nl.SizeBlocks) * blockSize, Given: size}
		}
	} else {
		auto := func(content uint32) uint32 {
			h := uint64(content)/10 + autoHeadroom/blockSize
			t := uint64(content) + h
			t = (t + 255) / 256 * 256 // whole MiB
			return uint32(min(t, 1<<32-256) - uint64(content))
		}
		var err error
		l, err = need(data+auto(data), auto)
		if err != nil {
			return err
		}
		// Round the final size to a MiB as well.
		if r := (l.SizeBlocks + 255) / 256 * 256; r != l.SizeBlocks {
			if l2, ok := compactext4.Plan(data, gd, r, minInodes(r)); ok {
				l = l2
			}
		}
		size = int64(l.SizeBlocks) * blockSize
	}
	t := b.maxTime
	if b.opt.Epoch != nil {
		t = b.epoch
	}
	if t < 0 {
		t = 0
	}
	if t > 1<<32-1 {
		t = 1<<32 - 1
	}
	if err := w.Finish(l, uint32(t)); err != nil {
		return err
	}
	sum := b.sf.h.Sum(nil)
	var p compactext4.SuperblockParams
	copy(p.UUID[:], sum[:16])
	p.UUID[6] = p.UUID[6]&0x0f | 0x50 // name-based (SHA) UUID, version 5
	p.UUID[8] = p.UUID[8]&0x3f | 0x80 // RFC 4122 variant
	copy(p.HashSeed[:], sum[16:32])
	p.Label = b.opt.Label
	p.Time = uint32(t)
	if err := w.WriteSuperblock(p); err != nil {
		return err
	}
	if b.sf.err != nil {
		return b.sf.err
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

// sparseFile is the writer's backing file: it skips all-zero blocks that
// were never written (leaving holes) and hashes everything else together
// with its offset (the hash seeds the UUID).
type sparseFile struct {
	f   *os.File
	pos int64
	hw  int64 // high-water mark: bytes at or past hw were never written
	h   hash.Hash
	err error
}

var zeroBlock [blockSize]byte

func (s *sparseFile) Write(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	total := len(p)
	pos := s.pos
	for len(p) > 0 {
		// Find a run of non-zero (or previously written) chunks.
		n := chunkLen(pos, len(p))
		if pos >= s.hw && n == blockSize && [blockSize]byte(p[:blockSize]) == zeroBlock {
			p = p[n:]
			pos += int64(n)
			continue
		}
		run := n
		for run < len(p) {
			m := chunkLen(pos+int64(run), len(p)-run)
			if pos+int64(run) >= s.hw && m == blockSize && [blockSize]byte(p[run:run+blockSize]) == zeroBlock {
				break
			}
			run += m
		}
		var off [8]byte
		binary.LittleEndian.PutUint64(off[:], uint64(pos))
		s.h.Write(off[:])
		s.h.Write(p[:run])
		if _, err := s.f.WriteAt(p[:run], pos); err != nil {
			s.err = fmt.Errorf("ext4: write image: %w", err)
			return 0, s.err
		}
		p = p[run:]
		pos += int64(run)
	}
	s.pos = pos
	if pos > s.hw {
		s.hw = pos
	}
	return total, nil
}

// chunkLen is the length of the chunk at pos: up to the next block boundary.
func chunkLen(pos int64, left int) int {
	n := blockSize - int(pos%blockSize)
	if n > left {
		n = left
	}
	return n
}

func (s *sparseFile) Read(p []byte) (int, error) {
	n, err := s.f.ReadAt(p, s.pos)
	s.pos += int64(n)
	if err == io.EOF && n == len(p) {
		err = nil
	}
	if err == io.EOF && n < len(p) {
		// Past the written part: holes read as zeros.
		clear(p[n:])
		s.pos += int64(len(p) - n)
		n, err = len(p), nil
	}
	return n, err
}

func (s *sparseFile) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
		s.pos = off
	case io.SeekCurrent:
		s.pos += off
	default:
		return 0, errors.New("ext4: unsupported seek")
	}
	return s.pos, nil
}

// protect runs fn and turns a panic in the writer into an error, so that odd
// input can never crash the caller.
func protect(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ext4: internal error: %v", r)
		}
	}()
	return fn()
}
