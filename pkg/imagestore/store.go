// Package imagestore is vxn's local OCI image store on Dom0: content-addressed
// blobs, a table of names (tags) pointing at manifest digests, and the
// read-only ext4 guest disk of each image, built once per image ID and
// reused.
//
// Layout under the root directory (DefaultRoot unless configured):
//
//	lock                   flock: shared for reads and blob copies, exclusive for changes
//	images.json            {"tags": {"<canonical reference>": "sha256:<manifest digest>"}}
//	blobs/sha256/<hex>     manifests, configs and layers, verified before being renamed in
//	disks/<id hex>.ext4    read-only guest disk of image ID sha256:<id hex>
//	disks/<id hex>.lock    serialises building that disk
//	tmp/                   partial downloads
//
// Names are canonical oci.Reference strings ("index.docker.io/library/alpine:latest",
// "oci-layout:/abs/dir:tag", ...). An image lives as long as one name points at
// it: Remove (rmi) and re-pointing a name delete unreferenced blobs and disks.
//
// We keep our own small store instead of an OCI layout written by
// go-containerregistry's layout package because that package writes blobs in
// place (an interrupted or tampered download leaves a blob of the right size
// with the wrong content, which it then trusts) and has no locking; here every
// blob is hashed before it is renamed into place and all changes happen under
// a file lock, so concurrent vxn processes are safe. go-containerregistry
// still does the fetching (pkg/oci) and reads images back (partial).
//
// The guest disk is made by flattening the layers in order with whiteouts
// and opaque directories applied (flatten.go), passing the single tar stream
// through tarsafe.Sanitize (no entry can land outside the image root),
// and streaming it into ext4.FromTar: nothing is ever extracted on the host.
package imagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"golang.org/x/sync/errgroup"

	"github.com/vxn-dev/vxn/pkg/oci"
)

// DefaultRoot is the store's root directory unless configured otherwise.
const DefaultRoot = "/var/lib/vxn"

// ErrNotFound is wrapped by the error for a reference that names no image
// in the store.
var ErrNotFound = errors.New("no such image")

// Store is an image store rooted at a directory. It is safe for concurrent
// use by goroutines and by several processes sharing the directory.
type Store struct {
	root string
}

// Image is an image in the store.
type Image struct {
	// ID is the image ID, the digest of its config ("sha256:…"), as docker
	// shows it. Guest disks are keyed by it.
	ID string
	// Digest is the manifest digest ("sha256:…").
	Digest string
	// Names are the canonical references pointing at the image, sorted.
	Names []string
	// Config is the image config (Entrypoint, Cmd, Env, WorkingDir, User in
	// Config.Config).
	Config *v1.ConfigFile
	// Size is the total size of the layer blobs as stored (compressed).
	Size int64

	img v1.Image
}

// V1 returns the image as a go-containerregistry image backed by the store.
func (i *Image) V1() v1.Image { return i.img }

// index is images.json.
type index struct {
	Tags map[string]string `json:"tags"`
}

// Open opens (creating if needed) the store at root; "" means DefaultRoot.
func Open(root string) (*Store, error) {
	if root == "" {
		root = DefaultRoot
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"blobs/sha256", "disks", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	return &Store{root: root}, nil
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

func (s *Store) lock(exclusive bool) (func(), error) {
	return flock(filepath.Join(s.root, "lock"), exclusive)
}

// lockedIndex takes the store lock (exclusive for writers) and reads the
// index; the caller must call unlock.
func (s *Store) lockedIndex(exclusive bool) (*index, func(), error) {
	unlock, err := s.lock(exclusive)
	if err != nil {
		return nil, nil, err
	}
	ix, err := s.readIndex()
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return ix, unlock, nil
}

func (s *Store) readIndex() (*index, error) {
	p := filepath.Join(s.root, "images.json")
	b, err := os.ReadFile(p)
	ix := &index{Tags: map[string]string{}}
	if errors.Is(err, os.ErrNotExist) {
		return ix, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, ix); err != nil {
		return nil, fmt.Errorf("image store %s: %w", p, err)
	}
	if ix.Tags == nil {
		ix.Tags = map[string]string{}
	}
	return ix, nil
}

// writeIndex replaces images.json atomically; call with the exclusive lock.
func (s *Store) writeIndex(ix *index) error {
	b, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.root, "tmp"), "images-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(s.root, "images.json"))
}

// Pull fetches the image ref names (any oci.ParseReference form), copies
// its blobs into the store (opt.Jobs at a time, reporting opt.Progress) and
// points the reference's canonical name at it. Blobs already stored are not
// copied again.
func (s *Store) Pull(ctx context.Context, ref string, opt oci.Options) (*Image, error) {
	r, err := oci.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	img, err := oci.Fetch(ctx, r, opt)
	if err != nil {
		return nil, err
	}
	return s.put(ctx, "pulling", r.String(), img, opt)
}

// Add copies img (an image built in Go, for example) into the store under
// the name ref, like docker load: ref must be a registry reference with a
// tag ("busybox" names "index.docker.io/library/busybox:latest"), so the
// stored name holds no file system path. A name pointing at another image
// is re-pointed. Only opt.Jobs and opt.Progress are used; the image's
// platform is not checked (a store may be filled for another machine).
func (s *Store) Add(ctx context.Context, img v1.Image, ref string, opt oci.Options) (*Image, error) {
	r, err := oci.ParseReference(ref)
	if err != nil {
		return nil, err
	}
	if r.Transport != oci.Registry || r.Digest() != "" {
		return nil, fmt.Errorf("adding an image as %q: the name must be a registry reference with a tag, like repo/name:tag", ref)
	}
	return s.put(ctx, "adding", r.String(), img, opt)
}

// put copies img's blobs into the store and points the canonical name at
// it; verb ("pulling") starts copy errors.
func (s *Store) put(ctx context.Context, verb, name string, img v1.Image, opt oci.Options) (*Image, error) {
	digest, err := s.copyImage(ctx, img, opt, true)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, name, err)
	}

	unlock, err := s.lock(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// A concurrent Remove may have collected our blobs between the copy
	// and now; copy whatever is missing again (under the lock: no race).
	quiet := opt
	quiet.Progress = nil
	if _, err := s.copyImage(ctx, img, quiet, false); err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, name, err)
	}
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	ix.Tags[name] = digest.String()
	if err := s.writeIndex(ix); err != nil {
		return nil, err
	}
	if err := s.collect(ix); err != nil {
		return nil, err
	}
	return s.image(ix, digest)
}

// copyImage copies the blobs of img into the store and returns its manifest
// digest. With shared set it holds the shared lock while copying.
func (s *Store) copyImage(ctx context.Context, img v1.Image, opt oci.Options, shared bool) (v1.Hash, error) {
	if shared {
		unlock, err := s.lock(false)
		if err != nil {
			return v1.Hash{}, err
		}
		defer unlock()
	}
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	mf, err := img.Manifest()
	if err != nil {
		return v1.Hash{}, err
	}
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}

	var mu sync.Mutex
	var prog oci.Progress
	report := func(n int64) {
		if opt.Progress == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		prog.Complete += n
		opt.Progress(prog)
	}
	prog.Total = int64(len(rawCfg))
	if s.hasBlob(mf.Config.Digest) {
		prog.Complete = prog.Total
	}
	var todo []v1.Layer
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return v1.Hash{}, err
		}
		sz, err := l.Size()
		if err != nil {
			return v1.Hash{}, err
		}
		prog.Total += sz
		if s.hasBlob(d) {
			prog.Complete += sz
		} else {
			todo = append(todo, l)
		}
	}
	report(0)

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opt.JobsOrDefault())
	for _, l := range todo {
		g.Go(func() error {
			d, _ := l.Digest()
			return s.writeBlob(d, func() (io.ReadCloser, error) {
				rc, err := l.Compressed()
				if err != nil {
					return nil, err
				}
				return ctxReadCloser{gctx, rc}, nil
			}, report)
		})
	}
	if err := g.Wait(); err != nil {
		return v1.Hash{}, err
	}
	if err := s.writeBlob(mf.Config.Digest, bytesOpener(rawCfg), report); err != nil {
		return v1.Hash{}, err
	}
	if err := s.writeBlob(digest, bytesOpener(raw), nil); err != nil {
		return v1.Hash{}, err
	}
	return digest, nil
}

// image builds an Image for the manifest digest, with its names from ix.
func (s *Store) image(ix *index, digest v1.Hash) (*Image, error) {
	si, err := s.loadImage(digest)
	if err != nil {
		return nil, err
	}
	img, err := partial.CompressedToImage(si)
	if err != nil {
		return nil, err
	}
	cf, err := parseConfig(si.config)
	if err != nil {
		return nil, fmt.Errorf("image store: config %s: %w", si.mf.Config.Digest, err)
	}
	out := &Image{ID: si.mf.Config.Digest.String(), Digest: digest.String(), Config: cf, img: img}
	for _, l := range si.mf.Layers {
		out.Size += l.Size
	}
	for n, d := range ix.Tags {
		if d == out.Digest {
			out.Names = append(out.Names, n)
		}
	}
	sort.Strings(out.Names)
	return out, nil
}

var idPrefix = regexp.MustCompile(`^(sha256:)?[0-9a-f]{4,64}$`)

// lookup resolves ref against ix: a name (after canonicalisation), a
// registry digest reference, or an image ID (prefix, at least 4 hex digits,
// optionally "sha256:"). It returns the manifest digest.
func (s *Store) lookup(ix *index, ref string) (v1.Hash, string, error) {
	r, perr := oci.ParseReference(ref)
	if perr == nil {
		if d, ok := ix.Tags[r.String()]; ok {
			h, err := v1.NewHash(d)
			return h, r.String(), err
		}
		if dg := r.Digest(); dg != "" {
			for _, d := range ix.Tags {
				if d == dg {
					h, err := v1.NewHash(d)
					return h, "", err
				}
			}
		}
	}
	if idPrefix.MatchString(ref) {
		want := strings.TrimPrefix(ref, "sha256:")
		var found []v1.Hash
		seen := map[string]bool{}
		for _, d := range ix.Tags {
			if seen[d] {
				continue
			}
			seen[d] = true
			h, err := v1.NewHash(d)
			if err != nil {
				continue
			}
			si, err := s.loadImage(h)
			if err != nil {
				continue
			}
			if strings.HasPrefix(si.mf.Config.Digest.Hex, want) {
				found = append(found, h)
			}
		}
		if len(found) == 1 {
			return found[0], "", nil
		}
		if len(found) > 1 {
			return v1.Hash{}, "", fmt.Errorf("image ID prefix %q is ambiguous (%d images)", ref, len(found))
		}
	}
	if perr != nil && !idPrefix.MatchString(ref) {
		return v1.Hash{}, "", perr
	}
	return v1.Hash{}, "", fmt.Errorf("%w: %s", ErrNotFound, ref)
}

// Lookup returns the stored image ref names, without any network access.
// ref is a reference (canonicalised as by oci.ParseReference, so "alpine"
// finds "index.docker.io/library/alpine:latest") or an image ID prefix. An
// unknown image is an error wrapping ErrNotFound.
func (s *Store) Lookup(ref string) (*Image, error) {
	ix, unlock, err := s.lockedIndex(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	h, _, err := s.lookup(ix, ref)
	if err != nil {
		return nil, err
	}
	return s.image(ix, h)
}

// Ensure returns the stored image ref names, pulling it first when it is
// not in the store (docker run's "missing" pull policy). pulled says
// whether a pull happened.
func (s *Store) Ensure(ctx context.Context, ref string, opt oci.Options) (img *Image, pulled bool, err error) {
	img, err = s.Lookup(ref)
	if err == nil {
		return img, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	img, err = s.Pull(ctx, ref, opt)
	return img, err == nil, err
}

// List returns every stored image, sorted by first name.
func (s *Store) List() ([]*Image, error) {
	ix, unlock, err := s.lockedIndex(false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out []*Image
	seen := map[string]bool{}
	for _, d := range ix.Tags {
		if seen[d] {
			continue
		}
		seen[d] = true
		h, err := v1.NewHash(d)
		if err != nil {
			return nil, fmt.Errorf("image store %s: images.json: %w", s.root, err)
		}
		img, err := s.image(ix, h)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Names[0] < out[j].Names[0] })
	return out, nil
}

// Tag points the name dst at the image src names (docker tag). dst must be
// a registry reference with a tag (not a digest); an image dst pointed at
// before and left without names is deleted.
func (s *Store) Tag(src, dst string) error {
	r, err := oci.ParseReference(dst)
	if err != nil {
		return err
	}
	if r.Transport != oci.Registry || r.Digest() != "" {
		return fmt.Errorf("tag %q: the new name must be a registry reference with a tag, like repo/name:tag", dst)
	}
	ix, unlock, err := s.lockedIndex(true)
	if err != nil {
		return err
	}
	defer unlock()
	h, _, err := s.lookup(ix, src)
	if err != nil {
		return err
	}
	ix.Tags[r.String()] = h.String()
	if err := s.writeIndex(ix); err != nil {
		return err
	}
	return s.collect(ix)
}

// Removed reports what Remove did, in docker rmi's terms.
type Removed struct {
	// Untagged are the names removed.
	Untagged []string
	// Deleted is the ID of the deleted image, "" when it still has names.
	Deleted string
}

// Remove is docker rmi. Given a name, it removes that name; given an image
// ID (or a digest reference), it removes every name of the image, which
// for an image with several names requires force. An image left without
// names is deleted together with its guest disk and unshared blobs.
func (s *Store) Remove(ref string, force bool) (*Removed, error) {
	ix, unlock, err := s.lockedIndex(true)
	if err != nil {
		return nil, err
	}
	defer unlock()
	h, name, err := s.lookup(ix, ref)
	if err != nil {
		return nil, err
	}
	img, err := s.image(ix, h)
	if err != nil {
		return nil, err
	}
	rm := &Removed{}
	if name != "" {
		rm.Untagged = []string{name}
	} else {
		if len(img.Names) > 1 && !force {
			return nil, fmt.Errorf("image %s is referenced by %d names (%s): remove them one by one or force",
				short(img.ID), len(img.Names), strings.Join(img.Names, ", "))
		}
		rm.Untagged = img.Names
	}
	for _, n := range rm.Untagged {
		delete(ix.Tags, n)
	}
	if len(rm.Untagged) == len(img.Names) {
		rm.Deleted = img.ID
	}
	if err := s.writeIndex(ix); err != nil {
		return nil, err
	}
	return rm, s.collect(ix)
}

// short is the 12-hex-digit form of an image ID.
func short(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// collect deletes blobs and disks no name in ix references, and stale
// temporary files. Call with the exclusive lock.
func (s *Store) collect(ix *index) error {
	keep := map[string]bool{}
	keepDisk := map[string]bool{}
	for _, d := range ix.Tags {
		h, err := v1.NewHash(d)
		if err != nil {
			continue
		}
		keep[h.Hex] = true
		si, err := s.loadImage(h)
		if err != nil {
			// Keep what we cannot read rather than guess.
			return nil
		}
		keep[si.mf.Config.Digest.Hex] = true
		keepDisk[si.mf.Config.Digest.Hex] = true
		for _, l := range si.mf.Layers {
			keep[l.Digest.Hex] = true
		}
	}
	var errs []error
	dir := filepath.Join(s.root, "blobs", "sha256")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !keep[e.Name()] {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	ddir := filepath.Join(s.root, "disks")
	ents, err = os.ReadDir(ddir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		id, _, _ := strings.Cut(e.Name(), ".")
		if !keepDisk[id] && strings.HasSuffix(e.Name(), diskSuffix) {
			if err := os.Remove(filepath.Join(ddir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
