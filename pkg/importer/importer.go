// Package importer turns third-party guest sources into Xen-ready disk images:
// the import handlers of the xen-guest-bundle class (XEN_GUEST_SOURCE_TYPE).
//
// Built-in types:
//
//	rootfs_dir  directory             → ext4 image (no root, no fakeroot)
//	rootfs_tar  tar, .gz .bz2 .xz .zst → ext4 image, streamed: never extracted
//	qcow2       qcow2 image           → raw image (sparse)
//	ext4        ext4 image            → copy (reflink or sparse copy)
//	raw         raw disk image        → copy (reflink or sparse copy)
//
// Any other type <t> is served by an executable named xenbundle-import-<t>
// found on PATH (or declared with External and Registry.Register). It is run
// as `prog SOURCE OUTPUT SIZE_MB` and must create OUTPUT; see External. (Upstream's
// bbclass documents a custom xen_guest_import_<type> function but never
// calls it.)
//
// Every handler validates its source in Check and computes the space it
// needs in Estimate, before anything is written; an explicit
// XEN_GUEST_IMAGE_SIZE that is too small is reported there as a *SizeError
// naming the guest, the setting, the needed and the given size.
// Outputs are written under a temporary name next to Request.Output and
// renamed into place, so a failed import never leaves a partial image.
//
// Size argument (Request.SizeMB):
//   - rootfs_dir, rootfs_tar: the size of the new file system; 0 picks
//     AutoSizeMB of the content estimate.
//   - qcow2, ext4, raw: 0 keeps the source's (virtual) size. A size smaller
//     than the image is an error; a larger one extends the output with a
//     hole at the end. For ext4 only the file grows: the file system inside
//     keeps its size until resize2fs is run on it (by the guest or later).
//   - custom types: passed to the program as given (0 = not set).
//
// We wrote our own tar sanitizer (sanitize.go) and size estimator because the
// available libraries either extract to disk (containerd pkg/archive, umoci)
// or pass names through unchecked (go-containerregistry mutate.Extract), and
// the ext4 writer needs a trustworthy stream.
package importer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// SettingImageSize is the varflag that sets Request.SizeMB, named in errors.
const SettingImageSize = "XEN_GUEST_IMAGE_SIZE"

// SettingBackingDir is the varflag that sets Request.BackingDir, named in
// errors (manifest: source.backingDir; xenbundle import: --backing-dir).
const SettingBackingDir = "XEN_GUEST_SOURCE_BACKING_DIR"

// ExternalPrefix is the program name prefix of custom import handlers:
// type t is served by ExternalPrefix + t.
const ExternalPrefix = "xenbundle-import-"

// MiB is one mebibyte, the unit of Request.SizeMB.
const MiB = 1 << 20

// MaxImageMB is the largest image an import writes, in MiB: 16 TiB, the
// largest ext4 file system with 4 KiB blocks that the ext4 writer makes
// (and XEN_GUEST_IMAGE_SIZE's upper bound). Sources declaring more content
// are refused before anything is written.
const MaxImageMB = 16 << 20

// Request is one guest image import.
type Request struct {
	Guest  string     // guest name, for error messages
	Type   string     // import type
	Source string     // resolved source path
	Output string     // output image path (written under a temporary name, then renamed)
	SizeMB int        // 0 = automatic
	Epoch  *time.Time // SOURCE_DATE_EPOCH
	// BackingDir is a directory, besides the source's own, that a qcow2
	// source's backing files may resolve into (SettingBackingDir); by
	// default backing files must stay in the source's directory.
	BackingDir string
}

// Handler imports one source type.
type Handler interface {
	// Type is the XEN_GUEST_SOURCE_TYPE value the handler serves.
	Type() string
	// Tools lists the native tools Import runs (name + Debian package).
	Tools() []Tool
	// Check validates the source (exists, right kind, magic bytes) without
	// doing any work.
	Check(req Request) error
	// Estimate returns the bytes the output needs (content plus file system
	// metadata for file system types, the image size for image types, 0 when
	// unknown) and reports an explicit SizeMB that is too small as a
	// *SizeError. It may read the whole source (a tarball): cancelling ctx
	// stops it.
	Estimate(ctx context.Context, req Request) (int64, error)
	// Import writes req.Output.
	Import(ctx context.Context, req Request) error
}

// Tool is a native program a handler needs.
type Tool struct {
	Name          string // program name looked up on PATH, or an absolute path
	DebianPackage string // the Debian package providing it ("" if unknown)
}

// Registry maps import types to handlers.
type Registry struct {
	mu       sync.RWMutex
	handlers map[string]Handler
	path     *string
	depends  map[string][]Tool
}

// Option configures NewRegistry.
type Option func(*Registry)

// WithSearchPath sets the PATH-style directory list searched for
// xenbundle-import-<type> programs (default: $PATH at lookup time).
func WithSearchPath(pathList string) Option {
	return func(r *Registry) { r.path = &pathList }
}

// WithDepends declares the native tools of a custom type found on the search
// path (XEN_GUEST_IMPORT_DEPENDS_<type>); they are returned by its Tools.
func WithDepends(typ string, tools []Tool) Option {
	return func(r *Registry) { r.depends[typ] = slices.Clone(tools) }
}

// NewRegistry returns a registry holding the built-in handlers. Types not
// registered are looked up as xenbundle-import-<type> programs on the search
// path.
func NewRegistry(opts ...Option) *Registry {
	r := &Registry{handlers: map[string]Handler{}, depends: map[string][]Tool{}}
	for _, h := range builtins() {
		r.handlers[h.Type()] = h
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Register adds h, replacing any handler of the same type.
func (r *Registry) Register(h Handler) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handlers[h.Type()] = h
}

// validType is the syntax of an import type: it becomes part of a program
// name, so no path separators.
var validType = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)

// UnknownTypeError is returned by Lookup for a type with no handler.
type UnknownTypeError struct {
	Type  string   // the requested type
	Valid []string // the types that do exist
}

// Error implements error; it lists the valid types.
func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("unknown import type %q; valid types: %s (or install a program named %s%s on PATH)",
		e.Type, strings.Join(e.Valid, ", "), ExternalPrefix, e.Type)
}

// Lookup returns the handler for typ: a registered one, else a
// xenbundle-import-<typ> program on the search path. An unknown type is an
// *UnknownTypeError listing the valid types.
func (r *Registry) Lookup(typ string) (Handler, error) {
	if !validType.MatchString(typ) {
		return nil, fmt.Errorf("invalid import type %q: use letters, digits and _ . + - only; valid types: %s", typ, strings.Join(r.Types(), ", "))
	}
	r.mu.RLock()
	h := r.handlers[typ]
	r.mu.RUnlock()
	if h != nil {
		return h, nil
	}
	if p := r.findProgram(typ); p != "" {
		return External(typ, p, r.depends[typ]), nil
	}
	return nil, &UnknownTypeError{Type: typ, Valid: r.Types()}
}

// Types lists the registered types and the custom types found on the search
// path, sorted.
func (r *Registry) Types() []string {
	set := map[string]bool{}
	r.mu.RLock()
	for t := range r.handlers {
		set[t] = true
	}
	r.mu.RUnlock()
	for _, dir := range filepath.SplitList(r.searchPath()) {
		ents, err := os.ReadDir(dirOrDot(dir))
		if err != nil {
			continue
		}
		for _, e := range ents {
			t, ok := strings.CutPrefix(e.Name(), ExternalPrefix)
			if ok && validType.MatchString(t) && isExecutable(filepath.Join(dirOrDot(dir), e.Name())) {
				set[t] = true
			}
		}
	}
	types := make([]string, 0, len(set))
	for t := range set {
		types = append(types, t)
	}
	sort.Strings(types)
	return types
}

func (r *Registry) searchPath() string {
	if r.path != nil {
		return *r.path
	}
	return os.Getenv("PATH")
}

func dirOrDot(d string) string {
	if d == "" {
		return "."
	}
	return d
}

// findProgram returns the path of the first executable ExternalPrefix+typ
// in the search path, or "".
func (r *Registry) findProgram(typ string) string {
	for _, dir := range filepath.SplitList(r.searchPath()) {
		p := filepath.Join(dirOrDot(dir), ExternalPrefix+typ)
		if isExecutable(p) {
			if abs, err := filepath.Abs(p); err == nil {
				return abs
			}
			return p
		}
	}
	return ""
}

// isExecutable reports whether p is a regular file with an execute bit.
func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

// MissingToolsError lists native tools that were not found.
type MissingToolsError struct {
	Missing []Tool
}

// Error implements error; it names every tool, its package and an apt-get line.
func (e *MissingToolsError) Error() string {
	var names, pkgs []string
	seen := map[string]bool{}
	for _, t := range e.Missing {
		if t.DebianPackage == "" {
			names = append(names, t.Name+" (no Debian package declared)")
			continue
		}
		names = append(names, fmt.Sprintf("%s (Debian package %s)", t.Name, t.DebianPackage))
		if !seen[t.DebianPackage] {
			seen[t.DebianPackage] = true
			pkgs = append(pkgs, t.DebianPackage)
		}
	}
	msg := "missing native tools: " + strings.Join(names, ", ")
	if len(pkgs) > 0 {
		msg += "; install them with: apt-get install " + strings.Join(pkgs, " ")
	}
	return msg
}

// CheckTools verifies that every tool is an executable on PATH (or, for a
// name containing a slash, at that path). The error is a *MissingToolsError
// naming every missing tool and its Debian package.
func CheckTools(tools []Tool) error {
	var missing []Tool
	seen := map[string]bool{}
	for _, t := range tools {
		if seen[t.Name] {
			continue
		}
		seen[t.Name] = true
		if strings.Contains(t.Name, "/") {
			if !isExecutable(t.Name) {
				missing = append(missing, t)
			}
			continue
		}
		if _, err := exec.LookPath(t.Name); err != nil {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return &MissingToolsError{Missing: missing}
	}
	return nil
}

// SizeError reports an explicit image size that cannot hold the content.
type SizeError struct {
	Guest    string // guest name
	Type     string // import type
	NeededMB int    // the smallest size that works
	GivenMB  int    // the size asked for
	What     string // what needs the space
}

// Error implements error; it names the guest, the setting and both sizes.
func (e *SizeError) Error() string {
	return fmt.Sprintf("guest %q: %s[%s] = %d MB is too small: %s needs at least %d MB",
		e.Guest, SettingImageSize, e.Guest, e.GivenMB, e.What, e.NeededMB)
}

// reqError prefixes an error with the guest, type and source.
func reqError(req Request, err error) error {
	var se *SizeError
	if errors.As(err, &se) {
		return err // already names the guest
	}
	return fmt.Errorf("guest %q: %s import of %s: %w", req.Guest, req.Type, req.Source, err)
}

// checkCommon validates the request fields every handler needs.
func checkCommon(req Request) error {
	if req.Source == "" {
		return errors.New("no source given (XEN_GUEST_SOURCE_FILE)")
	}
	if req.SizeMB < 0 {
		return fmt.Errorf("%s must not be negative (got %d)", SettingImageSize, req.SizeMB)
	}
	if req.SizeMB > MaxImageMB {
		return fmt.Errorf("%s = %d MB is larger than the maximum image size of %d MB (16 TiB)", SettingImageSize, req.SizeMB, MaxImageMB)
	}
	return nil
}

// statKind checks that the source exists and is a directory (wantDir) or a
// regular file.
func statKind(req Request, wantDir bool) (fs.FileInfo, error) {
	if err := checkCommon(req); err != nil {
		return nil, err
	}
	fi, err := os.Stat(req.Source)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("source %s does not exist", req.Source)
		}
		return nil, err
	}
	switch {
	case wantDir && !fi.IsDir():
		return nil, fmt.Errorf("source %s is not a directory (it is a %s); %s needs an extracted root file system", req.Source, kindName(fi), req.Type)
	case !wantDir && !fi.Mode().IsRegular():
		return nil, fmt.Errorf("source %s is not a regular file (it is a %s)", req.Source, kindName(fi))
	}
	return fi, nil
}

func kindName(fi fs.FileInfo) string {
	switch m := fi.Mode(); {
	case m.IsDir():
		return "directory"
	case m.IsRegular():
		return "regular file"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	default:
		return m.Type().String()
	}
}
