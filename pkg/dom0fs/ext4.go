package dom0fs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
)

// Ext4 is a Dom0 root filesystem in an ext4 image file, edited with
// debugfs: no mount, no root.
type Ext4 struct {
	path string
	im   *ext4.Image
}

// OpenExt4 opens an ext4 image as a Dom0 root filesystem.
func OpenExt4(path string) (*Ext4, error) {
	im, err := ext4.OpenImage(path)
	if err != nil {
		return nil, err
	}
	return &Ext4{path: path, im: im}, nil
}

func (e *Ext4) String() string { return e.path }

// MkdirAll implements FS.
func (e *Ext4) MkdirAll(p string, perm fs.FileMode) error {
	if _, err := Clean(p); err != nil {
		return err
	}
	return e.im.MkdirAll(p, perm)
}

// WriteFile implements FS.
func (e *Ext4) WriteFile(p string, data []byte, perm fs.FileMode) error {
	f, err := os.CreateTemp("", "dom0fs-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return e.CopyFile(p, f.Name(), perm)
}

// CopyFile implements FS; ext4.Image writes a temporary name and renames.
func (e *Ext4) CopyFile(p, hostSrc string, perm fs.FileMode) error {
	if _, err := Clean(p); err != nil {
		return err
	}
	return e.im.Batch(func(b *ext4.Batch) {
		b.MkdirAll(path.Dir(p), 0o755)
		b.WriteFile(p, hostSrc, perm, 0, 0)
	})
}

// Symlink implements FS.
func (e *Ext4) Symlink(target, p string) error {
	if _, err := Clean(p); err != nil {
		return err
	}
	_, statErr := e.im.Stat(p)
	return e.im.Batch(func(b *ext4.Batch) {
		b.MkdirAll(path.Dir(p), 0o755)
		if statErr == nil {
			b.Remove(p)
		}
		b.Symlink(target, p)
	})
}

// ReadFile implements FS.
func (e *Ext4) ReadFile(p string) ([]byte, error) { return e.im.ReadFile(p) }

// Lstat implements FS.
func (e *Ext4) Lstat(p string) (Info, error) {
	fi, err := e.im.Stat(p)
	if err != nil {
		return Info{}, err
	}
	return Info{Mode: fi.Mode(), Size: fi.Size()}, nil
}

var fastLink = regexp.MustCompile(`(?m)^Fast link dest: "(.*)"$`)

// Readlink implements FS for fast symlinks (targets under 60 bytes, which
// covers the autostart links).
func (e *Ext4) Readlink(p string) (string, error) {
	fi, err := e.im.Stat(p)
	if err != nil {
		return "", err
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return "", fmt.Errorf("readlink %s: not a symlink", p)
	}
	out, err := exec.Command("debugfs", "-R", fmt.Sprintf("stat %q", p), e.path).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("debugfs stat %s: %v: %s", p, err, out)
	}
	m := fastLink.FindSubmatch(out)
	if m == nil {
		return "", errors.New("readlink " + p + ": not a fast symlink: " + strings.TrimSpace(string(out)))
	}
	return string(m[1]), nil
}

// Remove implements FS.
func (e *Ext4) Remove(p string) error { return e.im.Remove(p) }

// Close implements FS.
func (e *Ext4) Close() error { return nil }
