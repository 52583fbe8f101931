// Package plan turns guest specs into a validated list of actions on a Dom0
// root filesystem, and applies it.
//
// Make resolves every file a guest needs (listing the paths searched when
// one is missing), estimates import sizes, detects duplicates, renders each
// xl config and orders the actions: images and kernels first, then configs,
// then autostart links. Nothing is written by Make; Apply writes through
// package dom0fs with temporary names and renames, and keeps imports in a
// content-addressed cache so that a rerun with unchanged inputs does no
// image work.
package plan

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

	"github.com/vxn-dev/vxn/pkg/guest"
	"github.com/vxn-dev/vxn/pkg/importer"
)

// Target directories in the Dom0 root filesystem.
const (
	ImagesDir = "/var/lib/xen/images"
	ConfigDir = "/etc/xen"
	AutoDir   = "/etc/xen/auto"
)

// Action kinds.
const (
	KindMkdir   = "mkdir"
	KindImport  = "import"
	KindCopy    = "copy"
	KindConfig  = "config"
	KindSymlink = "symlink"
	KindUnlink  = "unlink"
)

// Action is one step of a plan.
type Action struct {
	Kind  string `json:"kind"`
	Guest string `json:"guest,omitempty"`
	// Path is the file written in the Dom0 root filesystem (for import: the
	// image it feeds).
	Path string `json:"path"`
	// Source is the host file or directory read (copy, import).
	Source string `json:"source,omitempty"`
	// ImportType, SizeMB and BackingDir describe an import.
	ImportType string `json:"importType,omitempty"`
	SizeMB     int    `json:"sizeMB,omitempty"`
	BackingDir string `json:"backingDir,omitempty"`
	// Target is a symlink's target.
	Target string `json:"target,omitempty"`
	// Data is a config's content.
	Data []byte `json:"-"`
	// Note explains the step.
	Note string `json:"note,omitempty"`

	key string // cache key of an import's output
}

// Check is one check the plan made, for `xenbundle plan`.
type Check struct {
	Guest  string `json:"guest,omitempty"`
	What   string `json:"what"`
	Result string `json:"result"`
}

// Guest is the resolved form of one guest.
type Guest struct {
	Spec *guest.Spec `json:"spec"`
	Type string      `json:"type"`
	// Rootfs is the host file copied as the root disk, or the import
	// output; RootfsPath its path in Dom0.
	Rootfs     string `json:"rootfs,omitempty"`
	RootfsPath string `json:"rootfsPath,omitempty"`
	// Import is set when the root disk is produced by an import handler.
	Import *Import `json:"import,omitempty"`
	// Kernel and Ramdisk are host files; *Path are their Dom0 paths.
	Kernel      string `json:"kernel,omitempty"`
	KernelPath  string `json:"kernelPath,omitempty"`
	Ramdisk     string `json:"ramdisk,omitempty"`
	RamdiskPath string `json:"ramdiskPath,omitempty"`
	// ConfigFrom is "generated" or the custom config file used.
	ConfigFrom string `json:"configFrom"`
	ConfigPath string `json:"configPath"`
	Config     string `json:"config"`
}

// Import describes one import.
type Import struct {
	Type   string `json:"type"`
	Source string `json:"source"`
	// SizeMB is the output size; 0 for types that keep the source size.
	SizeMB int `json:"sizeMB"`
	// ContentBytes is the estimated content size.
	ContentBytes int64  `json:"contentBytes"`
	Output       string `json:"output"`
	// BackingDir is the resolved XEN_GUEST_SOURCE_BACKING_DIR (qcow2).
	BackingDir string `json:"backingDir,omitempty"`
}

// Plan is everything `xenbundle install` would do.
type Plan struct {
	Env      Env      `json:"env"`
	Guests   []*Guest `json:"guests"`
	Actions  []Action `json:"actions"`
	Checks   []Check  `json:"checks"`
	Warnings []string `json:"warnings,omitempty"`
	// Stale lists temporaries an interrupted run left in the directories
	// install writes; install removes them (see FindStale).
	Stale []string `json:"staleTemporaries,omitempty"`
}

// Options configure Make.
type Options struct {
	// Registry provides import handlers; nil means importer.NewRegistry().
	Registry *importer.Registry
	// CacheDir holds import outputs keyed by their inputs.
	CacheDir string
	// TrustedDirs are more directories guest files may come from without
	// a warning, besides DEPLOY_DIR_IMAGE and UNPACKDIR (bundle payloads).
	TrustedDirs []string
	// AllowPrivateFiles accepts a kernel, ramdisk or rootfs outside those
	// directories that others may not read (xenbundle
	// --allow-private-files); it is refused otherwise.
	AllowPrivateFiles bool
}

// Make validates specs against env and the file system and returns the
// plan, or every error found. It writes nothing.
func Make(specs []*guest.Spec, env Env, opts Options) (*Plan, error) {
	return MakeContext(context.Background(), specs, env, opts)
}

// MakeContext is Make; cancelling ctx stops the import estimates (which
// may read whole tarballs).
func MakeContext(ctx context.Context, specs []*guest.Spec, env Env, opts Options) (*Plan, error) {
	if opts.Registry == nil {
		opts.Registry = importer.NewRegistry()
	}
	if env.ImageFstype == "" {
		env.ImageFstype = guest.DefaultImageFstype
	}
	if env.KernelImageType == "" {
		env.KernelImageType = DefaultKernelImageType(env.Machine)
	}
	if env.DefaultImageSizeMB == 0 {
		env.DefaultImageSizeMB = guest.DefaultImageSizeMB
	}
	p := &Plan{Env: env}
	var errs guest.Errors
	check := func(g, what, result string) { p.Checks = append(p.Checks, Check{Guest: g, What: what, Result: result}) }

	if err := guest.CheckDuplicates(specs); err != nil {
		errs = append(errs, err.(guest.Errors)...)
	} else {
		check("", "duplicate guests and domain names", fmt.Sprintf("none among %d guests", len(specs)))
	}
	var tools []importer.Tool
	for _, s := range specs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		g, err := resolveGuest(ctx, s, env, opts, check, &tools, &p.Warnings)
		if err != nil {
			if es, ok := err.(guest.Errors); ok {
				errs = append(errs, es...)
			} else {
				errs = append(errs, err)
			}
			continue
		}
		p.Guests = append(p.Guests, g)
	}
	if len(tools) > 0 {
		if err := importer.CheckTools(tools); err != nil {
			errs = append(errs, err)
		} else {
			check("", "native tools", toolNames(tools)+" found")
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	nameFiles(p.Guests)
	for _, g := range p.Guests {
		cfg, from, err := renderConfig(g)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		g.Config, g.ConfigFrom = string(cfg), from
		check(g.Spec.Name, "xl config", from+" → "+g.ConfigPath)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	p.Warnings = append(p.Warnings, memoryWarnings(p.Guests, env)...)
	p.Actions = actions(p.Guests, opts.CacheDir)
	return p, nil
}

func toolNames(tools []importer.Tool) string {
	seen := map[string]bool{}
	var names []string
	for _, t := range tools {
		if !seen[t.Name] {
			seen[t.Name] = true
			names = append(names, t.Name)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func resolveGuest(ctx context.Context, s *guest.Spec, env Env, opts Options, check func(g, what, result string), tools *[]importer.Tool, warnings *[]string) (*Guest, error) {
	var errs guest.Errors
	// outside checks a file given by a setting (see outsideFile).
	outside := func(setting, value, file string) bool {
		if value == "" || value == guest.KernelNone {
			return true
		}
		w, err := outsideFile(s, env, opts, setting, file)
		if err != nil {
			errs = append(errs, err)
			return false
		}
		if w != "" {
			*warnings = append(*warnings, w)
		}
		return true
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	typ, err := guestType(s, env)
	if err != nil {
		return nil, err
	}
	shown := typ
	if shown == "" {
		shown = "default"
	}
	check(s.Name, "settings", fmt.Sprintf("memory=%d vcpus=%d type=%s", s.Memory, s.VCPUs, shown))
	g := &Guest{Spec: s, Type: typ, ConfigPath: path.Join(ConfigDir, s.Name+".cfg")}
	if s.SourceType != "" {
		h, err := opts.Registry.Lookup(s.SourceType)
		if err != nil {
			errs = append(errs, &guest.Error{Guest: s.Name, Setting: guest.SettingSourceType, Origin: s.Origin[guest.SettingSourceType], Msg: err.Error()})
		} else {
			*tools = append(*tools, h.Tools()...)
			src, err := resolveSource(s, env)
			backingDir, berr := resolveBackingDir(s, env)
			if err != nil || berr != nil {
				errs = append(errs, errors.Join(err, berr))
			} else {
				imp, err := planImport(ctx, s, env, h, src, backingDir)
				if err != nil {
					errs = append(errs, err)
				} else {
					g.Import = imp
					check(s.Name, "import source", fmt.Sprintf("%s (%s, %d bytes of content, image %d MB)", src, s.SourceType, imp.ContentBytes, imp.SizeMB))
				}
			}
		}
	} else {
		rootfs, err := resolveRootfs(s, env)
		if err != nil {
			errs = append(errs, err)
		} else if outside(guest.SettingRootfs, s.Rootfs, rootfs) {
			g.Rootfs = rootfs
			check(s.Name, "rootfs", rootfs)
		}
	}
	switch k, err := resolveKernel(s, env); {
	case err != nil:
		errs = append(errs, err)
	case !outside(guest.SettingKernel, s.Kernel, k):
		// refused: the error is in errs
	case k != "":
		g.Kernel = k
		check(s.Name, "kernel", k)
	default:
		check(s.Name, "kernel", "none ("+g.Type+" guest)")
	}
	if r, err := resolveRamdisk(s, env); err != nil {
		errs = append(errs, err)
	} else if outside(guest.SettingRamdisk, s.Ramdisk, r) && r != "" {
		g.Ramdisk = r
		check(s.Name, "ramdisk", r)
	}
	if c, err := resolveConfig(s, env); err != nil {
		errs = append(errs, err)
	} else if c != "" {
		g.ConfigFrom = c
		check(s.Name, "custom config", c)
	}
	return g, errs.Err()
}

// planImport validates an import before anything runs: the handler's own
// source check and the size against the estimated content.
func planImport(ctx context.Context, s *guest.Spec, env Env, h importer.Handler, src, backingDir string) (*Import, error) {
	req := importer.Request{Guest: s.Name, Type: s.SourceType, Source: src, SizeMB: s.ImageSizeMB, BackingDir: backingDir}
	if err := h.Check(req); err != nil {
		return nil, &guest.Error{Guest: s.Name, Setting: guest.SettingSourceFile, Origin: s.Origin[guest.SettingSourceFile], Msg: err.Error()}
	}
	content, err := h.Estimate(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &guest.Error{Guest: s.Name, Setting: guest.SettingSourceFile, Origin: s.Origin[guest.SettingSourceFile], Msg: err.Error()}
	}
	imp := &Import{Type: s.SourceType, Source: src, ContentBytes: content, SizeMB: s.ImageSizeMB, BackingDir: backingDir}
	if filesystemImport(s.SourceType) && imp.SizeMB == 0 {
		// Upstream's default size, grown when the content needs more.
		imp.SizeMB = env.DefaultImageSizeMB
		imp.SizeMB = max(imp.SizeMB, importer.AutoSizeMB(content))
	}
	return imp, nil
}

// filesystemImport reports import types that build a new filesystem, whose
// size is chosen by the plan.
func filesystemImport(t string) bool { return t == "rootfs_dir" || t == "rootfs_tar" }

// nameFiles gives every file its stable Dom0 name: guest disks are
// /var/lib/xen/images/<guest>.img (one rule for every source); kernels and
// ramdisks keep their file name, one copy per distinct content, with a
// content-hash suffix only when two different files share a name.
func nameFiles(guests []*Guest) {
	for _, g := range guests {
		g.RootfsPath = path.Join(ImagesDir, g.Spec.Name+".img")
		if g.Import != nil {
			g.Import.Output = g.RootfsPath
		}
	}
	type file struct {
		host string
		sum  string
		dst  *string
	}
	var files []file
	sums := map[string]string{}
	for _, g := range guests {
		for _, f := range []struct{ host, dst *string }{{&g.Kernel, &g.KernelPath}, {&g.Ramdisk, &g.RamdiskPath}} {
			if *f.host == "" {
				continue
			}
			sum, ok := sums[*f.host]
			if !ok {
				sum = fileSum(*f.host)
				sums[*f.host] = sum
			}
			files = append(files, file{host: *f.host, sum: sum, dst: f.dst})
		}
	}
	byName := map[string]map[string]bool{} // base name → distinct sums
	for _, f := range files {
		base := filepath.Base(f.host)
		if byName[base] == nil {
			byName[base] = map[string]bool{}
		}
		byName[base][f.sum] = true
	}
	for _, f := range files {
		base := filepath.Base(f.host)
		if len(byName[base]) > 1 {
			base = base + "-" + f.sum[:12]
		}
		*f.dst = path.Join(ImagesDir, base)
	}
}

func fileSum(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return strings.Repeat("0", 64)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

func memoryWarnings(guests []*Guest, env Env) []string {
	if env.HostMemoryMB <= 0 {
		return nil
	}
	free := env.HostMemoryMB - env.Dom0MemoryMB
	var total, auto int
	var autoNames []string
	for _, g := range guests {
		total += g.Spec.Memory
		if g.Spec.Autostart {
			auto += g.Spec.Memory
			autoNames = append(autoNames, fmt.Sprintf("%s=%d", g.Spec.Name, g.Spec.Memory))
		}
	}
	var w []string
	if auto > free {
		w = append(w, fmt.Sprintf("autostart guests need %d MB (%s) but only %d MB are free after Dom0 (host %d MB - dom0 %d MB): xendomains will fail to start some of them",
			auto, strings.Join(autoNames, ", "), free, env.HostMemoryMB, env.Dom0MemoryMB))
	}
	if total > free {
		w = append(w, fmt.Sprintf("all guests together need %d MB, more than the %d MB free after Dom0 (host %d MB - dom0 %d MB)", total, free, env.HostMemoryMB, env.Dom0MemoryMB))
	}
	return w
}

func actions(guests []*Guest, cacheDir string) []Action {
	var acts []Action
	for _, d := range []string{ImagesDir, AutoDir} {
		acts = append(acts, Action{Kind: KindMkdir, Path: d})
	}
	copied := map[string]bool{}
	for _, g := range guests {
		name := g.Spec.Name
		if g.Import != nil {
			a := Action{Kind: KindImport, Guest: name, Path: g.RootfsPath, Source: g.Import.Source, ImportType: g.Import.Type, SizeMB: g.Import.SizeMB, BackingDir: g.Import.BackingDir,
				Note: "convert into the cache, then copy"}
			acts = append(acts, a)
		} else {
			acts = append(acts, Action{Kind: KindCopy, Guest: name, Path: g.RootfsPath, Source: g.Rootfs, Note: "root disk"})
		}
		for _, f := range []struct{ host, dst, note string }{{g.Kernel, g.KernelPath, "kernel"}, {g.Ramdisk, g.RamdiskPath, "ramdisk"}} {
			if f.host == "" || copied[f.dst] {
				continue
			}
			copied[f.dst] = true
			acts = append(acts, Action{Kind: KindCopy, Guest: name, Path: f.dst, Source: f.host, Note: f.note})
		}
	}
	for _, g := range guests {
		acts = append(acts, Action{Kind: KindConfig, Guest: g.Spec.Name, Path: g.ConfigPath, Data: []byte(g.Config), Note: g.ConfigFrom})
	}
	for _, g := range guests {
		link := path.Join(AutoDir, g.Spec.Name+".cfg")
		if g.Spec.Autostart {
			acts = append(acts, Action{Kind: KindSymlink, Guest: g.Spec.Name, Path: link, Target: "../" + g.Spec.Name + ".cfg", Note: "autostart (xendomains)"})
		} else {
			acts = append(acts, Action{Kind: KindUnlink, Guest: g.Spec.Name, Path: link, Note: "not autostart: remove a stale link if present"})
		}
	}
	return acts
}
