package writer

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"
)

// Config sets up a Writer.
type Config struct {
	// SizeBlocks is the file system size in blocks; 0 means automatic.
	SizeBlocks uint64
	// Inodes is the inode count to provide; 0 means automatic.
	Inodes uint64
	// MaxFileSize, when positive, limits regular files.
	MaxFileSize int64
}

// File describes one file to create.
type File struct {
	Mode          uint16 // type and permission bits (S_IF*)
	UID, GID      uint32
	Atime, Ctime  Timestamp
	Mtime, Crtime Timestamp
	Size          int64 // regular files: bytes of data to read
	Symlink       string
	Major, Minor  uint32
	Xattrs        map[string][]byte
}

// inode states.
const (
	stateUsed     = 1
	stateFreed    = 2
	stateImplicit = 4 // a directory created as a parent, without its own entry
)

// inode is an inode kept in memory until the inode tables are written.
type inode struct {
	mode          uint16
	state         uint8
	uid, gid      uint32
	links         uint32
	flags         uint32
	size          uint64
	blocks        uint64 // file system blocks used (data, tree, xattr)
	atime, ctime  Timestamp
	mtime, crtime Timestamp
	iblock        [60]byte
	xblock        uint32
	xinline       []byte
	dir           int32 // index in Writer.dirs, -1 for non-directories
}

// dirNode holds a directory's entries until its blocks are written.
type dirNode struct {
	ino       uint32
	parent    uint32
	names     []string
	inos      []uint32 // 0: removed
	index     map[string]int32
	minBlocks int
}

func (d *dirNode) lookup(name string) (uint32, bool) {
	i, ok := d.index[name]
	if !ok {
		return 0, false
	}
	return d.inos[i], true
}

func (d *dirNode) add(name string, ino uint32) {
	d.index[name] = int32(len(d.names))
	d.names = append(d.names, name)
	d.inos = append(d.inos, ino)
}

func (d *dirNode) remove(name string) {
	if i, ok := d.index[name]; ok {
		d.inos[i] = 0
		d.names[i] = ""
		delete(d.index, name)
	}
}

// span is a run of blocks.
type span struct{ start, n uint64 }

// patch is a metadata block written before the checksum seed was known.
type patch struct {
	block uint64
	ino   uint32 // extent blocks: owner inode; 0: xattr block
}

// Writer builds one file system. Its methods are not safe for concurrent
// use. Every method returns errors rather than panicking on any input.
type Writer struct {
	f        *os.File
	cfg      Config
	gdtRes   uint64 // descriptor blocks reserved in each backup area
	cursor   uint64 // next block the allocator hands out
	over     bool   // past a fixed size: blocks are counted, not written
	overAt   string // the entry that first did not fit
	lastData string // the last entry that was given blocks
	inodes   []inode
	dirs     []*dirNode
	targets  map[uint32]string // slow symlink targets
	freed    []span
	patches  []patch
	h        hash.Hash
	buf      []byte
	blk      []byte
	cur      string // entry being added, for errors
	// finishing: the allocator no longer checks the fixed size; dry:
	// nothing is written (a layout trial).
	finishing, dry bool
	journalStart   uint64
}

// New returns a Writer that writes the image into f (an empty file).
func New(f *os.File, cfg Config) (*Writer, error) {
	if cfg.SizeBlocks > maxBlocks {
		return nil, fmt.Errorf("file system of %d blocks is larger than the %d blocks ext4 addresses without the 64bit feature", cfg.SizeBlocks, uint64(maxBlocks))
	}
	if cfg.Inodes > 1<<32-1 {
		return nil, fmt.Errorf("%d inodes requested, more than 2^32-1", cfg.Inodes)
	}
	w := &Writer{f: f, cfg: cfg, h: sha256.New(), targets: map[uint32]string{}, blk: make([]byte, BlockSize)}
	// The descriptor table is reserved for the largest file system the
	// image can become: the fixed size, or 1 TiB when sized automatically.
	maxSize := cfg.SizeBlocks
	if maxSize == 0 {
		maxSize = 1 << 28
	}
	w.gdtRes = gdtBlocks(groupsFor(maxSize))
	w.cursor = 1 + w.gdtRes
	w.inodes = make([]inode, firstIno, 1024)
	for i := range w.inodes {
		w.inodes[i].dir = -1
	}
	// The root directory and lost+found (sized to 16 KiB like mke2fs's).
	w.inodes[rootIno] = inode{mode: sIFDIR | 0o755, state: stateUsed | stateImplicit, dir: -1}
	w.newDir(rootIno, rootIno)
	lpf, _ := w.newInode(inode{mode: sIFDIR | 0o700, state: stateUsed | stateImplicit, dir: -1})
	w.newDir(lpf, rootIno)
	w.dirs[w.inodes[lpf].dir].minBlocks = 4
	w.dirs[w.inodes[rootIno].dir].add("lost+found", lpf)
	return w, nil
}

func groupsFor(blocks uint64) uint64 { return (blocks + blocksPerGroup - 1) / blocksPerGroup }

func gdtBlocks(groups uint64) uint64 { return (groups*descSize + BlockSize - 1) / BlockSize }

func (w *Writer) newDir(ino, parent uint32) {
	w.inodes[ino].dir = int32(len(w.dirs))
	w.dirs = append(w.dirs, &dirNode{ino: ino, parent: parent, index: map[string]int32{}})
}

// newInode allocates the next inode number.
func (w *Writer) newInode(in inode) (uint32, error) {
	n := uint64(len(w.inodes))
	if w.cfg.Inodes > 0 && n > w.cfg.Inodes {
		return 0, fmt.Errorf("more than %d inodes (Options.Inodes)", w.cfg.Inodes)
	}
	if n > maxInodesPerGroup*uint64(groupsFor(maxBlocks)) || n >= 1<<32-1 {
		return 0, fmt.Errorf("more than %d inodes", n-1)
	}
	w.inodes = append(w.inodes, in)
	return uint32(n), nil
}

func (w *Writer) dirOf(ino uint32) *dirNode {
	d := w.inodes[ino].dir
	if d < 0 {
		return nil
	}
	return w.dirs[d]
}

// splitPath splits a slash-separated path into its non-empty components.
func splitPath(p string) []string {
	parts := strings.Split(p, "/")
	out := parts[:0]
	for _, c := range parts {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return out
}

func checkName(c string) error {
	if len(c) > maxNameLen {
		return fmt.Errorf("name %.40q... is %d bytes, longer than ext4's limit of %d", c, len(c), maxNameLen)
	}
	if strings.IndexByte(c, 0) >= 0 {
		return fmt.Errorf("name %q contains a NUL byte", c)
	}
	return nil
}

// symlinkTarget returns the target of a symlink inode.
func (w *Writer) symlinkTarget(ino uint32) string {
	if t, ok := w.targets[ino]; ok {
		return t
	}
	in := &w.inodes[ino]
	return string(in.iblock[:min(in.size, 60)])
}

// resolveDir walks the directory components of p from the root, following
// symlinks chroot-style (".." of the root is the root). With create,
// missing directories are made (mode 0755, owner root). It returns the
// directory inode and the final component ("" for the root itself).
func (w *Writer) resolveDir(p string, create bool) (uint32, string, error) {
	comps := splitPath(p)
	if len(comps) == 0 {
		return rootIno, "", nil
	}
	last := comps[len(comps)-1]
	if last == ".." {
		return 0, "", fmt.Errorf("path %q ends in \"..\"", p)
	}
	if err := checkName(last); err != nil {
		return 0, "", err
	}
	queue := append([]string(nil), comps[:len(comps)-1]...)
	cur := uint32(rootIno)
	hops := 0
	walked := ""
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		d := w.dirOf(cur)
		switch c {
		case ".", "":
			continue
		case "..":
			cur = d.parent
			continue
		}
		if err := checkName(c); err != nil {
			return 0, "", err
		}
		walked += "/" + c
		child, ok := d.lookup(c)
		if !ok {
			if !create {
				return 0, "", fmt.Errorf("%s: no such directory", walked)
			}
			ino, err := w.newInode(inode{mode: sIFDIR | 0o755, state: stateUsed | stateImplicit, dir: -1})
			if err != nil {
				return 0, "", err
			}
			w.newDir(ino, cur)
			d.add(c, ino)
			cur = ino
			continue
		}
		in := &w.inodes[child]
		switch in.mode & sIFMT {
		case sIFDIR:
			cur = child
		case sIFLNK:
			hops++
			if hops > maxHops {
				return 0, "", fmt.Errorf("%s: too many levels of symbolic links", walked)
			}
			t := w.symlinkTarget(child)
			if strings.HasPrefix(t, "/") {
				cur = rootIno
			}
			queue = append(splitPath(t), queue...)
		default:
			return 0, "", fmt.Errorf("parent %s is not a directory", walked)
		}
	}
	return cur, last, nil
}

// Create adds a file at path p. Missing parents are created; parents that
// are symlinks are followed inside the image. An existing entry at p is
// replaced ("last one wins", like tar): a directory over a directory
// updates its metadata and keeps its entries, anything else removes the
// old entry (a directory with everything below it) first. Regular file
// data (f.Size bytes) is read from data.
func (w *Writer) Create(p string, f *File, data readerSource) error {
	w.cur = p
	parent, base, err := w.resolveDir(p, true)
	if err != nil {
		return err
	}
	typ := f.Mode & sIFMT
	if fileType(f.Mode) == ftUnknown {
		return fmt.Errorf("unsupported file type %#o", typ)
	}
	if typ == sIFLNK && (f.Symlink == "" || len(f.Symlink) >= BlockSize) {
		return fmt.Errorf("symlink target of %d bytes (want 1..%d)", len(f.Symlink), BlockSize-1)
	}
	if typ == sIFREG {
		if f.Size < 0 || uint64(f.Size) > uint64(maxBlocks)*BlockSize {
			return fmt.Errorf("file size %d is beyond ext4's limit of %d bytes", f.Size, uint64(maxBlocks)*BlockSize)
		}
		if w.cfg.MaxFileSize > 0 && f.Size > w.cfg.MaxFileSize {
			return fmt.Errorf("file of %d bytes exceeds the limit of %d", f.Size, w.cfg.MaxFileSize)
		}
	}
	xs, err := prepareXattrs(f.Xattrs)
	if err != nil {
		return err
	}
	inline, block, err := splitXattrs(xs)
	if err != nil {
		return err
	}
	w.record(p, f, xs)
	d := w.dirOf(parent)
	if base == "" {
		if typ != sIFDIR {
			return errors.New("cannot replace the root directory with a non-directory")
		}
		return w.setMeta(rootIno, f, inline, block)
	}
	if old, ok := d.lookup(base); ok {
		if typ == sIFDIR && w.inodes[old].mode&sIFMT == sIFDIR {
			return w.setMeta(old, f, inline, block)
		}
		w.unlinkEntry(d, base, old)
	}
	ino, err := w.newInode(inode{dir: -1, state: stateUsed, links: 1})
	if err != nil {
		return err
	}
	if err := w.setMeta(ino, f, inline, block); err != nil {
		return err
	}
	in := &w.inodes[ino]
	switch typ {
	case sIFDIR:
		w.newDir(ino, parent)
	case sIFREG:
		in.flags = flagExtents
		if err := w.writeFile(ino, data, f.Size); err != nil {
			return err
		}
	case sIFLNK:
		in.size = uint64(len(f.Symlink))
		if len(f.Symlink) < 60 {
			copy(in.iblock[:], f.Symlink)
		} else {
			in.flags = flagExtents
			w.targets[ino] = f.Symlink
			buf := w.blk
			clear(buf)
			copy(buf, f.Symlink)
			if err := w.writeBlocks(ino, buf); err != nil {
				return err
			}
		}
	case sIFCHR, sIFBLK:
		if f.Major < 256 && f.Minor < 256 {
			le.PutUint32(in.iblock[0:], f.Major<<8|f.Minor)
		} else {
			le.PutUint32(in.iblock[4:], f.Minor&0xff|f.Major<<8|(f.Minor&^0xff)<<12)
		}
	}
	d.add(base, ino)
	return nil
}

// setMeta sets the metadata of ino from f and writes its attributes.
func (w *Writer) setMeta(ino uint32, f *File, inline, block []xattr) error {
	in := &w.inodes[ino]
	in.mode = f.Mode
	in.uid, in.gid = f.UID, f.GID
	in.atime, in.ctime, in.mtime, in.crtime = f.Atime, f.Ctime, f.Mtime, f.Crtime
	in.state &^= stateImplicit
	if in.xblock != 0 {
		w.free(span{uint64(in.xblock), 1})
		in.blocks--
		in.xblock = 0
	}
	in.xinline = nil
	if len(inline) > 0 {
		in.xinline = inlineXattrs(inline)
	}
	if len(block) > 0 {
		buf := w.blk
		xattrBlock(buf, block)
		b, err := w.allocOne()
		if err != nil {
			return err
		}
		if err := w.writeAt(buf, b); err != nil {
			return err
		}
		in.xblock = uint32(b)
		in.blocks++
		w.patches = append(w.patches, patch{block: b})
	}
	return nil
}

// Link adds a hard link at p to the existing entry target (symlinks in the
// parents of both are followed, a final symlink is linked itself).
func (w *Writer) Link(target, p string) error {
	w.cur = p
	tdir, tbase, err := w.resolveDir(target, false)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", target, err)
	}
	if tbase == "" {
		return errors.New("hard link to the root directory")
	}
	ino, ok := w.dirOf(tdir).lookup(tbase)
	if !ok {
		return fmt.Errorf("hard link target %q: file not found", target)
	}
	if w.inodes[ino].mode&sIFMT == sIFDIR {
		return fmt.Errorf("hard link target %q is a directory", target)
	}
	parent, base, err := w.resolveDir(p, true)
	if err != nil {
		return err
	}
	if base == "" {
		return errors.New("cannot replace the root directory with a hard link")
	}
	w.h.Write([]byte("link\x00" + target + "\x00" + p + "\x00"))
	d := w.dirOf(parent)
	if old, ok := d.lookup(base); ok {
		if old == ino {
			return nil // linking a name to itself changes nothing
		}
		w.unlinkEntry(d, base, old)
	}
	if w.inodes[ino].links >= 65000 {
		return fmt.Errorf("hard link target %q already has 65000 links, ext4's limit", target)
	}
	w.inodes[ino].links++
	d.add(base, ino)
	return nil
}

// unlinkEntry removes name (inode ino) from d, freeing what is no longer
// referenced; a directory goes with everything below it.
func (w *Writer) unlinkEntry(d *dirNode, name string, ino uint32) {
	d.remove(name)
	in := &w.inodes[ino]
	if in.mode&sIFMT == sIFDIR {
		sub := w.dirOf(ino)
		for i, c := range sub.inos {
			if c != 0 {
				w.unlinkEntry(sub, sub.names[i], c)
			}
		}
		sub.names, sub.inos, sub.index = nil, nil, nil
		w.release(ino)
		return
	}
	in.links--
	if in.links == 0 {
		w.release(ino)
	}
}

// release frees an inode and its blocks.
func (w *Writer) release(ino uint32) {
	in := &w.inodes[ino]
	if in.flags&flagExtents != 0 && !w.over {
		for _, s := range w.fileSpans(ino) {
			w.free(s)
		}
	}
	if in.xblock != 0 {
		w.free(span{uint64(in.xblock), 1})
	}
	delete(w.targets, ino)
	*in = inode{state: stateFreed, dir: -1}
}

// record feeds an entry's metadata to the hash that seeds the UUID.
func (w *Writer) record(p string, f *File, xs []xattr) {
	var b []byte
	b = append(b, "file\x00"...)
	b = append(b, p...)
	b = append(b, 0)
	b = le.AppendUint16(b, f.Mode)
	b = le.AppendUint32(b, f.UID)
	b = le.AppendUint32(b, f.GID)
	for _, t := range []Timestamp{f.Atime, f.Ctime, f.Mtime, f.Crtime} {
		b = le.AppendUint64(b, uint64(t.Sec))
		b = le.AppendUint32(b, t.Nsec)
	}
	b = le.AppendUint64(b, uint64(f.Size))
	b = le.AppendUint32(b, f.Major)
	b = le.AppendUint32(b, f.Minor)
	b = append(b, f.Symlink...)
	b = append(b, 0)
	w.h.Write(b)
	// Attributes in a fixed order.
	for _, x := range xs {
		w.h.Write([]byte{x.index})
		w.h.Write(x.name)
		w.h.Write([]byte{0})
		w.h.Write(le.AppendUint32(nil, uint32(len(x.value))))
		w.h.Write(x.value)
	}
}
