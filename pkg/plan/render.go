package plan

import (
	"fmt"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/vxn-dev/vxn/pkg/guest"
	"github.com/vxn-dev/vxn/pkg/xlcfg"
)

// renderConfig returns a guest's xl config: generated from the spec, or the
// custom config with the paths of bundled files rewritten structurally.
func renderConfig(g *Guest) ([]byte, string, error) {
	if g.ConfigFrom != "" && g.ConfigFrom != "generated" {
		data, err := customConfig(g)
		return data, g.ConfigFrom, err
	}
	data, err := generateConfig(g)
	return data, "generated", err
}

func rootDisk(g *Guest) string {
	return fmt.Sprintf("format=raw, vdev=%s, access=rw, target=%s", g.Spec.DiskDevice, g.RootfsPath)
}

func generateConfig(g *Guest) ([]byte, error) {
	s := g.Spec
	// Each extra disk is checked alone, so that an error names the
	// setting, where it was set and the spec.
	for i, spec := range s.Disks {
		if _, err := xlcfg.ParseDisk(spec); err != nil {
			return nil, &guest.Error{Guest: s.Name, Setting: guest.SettingDisks, Origin: s.Origin[guest.SettingDisks],
				Msg: fmt.Sprintf("disk %d of %d %q: %v", i+1, len(s.Disks), spec, err)}
		}
	}
	d := xlcfg.Domain{
		Name:       s.DomainName,
		Type:       g.Type,
		Memory:     s.Memory,
		VCPUs:      s.VCPUs,
		Disks:      append([]string{rootDisk(g)}, s.Disks...),
		Vifs:       s.Vifs,
		OnPoweroff: s.OnPoweroff,
		OnReboot:   s.OnReboot,
		OnCrash:    s.OnCrash,
	}
	if g.KernelPath != "" {
		d.Kernel = g.KernelPath
		d.Ramdisk = g.RamdiskPath
		d.Extra = s.Extra
	}
	data, err := xlcfg.Generate(d)
	if err != nil {
		return nil, &guest.Error{Guest: s.Name, Msg: "generating the xl config: " + err.Error()}
	}
	return data, nil
}

// customConfig rewrites, in a custom config, every disk target that refers
// to the guest's bundled root disk and the kernel/ramdisk paths, leaving
// every other byte unchanged. A disk refers to the bundled rootfs when its
// target's file name is the rootfs source's, the XEN_GUEST_ROOTFS value's,
// the import source's or the Dom0 image's; if no disk matches, the disk on
// XEN_GUEST_DISK_DEVICE (or else the first disk) is taken, as upstream does.
func customConfig(g *Guest) ([]byte, error) {
	s := g.Spec
	src, err := os.ReadFile(g.ConfigFrom)
	if err != nil {
		return nil, err
	}
	f, err := xlcfg.Parse(g.ConfigFrom, src)
	if err != nil {
		return nil, &guest.Error{Guest: s.Name, Setting: guest.SettingConfigFile, Origin: s.Origin[guest.SettingConfigFile], Msg: err.Error()}
	}
	names := map[string]bool{path.Base(g.RootfsPath): true}
	for _, n := range []string{g.Rootfs, s.Rootfs, s.SourceFile} {
		if n != "" {
			names[path.Base(n)] = true
		}
	}
	if g.Import != nil {
		names[path.Base(g.Import.Source)] = true
	}
	// Decide which disk entries refer to the bundled root disk.
	var disks []xlcfg.Disk
	if v, ok := f.Get("disk"); ok {
		specs, err := v.StringList()
		if err != nil {
			return nil, customErr(g, fmt.Sprintf("%s: disk: %v", g.ConfigFrom, err))
		}
		for _, spec := range specs {
			d, err := xlcfg.ParseDisk(spec)
			if err != nil {
				return nil, customErr(g, fmt.Sprintf("%s: disk %q: %v", g.ConfigFrom, spec, err))
			}
			disks = append(disks, d)
		}
	}
	targets := map[string]bool{}
	for _, d := range disks {
		if d.HasTarget && names[path.Base(d.Target)] {
			targets[d.Target] = true
		}
	}
	if len(targets) == 0 {
		// Upstream rewrites the first disk; we take the disk on the
		// guest's root device, else the first one.
		for i, d := range disks {
			if d.HasTarget && (d.Vdev == s.DiskDevice || i == 0 && !hasVdev(disks, s.DiskDevice)) {
				targets[d.Target] = true
				break
			}
		}
	}
	if len(targets) == 0 {
		return nil, customErr(g, fmt.Sprintf("%s: no disk refers to the bundled root disk (no target named %s and no disk on %s)", g.ConfigFrom, strings.Join(keys(names), " or "), s.DiskDevice))
	}
	boot := map[string]string{"kernel": g.KernelPath, "ramdisk": g.RamdiskPath}
	_, err = xlcfg.Rewrite(f, xlcfg.Rewriter{
		DiskTarget: func(old string) (string, bool) {
			if targets[old] {
				return g.RootfsPath, true
			}
			return "", false
		},
	})
	if err != nil {
		return nil, customErr(g, err.Error())
	}
	for _, key := range []string{"kernel", "ramdisk"} {
		newPath := boot[key]
		if newPath == "" {
			continue // HVM or no ramdisk: a line that is there stays as it is.
		}
		if _, ok := f.Get(key); !ok {
			continue // only paths the config uses are rewritten
		}
		if _, err := xlcfg.Rewrite(f, xlcfg.Rewriter{BootKeys: []string{key}, BootFile: func(string) (string, bool) { return newPath, true }}); err != nil {
			return nil, customErr(g, err.Error())
		}
	}
	return f.Bytes(), nil
}

func customErr(g *Guest, msg string) error {
	return &guest.Error{Guest: g.Spec.Name, Setting: guest.SettingConfigFile, Origin: g.Spec.Origin[guest.SettingConfigFile], Msg: msg}
}

func hasVdev(disks []xlcfg.Disk, vdev string) bool {
	for _, d := range disks {
		if d.Vdev == vdev {
			return true
		}
	}
	return false
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
