package imagestore

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Layer flattening.
//
// Flatten turns an image's layers into one tar stream of the final root
// file system, the way docker applies layers: in order, bottom layer first,
// each entry replacing what lower layers had at that path, ".wh.NAME"
// deleting NAME (and everything under it) from lower layers, and a
// ".wh..wh..opq" entry in directory D hiding everything lower layers had
// under D. Whiteouts affect lower layers only, never their own layer.
//
// We did not use go-containerregistry's mutate.Extract because it emits
// the top layer first: an entry of a later layer then precedes a symlinked
// parent directory created by an earlier layer (e.g. "var/run" -> "/run"),
// which cannot be resolved chroot-style in a single pass. It also rejects
// "../x" names instead of confining them, drops relative symlinks that point
// above the root (valid inside the guest), matches whiteouts on uncleaned
// names ("/a" versus "a") and lets the first of two same-named entries in one
// layer win.
//
// Flatten makes two passes over the layers: a header-only pass from the top
// layer down decides which entries survive, then a pass from the bottom up
// copies the survivors. Layers are therefore decompressed twice, but nothing
// is buffered in memory beyond one flag per entry. Names are cleaned as if the
// archive root were "/" ("../../x" is "x", "/abs" is "abs"); symlinked
// parents and every other safety check are left to tarsafe.Sanitize,
// which must read the result. A hard link whose target was removed or
// replaced by a later layer keeps the target's old content: the target's
// data is emitted under the link's name.

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
)

// layerPlan records pass 1's decisions for one layer, by entry index.
type layerPlan struct {
	keep   []bool
	rename map[int]string // dropped hard link target, emitted under this name
	relink map[int]string // hard link whose target is renamed
}

// seenPath is what upper layers did to a path.
type seenPath struct {
	layer int  // the highest layer that had the path
	hides bool // a non-directory or a whiteout: hides lower children too
}

// cleanName maps an archive name to a root-relative path ("" is the root).
func cleanName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

func parentOf(p string) string {
	d := path.Dir(p)
	if d == "." || d == "/" {
		return ""
	}
	return d
}

// Flatten returns the flattened root file system of layers (bottom first)
// as an uncompressed tar stream; see the notes above. Errors, including
// ctx's and corrupt layers (named by index and digest), are returned by Read.
// Closing the result stops the work. Layer digests are not verified here
// (the store verifies blobs when it writes them).
func Flatten(ctx context.Context, layers []v1.Layer) io.ReadCloser {
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		defer cancel()
		plans, err := planLayers(ctx, layers)
		if err == nil {
			err = emitLayers(ctx, layers, plans, pw)
		}
		pw.CloseWithError(err)
	}()
	return &cancelReader{PipeReader: pr, cancel: cancel}
}

// cancelReader stops Flatten's goroutine when closed, even while it is
// reading layers rather than writing.
type cancelReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (c *cancelReader) Close() error {
	c.cancel()
	return c.PipeReader.Close()
}

func layerName(i int, l v1.Layer) string {
	d, err := l.Digest()
	if err != nil {
		return fmt.Sprintf("layer %d", i+1)
	}
	return fmt.Sprintf("layer %d (%s)", i+1, d)
}

// forEachEntry reads the uncompressed tar of layer l.
func forEachEntry(ctx context.Context, i int, l v1.Layer, fn func(idx int, h *tar.Header, r io.Reader) error) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return fmt.Errorf("%s: %w", layerName(i, l), err)
	}
	defer rc.Close()
	tr := tar.NewReader(ctxReadCloser{ctx, rc})
	for idx := 0; ; idx++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: entry %d: %w", layerName(i, l), idx+1, err)
		}
		if err := fn(idx, h, tr); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: entry %d %q: %w", layerName(i, l), idx+1, h.Name, err)
		}
	}
	// What follows the end-of-archive marker is not read: layers from the
	// store were verified against their digests when they were stored, and
	// unbounded trailing data (a decompression bomb) costs only time.
	return nil
}

// planLayers is pass 1: top layer down, decide which entries survive.
func planLayers(ctx context.Context, layers []v1.Layer) ([]*layerPlan, error) {
	plans := make([]*layerPlan, len(layers))
	seen := map[string]seenPath{}
	opaque := map[string]bool{} // directories made opaque by upper layers
	hidden := func(name string, layer int) bool {
		for p := name; p != ""; {
			p = parentOf(p)
			if s, ok := seen[p]; ok && s.hides && s.layer > layer && p != "" {
				return true
			}
			if opaque[p] {
				return true
			}
		}
		return false
	}
	for i := len(layers) - 1; i >= 0; i-- {
		pl := &layerPlan{rename: map[int]string{}, relink: map[int]string{}}
		plans[i] = pl
		layerOpaque := map[string]bool{}
		byName := map[string]int{} // non-directory name → entry index holding its data
		promoted := map[int]string{}
		err := forEachEntry(ctx, i, layers[i], func(idx int, h *tar.Header, _ io.Reader) error {
			name := cleanName(h.Name)
			base := path.Base(name)
			keep := false
			defer func() { pl.keep = append(pl.keep, keep) }()
			if base == opaqueMarker {
				layerOpaque[parentOf(name)] = true
				return nil
			}
			if strings.HasPrefix(base, whiteoutPrefix) {
				target := path.Join(parentOf(name), base[len(whiteoutPrefix):])
				if s, ok := seen[target]; ok && s.layer > i {
					return nil
				}
				if !hidden(target, i) {
					seen[target] = seenPath{layer: i, hides: true}
				}
				return nil
			}
			// Remember where each name's data is, kept or not, so a hard
			// link to a dropped entry can take over its data.
			switch h.Typeflag {
			case tar.TypeDir:
				delete(byName, name)
			case tar.TypeLink:
				if ti, ok := byName[cleanName(h.Linkname)]; ok {
					byName[name] = ti
				} else {
					delete(byName, name)
				}
			default:
				byName[name] = idx
			}
			if s, ok := seen[name]; ok && s.layer > i {
				return nil // replaced or deleted by an upper layer
			}
			if name != "" && hidden(name, i) {
				return nil
			}
			keep = true
			seen[name] = seenPath{layer: i, hides: h.Typeflag != tar.TypeDir}
			if h.Typeflag != tar.TypeLink {
				return nil
			}
			ti, ok := byName[name]
			if !ok || pl.keep[ti] {
				return nil
			}
			if pn, ok := promoted[ti]; ok {
				pl.relink[idx] = pn
				return nil
			}
			// The target is gone in the final image: emit its data under
			// this link's name instead of the link.
			promoted[ti] = name
			pl.rename[ti] = name
			keep = false
			return nil
		})
		if err != nil {
			return nil, err
		}
		for d := range layerOpaque {
			opaque[d] = true
		}
	}
	return plans, nil
}

// emitLayers is pass 2: bottom layer up, copy the surviving entries.
func emitLayers(ctx context.Context, layers []v1.Layer, plans []*layerPlan, w io.Writer) error {
	tw := tar.NewWriter(w)
	for i, l := range layers {
		pl := plans[i]
		err := forEachEntry(ctx, i, l, func(idx int, h *tar.Header, r io.Reader) error {
			if idx >= len(pl.keep) {
				return fmt.Errorf("layer changed between reads")
			}
			newName, renamed := pl.rename[idx]
			if !pl.keep[idx] && !renamed {
				return nil
			}
			name := cleanName(h.Name)
			if renamed {
				name = newName
			}
			if name == "" {
				name = "."
			}
			h.Name = name
			if h.Typeflag == tar.TypeDir {
				h.Name += "/"
			}
			if t, ok := pl.relink[idx]; ok {
				h.Linkname = t
			}
			h.Format = tar.FormatPAX
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if h.Typeflag == tar.TypeReg {
				_, err := io.Copy(tw, r)
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return tw.Close()
}
