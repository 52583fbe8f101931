// Package dom0fs is one interface over the target Dom0 root filesystem,
// which is either a directory or an ext4 image file edited without mounting
// and without root. Every write is atomic: data goes to a temporary name
// and is renamed into place, so an interrupted run never leaves a file
// half-written under its final name.
package dom0fs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// FS is a Dom0 root filesystem. Paths are absolute paths inside it
// ("/etc/xen/a.cfg").
type FS interface {
	// MkdirAll creates a directory and its parents.
	MkdirAll(p string, perm fs.FileMode) error
	// WriteFile atomically replaces p with data.
	WriteFile(p string, data []byte, perm fs.FileMode) error
	// CopyFile atomically replaces p with the content of a host file,
	// keeping holes.
	CopyFile(p, hostSrc string, perm fs.FileMode) error
	// Symlink atomically replaces p with a symbolic link to target.
	Symlink(target, p string) error
	// ReadFile returns the content of p.
	ReadFile(p string) ([]byte, error)
	// Lstat describes p without following a final symlink; a missing file
	// gives an error satisfying errors.Is(err, fs.ErrNotExist).
	Lstat(p string) (Info, error)
	// Readlink returns the target of the symlink p.
	Readlink(p string) (string, error)
	// Remove deletes p (not a directory).
	Remove(p string) error
	// Close flushes pending work (the ext4 implementation batches).
	Close() error
	// String names the filesystem for messages.
	String() string
}

// Info is what FS.Lstat returns.
type Info struct {
	Mode fs.FileMode
	Size int64
}

// Open opens a Dom0 root filesystem: a directory, or an ext4 image file.
// A missing path is a directory that the first write creates, so that
// nothing is written when validation fails.
func Open(root string) (FS, error) {
	st, err := os.Stat(root)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return NewDir(root), nil
	case err != nil:
		return nil, err
	case st.IsDir():
		return NewDir(root), nil
	case st.Mode().IsRegular():
		return OpenExt4(root)
	}
	return nil, fmt.Errorf("rootfs %s: not a directory or an ext4 image file", root)
}

// Clean checks that p is an absolute, clean path without "..", and returns
// it in canonical form.
func Clean(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("dom0fs: path %q is not absolute", p)
	}
	c := path.Clean(p)
	if c != p && c+"/" != p {
		return "", fmt.Errorf("dom0fs: path %q is not clean (want %q)", p, c)
	}
	for _, part := range strings.Split(c, "/") {
		if part == ".." {
			return "", fmt.Errorf("dom0fs: path %q contains ..", p)
		}
	}
	if strings.ContainsAny(c, "\n\x00") {
		return "", fmt.Errorf("dom0fs: path %q contains a newline or NUL", p)
	}
	return c, nil
}
