package bundle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vxn-dev/vxn/pkg/dom0fs"
	"github.com/vxn-dev/vxn/pkg/guest"
	"github.com/vxn-dev/vxn/pkg/importer"
	"github.com/vxn-dev/vxn/pkg/plan"
)

// Installed is one bundle found in a Dom0 root filesystem.
type Installed struct {
	// Name is the directory name under PayloadRoot.
	Name string
	// Dom0Dir is PayloadRoot/Name.
	Dom0Dir string
	// Dir is a host directory with the payload: the directory itself for
	// a directory target, an extracted copy for an ext4 image.
	Dir string
	// Manifest is the parsed manifest.json; nil when it could not be read
	// (Err says why).
	Manifest *Manifest
	// Err is the problem found while reading the bundle, if any.
	Err error
}

// BundleError is a problem with one installed bundle.
type BundleError struct {
	Bundle string
	Err    error
}

func (e *BundleError) Error() string { return fmt.Sprintf("bundle %s: %v", e.Bundle, e.Err) }

// Unwrap returns the cause.
func (e *BundleError) Unwrap() error { return e.Err }

type hostPather interface {
	HostPath(p string) (string, error)
}

// Find lists the bundles installed under PayloadRoot in target, in name
// order (upstream's glob order). For an ext4 image the payload is copied
// out with debugfs rdump into a directory under tmp, removed by cleanup.
// A bundle whose manifest.json is missing or invalid is returned with Err
// set; Find itself fails only when the tree cannot be read.
func Find(ctx context.Context, target dom0fs.FS, tmp string) ([]*Installed, func(), error) {
	cleanup := func() {}
	if _, err := target.Lstat(PayloadRoot); errors.Is(err, fs.ErrNotExist) {
		return nil, cleanup, nil
	} else if err != nil {
		return nil, cleanup, err
	}
	var hostRoot string
	switch t := target.(type) {
	case hostPather:
		h, err := t.HostPath(PayloadRoot)
		if err != nil {
			return nil, cleanup, err
		}
		hostRoot = h
	case *dom0fs.Ext4:
		if tmp == "" {
			tmp = os.TempDir()
		}
		dir, err := os.MkdirTemp(tmp, "bundles-")
		if err != nil {
			return nil, cleanup, err
		}
		cleanup = func() { os.RemoveAll(dir) }
		cmd := exec.CommandContext(ctx, "debugfs", "-R", fmt.Sprintf("rdump %q %q", PayloadRoot, dir), t.String())
		out, err := cmd.CombinedOutput()
		if err != nil {
			cleanup()
			return nil, func() {}, fmt.Errorf("%s: copying %s out with debugfs rdump: %v: %s", t, PayloadRoot, err, bytes.TrimSpace(out))
		}
		hostRoot = filepath.Join(dir, path.Base(PayloadRoot))
		if _, err := os.Stat(hostRoot); err != nil {
			cleanup()
			return nil, func() {}, fmt.Errorf("%s: debugfs rdump of %s produced nothing: %s", t, PayloadRoot, bytes.TrimSpace(out))
		}
	default:
		return nil, cleanup, fmt.Errorf("%s: cannot read bundles from this kind of root filesystem", target)
	}
	if abs, err := filepath.Abs(hostRoot); err == nil {
		hostRoot = abs // specs need absolute paths
	}
	ents, err := os.ReadDir(hostRoot)
	if err != nil {
		cleanup()
		return nil, func() {}, err
	}
	var found []*Installed
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		b := &Installed{Name: e.Name(), Dom0Dir: path.Join(PayloadRoot, e.Name()), Dir: filepath.Join(hostRoot, e.Name())}
		b.Manifest, b.Err = readManifest(b)
		found = append(found, b)
	}
	sort.Slice(found, func(i, j int) bool { return found[i].Name < found[j].Name })
	return found, cleanup, nil
}

func readManifest(b *Installed) (*Manifest, error) {
	p := filepath.Join(b.Dir, ManifestFile)
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if _, lerr := os.Stat(filepath.Join(b.Dir, LineManifestFile)); lerr == nil {
			return nil, &BundleError{b.Name, fmt.Errorf("%s/%s is missing: only upstream's line manifest is there, which has no digests to verify; rebuild the bundle with xenbundle pack", b.Dom0Dir, ManifestFile)}
		}
		return nil, &BundleError{b.Name, fmt.Errorf("%s/%s is missing", b.Dom0Dir, ManifestFile)}
	}
	if err != nil {
		return nil, &BundleError{b.Name, err}
	}
	m, err := ParseManifest(path.Join(b.Dom0Dir, ManifestFile), data)
	if err != nil {
		return nil, &BundleError{b.Name, err}
	}
	if m.Bundle != b.Name {
		return nil, &BundleError{b.Name, fmt.Errorf("%s/%s names bundle %q, but it is installed as %q", b.Dom0Dir, ManifestFile, m.Bundle, b.Name)}
	}
	return m, nil
}

// Verify checks the payload against manifest.json: every listed file
// exists as a regular file with the recorded size and sha256, no other file
// is there, and the line manifest matches. All problems are returned
// together.
func (b *Installed) Verify() error {
	if b.Err != nil {
		return b.Err
	}
	m := b.Manifest
	var errs []string
	want := map[string]File{}
	for _, g := range m.Guests {
		for _, f := range g.Files {
			want[f.Path] = f
		}
	}
	for _, rel := range m.Paths() {
		f := want[rel]
		p := filepath.Join(b.Dir, filepath.FromSlash(rel))
		st, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			errs = append(errs, fmt.Sprintf("%s/%s: missing (listed in %s, %d bytes)", b.Dom0Dir, rel, ManifestFile, f.Size))
			continue
		case err != nil:
			errs = append(errs, err.Error())
			continue
		case !st.Mode().IsRegular():
			errs = append(errs, fmt.Sprintf("%s/%s: not a regular file (%s)", b.Dom0Dir, rel, st.Mode().Type()))
			continue
		case st.Size() != f.Size:
			errs = append(errs, fmt.Sprintf("%s/%s: size %d, %s says %d", b.Dom0Dir, rel, st.Size(), ManifestFile, f.Size))
			continue
		}
		sum, _, err := hashFile(p)
		if err != nil {
			errs = append(errs, err.Error())
		} else if sum != f.SHA256 {
			errs = append(errs, fmt.Sprintf("%s/%s: sha256 %s, %s says %s (corrupt or modified)", b.Dom0Dir, rel, sum, ManifestFile, f.SHA256))
		}
	}
	if line, err := os.ReadFile(filepath.Join(b.Dir, LineManifestFile)); err == nil && !bytes.Equal(line, m.LineManifest()) {
		errs = append(errs, fmt.Sprintf("%s/%s: does not match %s", b.Dom0Dir, LineManifestFile, ManifestFile))
	}
	err := filepath.WalkDir(b.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(b.Dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && rel != "images" && rel != "configs" {
				errs = append(errs, fmt.Sprintf("%s/%s: unexpected directory", b.Dom0Dir, rel))
				return filepath.SkipDir
			}
			return nil
		}
		if _, ok := want[rel]; !ok && rel != ManifestFile && rel != LineManifestFile {
			errs = append(errs, fmt.Sprintf("%s/%s: extra file, not listed in %s", b.Dom0Dir, rel, ManifestFile))
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) > 0 {
		return &BundleError{b.Name, errors.New("verification failed, nothing of it is deployed:\n  " + strings.Join(errs, "\n  "))}
	}
	return nil
}

// SourceName is the From value of guests of bundle name.
func SourceName(name string) string { return "bundle " + name }

// Specs turns the bundle's guests into specs whose rootfs, kernel, ramdisk
// and config are absolute paths into the payload (b.Dir), so that plan.Make
// resolves them like any other guest. HVM guests get Kernel "none", so no
// kernel is looked up (and no spurious warning is given, unlike upstream).
func (b *Installed) Specs() []*guest.Spec {
	var out []*guest.Spec
	origin := fmt.Sprintf("%s/%s", b.Dom0Dir, ManifestFile)
	for _, g := range b.Manifest.Guests {
		s := guest.New(guest.Entry{Name: g.Name, Autostart: g.Autostart, External: g.External})
		s.DomainName = g.DomainName
		s.Memory, s.VCPUs, s.DiskDevice = g.Memory, g.VCPUs, g.DiskDevice
		s.Type = g.Type
		s.From = SourceName(b.Name)
		abs := func(role string) string {
			if f, ok := g.File(role); ok {
				return filepath.Join(b.Dir, filepath.FromSlash(f.Path))
			}
			return ""
		}
		s.Rootfs = abs(RoleRootfs)
		s.Kernel = abs(RoleKernel)
		if s.Kernel == "" {
			s.Kernel = guest.KernelNone
		}
		s.Ramdisk = abs(RoleRamdisk)
		s.ConfigFile = abs(RoleConfig)
		for _, k := range []string{guest.SettingEntry, guest.SettingName, guest.SettingMemory, guest.SettingVCPUs, guest.SettingDiskDevice, guest.SettingType, guest.SettingRootfs, guest.SettingKernel, guest.SettingRamdisk, guest.SettingConfigFile} {
			s.Origin[k] = origin
		}
		out = append(out, s)
	}
	return out
}

// Specs finds and verifies every bundle installed in target and returns
// their guests as specs (see Installed.Specs), for `xenbundle install` to
// put in front of the variable-driven guests: Resolve the combined list,
// plan.Make it, CheckKernels the plan, Apply it, then RemovePayload. Any
// bundle that fails verification makes Specs fail, naming every problem.
// cleanup removes what was copied out of an ext4 image; call it after
// Apply.
func Specs(ctx context.Context, target dom0fs.FS, tmp string) ([]*guest.Spec, []*Installed, func(), error) {
	found, cleanup, err := Find(ctx, target, tmp)
	if err != nil {
		return nil, nil, cleanup, err
	}
	var errs guest.Errors
	var specs []*guest.Spec
	for _, b := range found {
		if err := b.Verify(); err != nil {
			errs = append(errs, err)
			continue
		}
		specs = append(specs, b.Specs()...)
	}
	if len(errs) > 0 {
		return nil, found, cleanup, errs
	}
	return specs, found, cleanup, nil
}

// Winner chooses who wins a conflict, in order of precedence: each entry is
// "vars" (the variable-driven list, BUNDLED_XEN_GUESTS or a YAML manifest)
// or "bundle=NAME". Sources not named never win; a conflict between two
// unnamed (or equally named) sources stays an error.
type Winner []string

// ParseWinner checks one --winner value.
func ParseWinner(v string) (string, error) {
	if v == "vars" {
		return v, nil
	}
	if n, ok := strings.CutPrefix(v, "bundle="); ok && ValidBundleName(n) {
		return v, nil
	}
	return "", fmt.Errorf("--winner %q: expected vars or bundle=NAME", v)
}

func isBundle(s *guest.Spec) (string, bool) { return strings.CutPrefix(s.From, "bundle ") }

func sourceOf(s *guest.Spec) string {
	if s.From == "" {
		return guest.ListBundled
	}
	return s.From
}

// rank is the precedence of s under w: higher wins, 0 never wins.
func (w Winner) rank(s *guest.Spec) int {
	key := "vars"
	if n, ok := isBundle(s); ok {
		key = "bundle=" + n
	}
	for i, v := range w {
		if v == key {
			return len(w) - i
		}
	}
	return 0
}

// ConflictError is a guest declared by two sources, or two guests of
// different sources with one domain name.
type ConflictError struct {
	// Kind is "guest" or "domain name".
	Kind, Value string
	// A and B are the two sources ("bundle a", "BUNDLED_XEN_GUESTS").
	A, B string
	// GuestA and GuestB are the guests (equal for Kind "guest").
	GuestA, GuestB string
}

func (e *ConflictError) Error() string {
	if e.Kind == "guest" {
		return fmt.Sprintf("guest %q is declared twice: in %s and in %s; remove one, or choose with --winner %s or --winner %s",
			e.Value, e.A, e.B, winnerFlag(e.A), winnerFlag(e.B))
	}
	return fmt.Sprintf("domain name %q is used by guest %q (%s) and guest %q (%s); xl needs unique domain names: rename one (XEN_GUEST_NAME), or choose with --winner %s or --winner %s",
		e.Value, e.GuestA, e.A, e.GuestB, e.B, winnerFlag(e.A), winnerFlag(e.B))
}

func winnerFlag(source string) string {
	if n, ok := strings.CutPrefix(source, "bundle "); ok {
		return "bundle=" + n
	}
	return "vars"
}

// Resolve detects conflicts between sources (bundles and the variable
// list) in specs: the same guest name, or the same domain name. A conflict
// whose winner w decides drops the loser and adds a warning; any other is
// an error naming both sources. Duplicates inside one source are left to
// plan.Make (guest.CheckDuplicates). Order is kept.
func Resolve(specs []*guest.Spec, w Winner) ([]*guest.Spec, []string, error) {
	var errs guest.Errors
	var warns []string
	drop := map[*guest.Spec]bool{}
	check := func(kind string, key func(*guest.Spec) string) {
		first := map[string]*guest.Spec{}
		for _, s := range specs {
			if drop[s] {
				continue
			}
			k := key(s)
			prev, ok := first[k]
			if !ok || prev.From == s.From {
				if !ok {
					first[k] = s
				}
				continue
			}
			ra, rb := w.rank(prev), w.rank(s)
			if ra == rb {
				errs = append(errs, &ConflictError{Kind: kind, Value: k, A: sourceOf(prev), B: sourceOf(s), GuestA: prev.Name, GuestB: s.Name})
				continue
			}
			win, lose := prev, s
			if rb > ra {
				win, lose = s, prev
				first[k] = s
			}
			drop[lose] = true
			warns = append(warns, fmt.Sprintf("%s %q: %s (guest %q) wins over %s (guest %q) by --winner; the latter is not deployed", kind, k, sourceOf(win), win.Name, sourceOf(lose), lose.Name))
		}
	}
	check("guest", func(s *guest.Spec) string { return s.Name })
	if len(errs) == 0 {
		check("domain name", func(s *guest.Spec) string { return s.DomainName })
	}
	if len(errs) > 0 {
		return nil, warns, errs
	}
	var out []*guest.Spec
	for _, s := range specs {
		if !drop[s] {
			out = append(out, s)
		}
	}
	return out, warns, nil
}

// KernelConflictError is two different kernels (or ramdisks) with one file
// name, which would overwrite each other in /var/lib/xen/images.
type KernelConflictError struct {
	Name string
	// Users lists "source (guest g, sha256 …)" per distinct content.
	Users []string
}

func (e *KernelConflictError) Error() string {
	return fmt.Sprintf("two different files are named %s: %s; they would overwrite each other in %s: ship identical kernels, or pass --kernel-conflict=rename to install each under %s-<sha256 prefix>",
		e.Name, strings.Join(e.Users, " and "), plan.ImagesDir, e.Name)
}

// CheckKernels reports kernels and ramdisks of different content sharing a
// file name across the planned guests (upstream lets the last bundle
// overwrite the others). With rename, plan.Make's content-hash suffixes
// are accepted and a warning per name is returned instead.
func CheckKernels(p *plan.Plan, rename bool) ([]string, error) {
	type use struct {
		sum   string
		users []string
	}
	byName := map[string][]*use{}
	sums := map[string]string{}
	var names []string
	for _, g := range p.Guests {
		for _, host := range []string{g.Kernel, g.Ramdisk} {
			if host == "" {
				continue
			}
			sum, ok := sums[host]
			if !ok {
				var err error
				sum, _, err = hashFile(host)
				if err != nil {
					return nil, err
				}
				sums[host] = sum
			}
			base := filepath.Base(host)
			if byName[base] == nil {
				names = append(names, base)
			}
			user := fmt.Sprintf("%s (guest %s)", sourceOf(g.Spec), g.Spec.Name)
			found := false
			for _, u := range byName[base] {
				if u.sum == sum {
					u.users = append(u.users, user)
					found = true
				}
			}
			if !found {
				byName[base] = append(byName[base], &use{sum: sum, users: []string{user}})
			}
		}
	}
	var errs guest.Errors
	var warns []string
	for _, n := range names {
		uses := byName[n]
		if len(uses) < 2 {
			continue
		}
		e := &KernelConflictError{Name: n}
		for _, u := range uses {
			e.Users = append(e.Users, fmt.Sprintf("%s with sha256 %s", strings.Join(u.users, ", "), u.sum[:12]))
		}
		if rename {
			warns = append(warns, fmt.Sprintf("different files named %s (%s): each installed as %s-<sha256 prefix> (--kernel-conflict=rename)", n, strings.Join(e.Users, "; "), n))
			continue
		}
		errs = append(errs, e)
	}
	return warns, errs.Err()
}

// MergeOptions configure Merge.
type MergeOptions struct {
	// Target is the Dom0 root filesystem with installed bundles.
	Target dom0fs.FS
	// TmpDir holds payload copied out of an ext4 image; "" = os.TempDir().
	TmpDir string
	// Specs are the variable-driven guests (BUNDLED_XEN_GUESTS or a YAML
	// manifest), deployed in the same plan after the bundles' guests.
	Specs []*guest.Spec
	// Env resolves the Specs guests' files; bundle guests need none.
	Env plan.Env
	// Winner decides conflicts; empty means every conflict is an error.
	Winner Winner
	// KernelRename accepts different kernels with one file name, each
	// installed under a content-hash suffix.
	KernelRename bool
	// KeepPayload leaves the payload and the package registration in place.
	KeepPayload bool
	// CacheDir is plan.ApplyOptions.CacheDir; required.
	CacheDir string
	// Registry provides import handlers for Specs guests.
	Registry *importer.Registry
	// Epoch is SOURCE_DATE_EPOCH for imports.
	Epoch *time.Time
	// AllowPrivateFiles is plan.Options.AllowPrivateFiles.
	AllowPrivateFiles bool
	// DryRun stops after planning: nothing is written.
	DryRun bool
	// Log receives progress lines; nil discards.
	Log func(format string, args ...any)
}

// MergeResult is what Merge did.
type MergeResult struct {
	Bundles  []*Installed
	Plan     *plan.Plan
	Stats    plan.Stats
	Warnings []string
	// Removed lists the bundles whose payload was removed; Deregistered
	// the package databases they were removed from ("dpkg: name").
	Removed, Deregistered []string
}

// Merge deploys every installed bundle of opt.Target, and opt.Specs, in one
// validated plan: find and verify all bundles (any failure: nothing is
// written), resolve conflicts, plan.Make, check kernels, Apply, then
// remove the payload and deregister the packages unless KeepPayload.
func Merge(ctx context.Context, opt MergeOptions) (*MergeResult, error) {
	logf := opt.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	specs, found, cleanup, err := Specs(ctx, opt.Target, opt.TmpDir)
	defer cleanup()
	res := &MergeResult{Bundles: found}
	if err != nil {
		return res, err
	}
	if len(specs) == 0 && len(opt.Specs) == 0 {
		return res, fmt.Errorf("%s: no bundles installed under %s and no other guests given", opt.Target, PayloadRoot)
	}
	all, warns, err := Resolve(append(specs, opt.Specs...), opt.Winner)
	res.Warnings = append(res.Warnings, warns...)
	if err != nil {
		return res, err
	}
	// The bundles' files come from their payload: no warning for those.
	var payloads []string
	for _, b := range found {
		payloads = append(payloads, b.Dir)
	}
	p, err := plan.MakeContext(ctx, all, opt.Env, plan.Options{Registry: opt.Registry, CacheDir: opt.CacheDir,
		TrustedDirs: payloads, AllowPrivateFiles: opt.AllowPrivateFiles})
	if err != nil {
		return res, err
	}
	res.Plan = p
	res.Warnings = append(res.Warnings, p.Warnings...)
	kw, err := CheckKernels(p, opt.KernelRename)
	res.Warnings = append(res.Warnings, kw...)
	if err != nil {
		return res, err
	}
	if opt.DryRun {
		return res, nil
	}
	if opt.CacheDir == "" {
		return res, errors.New("a cache directory is required")
	}
	res.Stats, err = p.Apply(ctx, opt.Target, plan.ApplyOptions{Registry: opt.Registry, CacheDir: opt.CacheDir, Epoch: opt.Epoch, Log: opt.Log})
	if err != nil {
		return res, err
	}
	if opt.KeepPayload {
		return res, nil
	}
	for _, b := range found {
		dereg, warn, err := RemovePayload(opt.Target, b)
		if warn != "" {
			res.Warnings = append(res.Warnings, warn)
		}
		if err != nil {
			return res, err
		}
		logf("removed  %s", b.Dom0Dir)
		res.Removed = append(res.Removed, b.Name)
		res.Deregistered = append(res.Deregistered, dereg...)
	}
	// Like upstream's rm -rf of the whole directory, but only when empty:
	// anything else there was not ours.
	if _, err := opt.Target.Lstat(PayloadRoot); err == nil && len(found) > 0 {
		_ = opt.Target.Remove(PayloadRoot)
	}
	return res, opt.Target.Close()
}

// packageDBs are the package databases RemovePayload updates: dpkg's and
// opkg's (Yocto puts opkg's under /var/lib/opkg; older images /usr/lib/opkg).
var packageDBs = []struct{ tool, dir string }{
	{"dpkg", "/var/lib/dpkg"},
	{"opkg", "/var/lib/opkg"},
	{"opkg", "/usr/lib/opkg"},
}

var infoSuffixes = []string{"list", "md5sums", "control", "conffiles", "preinst", "postinst", "prerm", "postrm", "triggers", "shlibs", "symbols", "templates", "config"}

// RemovePayload deletes a merged bundle's payload from target and
// deregisters its package (named like the bundle) from the dpkg or opkg
// database when that database lists the payload, so the database does not
// claim files that are gone. It returns the databases changed and a
// warning when an rpm database is present (not edited).
func RemovePayload(target dom0fs.FS, b *Installed) ([]string, string, error) {
	var files, dirs []string
	err := filepath.WalkDir(b.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(b.Dir, p)
		dp := path.Join(b.Dom0Dir, filepath.ToSlash(rel))
		if d.IsDir() {
			dirs = append(dirs, dp)
		} else {
			files = append(files, dp)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	sort.Sort(sort.Reverse(sort.StringSlice(dirs))) // children first
	for _, p := range append(files, dirs...) {
		if err := target.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, "", &BundleError{b.Name, fmt.Errorf("removing payload %s: %w", p, err)}
		}
	}
	var changed []string
	marker := b.Dom0Dir + "/" + ManifestFile
	for _, db := range packageDBs {
		list, err := target.ReadFile(db.dir + "/info/" + b.Name + ".list")
		if err != nil || !containsLine(list, marker) {
			continue
		}
		statusPath := db.dir + "/status"
		status, err := target.ReadFile(statusPath)
		if err != nil {
			return changed, "", &BundleError{b.Name, fmt.Errorf("%s lists the payload but %s cannot be read: %w", db.dir, statusPath, err)}
		}
		newStatus, ok := dropStanza(status, b.Name)
		if ok {
			if err := target.WriteFile(statusPath, newStatus, 0o644); err != nil {
				return changed, "", err
			}
		}
		for _, suf := range infoSuffixes {
			p := db.dir + "/info/" + b.Name + "." + suf
			if err := target.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return changed, "", err
			}
		}
		changed = append(changed, db.tool+": "+b.Name)
	}
	warn := ""
	for _, rpmdb := range []string{"/var/lib/rpm", "/usr/lib/sysimage/rpm"} {
		if _, err := target.Lstat(rpmdb); err == nil && len(changed) == 0 {
			warn = fmt.Sprintf("bundle %s: payload removed, but an rpm database exists at %s and is not edited: if the bundle was installed with rpm it stays registered; use --keep-payload to keep them consistent", b.Name, rpmdb)
		}
	}
	return changed, warn, nil
}

func containsLine(data []byte, line string) bool {
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

// dropStanza removes the control-file stanza of package pkg from a dpkg or
// opkg status file, keeping every other byte.
func dropStanza(status []byte, pkg string) ([]byte, bool) {
	text := strings.ReplaceAll(string(status), "\r\n", "\n")
	stanzas := strings.Split(text, "\n\n")
	var out []string
	dropped := false
	for _, st := range stanzas {
		if strings.TrimSpace(st) == "" {
			continue
		}
		if stanzaPackage(st) == pkg {
			dropped = true
			continue
		}
		out = append(out, strings.Trim(st, "\n"))
	}
	if !dropped {
		return status, false
	}
	if len(out) == 0 {
		return nil, true
	}
	return []byte(strings.Join(out, "\n\n") + "\n\n"), true
}

func stanzaPackage(st string) string {
	for _, l := range strings.Split(st, "\n") {
		if v, ok := strings.CutPrefix(l, "Package:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
