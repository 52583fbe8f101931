package ociruntime

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
)

// MaxCopyBytes bounds the content of the bind mounts copied into one guest
// disk (256 MiB); bind mounts beyond it are skipped with a warning.
var MaxCopyBytes int64 = 256 << 20

// CacheMaxAge is how long an unused cached disk is kept.
const CacheMaxAge = 7 * 24 * time.Hour

// DiskRequest asks for the guest disk of a bundle.
type DiskRequest struct {
	// RootFS is the bundle's root file system; Copies go on top of it.
	RootFS string
	Copies []Copy
	// Out is where a per-container disk is written (when not cached).
	Out string
	// CacheDir, when set, holds disks of read-only overlay lower layers,
	// shared by containers of the same image.
	CacheDir string
}

// DiskResult is the guest disk made for a bundle.
type DiskResult struct {
	// Path is the disk; Cached reports that it lives in the cache (shared,
	// never deleted with the container) and Hit that it was already there.
	Path        string
	Cached, Hit bool
	// Warnings list the bind mounts that could not be copied.
	Warnings []string
	// Took is the time spent.
	Took time.Duration
}

// BuildDisk makes the read-only ext4 guest disk of a bundle: the rootfs with
// the copies laid over it. When there is nothing to copy and the rootfs is
// an overlay mount whose upper layer is still empty, the disk is the
// cached image of its lower layers (the engine's unpacked image layers,
// which never change once committed), built once per set of layers.
func BuildDisk(ctx context.Context, r DiskRequest) (*DiskResult, error) {
	t0 := time.Now()
	st, err := os.Stat(r.RootFS)
	if err != nil {
		return nil, fmt.Errorf("bundle rootfs: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("bundle rootfs %s is not a directory", r.RootFS)
	}
	res := &DiskResult{}
	trees := []ext4.Tree{{Source: r.RootFS, Dest: ""}}
	var total int64
	for _, c := range r.Copies {
		if why := copyProblem(r.RootFS, c); why != "" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("bind mount %s not copied: %s", c.Dest, why))
			continue
		}
		n, err := ext4.EstimateDir(c.Source)
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("bind mount %s not copied: %v", c.Dest, err))
			continue
		}
		if total+n > MaxCopyBytes {
			res.Warnings = append(res.Warnings, fmt.Sprintf("bind mount %s not copied: the copied bind mounts would exceed %d MiB", c.Dest, MaxCopyBytes>>20))
			continue
		}
		total += n
		trees = append(trees, ext4.Tree{Source: c.Source, Dest: c.Dest})
	}
	if len(trees) == 1 && r.CacheDir != "" {
		if key, ok := overlayKey(r.RootFS); ok {
			p := filepath.Join(r.CacheDir, key+".ext4")
			res.Path, res.Cached = p, true
			now := time.Now()
			if os.Chtimes(p, now, now) == nil {
				res.Hit = true
				res.Took = time.Since(t0)
				return res, nil
			}
			if err := os.MkdirAll(r.CacheDir, 0o700); err != nil {
				return nil, fmt.Errorf("disk cache: %w", err)
			}
			pruneCache(r.CacheDir, CacheMaxAge)
			// The upper layer is empty, so the merged rootfs is exactly
			// the lower layers.
			if err := ext4.FromDir(ctx, r.RootFS, p, ext4.Options{Label: "vxn-oci"}); err != nil {
				return nil, fmt.Errorf("guest disk of %s: %w", r.RootFS, err)
			}
			os.Chmod(p, 0o600)
			res.Took = time.Since(t0)
			return res, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(r.Out), 0o700); err != nil {
		return nil, fmt.Errorf("guest disk: %w", err)
	}
	if err := ext4.FromTrees(ctx, r.Out, ext4.Options{Label: "vxn-oci"}, trees...); err != nil {
		return nil, fmt.Errorf("guest disk of %s: %w", r.RootFS, err)
	}
	os.Chmod(r.Out, 0o600)
	res.Path = r.Out
	res.Took = time.Since(t0)
	return res, nil
}

// copyProblem says why c cannot be laid over rootfs ("" when it can): every
// parent of the destination that exists in the rootfs must be a real
// directory (a symlink there would make the copy land elsewhere), and a
// file cannot replace a directory.
func copyProblem(rootfs string, c Copy) string {
	st, err := os.Stat(c.Source)
	if err != nil {
		return err.Error()
	}
	if !st.IsDir() && !st.Mode().IsRegular() {
		return "the source is neither a file nor a directory"
	}
	dest := path.Clean("/" + c.Dest)
	cur := rootfs
	parts := strings.Split(strings.TrimPrefix(dest, "/"), "/")
	for i, p := range parts {
		cur = filepath.Join(cur, p)
		fi, err := os.Lstat(cur)
		if errors.Is(err, os.ErrNotExist) {
			return ""
		}
		if err != nil {
			return err.Error()
		}
		last := i == len(parts)-1
		if !last && !fi.IsDir() {
			return fmt.Sprintf("%s is not a directory in the rootfs", path.Join("/", path.Join(parts[:i+1]...)))
		}
		if last && fi.IsDir() && !st.IsDir() {
			return "a file cannot replace the rootfs directory there"
		}
		if last && !fi.IsDir() && st.IsDir() && fi.Mode()&os.ModeSymlink == 0 {
			return "a directory cannot replace the rootfs file there"
		}
	}
	return ""
}

// overlayKey returns the cache key of rootfs when it is an overlay mount
// with an empty upper layer: a hash of its lower layers (path, device,
// inode and change time of each).
func overlayKey(rootfs string) (string, bool) {
	real, err := filepath.EvalSymlinks(rootfs)
	if err != nil {
		return "", false
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	opts, ok := overlayOptions(f, real)
	if !ok {
		return "", false
	}
	lower, upper := "", ""
	for _, o := range splitOptions(opts) {
		switch {
		case strings.HasPrefix(o, "lowerdir="):
			lower = strings.TrimPrefix(o, "lowerdir=")
		case strings.HasPrefix(o, "upperdir="):
			upper = strings.TrimPrefix(o, "upperdir=")
		}
	}
	if lower == "" {
		return "", false
	}
	if upper != "" {
		ents, err := os.ReadDir(upper)
		if err != nil || len(ents) > 0 {
			return "", false
		}
	}
	h := sha256.New()
	io.WriteString(h, "vxn-oci-disk v1\n")
	for _, d := range strings.Split(lower, ":") {
		var st syscall.Stat_t
		if d == "" || syscall.Stat(d, &st) != nil {
			return "", false
		}
		fmt.Fprintf(h, "%s %d %d %d.%d\n", d, st.Dev, st.Ino, st.Ctim.Sec, st.Ctim.Nsec)
	}
	return hex.EncodeToString(h.Sum(nil)), true
}

// overlayOptions finds the last mount at mountpoint in a mountinfo stream
// and returns its super options when it is an overlay.
func overlayOptions(r io.Reader, mountpoint string) (string, bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found, opts := false, ""
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || len(f) < sep+4 {
			continue
		}
		if unescapeMount(f[4]) != mountpoint {
			continue
		}
		found = f[sep+1] == "overlay"
		opts = f[sep+3]
	}
	return opts, found
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// splitOptions splits mount options at commas not escaped with a backslash.
func splitOptions(s string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == ',':
			cur.WriteByte(',')
			i++
		case s[i] == ',':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(out, cur.String())
}

// pruneCache removes cached disks unused for longer than maxAge.
func pruneCache(dir string, maxAge time.Duration) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".ext4") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > maxAge {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
