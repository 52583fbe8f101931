package initramfs

import (
	"fmt"
	"io"
	"os"
	"path"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"
)

// Archive collects the records of an initramfs: explicit directory records
// (mode 0755) for every parent, files, symbolic links and device nodes. It
// always holds /, /dev, /dev/console and /dev/null, so the kernel can open
// the initial console before devtmpfs is mounted.
type Archive struct {
	head, files []cpio.Record
	dirs        map[string]bool
}

// NewArchive returns an archive holding /, /dev, /dev/console and /dev/null.
func NewArchive() *Archive {
	a := &Archive{dirs: map[string]bool{".": true}}
	a.head = append(a.head, cpio.Directory(".", 0o755))
	a.Dir("dev")
	a.CharDev("dev/console", 0o600, 5, 1)
	a.CharDev("dev/null", 0o666, 1, 3)
	return a
}

// Dir adds the directory name and its parents (mode 0755).
func (a *Archive) Dir(name string) {
	name = path.Clean(name)
	if a.dirs[name] || name == "/" {
		return
	}
	a.Dir(path.Dir(name))
	a.dirs[name] = true
	a.head = append(a.head, cpio.Directory(name, 0o755))
}

// File adds a regular file with permission bits perm.
func (a *Archive) File(name string, content []byte, perm uint64) {
	a.Dir(path.Dir(name))
	a.files = append(a.files, cpio.StaticRecord(content, cpio.Info{Name: name, Mode: cpio.S_IFREG | perm}))
}

// Symlink adds a symbolic link name -> target.
func (a *Archive) Symlink(name, target string) {
	a.Dir(path.Dir(name))
	a.head = append(a.head, cpio.Symlink(name, target))
}

// CharDev adds a character device node.
func (a *Archive) CharDev(name string, perm uint64, major, minor uint64) {
	a.Dir(path.Dir(name))
	a.head = append(a.head, cpio.CharDev(name, perm, major, minor))
}

// Sizes are the archive's uncompressed and written sizes in bytes.
type Sizes struct {
	Raw, Written int64
}

// Write writes the archive as the kernel accepts it (and distributions
// do for early microcode): a small uncompressed newc cpio with the
// directories, links and device nodes, then a gzip-compressed newc cpio
// with the files (level: a compress/flate level). The uncompressed head
// matters under Xen: libxenguest up to Xen 4.19 gunzips a ramdisk that
// starts with the gzip magic into guest memory before the guest runs; with
// a head that is not gzip it loads the blob as it is and the guest kernel
// unpacks it. Every record is made reproducible (zero times, fixed inode
// numbers and owners): the same inputs give byte-identical output.
func (a *Archive) Write(w io.Writer, level int) (Sizes, error) {
	head := append([]cpio.Record(nil), a.head...)
	files := append([]cpio.Record(nil), a.files...)
	cpio.MakeAllReproducible(head)
	cpio.MakeAllReproducible(files)
	cw := &countWriter{w: w}
	if err := writeCpio(cw, head); err != nil {
		return Sizes{}, err
	}
	headLen := cw.n
	zw, err := gzip.NewWriterLevel(cw, level)
	if err != nil {
		return Sizes{}, err
	}
	raw := &countWriter{w: zw}
	if err := writeCpio(raw, files); err != nil {
		return Sizes{}, err
	}
	if err := zw.Close(); err != nil {
		return Sizes{}, err
	}
	return Sizes{Raw: headLen + raw.n, Written: cw.n}, nil
}

// WriteFile writes the archive to p through a temporary file and a rename.
func (a *Archive) WriteFile(p string, level int) (Sizes, error) {
	tmp := p + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return Sizes{}, err
	}
	sz, err := a.Write(f, level)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return Sizes{}, fmt.Errorf("initramfs %s: %w", p, err)
	}
	return sz, os.Rename(tmp, p)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeCpio writes recs and the trailer as one newc archive.
func writeCpio(w io.Writer, recs []cpio.Record) error {
	rw := cpio.Newc.Writer(w)
	if err := cpio.WriteRecords(rw, recs); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}
