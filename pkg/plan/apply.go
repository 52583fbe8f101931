package plan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/dom0fs"
	"github.com/vxn-dev/vxn/pkg/importer"
)

// ApplyOptions configure Apply.
type ApplyOptions struct {
	// Registry provides import handlers; nil means importer.NewRegistry().
	Registry *importer.Registry
	// CacheDir holds import outputs and copy stamps; required.
	CacheDir string
	// Epoch is SOURCE_DATE_EPOCH for reproducible images.
	Epoch *time.Time
	// Log receives one line per step; nil discards.
	Log func(format string, args ...any)
}

// Stats counts what Apply did.
type Stats struct {
	Imported, ImportCached int
	Copied, CopySkipped    int
	Configs, Links         int
}

// Apply performs the plan on target. Images are imported into the cache
// first (nothing in target changes if an import fails), then copied, then
// configs are written, then autostart links; every write is atomic.
func (p *Plan) Apply(ctx context.Context, target dom0fs.FS, opts ApplyOptions) (Stats, error) {
	var st Stats
	if opts.Registry == nil {
		opts.Registry = importer.NewRegistry()
	}
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	if opts.CacheDir == "" {
		return st, errors.New("plan: a cache directory is required")
	}
	c := &cache{dir: opts.CacheDir}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return st, err
	}
	// One run at a time per cache and target; what an interrupted run
	// left is removed (see FindStale).
	unlock, err := lockAndSweep(target, c.dir, opts.Log)
	if err != nil {
		return st, err
	}
	defer unlock()
	// Phase 1: imports into the cache.
	outputs := map[string]string{} // Dom0 path → host file to copy
	for _, a := range p.Actions {
		if a.Kind != KindImport {
			continue
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		out, cached, err := c.importImage(ctx, opts, a)
		if err != nil {
			return st, fmt.Errorf("guest %q: import %s %s: %w", a.Guest, a.ImportType, a.Source, err)
		}
		if cached {
			st.ImportCached++
			opts.Log("cached   %s (%s import of %s)", a.Path, a.ImportType, a.Source)
		} else {
			st.Imported++
			opts.Log("imported %s (%s, %d MB) from %s", a.Path, a.ImportType, a.SizeMB, a.Source)
		}
		outputs[a.Path] = out
	}
	// Phase 2: everything else, in plan order.
	for _, a := range p.Actions {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		var err error
		switch a.Kind {
		case KindMkdir:
			err = target.MkdirAll(a.Path, 0o755)
		case KindImport, KindCopy:
			src := a.Source
			if a.Kind == KindImport {
				src = outputs[a.Path]
			}
			var skipped bool
			skipped, err = c.copyFile(target, a.Path, src)
			if skipped {
				st.CopySkipped++
				opts.Log("same     %s", a.Path)
			} else if err == nil {
				st.Copied++
				opts.Log("copied   %s", a.Path)
			}
		case KindConfig:
			err = writeIfChanged(target, a.Path, a.Data)
			st.Configs++
			opts.Log("config   %s (%s)", a.Path, a.Note)
		case KindSymlink:
			if cur, lerr := target.Readlink(a.Path); lerr != nil || cur != a.Target {
				err = target.Symlink(a.Target, a.Path)
			}
			st.Links++
			opts.Log("link     %s -> %s", a.Path, a.Target)
		case KindUnlink:
			if cur, lerr := target.Readlink(a.Path); lerr == nil && cur == "../"+a.Guest+".cfg" {
				err = target.Remove(a.Path)
				opts.Log("unlink   %s", a.Path)
			}
		}
		if err != nil {
			return st, fmt.Errorf("%s %s: %w", a.Kind, a.Path, err)
		}
	}
	return st, target.Close()
}

func writeIfChanged(target dom0fs.FS, p string, data []byte) error {
	if cur, err := target.ReadFile(p); err == nil && string(cur) == string(data) {
		return nil
	}
	return target.WriteFile(p, data, 0o644)
}

// cache keeps import outputs under a key derived from everything that
// determines them, and stamps of copies made into directory targets.
type cache struct{ dir string }

// importVersion changes when import output formats change, invalidating
// cached images.
const importVersion = "1"

func (c *cache) importImage(ctx context.Context, opts ApplyOptions, a Action) (string, bool, error) {
	fp, err := Fingerprint(a.Source)
	if err != nil {
		return "", false, err
	}
	epoch := ""
	if opts.Epoch != nil {
		epoch = fmt.Sprint(opts.Epoch.Unix())
	}
	id := fmt.Sprintf("v%s\x00%s\x00%d\x00%s\x00%s", importVersion, a.ImportType, a.SizeMB, epoch, fp)
	if a.ImportType == importer.TypeQcow2 {
		// The output depends on the backing files too.
		chain, err := importer.Qcow2BackingChain(importer.Request{Guest: a.Guest, Type: a.ImportType, Source: a.Source, BackingDir: a.BackingDir})
		if err != nil {
			return "", false, err
		}
		for _, b := range chain {
			bfp, err := Fingerprint(b)
			if err != nil {
				return "", false, err
			}
			id += "\x00" + bfp
		}
	}
	key := sha256.Sum256([]byte(id))
	out := filepath.Join(c.dir, "images", hex.EncodeToString(key[:])+".img")
	if _, err := os.Stat(out); err == nil {
		return out, true, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", false, err
	}
	h, err := opts.Registry.Lookup(a.ImportType)
	if err != nil {
		return "", false, err
	}
	req := importer.Request{Guest: a.Guest, Type: a.ImportType, Source: a.Source, Output: out, SizeMB: a.SizeMB, Epoch: opts.Epoch, BackingDir: a.BackingDir}
	if err := h.Import(ctx, req); err != nil {
		return "", false, err
	}
	return out, false, nil
}

// stamp records what a copy into a host directory produced, so an
// unchanged rerun can skip it without reading the file.
type stamp struct {
	Source string `json:"source"`
	Size   int64  `json:"size"`
	Mtime  int64  `json:"mtime"`
	Ino    uint64 `json:"ino"`
}

type hostPather interface {
	HostPath(p string) (string, error)
}

func (c *cache) copyFile(target dom0fs.FS, p, src string) (bool, error) {
	srcFP, err := Fingerprint(src)
	if err != nil {
		return false, err
	}
	stampFile := ""
	var hostDst string
	if hp, ok := target.(hostPather); ok {
		hostDst, err = hp.HostPath(p)
		if err != nil {
			return false, err
		}
		k := sha256.Sum256([]byte(hostDst))
		stampFile = filepath.Join(c.dir, "stamps", hex.EncodeToString(k[:16])+".json")
		if data, err := os.ReadFile(stampFile); err == nil {
			var s stamp
			if json.Unmarshal(data, &s) == nil && s.Source == srcFP && s == statStamp(hostDst, srcFP) {
				return true, nil
			}
		}
	}
	if err := target.CopyFile(p, src, 0o644); err != nil {
		return false, err
	}
	if stampFile != "" {
		s := statStamp(hostDst, srcFP)
		if data, err := json.Marshal(s); err == nil {
			os.MkdirAll(filepath.Dir(stampFile), 0o755)
			os.WriteFile(stampFile, data, 0o644)
		}
	}
	return false, nil
}

func statStamp(p, srcFP string) stamp {
	st, err := os.Stat(p)
	if err != nil {
		return stamp{}
	}
	s := stamp{Source: srcFP, Size: st.Size(), Mtime: st.ModTime().UnixNano()}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.Ino = sys.Ino
	}
	return s
}

// Fingerprint identifies the content of a file or directory tree from its
// metadata (path, size, mode, owner, modification and change times, link
// targets), the way make and ccache's direct mode do: cheap enough to run on
// every build, and changed by any edit.
func Fingerprint(p string) (string, error) {
	h := sha256.New()
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(h, "%s\x00", abs)
	if !st.IsDir() {
		writeMeta(h, ".", st)
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	var names []string
	err = filepath.WalkDir(abs, func(q string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		names = append(names, q)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	for _, q := range names {
		st, err := os.Lstat(q)
		if err != nil {
			return "", err
		}
		rel, _ := filepath.Rel(abs, q)
		writeMeta(h, rel, st)
		if st.Mode()&fs.ModeSymlink != 0 {
			t, _ := os.Readlink(q)
			fmt.Fprintf(h, "->%s\x00", t)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func writeMeta(w io.Writer, rel string, st fs.FileInfo) {
	fmt.Fprintf(w, "%s\x00%o\x00%d\x00%d", rel, st.Mode(), st.Size(), st.ModTime().UnixNano())
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		fmt.Fprintf(w, "\x00%d:%d\x00%d\x00%d.%d\x00%d", sys.Uid, sys.Gid, sys.Ino, sys.Ctim.Sec, sys.Ctim.Nsec, sys.Rdev)
	}
	io.WriteString(w, "\n")
}
