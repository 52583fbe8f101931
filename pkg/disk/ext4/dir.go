package ext4

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// FromDir writes an ext4 image of the directory tree dir at out. It walks
// dir in lexical order and feeds the same writer as FromTar, keeping owners,
// modes, symlinks, hard links (files with the same device and inode),
// device nodes, FIFOs, sockets and xattrs as found on disk. Only mtimes are
// taken from the source (atime and ctime are set to the mtime) so that
// reading the tree does not change the image. The root directory's mode,
// owner and time come from dir itself.
func FromDir(ctx context.Context, dir, out string, opt Options) error {
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("ext4: %s is not a directory", dir)
	}
	return build(ctx, out, opt, func(b *builder) error { return b.addTree(dir, "") })
}

// Tree is a host file or directory that FromTrees places at Dest in the
// image ("" or "/" is the image's root).
type Tree struct {
	// Source is the host path, Dest the slash-separated path in the image.
	Source, Dest string
}

// FromTrees writes an ext4 image of several host trees laid over each other
// in order, each read as FromDir reads a directory, with the semantics of
// bind mounts: a later tree hides whatever earlier trees have at its Dest
// and below (those entries are not written at all). Missing parents of a
// Dest are created (mode 0755, owner root). The first tree is normally the
// root file system (Dest "").
func FromTrees(ctx context.Context, out string, opt Options, trees ...Tree) error {
	for _, t := range trees {
		if _, err := os.Lstat(t.Source); err != nil {
			return fmt.Errorf("ext4: %w", err)
		}
	}
	return build(ctx, out, opt, func(b *builder) error {
		for i, t := range trees {
			var hidden []string
			for _, later := range trees[i+1:] {
				hidden = append(hidden, cleanName(later.Dest))
			}
			if err := b.addTree(t.Source, t.Dest, hidden...); err != nil {
				return err
			}
		}
		return nil
	})
}

// isHidden reports whether name (cleanName form) is at or below one of
// hidden; "" hides everything.
func isHidden(name string, hidden []string) bool {
	for _, h := range hidden {
		if h == "" || name == h || strings.HasPrefix(name, h+"/") {
			return true
		}
	}
	return false
}

type devIno struct{ dev, ino uint64 }

// addTree adds the tree at root (a directory or a single file) under dest,
// leaving out the entries at or below the hidden names.
func (b *builder) addTree(root, dest string, hidden ...string) error {
	links := map[devIno]string{}
	xbuf := make([]byte, 4096)
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("ext4: %w", err)
		}
		if err := b.ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return fmt.Errorf("ext4: %w", err)
		}
		rel = path.Join(dest, filepath.ToSlash(rel))
		if len(hidden) > 0 && isHidden(cleanName(rel), hidden) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("ext4: %w", &os.PathError{Op: "lstat", Path: p, Err: err})
		}
		e := &entry{
			name:  rel,
			mode:  uint16(st.Mode & 0xffff),
			uid:   int64(st.Uid),
			gid:   int64(st.Gid),
			mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		}
		typ := st.Mode & syscall.S_IFMT
		if typ != syscall.S_IFDIR && st.Nlink > 1 {
			k := devIno{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := links[k]; ok {
				e.hardlink = first
				if err := b.add(e, nil); err != nil {
					return fmt.Errorf("ext4: %s: %w", p, err)
				}
				return nil
			}
			links[k] = rel
		}
		switch typ {
		case syscall.S_IFREG:
			e.size = st.Size
		case syscall.S_IFLNK:
			t, err := os.Readlink(p)
			if err != nil {
				return fmt.Errorf("ext4: %w", err)
			}
			e.symlink = t
		case syscall.S_IFCHR, syscall.S_IFBLK:
			e.major, e.minor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
		case syscall.S_IFDIR, syscall.S_IFIFO, syscall.S_IFSOCK:
		default:
			return fmt.Errorf("ext4: %s: unsupported file type %o", p, typ)
		}
		e.xattrs, err = readXattrs(p, xbuf)
		if err != nil {
			return fmt.Errorf("ext4: %s: %w", p, err)
		}
		if typ == syscall.S_IFREG && e.size > 0 {
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("ext4: %w", err)
			}
			err = b.add(e, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("ext4: %s: %w", p, err)
			}
			return nil
		}
		if err := b.add(e, nil); err != nil {
			return fmt.Errorf("ext4: %s: %w", p, err)
		}
		return nil
	})
}

// readXattrs returns the extended attributes of p (not following symlinks).
func readXattrs(p string, buf []byte) (map[string][]byte, error) {
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ERANGE) {
		sz, err2 := unix.Llistxattr(p, nil)
		if err2 != nil {
			return nil, err2
		}
		buf = make([]byte, sz)
		n, err = unix.Llistxattr(p, buf)
	}
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listxattr: %w", err)
	}
	if n == 0 {
		return nil, nil
	}
	names := buf[:n]
	out := map[string][]byte{}
	for len(names) > 0 {
		i := 0
		for i < len(names) && names[i] != 0 {
			i++
		}
		name := string(names[:i])
		if i < len(names) {
			i++
		}
		names = names[i:]
		if name == "" {
			continue
		}
		val := make([]byte, 256)
		m, err := unix.Lgetxattr(p, name, val)
		if errors.Is(err, unix.ERANGE) {
			sz, err2 := unix.Lgetxattr(p, name, nil)
			if err2 != nil {
				return nil, err2
			}
			val = make([]byte, sz)
			m, err = unix.Lgetxattr(p, name, val)
		}
		if errors.Is(err, unix.ENODATA) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("getxattr %s: %w", name, err)
		}
		out[name] = val[:m]
	}
	return out, nil
}

// EstimateDir returns the bytes of content a directory needs in an image:
// file data rounded up to 4 KiB blocks (hard links counted once), one block
// per directory plus 16 bytes per entry beyond the first block, one block
// per symlink target longer than 59 bytes, and 256 bytes per inode. It does
// not include the free-space headroom of an automatic size.
func EstimateDir(dir string) (int64, error) {
	seen := map[devIno]bool{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: p, Err: err}
		}
		typ := st.Mode & syscall.S_IFMT
		if typ != syscall.S_IFDIR && st.Nlink > 1 {
			k := devIno{uint64(st.Dev), uint64(st.Ino)}
			if seen[k] {
				total += int64(len(d.Name())) + 16
				return nil
			}
			seen[k] = true
		}
		total += 256 + int64(len(d.Name())) + 16
		switch typ {
		case syscall.S_IFREG:
			total += (st.Size + blockSize - 1) / blockSize * blockSize
			// Files over 4 extents (512 MiB) need an extent index block.
			if st.Size > 4*32768*blockSize {
				total += blockSize
			}
		case syscall.S_IFDIR:
			total += blockSize
		case syscall.S_IFLNK:
			if st.Size > 59 {
				total += blockSize
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("ext4: estimate %s: %w", dir, err)
	}
	return total, nil
}
