package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/ipk" // registers the ipk packager

	"github.com/vxn-dev/vxn/pkg/dom0fs"
	"github.com/vxn-dev/vxn/pkg/guest"
	"github.com/vxn-dev/vxn/pkg/importer"
	"github.com/vxn-dev/vxn/pkg/plan"
)

// PayloadRoot is where bundle packages install their payload in Dom0:
// ${datadir}/xen-guest-bundles/<bundle>/.
const PayloadRoot = "/usr/share/xen-guest-bundles"

// Output formats of Pack.
const (
	FormatDir = "dir"
	FormatDeb = "deb"
	FormatIPK = "ipk"
)

// Formats lists the formats Pack accepts.
// There is no rpm: nfpm's rpm packager needs go.digitalxero.dev/rpm, which
// the module proxy refuses.
var Formats = []string{FormatDir, FormatDeb, FormatIPK}

// PackOptions configure Pack.
type PackOptions struct {
	// Name and Version of the bundle (the package); required.
	Name, Version string
	// Format is dir, deb or ipk.
	Format string
	// Output is the directory the package file (or, for dir, the bundle
	// directory <Name>/) is written to; created if missing.
	Output string
	// Arch is the package architecture; default "all" (the payload is
	// data; a kernel in it is machine specific, which the user expresses
	// with a machine arch such as qemux86_64 for ipk).
	Arch string
	// Maintainer, Description and License go into the package metadata.
	Maintainer, Description, License string
	// Epoch is the time stamped on every packaged file and in package
	// metadata: SOURCE_DATE_EPOCH, or 1970-01-01 when unset, so the same
	// inputs give the same bytes.
	Epoch time.Time
	// CacheDir is the import cache (plan.ApplyOptions.CacheDir); required.
	CacheDir string
	// Registry provides import handlers; nil means importer.NewRegistry().
	Registry *importer.Registry
	// Log receives progress lines; nil discards.
	Log func(format string, args ...any)
	// Notice receives the redistribution notice once when the bundle holds
	// external guests; nil discards (it is also in the manifest).
	Notice func(msg string)
}

// PackResult describes what Pack produced.
type PackResult struct {
	// Path is the package file, or the bundle directory for FormatDir.
	Path     string
	Manifest *Manifest
	// PayloadBytes is the sum of payload file sizes (apparent sizes).
	PayloadBytes int64
	// Plan is the plan that produced the payload.
	Plan *plan.Plan
}

func (o *PackOptions) logf(format string, args ...any) {
	if o.Log != nil {
		o.Log(format, args...)
	}
}

// Pack builds a guest bundle from specs (normally XEN_GUEST_BUNDLES):
// the same resolution and rendering as `xenbundle install` (plan.Make),
// applied into a staging Dom0 tree, then laid out as
// images/, configs/<guest>.cfg, manifest.json and manifest, and written as
// a directory or packaged (deb, ipk) with nfpm under PayloadRoot/<Name>/.
func Pack(ctx context.Context, specs []*guest.Spec, env plan.Env, opt PackOptions) (*PackResult, error) {
	if !ValidBundleName(opt.Name) {
		return nil, fmt.Errorf("bundle name %q: invalid (lower case letters, digits, '+', '-', '.'; at least 2 characters)", opt.Name)
	}
	if !ValidVersion(opt.Version) {
		return nil, fmt.Errorf("bundle version %q: invalid (must start with a digit; letters, digits, '.', '+', '~', '-')", opt.Version)
	}
	if !contains(Formats, opt.Format) {
		return nil, fmt.Errorf("format %q: expected one of %s", opt.Format, strings.Join(Formats, ", "))
	}
	if opt.Output == "" {
		return nil, errors.New("an output directory is required")
	}
	if opt.CacheDir == "" {
		return nil, errors.New("a cache directory is required")
	}
	if len(specs) == 0 {
		return nil, errors.New("no guests to pack (XEN_GUEST_BUNDLES is empty)")
	}
	if opt.Registry == nil {
		opt.Registry = importer.NewRegistry()
	}
	if opt.Arch == "" {
		opt.Arch = "all"
	}
	p, err := plan.MakeContext(ctx, specs, env, plan.Options{Registry: opt.Registry, CacheDir: opt.CacheDir})
	if err != nil {
		return nil, err
	}
	var external []string
	for _, g := range p.Guests {
		if g.Spec.External {
			external = append(external, g.Spec.Name)
		}
	}
	if len(external) > 0 && opt.Notice != nil {
		sort.Strings(external)
		opt.Notice(fmt.Sprintf("bundle %s: external guests %s: %s", opt.Name, strings.Join(external, ", "), RedistributionNotice))
	}
	if err := os.MkdirAll(opt.Output, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(opt.Output, ".pack-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	stage := filepath.Join(work, "stage")
	epoch := opt.Epoch
	if _, err := p.Apply(ctx, dom0fs.NewDir(stage), plan.ApplyOptions{Registry: opt.Registry, CacheDir: opt.CacheDir, Epoch: &epoch, Log: opt.Log}); err != nil {
		return nil, err
	}
	payload := filepath.Join(work, "payload", opt.Name)
	m, size, err := layout(p, stage, payload, opt)
	if err != nil {
		return nil, err
	}
	res := &PackResult{Manifest: m, PayloadBytes: size, Plan: p}
	if opt.Format == FormatDir {
		dst := filepath.Join(opt.Output, opt.Name)
		if err := os.RemoveAll(dst); err != nil {
			return nil, err
		}
		if err := os.Rename(payload, dst); err != nil {
			return nil, err
		}
		res.Path = dst
		return res, nil
	}
	res.Path, err = packageDir(payload, m, opt)
	if err != nil {
		return nil, err
	}
	return res, nil
}

// layout moves the staged files into the bundle directory and writes both
// manifests.
func layout(p *plan.Plan, stage, payload string, opt PackOptions) (*Manifest, int64, error) {
	for _, d := range []string{"images", "configs"} {
		if err := os.MkdirAll(filepath.Join(payload, d), 0o755); err != nil {
			return nil, 0, err
		}
	}
	m := &Manifest{SchemaVersion: SchemaVersion, Bundle: opt.Name, Version: opt.Version}
	moved := map[string]File{} // staged Dom0 path → payload file
	var total int64
	add := func(role, dom0Path, rel string) (File, error) {
		if f, ok := moved[dom0Path]; ok {
			f.Role = role
			return f, nil
		}
		src := filepath.Join(stage, filepath.FromSlash(dom0Path))
		dst := filepath.Join(payload, filepath.FromSlash(rel))
		if err := os.Rename(src, dst); err != nil {
			return File{}, err
		}
		if err := os.Chmod(dst, 0o644); err != nil {
			return File{}, err
		}
		sum, size, err := hashFile(dst)
		if err != nil {
			return File{}, err
		}
		total += size
		f := File{Role: role, Path: rel, SHA256: sum, Size: size}
		moved[dom0Path] = f
		return f, nil
	}
	for _, g := range p.Guests {
		s := g.Spec
		mg := Guest{Name: s.Name, DomainName: s.DomainName, Autostart: s.Autostart, External: s.External, Type: g.Type,
			Memory: s.Memory, VCPUs: s.VCPUs, DiskDevice: s.DiskDevice, ConfigFrom: "generated"}
		if g.ConfigFrom != "generated" {
			mg.ConfigFrom = "custom"
		}
		switch {
		case s.Kernel == guest.KernelNone || g.KernelPath == "":
			mg.KernelMode = KernelNone
		case s.Kernel == "":
			mg.KernelMode = KernelShared
		default:
			mg.KernelMode = KernelCustom
		}
		if s.External {
			mg.Notice = RedistributionNotice
		}
		files := []struct{ role, dom0, rel string }{
			{RoleRootfs, g.RootfsPath, "images/" + path.Base(g.RootfsPath)},
			{RoleKernel, g.KernelPath, "images/" + path.Base(g.KernelPath)},
			{RoleRamdisk, g.RamdiskPath, "images/" + path.Base(g.RamdiskPath)},
			{RoleConfig, g.ConfigPath, "configs/" + s.Name + ".cfg"},
		}
		for _, f := range files {
			if f.dom0 == "" {
				continue
			}
			mf, err := add(f.role, f.dom0, f.rel)
			if err != nil {
				return nil, 0, fmt.Errorf("guest %q: %s: %w", s.Name, f.role, err)
			}
			mg.Files = append(mg.Files, mf)
		}
		m.Guests = append(m.Guests, mg)
	}
	sort.Slice(m.Guests, func(i, j int) bool { return m.Guests[i].Name < m.Guests[j].Name })
	if err := m.Validate(); err != nil {
		return nil, 0, fmt.Errorf("internal error: generated manifest is invalid: %w", err)
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, 0, err
	}
	if err := os.WriteFile(filepath.Join(payload, ManifestFile), data, 0o644); err != nil {
		return nil, 0, err
	}
	if err := os.WriteFile(filepath.Join(payload, LineManifestFile), m.LineManifest(), 0o644); err != nil {
		return nil, 0, err
	}
	return m, total, nil
}

func hashFile(p string) (string, int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// packageDir packages the bundle directory with nfpm. Every entry gets the
// epoch as mtime, root ownership and mode 0644 (0755 for directories), and
// entries are sorted, so the output depends only on the payload bytes.
func packageDir(payload string, m *Manifest, opt PackOptions) (string, error) {
	paths := append(m.Paths(), ManifestFile, LineManifestFile)
	sort.Strings(paths)
	epoch := opt.Epoch.UTC()
	dst := path.Join(PayloadRoot, opt.Name)
	var contents files.Contents
	for _, d := range []string{dst, dst + "/images", dst + "/configs"} {
		contents = append(contents, &files.Content{Destination: d, Type: files.TypeDir,
			FileInfo: &files.ContentFileInfo{Mode: 0o755, MTime: epoch, Owner: "root", Group: "root"}})
	}
	for _, rel := range paths {
		src := filepath.Join(payload, filepath.FromSlash(rel))
		st, err := os.Stat(src)
		if err != nil {
			return "", err
		}
		contents = append(contents, &files.Content{Source: src, Destination: path.Join(dst, rel), Type: files.TypeFile,
			FileInfo: &files.ContentFileInfo{Mode: 0o644, MTime: epoch, Owner: "root", Group: "root", Size: st.Size()}})
	}
	desc := opt.Description
	if desc == "" {
		var names []string
		for _, g := range m.Guests {
			names = append(names, g.Name)
		}
		desc = "Xen guest bundle: " + strings.Join(names, ", ")
	}
	maint := opt.Maintainer
	if maint == "" {
		maint = "xenbundle <xenbundle@localhost>"
	}
	info := &nfpm.Info{
		Name:          opt.Name,
		Arch:          opt.Arch,
		Platform:      "linux",
		Version:       opt.Version,
		VersionSchema: "none",
		Section:       "misc",
		Priority:      "optional",
		Maintainer:    maint,
		Description:   desc,
		License:       opt.License,
		MTime:         epoch,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Umask:    0o022,
			Deb:      nfpm.Deb{Compression: "gzip"},
		},
	}
	pk, err := nfpm.Get(opt.Format)
	if err != nil {
		return "", err
	}
	if err := nfpm.PrepareForPackager(info, opt.Format); err != nil {
		return "", fmt.Errorf("%s package: %w", opt.Format, err)
	}
	name := fmt.Sprintf("%s_%s_%s.%s", opt.Name, opt.Version, opt.Arch, opt.Format)
	if pe, ok := pk.(nfpm.PackagerWithExtension); ok {
		name = pe.ConventionalFileName(info)
	}
	out := filepath.Join(opt.Output, name)
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return "", err
	}
	err = pk.Package(info, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, out)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("%s package %s: %w", opt.Format, out, err)
	}
	opt.logf("packaged %s", out)
	return out, nil
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
