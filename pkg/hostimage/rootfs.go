package hostimage

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// mergedUsr maps top-level directories to their merged-/usr location, as a
// Debian 12 system with usrmerge has them.
var mergedUsr = map[string]string{"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}

// dropPrefixes are never copied into images.
var dropPrefixes = []string{"usr/share/doc/", "usr/share/man/", "usr/share/info/", "usr/share/locale/",
	"usr/share/lintian/", "usr/share/bash-completion/", "usr/share/doc-base/", "usr/share/bug/", "usr/share/menu/"}

// mapPath applies the merged-/usr mapping to a slash-separated relative path.
func mapPath(rel string) string {
	top, rest, _ := strings.Cut(rel, "/")
	if m, ok := mergedUsr[top]; ok {
		if rest == "" {
			return m
		}
		return m + "/" + rest
	}
	return rel
}

// makeUsrLinks creates the merged-/usr top-level symlinks in root.
func makeUsrLinks(root string) error {
	for top, target := range mergedUsr {
		if err := os.MkdirAll(filepath.Join(root, target), 0o755); err != nil {
			return err
		}
		if err := os.Symlink(target, filepath.Join(root, top)); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return nil
}

func kept(rel string, keep []string) bool {
	for _, d := range dropPrefixes {
		if strings.HasPrefix(rel+"/", d) {
			return false
		}
	}
	if len(keep) == 0 {
		return true
	}
	for _, k := range keep {
		if rel == strings.TrimSuffix(k, "/") || strings.HasPrefix(rel, k) || strings.HasPrefix(k, rel+"/") {
			return true
		}
	}
	return false
}

func dropped(rel string, drop []string) bool {
	for _, d := range drop {
		if strings.HasPrefix(rel, d) || rel+"/" == d {
			return true
		}
	}
	return false
}

// installTree copies an extracted package tree into root with the merged
// /usr mapping, honouring keep (see PackageSpec.Keep). Files are copied,
// never hard-linked, so hooks cannot modify the package cache.
func installTree(src, root string, keep, drop []string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." || d.Name() == ".vxn-debpkg-extracted" {
			return nil
		}
		rel = mapPath(filepath.ToSlash(rel))
		if !kept(rel, keep) || dropped(rel, drop) {
			if d.IsDir() && len(keep) == 0 {
				return filepath.SkipDir
			}
			return nil
		}
		dst := filepath.Join(root, filepath.FromSlash(rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
			return os.Chmod(dst, info.Mode().Perm())
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(dst)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			return os.Symlink(t, dst)
		case info.Mode().IsRegular():
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			return copyFile(p, dst, info.Mode().Perm())
		default:
			return nil // devices etc. do not occur in Debian packages
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}

// writeFile writes content at rel inside root, creating parents.
func writeFile(root, rel, content string, perm fs.FileMode) error {
	dst := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(dst, []byte(content), perm); err != nil {
		return err
	}
	return os.Chmod(dst, perm)
}

// symlink creates rel -> target inside root, replacing what is there.
func symlink(root, rel, target string) error {
	dst := filepath.Join(root, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	os.Remove(dst)
	return os.Symlink(target, dst)
}

// CheckSharedLibs verifies that every dynamically linked ELF file in root
// finds its DT_NEEDED libraries in libDirs (relative to root). It returns
// an error naming each missing library and one binary needing it, so the
// package list can be fixed. glibc's dlopen of libgcc_s.so.1 is not visible
// to this check (xen-in-qemu pitfall 1): the libgcc-s1 package is listed
// explicitly instead.
func CheckSharedLibs(root string, libDirs []string) error {
	have := func(lib string) bool {
		for _, d := range libDirs {
			if _, err := os.Stat(filepath.Join(root, d, lib)); err == nil {
				return true
			}
		}
		return false
	}
	missing := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := elf.Open(p)
		if err != nil {
			return nil // not ELF
		}
		defer f.Close()
		libs, err := f.ImportedLibraries()
		if err != nil {
			return nil
		}
		for _, l := range libs {
			if !have(l) {
				rel, _ := filepath.Rel(root, p)
				missing[l] = rel
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(missing) == 0 {
		return nil
	}
	var lines []string
	for l, by := range missing {
		lines = append(lines, fmt.Sprintf("%s (needed by %s)", l, by))
	}
	sort.Strings(lines)
	return fmt.Errorf("missing shared libraries in image: %s", strings.Join(lines, "; "))
}

// dirSize returns the bytes used by regular files (rounded to 4 KiB) and
// the number of entries under root.
func dirSize(root string) (int64, int64, error) {
	var bytes, n int64
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		n++
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			bytes += (info.Size() + 4095) &^ 4095
		}
		return nil
	})
	return bytes, n, err
}
