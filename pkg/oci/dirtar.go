package oci

import (
	"archive/tar"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DirTar streams a tar archive of the directory dir, the layer of a "dir:"
// image: entries in lexical walk order, names relative to dir (the root
// itself is "./"), owners, modes, times, symlinks, hard links (by inode),
// device nodes and FIFOs as found; sockets are skipped. User and group names
// are left out (ids only). Errors, including a file vanishing during the
// walk, are returned by Read and name the path.
func DirTar(dir string) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeDirTar(dir, pw))
	}()
	return pr
}

type inode struct{ dev, ino uint64 }

func writeDirTar(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	links := map[inode]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.Type()&fs.ModeSocket != 0 {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if target, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		h.Name = rel
		if fi.IsDir() {
			h.Name += "/"
			if rel == "." {
				h.Name = "./"
			}
		}
		h.Uname, h.Gname = "", ""
		h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
		h.Format = tar.FormatPAX
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode().IsRegular() && st.Nlink > 1 {
			k := inode{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := links[k]; ok {
				h.Typeflag, h.Linkname, h.Size = tar.TypeLink, first, 0
			} else {
				links[k] = rel
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			n, err := io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if n != h.Size {
				return fmt.Errorf("%s: file changed size while being read", p)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rootfs directory %s: %w", dir, err)
	}
	return tw.Close()
}
