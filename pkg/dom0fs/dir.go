package dom0fs

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/vxn-dev/vxn/pkg/sparse"
)

// Dir is a Dom0 root filesystem in a host directory.
type Dir struct{ root string }

// NewDir returns the FS rooted at directory root.
func NewDir(root string) *Dir { return &Dir{root: root} }

func (d *Dir) String() string { return d.root }

func (d *Dir) host(p string) (string, error) {
	c, err := Clean(p)
	if err != nil {
		return "", err
	}
	return filepath.Join(d.root, filepath.FromSlash(c)), nil
}

// MkdirAll implements FS.
func (d *Dir) MkdirAll(p string, perm fs.FileMode) error {
	h, err := d.host(p)
	if err != nil {
		return err
	}
	return os.MkdirAll(h, perm)
}

func tempName(h string) string {
	return filepath.Join(filepath.Dir(h), fmt.Sprintf(".%s.tmp-%d", filepath.Base(h), os.Getpid()))
}

// WriteFile implements FS.
func (d *Dir) WriteFile(p string, data []byte, perm fs.FileMode) error {
	h, err := d.host(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
		return err
	}
	tmp := tempName(h)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, h)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// CopyFile implements FS; holes are kept and reflinks used where the host
// filesystem supports them.
func (d *Dir) CopyFile(p, hostSrc string, perm fs.FileMode) error {
	h, err := d.host(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
		return err
	}
	if err := sparse.Copy(context.Background(), hostSrc, h); err != nil {
		return err
	}
	return os.Chmod(h, perm)
}

// Symlink implements FS.
func (d *Dir) Symlink(target, p string) error {
	h, err := d.host(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
		return err
	}
	tmp := tempName(h)
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, h); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ReadFile implements FS.
func (d *Dir) ReadFile(p string) ([]byte, error) {
	h, err := d.host(p)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(h)
}

// Lstat implements FS.
func (d *Dir) Lstat(p string) (Info, error) {
	h, err := d.host(p)
	if err != nil {
		return Info{}, err
	}
	st, err := os.Lstat(h)
	if err != nil {
		return Info{}, err
	}
	return Info{Mode: st.Mode(), Size: st.Size()}, nil
}

// Readlink implements FS.
func (d *Dir) Readlink(p string) (string, error) {
	h, err := d.host(p)
	if err != nil {
		return "", err
	}
	return os.Readlink(h)
}

// Close implements FS.
func (d *Dir) Close() error { return nil }

// HostPath returns the host path of p, for callers that can use the host
// file directly (cache shortcuts).
func (d *Dir) HostPath(p string) (string, error) { return d.host(p) }

// Remove implements FS.
func (d *Dir) Remove(p string) error {
	h, err := d.host(p)
	if err != nil {
		return err
	}
	return os.Remove(h)
}
