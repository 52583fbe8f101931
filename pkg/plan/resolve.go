package plan

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vxn-dev/vxn/pkg/guest"
)

// Env holds the build variables that lookups and defaults depend on.
type Env struct {
	// DeployDir is DEPLOY_DIR_IMAGE: where guest rootfs images and the
	// shared kernel are found.
	DeployDir string `json:"deployDir"`
	// UnpackDir is UNPACKDIR: where fetched sources, custom kernels and
	// custom configs are found.
	UnpackDir string `json:"unpackDir,omitempty"`
	// Machine is MACHINE, used in standard rootfs names.
	Machine string `json:"machine"`
	// KernelImageType is KERNEL_IMAGETYPE, the shared kernel's file name.
	KernelImageType string `json:"kernelImageType"`
	// ImageFstype is XEN_GUEST_IMAGE_FSTYPE (default ext4).
	ImageFstype string `json:"imageFstype"`
	// DefaultImageSizeMB is XEN_GUEST_IMAGE_SIZE_DEFAULT; imports without an
	// explicit size use it, grown when the content needs more.
	DefaultImageSizeMB int `json:"defaultImageSizeMB"`
	// HostMemoryMB and Dom0MemoryMB declare the memory budget checked by
	// the plan (warnings only).
	HostMemoryMB int `json:"hostMemoryMB"`
	Dom0MemoryMB int `json:"dom0MemoryMB"`
}

// DefaultKernelImageType returns Yocto's KERNEL_IMAGETYPE for a machine.
func DefaultKernelImageType(machine string) string {
	switch {
	case strings.Contains(machine, "arm64"), strings.Contains(machine, "aarch64"):
		return "Image"
	case strings.Contains(machine, "arm"):
		return "zImage"
	}
	return "bzImage"
}

// ArmMachine reports whether a machine (by its Yocto-style name, as
// DefaultKernelImageType reads it) runs Xen on Arm, where there is one
// guest type: PVH-like, written without a type key. PV (type = "pv") and
// HVM (kernel none) guests do not exist there.
func ArmMachine(machine string) bool {
	return strings.Contains(machine, "arm") || strings.Contains(machine, "aarch64")
}

// guestType returns the xl type of a guest on env's machine ("" = no type
// key), or an error naming the setting when the machine cannot run it.
func guestType(s *guest.Spec, env Env) (string, error) {
	if !ArmMachine(env.Machine) {
		return s.EffectiveType(), nil
	}
	switch {
	case s.Kernel == guest.KernelNone:
		return "", &guest.Error{Guest: s.Name, Setting: guest.SettingKernel, Origin: s.Origin[guest.SettingKernel],
			Msg: fmt.Sprintf("kernel %q (an HVM guest) is not possible on %s: Xen on Arm boots guests from a kernel (XEN_GUEST_KERNEL)", guest.KernelNone, env.Machine)}
	case s.Type == guest.TypePV || s.Type == guest.TypeHVM:
		return "", &guest.Error{Guest: s.Name, Setting: guest.SettingType, Origin: s.Origin[guest.SettingType],
			Msg: fmt.Sprintf("type %q is not possible on %s: Xen on Arm has one guest type (leave XEN_GUEST_TYPE unset, or pvh)", s.Type, env.Machine)}
	}
	return s.Type, nil
}

// NotFoundError says a file needed by a guest was not found, listing every
// path searched.
type NotFoundError struct {
	Guest    string
	Setting  string
	What     string
	Searched []string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("guest %q: %s not found (%s); searched: %s", e.Guest, e.What, e.Setting, strings.Join(e.Searched, ", "))
}

// Is lets errors.Is(err, fs.ErrNotExist) match.
func (e *NotFoundError) Is(target error) bool { return target == fs.ErrNotExist }

func exists(p string, wantDir bool) bool {
	st, err := os.Stat(p)
	if err != nil {
		return false
	}
	if wantDir {
		return st.IsDir()
	}
	return st.Mode().IsRegular()
}

func existsAny(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// lookup returns the first existing candidate, or a NotFoundError listing
// them all. Absolute values are used as they are.
func lookup(g *guest.Spec, setting, what, value string, dirs []string, check func(string) bool) (string, error) {
	var searched []string
	if filepath.IsAbs(value) {
		searched = []string{value}
	} else {
		for _, d := range dirs {
			if d == "" {
				continue
			}
			searched = append(searched, filepath.Join(d, value))
		}
	}
	for _, p := range searched {
		if check(p) {
			return p, nil
		}
	}
	if len(searched) == 0 {
		searched = []string{"(no search directory set: give --deploy-dir / --unpackdir)"}
	}
	return "", &NotFoundError{Guest: g.Name, Setting: setting, What: what, Searched: searched}
}

func isFile(p string) bool { return exists(p, false) }

// resolveRootfs finds a guest's rootfs image as upstream does:
// XEN_GUEST_ROOTFS relative to DEPLOY_DIR_IMAGE, else
// <guest>-<MACHINE>.<fstype>, else <guest>-<MACHINE>.rootfs.<fstype>.
func resolveRootfs(g *guest.Spec, env Env) (string, error) {
	if g.Rootfs != "" {
		return lookup(g, guest.SettingRootfs+"["+g.Name+"]", "rootfs", g.Rootfs, []string{env.DeployDir}, isFile)
	}
	fstype := env.ImageFstype
	if fstype == "" {
		fstype = guest.DefaultImageFstype
	}
	var searched []string
	for _, name := range []string{
		fmt.Sprintf("%s-%s.%s", g.Name, env.Machine, fstype),
		fmt.Sprintf("%s-%s.rootfs.%s", g.Name, env.Machine, fstype),
	} {
		p := filepath.Join(env.DeployDir, name)
		if env.DeployDir != "" && isFile(p) {
			return p, nil
		}
		searched = append(searched, p)
	}
	if env.DeployDir == "" {
		searched = []string{"(DEPLOY_DIR_IMAGE is not set: give --deploy-dir)"}
	}
	return "", &NotFoundError{Guest: g.Name, Setting: "XEN_GUEST_ROOTFS[" + g.Name + "] or the standard name", What: "rootfs image", Searched: searched}
}

// resolveKernel finds a guest's kernel: "" = shared
// ${DEPLOY_DIR_IMAGE}/${KERNEL_IMAGETYPE}; a name = UNPACKDIR then
// DEPLOY_DIR_IMAGE (one engine for both front-ends, unlike upstream).
func resolveKernel(g *guest.Spec, env Env) (string, error) {
	switch g.Kernel {
	case guest.KernelNone:
		return "", nil
	case "":
		if g.EffectiveType() == guest.TypeHVM {
			return "", nil
		}
		return lookup(g, "shared kernel ${DEPLOY_DIR_IMAGE}/${KERNEL_IMAGETYPE}", "kernel", env.KernelImageType, []string{env.DeployDir}, isFile)
	}
	return lookup(g, guest.SettingKernel+"["+g.Name+"]", "kernel", g.Kernel, []string{env.UnpackDir, env.DeployDir}, isFile)
}

func resolveRamdisk(g *guest.Spec, env Env) (string, error) {
	if g.Ramdisk == "" {
		return "", nil
	}
	return lookup(g, guest.SettingRamdisk+"["+g.Name+"]", "ramdisk", g.Ramdisk, []string{env.UnpackDir, env.DeployDir}, isFile)
}

// resolveSource finds an import source: ${UNPACKDIR}/<file> if it exists,
// else the value as a path.
func resolveSource(g *guest.Spec, env Env) (string, error) {
	var searched []string
	if !filepath.IsAbs(g.SourceFile) && env.UnpackDir != "" {
		p := filepath.Join(env.UnpackDir, g.SourceFile)
		if existsAny(p) {
			return p, nil
		}
		searched = append(searched, p)
	}
	if existsAny(g.SourceFile) {
		abs, err := filepath.Abs(g.SourceFile)
		if err != nil {
			return "", err
		}
		return abs, nil
	}
	searched = append(searched, g.SourceFile)
	return "", &NotFoundError{Guest: g.Name, Setting: guest.SettingSourceFile + "[" + g.Name + "]", What: "import source", Searched: searched}
}

// resolveBackingDir finds XEN_GUEST_SOURCE_BACKING_DIR like the source:
// ${UNPACKDIR}/<dir> if it is a directory, else the value as a path; it
// must be a directory. Empty means none.
func resolveBackingDir(g *guest.Spec, env Env) (string, error) {
	if g.SourceBackingDir == "" {
		return "", nil
	}
	var searched []string
	if !filepath.IsAbs(g.SourceBackingDir) && env.UnpackDir != "" {
		p := filepath.Join(env.UnpackDir, g.SourceBackingDir)
		if exists(p, true) {
			return p, nil
		}
		searched = append(searched, p)
	}
	if exists(g.SourceBackingDir, true) {
		return filepath.Abs(g.SourceBackingDir)
	}
	searched = append(searched, g.SourceBackingDir)
	return "", &NotFoundError{Guest: g.Name, Setting: guest.SettingBackingDir + "[" + g.Name + "]", What: "allowed backing file directory", Searched: searched}
}

// resolveConfig checks a custom config file. Unlike upstream, a set but
// missing file is an error, never a silent fallback to generation.
func resolveConfig(g *guest.Spec, env Env) (string, error) {
	if g.ConfigFile == "" {
		return "", nil
	}
	return lookup(g, guest.SettingConfigFile+"["+g.Name+"]", "custom config file", g.ConfigFile, []string{env.UnpackDir}, isFile)
}

func isNotFound(err error) bool {
	var nf *NotFoundError
	return errors.As(err, &nf)
}
