package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"syscall"

	"github.com/vxn-dev/vxn/pkg/dom0fs"
)

// Temporaries. Every file written under a temporary name next to its final
// name (imports, sparse copies, the ext4 writer, dom0fs) is named
//
//	.<final name>.tmp-<digits or hex>
//
// A run killed with SIGKILL cannot remove its temporaries; the next Apply
// removes those in the directories it writes (the target's image, config
// and autostart directories, and the import cache), holding a lock on the
// cache and on the target so that no running install's temporaries are
// touched, and `xenbundle plan` lists them (FindStale).
var tempPattern = regexp.MustCompile(`^\..+\.tmp-[0-9a-f]+$`)

// IsTemporary reports whether a file name follows the temporaries' pattern.
func IsTemporary(name string) bool { return tempPattern.MatchString(name) }

// staleDirs are the host directories whose temporaries are ours.
func staleDirs(target dom0fs.FS, cacheDir string) []string {
	var dirs []string
	if cacheDir != "" {
		dirs = append(dirs, filepath.Join(cacheDir, "images"))
	}
	if hp, ok := target.(hostPather); ok && target != nil {
		for _, d := range []string{ImagesDir, ConfigDir, AutoDir} {
			if h, err := hp.HostPath(d); err == nil {
				dirs = append(dirs, h)
			}
		}
	}
	return dirs
}

// FindStale lists the temporaries left in the directories an install
// writes (host paths, sorted); target may be nil.
func FindStale(target dom0fs.FS, cacheDir string) []string {
	var out []string
	for _, d := range staleDirs(target, cacheDir) {
		ents, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.Type().IsRegular() || e.Type()&os.ModeSymlink != 0 {
				if IsTemporary(e.Name()) {
					out = append(out, filepath.Join(d, e.Name()))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

// lockDir takes an exclusive flock(2) on directory d (which must exist)
// and returns its release.
func lockDir(d string) (func(), error) {
	f, err := os.Open(d)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", d, err)
	}
	return func() { f.Close() }, nil
}

// lockAndSweep locks the cache directory and the target's host root (when
// it is a directory that exists), then removes the stale temporaries; the
// returned function releases the locks.
func lockAndSweep(target dom0fs.FS, cacheDir string, logf func(string, ...any)) (func(), error) {
	var unlocks []func()
	release := func() {
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
	}
	roots := []string{cacheDir}
	if hp, ok := target.(hostPather); ok {
		if h, err := hp.HostPath("/"); err == nil {
			if st, err := os.Stat(h); err == nil && st.IsDir() {
				roots = append(roots, h)
			}
		}
	}
	for _, r := range roots {
		u, err := lockDir(r)
		if err != nil {
			release()
			return nil, err
		}
		unlocks = append(unlocks, u)
	}
	for _, p := range FindStale(target, cacheDir) {
		if err := os.Remove(p); err == nil {
			logf("removed  %s (a temporary left by an interrupted run)", p)
		}
	}
	return release, nil
}
