// Package debpkg fetches, verifies, caches and extracts Debian binary
// packages for building reference images (the Xen host and guest images).
//
// It drives the host's own apt configuration instead of talking to a mirror
// directly: `apt-cache show` resolves a name to an exact version, file name
// and SHA-256 from the local Packages indexes, `apt-get download` fetches the
// .deb (so mirrors, proxies and keyrings configured in /etc/apt apply), and
// `dpkg-deb -x` extracts it. We wrote this small layer ourselves instead of
// using a Go apt implementation (pault.ag/go/debian would parse indexes but
// not replace apt's signed-index verification) because apt already verifies
// the signed Release files; this package only has to pin versions, re-check
// the SHA-256 of every .deb that enters the cache, and make a cached build
// run without network access.
//
// Cache layout under CacheDir:
//
//	debs/<name>_<version>_<arch>.deb     verified package files
//	root/<name>_<version>_<arch>/        extracted trees (stamp file inside)
//
// Versions are escaped like apt does (':' becomes "%3a").
package debpkg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Package is one resolved binary package: everything needed to fetch it
// again and to verify it.
type Package struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Arch     string `json:"arch"`
	Filename string `json:"filename,omitempty"` // pool path on the mirror
	Size     int64  `json:"size,omitempty"`
	SHA256   string `json:"sha256"`
	Depends  string `json:"-"` // raw Depends field; not recorded in locks
}

// ID returns "name_version_arch" with the version escaped for file names.
func (p Package) ID() string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_" + p.Arch
}

// Fetcher resolves, downloads and extracts packages with the host's apt.
// The zero value is not usable; set CacheDir.
type Fetcher struct {
	// CacheDir is the root of the package cache (created on demand).
	CacheDir string
	// Logf, when set, receives progress messages.
	Logf func(format string, args ...any)
	// NoUpdate forbids running `apt-get update` when a package is unknown.
	NoUpdate bool
	// Arch is the Debian architecture of the packages to resolve (amd64,
	// arm64); "" or the build machine's own architecture resolves names as
	// apt does by default. A foreign architecture must be enabled in dpkg
	// (`dpkg --add-architecture ARCH` and `apt-get update`); names are then
	// looked up as name:ARCH, falling back to name:all.
	Arch string

	mu      sync.Mutex
	updated bool
	native  string
}

// nativeArch returns `dpkg --print-architecture` (cached).
func (f *Fetcher) nativeArch(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.native != "" {
		return f.native, nil
	}
	out, err := run(ctx, "", "dpkg", "--print-architecture")
	if err != nil {
		return "", err
	}
	f.native = strings.TrimSpace(string(out))
	return f.native, nil
}

// foreignArch returns f.Arch when it is not the build machine's own
// architecture ("" otherwise), after checking that dpkg knows it.
func (f *Fetcher) foreignArch(ctx context.Context) (string, error) {
	if f.Arch == "" {
		return "", nil
	}
	native, err := f.nativeArch(ctx)
	if err != nil {
		return "", err
	}
	if f.Arch == native {
		return "", nil
	}
	out, err := run(ctx, "", "dpkg", "--print-foreign-architectures")
	if err != nil {
		return "", err
	}
	for _, a := range strings.Fields(string(out)) {
		if a == f.Arch {
			return f.Arch, nil
		}
	}
	return "", fmt.Errorf("packages for %s: dpkg on this %s machine has no %s architecture; run `dpkg --add-architecture %s && apt-get update` (scripts/deps.sh --arch %s does it)",
		f.Arch, native, f.Arch, f.Arch, f.Arch)
}

func (f *Fetcher) logf(format string, args ...any) {
	if f.Logf != nil {
		f.Logf(format, args...)
	}
}

// run executes a command and returns stdout; the error includes stderr.
func run(ctx context.Context, dir string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// aptUpdate runs `apt-get update` at most once per Fetcher.
func (f *Fetcher) aptUpdate(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.updated || f.NoUpdate {
		return errors.New("apt-get update not attempted (already done or disabled)")
	}
	f.updated = true
	f.logf("debpkg: running apt-get update")
	_, err := run(ctx, "", "apt-get", "update", "-q")
	return err
}

// show runs `apt-cache show` for one spec ("name" or "name=version").
func show(ctx context.Context, spec string) (Package, error) {
	out, err := run(ctx, "", "apt-cache", "show", "--no-all-versions", spec)
	if err != nil {
		return Package{}, err
	}
	st, err := ParseControl(bytes.NewReader(out), "apt-cache show "+spec)
	if err != nil {
		return Package{}, err
	}
	if len(st) == 0 {
		return Package{}, fmt.Errorf("apt-cache show %s: no package record", spec)
	}
	return PackageFromStanza(st[0], "apt-cache show "+spec)
}

// PackageFromStanza converts a Packages-index stanza into a Package and
// checks that the fields needed for verification are present.
func PackageFromStanza(s Stanza, source string) (Package, error) {
	p := Package{
		Name:     s.Get("Package"),
		Version:  s.Get("Version"),
		Arch:     s.Get("Architecture"),
		Filename: s.Get("Filename"),
		SHA256:   strings.ToLower(s.Get("SHA256")),
		Depends:  s.Get("Depends"),
	}
	if sz := s.Get("Size"); sz != "" {
		n, err := strconv.ParseInt(sz, 10, 64)
		if err != nil || n < 0 {
			return Package{}, fmt.Errorf("%s: bad Size %q", source, clip(sz))
		}
		p.Size = n
	}
	switch {
	case p.Name == "":
		return Package{}, fmt.Errorf("%s: missing Package field", source)
	case p.Version == "":
		return Package{}, fmt.Errorf("%s: package %s: missing Version field", source, p.Name)
	case p.Arch == "":
		return Package{}, fmt.Errorf("%s: package %s: missing Architecture field", source, p.Name)
	case len(p.SHA256) != 64 || !isHex(p.SHA256):
		return Package{}, fmt.Errorf("%s: package %s: missing or malformed SHA256 %q", source, p.Name, clip(p.SHA256))
	case strings.ContainsAny(p.Name+p.Version+p.Arch, "/\x00") || strings.Contains(p.Version, ".."):
		return Package{}, fmt.Errorf("%s: package %s: name/version/arch contains a path separator", source, p.Name)
	}
	return p, nil
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// showAll resolves many specs with one `apt-cache show` call (each call
// can cost seconds when apt rebuilds its binary cache). It fails if any
// spec is unknown.
func showAll(ctx context.Context, specs []string) ([]Package, error) {
	ps, err := showSome(ctx, specs)
	if err != nil {
		return nil, err
	}
	byName := map[string]Package{}
	for _, p := range ps {
		byName[p.Name] = p
	}
	res := make([]Package, len(specs))
	for i, spec := range specs {
		name, ver, _ := strings.Cut(spec, "=")
		name, _, _ = strings.Cut(name, ":")
		p, ok := byName[name]
		if !ok || (ver != "" && p.Version != ver) {
			return nil, fmt.Errorf("apt-cache show: no record for %s", spec)
		}
		res[i] = p
	}
	return res, nil
}

// showSome is `apt-cache show` of specs, returning the records it has
// (apt prints nothing for name:arch when name exists only for other
// architectures).
func showSome(ctx context.Context, specs []string) ([]Package, error) {
	args := append([]string{"show", "--no-all-versions"}, specs...)
	out, err := run(ctx, "", "apt-cache", args...)
	if err != nil {
		return nil, err
	}
	st, err := ParseControl(bytes.NewReader(out), "apt-cache show")
	if err != nil {
		return nil, err
	}
	ps := make([]Package, 0, len(st))
	for _, s := range st {
		p, err := PackageFromStanza(s, "apt-cache show")
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Resolve maps package specs ("name" or "name=version") to exact packages
// using the local apt indexes. When a name is unknown it runs
// `apt-get update` once and retries.
func (f *Fetcher) Resolve(ctx context.Context, specs ...string) ([]Package, error) {
	arch, err := f.foreignArch(ctx)
	if err != nil {
		return nil, err
	}
	if arch != "" {
		return f.resolveForeign(ctx, arch, specs)
	}
	if len(specs) > 1 {
		if ps, err := showAll(ctx, specs); err == nil {
			return ps, nil
		}
	}
	out := make([]Package, 0, len(specs))
	for _, spec := range specs {
		p, err := show(ctx, spec)
		if err != nil {
			if uerr := f.aptUpdate(ctx); uerr == nil {
				p, err = show(ctx, spec)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", spec, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// resolveForeign resolves specs as name:arch, and those without such a
// record as name:all (apt has no name:arm64 record of an Architecture: all
// package).
func (f *Fetcher) resolveForeign(ctx context.Context, arch string, specs []string) ([]Package, error) {
	qualify := func(spec, a string) string {
		name, ver, hasVer := strings.Cut(spec, "=")
		if hasVer {
			return name + ":" + a + "=" + ver
		}
		return name + ":" + a
	}
	// Two apt-cache calls in the common case: every name as name:arch,
	// then the ones without such a record as name:all.
	if len(specs) > 1 {
		found := map[string]Package{}
		var missing []string
		for _, a := range []string{arch, "all"} {
			q := make([]string, 0, len(specs))
			for _, s := range specs {
				if name, _, _ := strings.Cut(s, "="); found[name].Name == "" {
					q = append(q, qualify(s, a))
				}
			}
			if len(q) == 0 {
				break
			}
			ps, err := showSome(ctx, q)
			if err != nil {
				break
			}
			for _, p := range ps {
				found[p.Name] = p
			}
		}
		res := make([]Package, 0, len(specs))
		for _, s := range specs {
			name, ver, _ := strings.Cut(s, "=")
			p, ok := found[name]
			if !ok || (ver != "" && p.Version != ver) || (p.Arch != arch && p.Arch != "all") {
				missing = append(missing, s)
				continue
			}
			res = append(res, p)
		}
		if len(missing) == 0 {
			return res, nil
		}
	}
	out := make([]Package, 0, len(specs))
	for _, spec := range specs {
		var p Package
		var err error
		for _, try := range []func() (Package, error){
			func() (Package, error) { return show(ctx, qualify(spec, arch)) },
			func() (Package, error) { return show(ctx, qualify(spec, "all")) },
		} {
			if p, err = try(); err == nil {
				break
			}
		}
		if err != nil {
			if uerr := f.aptUpdate(ctx); uerr == nil {
				if p, err = show(ctx, qualify(spec, arch)); err != nil {
					p, err = show(ctx, qualify(spec, "all"))
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("resolve %s for %s: %w", spec, arch, err)
		}
		if p.Arch != arch && p.Arch != "all" {
			return nil, fmt.Errorf("resolve %s for %s: apt gave the %s package", spec, arch, p.Arch)
		}
		out = append(out, p)
	}
	return out, nil
}

func (f *Fetcher) debPath(p Package) string {
	return filepath.Join(f.CacheDir, "debs", p.ID()+".deb")
}

// Fetch returns the path of the verified .deb for p in the cache,
// downloading it with `apt-get download name=version` when absent. A cached
// file is re-hashed and must match p.SHA256.
func (f *Fetcher) Fetch(ctx context.Context, p Package) (string, error) {
	dst := f.debPath(p)
	if err := VerifyFile(dst, p.SHA256); err == nil {
		return dst, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		f.logf("debpkg: cached %s is bad (%v); downloading again", dst, err)
		os.Remove(dst)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), ".dl-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	f.logf("debpkg: downloading %s=%s", p.Name, p.Version)
	spec := aptSpec(p)
	dl := func() error {
		_, err := run(ctx, tmp, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", spec)
		return err
	}
	if err := dl(); err != nil {
		if uerr := f.aptUpdate(ctx); uerr != nil {
			return "", fmt.Errorf("fetch %s: %w", p.ID(), err)
		}
		if err := dl(); err != nil {
			return "", fmt.Errorf("fetch %s (after apt-get update): %w", p.ID(), err)
		}
	}
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return "", err
	}
	if len(ents) != 1 || !strings.HasSuffix(ents[0].Name(), ".deb") {
		return "", fmt.Errorf("fetch %s: apt-get download produced %d files, want one .deb", p.ID(), len(ents))
	}
	got := filepath.Join(tmp, ents[0].Name())
	if err := VerifyFile(got, p.SHA256); err != nil {
		return "", fmt.Errorf("fetch %s: %w", p.ID(), err)
	}
	if err := os.Rename(got, dst); err != nil {
		return "", err
	}
	return dst, nil
}

// VerifyFile checks that the file's SHA-256 equals want (hex).
func VerifyFile(path, want string) error {
	fh, err := os.Open(path)
	if err != nil {
		return err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(want) {
		return fmt.Errorf("%s: sha256 mismatch: got %s, want %s", path, got, want)
	}
	return nil
}

// FetchAll makes sure every package is in the cache, downloading the
// missing ones with a single `apt-get download` call (one acquire run with
// parallel, pipelined transfers instead of one process per package), then
// verifying each file's SHA-256. It returns the cached paths in order.
func (f *Fetcher) FetchAll(ctx context.Context, ps []Package) ([]string, error) {
	paths := make([]string, len(ps))
	var missing []int
	for i, p := range ps {
		paths[i] = f.debPath(p)
		if _, err := os.Stat(paths[i]); err != nil {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return paths, nil
	}
	dir := filepath.Join(f.CacheDir, "debs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, ".dl-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	args := []string{"download", "-q", "-o", "APT::Sandbox::User=root"}
	for _, i := range missing {
		args = append(args, aptSpec(ps[i]))
	}
	f.logf("debpkg: downloading %d packages", len(missing))
	if _, err := run(ctx, tmp, "apt-get", args...); err != nil {
		if uerr := f.aptUpdate(ctx); uerr != nil {
			return nil, err
		}
		if _, err := run(ctx, tmp, "apt-get", args...); err != nil {
			return nil, fmt.Errorf("after apt-get update: %w", err)
		}
	}
	// apt names files name_version_arch.deb with ':' escaped as %3a, which
	// is exactly Package.ID().
	for _, i := range missing {
		got := filepath.Join(tmp, ps[i].ID()+".deb")
		if err := VerifyFile(got, ps[i].SHA256); err != nil {
			return nil, fmt.Errorf("fetch %s: %w", ps[i].ID(), err)
		}
		if err := os.Rename(got, paths[i]); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

func aptSpec(p Package) string {
	if p.Arch == "all" {
		return p.Name + "=" + p.Version
	}
	return p.Name + ":" + p.Arch + "=" + p.Version
}

const stampName = ".vxn-debpkg-extracted"

// Extract returns a directory holding the extracted contents of p (as
// `dpkg-deb -x` lays them out), fetching the package first if needed. The
// tree is cached and must be treated as read-only by callers.
func (f *Fetcher) Extract(ctx context.Context, p Package) (string, error) {
	dir := filepath.Join(f.CacheDir, "root", p.ID())
	if b, err := os.ReadFile(filepath.Join(dir, stampName)); err == nil && strings.TrimSpace(string(b)) == p.SHA256 {
		return dir, nil
	}
	deb, err := f.Fetch(ctx, p)
	if err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	if _, err := run(ctx, "", "dpkg-deb", "-x", deb, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("extract %s: %w", p.ID(), err)
	}
	if err := os.WriteFile(filepath.Join(tmp, stampName), []byte(p.SHA256+"\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	return dir, nil
}

// Lock records the exact packages of a build so that a rebuild uses the same
// versions (and, with a warm cache, needs no network).
type Lock struct {
	// Packages is sorted by name.
	Packages []Package `json:"packages"`
	// Extra holds free-form resolved facts, e.g. "kernel_version".
	Extra map[string]string `json:"extra,omitempty"`
}

// Find returns the locked package with the given name.
func (l *Lock) Find(name string) (Package, bool) {
	if l == nil {
		return Package{}, false
	}
	for _, p := range l.Packages {
		if p.Name == name {
			return p, true
		}
	}
	return Package{}, false
}

// Add inserts or replaces p, keeping the list sorted.
func (l *Lock) Add(p Package) {
	for i := range l.Packages {
		if l.Packages[i].Name == p.Name {
			l.Packages[i] = p
			return
		}
	}
	l.Packages = append(l.Packages, p)
	sort.Slice(l.Packages, func(i, j int) bool { return l.Packages[i].Name < l.Packages[j].Name })
}

// ReadLock reads a lock file; a missing file gives an empty lock and no error.
func ReadLock(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return &Lock{}, nil
	}
	if err != nil {
		return nil, err
	}
	return ParseLock(b, path)
}

// ParseLock decodes lock-file JSON and validates every entry.
func ParseLock(b []byte, name string) (*Lock, error) {
	var l Lock
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("%s: offset %d: %w", name, se.Offset, err)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for i, p := range l.Packages {
		if p.Name == "" || p.Version == "" || p.Arch == "" || len(p.SHA256) != 64 || !isHex(p.SHA256) ||
			strings.ContainsAny(p.Name+p.Version+p.Arch, "/\x00") || strings.Contains(p.Version, "..") {
			return nil, fmt.Errorf("%s: packages[%d] (%q): need name, version, arch and a 64-hex sha256 without '/'", name, i, p.Name)
		}
	}
	return &l, nil
}

// Write stores the lock as indented JSON.
func (l *Lock) Write(path string) error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ResolveLocked resolves names, preferring the versions pinned in lock and
// adding newly resolved packages to it.
func (f *Fetcher) ResolveLocked(ctx context.Context, lock *Lock, names ...string) ([]Package, error) {
	var todo []string
	for _, n := range names {
		p, ok := lock.Find(n)
		if !ok {
			todo = append(todo, n)
			continue
		}
		if f.Arch != "" && p.Arch != f.Arch && p.Arch != "all" {
			return nil, fmt.Errorf("lock pins %s %s for %s, but the packages are for %s (use one lock file per machine)", p.Name, p.Version, p.Arch, f.Arch)
		}
	}
	if len(todo) > 0 {
		ps, err := f.Resolve(ctx, todo...)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			lock.Add(p)
		}
	}
	out := make([]Package, 0, len(names))
	for _, n := range names {
		p, _ := lock.Find(n)
		out = append(out, p)
	}
	return out, nil
}

// DefaultCacheDir returns the cache directory to use when none is given:
// $VXN_CACHE_DIR when set, else ".cache" in the enclosing Go module's root
// (ignored by git) when the working directory is inside one, else the user
// cache directory + "/vxn".
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("VXN_CACHE_DIR"); d != "" {
		return d, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(d, ".cache"), nil
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	uc, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(uc, "vxn"), nil
}
