package plan

import (
	"fmt"
	"os"
	"path"
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
	matched := 0
	_, err = f.RewriteDisks(func(d xlcfg.Disk) (string, bool) {
		if names[path.Base(d.Target)] {
			matched++
			return g.RootfsPath, true
		}
		return "", false
	})
	if err == nil && matched == 0 {
		first := true
		_, err = f.RewriteDisks(func(d xlcfg.Disk) (string, bool) {
			ok := d.Vdev == s.DiskDevice || (first && s.DiskDevice == guest.DefaultDiskDevice && d.Vdev == "")
			first = false
			if ok && matched == 0 {
				matched++
				return g.RootfsPath, true
			}
			return "", false
		})
	}
	if err != nil {
		return nil, &guest.Error{Guest: s.Name, Setting: guest.SettingConfigFile, Origin: s.Origin[guest.SettingConfigFile], Msg: err.Error()}
	}
	if matched == 0 {
		return nil, &guest.Error{Guest: s.Name, Setting: guest.SettingConfigFile, Origin: s.Origin[guest.SettingConfigFile],
			Msg: fmt.Sprintf("%s: no disk refers to the bundled root disk (no target named %s and no disk on %s)", g.ConfigFrom, strings.Join(keys(names), " or "), s.DiskDevice)}
	}
	for _, k := range []struct{ key, val string }{{"kernel", g.KernelPath}, {"ramdisk", g.RamdiskPath}} {
		if k.val == "" {
			continue // HVM or no ramdisk: leave any line alone.
		}
		if err := f.SetString(k.key, k.val); err != nil {
			return nil, &guest.Error{Guest: s.Name, Setting: guest.SettingConfigFile, Msg: err.Error()}
		}
	}
	return f.Bytes(), nil
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}
