package xenbundle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/vxn-dev/vxn/pkg/bbconf"
	"github.com/vxn-dev/vxn/pkg/guest"
	"github.com/vxn-dev/vxn/pkg/importer"
	"github.com/vxn-dev/vxn/pkg/plan"
	"github.com/vxn-dev/vxn/pkg/refimage"
)

// Inputs are the guest-set flags shared by plan and install.
type Inputs struct {
	Confs        []string
	Manifest     string
	DeployDir    string
	UnpackDir    string
	Machine      string
	Image        string
	KernelType   string
	Sets         []string
	Guests       []string
	List         string
	HostMemoryMB int
	Dom0MemoryMB int
	// AllowPrivateFiles accepts guest files outside the deploy and unpack
	// directories that others may not read (plan and install's
	// --allow-private-files).
	AllowPrivateFiles bool

	// registry is built by load: the built-in import handlers plus the
	// custom ones the inputs declare.
	registry *importer.Registry
	// features are the image lines of the confs (DISTRO_FEATURES vxn,
	// vcontainer, ...), which take effect in build-image.
	features refimage.Features
}

// Custom import types can be declared next to the guests, beyond
// xenbundle-import-<type> programs found on PATH:
//
//	XEN_GUEST_IMPORT_COMMAND_<type> = "${TOPDIR}/scripts/import-vmdk"
//	XEN_GUEST_IMPORT_TOOLS_<type>   = "qemu-img:qemu-utils mkfs.ext4:e2fsprogs"
//
// The tools (name[:debian-package]) are checked before any import runs.
const (
	importCommandVar = "XEN_GUEST_IMPORT_COMMAND_"
	importToolsVar   = "XEN_GUEST_IMPORT_TOOLS_"
)

// parseTools parses "name[:package] ..." tool lists.
func parseTools(v string) []importer.Tool {
	var tools []importer.Tool
	for _, w := range strings.Fields(v) {
		name, pkg, _ := strings.Cut(w, ":")
		tools = append(tools, importer.Tool{Name: name, DebianPackage: pkg})
	}
	return tools
}

// declareImporters registers the custom import types of specs that get
// declares through get(variable).
func declareImporters(specs []*guest.Spec, get func(string) (string, error)) (*importer.Registry, error) {
	var opts []importer.Option
	var externals []importer.Handler
	base := importer.NewRegistry()
	seen := map[string]bool{}
	for _, s := range specs {
		t := s.SourceType
		if t == "" || seen[t] || slices.Contains(base.Types(), t) {
			continue
		}
		seen[t] = true
		cmd, err := get(importCommandVar + t)
		if err != nil {
			return nil, err
		}
		toolsVal, err := get(importToolsVar + t)
		if err != nil {
			return nil, err
		}
		tools := parseTools(toolsVal)
		if cmd != "" {
			externals = append(externals, importer.External(t, cmd, tools))
		} else if len(tools) > 0 {
			opts = append(opts, importer.WithDepends(t, tools))
		}
	}
	reg := importer.NewRegistry(opts...)
	for _, h := range externals {
		reg.Register(h)
	}
	return reg, nil
}

// load reads the inputs into guest specs and the build environment.
func (in *Inputs) load() ([]*guest.Spec, plan.Env, error) {
	env := plan.Env{HostMemoryMB: in.HostMemoryMB, Dom0MemoryMB: in.Dom0MemoryMB}
	if in.Manifest != "" && len(in.Confs) > 0 {
		return nil, env, errors.New("give either --conf files or --manifest, not both")
	}
	if in.Manifest == "" && len(in.Confs) == 0 && len(in.Guests) == 0 {
		return nil, env, errors.New("no guests: give --conf FILE (bitbake-style, with BUNDLED_XEN_GUESTS), --manifest FILE (YAML) or --guest ENTRY")
	}
	if in.Manifest != "" {
		return in.loadManifest(env)
	}
	var srcs []bbconf.Source
	for _, f := range in.Confs {
		srcs = append(srcs, bbconf.Source{Name: f})
	}
	d, err := bbconf.Load(in.machine(), in.Image, srcs...)
	if err != nil {
		return nil, env, err
	}
	if in.features, err = refimage.FeaturesOf(d); err != nil {
		return nil, env, err
	}
	flagVars := map[string]string{"DEPLOY_DIR_IMAGE": in.DeployDir, "UNPACKDIR": in.UnpackDir, "MACHINE": in.Machine, "KERNEL_IMAGETYPE": in.KernelType}
	for k, v := range flagVars {
		if v != "" {
			d.Set(k, v)
		}
	}
	for _, kv := range in.Sets {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, env, fmt.Errorf("--set %q: expected VAR=VALUE", kv)
		}
		if name, flag, ok := strings.Cut(k, "["); ok && strings.HasSuffix(flag, "]") {
			d.SetFlag(name, strings.TrimSuffix(flag, "]"), v)
		} else {
			d.Set(k, v)
		}
	}
	list := in.List
	if list == "" {
		list = guest.ListBundled
	}
	if len(in.Guests) > 0 {
		cur, _, err := d.Get(list)
		if err != nil {
			return nil, env, err
		}
		d.Set(list, strings.TrimSpace(cur+" "+strings.Join(in.Guests, " ")))
	}
	get := func(name, def string) (string, error) {
		v, ok, err := d.Get(name)
		if err != nil {
			return "", err
		}
		if !ok || strings.TrimSpace(v) == "" {
			return def, nil
		}
		return strings.TrimSpace(v), nil
	}
	if env.Machine, err = get("MACHINE", "qemux86-64"); err != nil {
		return nil, env, err
	}
	if env.DeployDir, err = get("DEPLOY_DIR_IMAGE", ""); err != nil {
		return nil, env, err
	}
	if env.UnpackDir, err = get("UNPACKDIR", ""); err != nil {
		return nil, env, err
	}
	if env.KernelImageType, err = get("KERNEL_IMAGETYPE", plan.DefaultKernelImageType(env.Machine)); err != nil {
		return nil, env, err
	}
	if env.ImageFstype, err = get("XEN_GUEST_IMAGE_FSTYPE", guest.DefaultImageFstype); err != nil {
		return nil, env, err
	}
	if env.DefaultImageSizeMB, err = guest.DefaultImageSize(d); err != nil {
		return nil, env, err
	}
	specs, err := guest.FromVars(varsAdapter{d}, list)
	if err != nil {
		return nil, env, err
	}
	in.registry, err = declareImporters(specs, func(name string) (string, error) { return get(name, "") })
	return specs, env, err
}

func (in *Inputs) machine() string {
	if in.Machine != "" {
		return in.Machine
	}
	return "qemux86-64"
}

func (in *Inputs) loadManifest(env plan.Env) ([]*guest.Spec, plan.Env, error) {
	m, err := guest.LoadManifest(in.Manifest)
	if err != nil {
		return nil, env, err
	}
	vars := m.Variables
	pick := func(flag, name, def string) string {
		if flag != "" {
			return flag
		}
		if v := vars[name]; v != "" {
			return v
		}
		return def
	}
	base := filepath.Dir(in.Manifest)
	rel := func(p string) string {
		if p != "" && !filepath.IsAbs(p) {
			return filepath.Join(base, p)
		}
		return p
	}
	env.Machine = pick(in.Machine, "MACHINE", "qemux86-64")
	env.DeployDir = pick(in.DeployDir, "DEPLOY_DIR_IMAGE", "")
	if in.DeployDir == "" {
		env.DeployDir = rel(env.DeployDir)
	}
	env.UnpackDir = pick(in.UnpackDir, "UNPACKDIR", "")
	if in.UnpackDir == "" {
		env.UnpackDir = rel(env.UnpackDir)
	}
	env.KernelImageType = pick(in.KernelType, "KERNEL_IMAGETYPE", plan.DefaultKernelImageType(env.Machine))
	env.ImageFstype = pick("", "XEN_GUEST_IMAGE_FSTYPE", guest.DefaultImageFstype)
	env.DefaultImageSizeMB = m.DefaultImageSize()
	specs, err := m.Specs(in.Manifest)
	if err != nil {
		return nil, env, err
	}
	for _, g := range in.Guests {
		entries, err := guest.ParseEntries(g, "--guest")
		if err != nil {
			return nil, env, err
		}
		for _, e := range entries {
			specs = append(specs, guest.New(e))
		}
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string {
			switch k {
			case "DEPLOY_DIR_IMAGE":
				return env.DeployDir
			case "UNPACKDIR":
				return env.UnpackDir
			case "MACHINE":
				return env.Machine
			case "KERNEL_IMAGETYPE":
				return env.KernelImageType
			}
			if v, ok := vars[k]; ok {
				return v
			}
			return "${" + k + "}"
		})
	}
	in.registry, err = declareImporters(specs, func(name string) (string, error) {
		if v, ok := vars[name]; ok {
			return expand(v), nil
		}
		return "", nil
	})
	if err != nil {
		return nil, env, err
	}
	for _, s := range specs {
		for _, p := range []*string{&s.Rootfs, &s.Kernel, &s.Ramdisk, &s.ConfigFile, &s.SourceFile, &s.SourceBackingDir, &s.Extra} {
			*p = expand(*p)
		}
		for _, p := range []*string{&s.ConfigFile, &s.SourceFile, &s.SourceBackingDir} {
			if *p != "" && !filepath.IsAbs(*p) && env.UnpackDir == "" {
				*p = rel(*p)
			}
		}
	}
	return specs, env, nil
}
