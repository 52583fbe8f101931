// Package initramfs builds the initramfs of a vxn guest: the static
// vxn-init binary as /init (and /sbin/poweroff), the kernel modules it
// needs with their dependencies, and the load order vxn-init follows.
//
// The archive is a newc cpio written with u-root's pkg/cpio (pure Go,
// writes device nodes without root) in two parts, as the kernel accepts
// (and distributions use for early microcode): a small uncompressed cpio
// with the directories and device nodes, then a gzip-compressed cpio with
// the files. The uncompressed head matters under Xen: libxenguest up to
// Xen 4.19 gunzips a gzip ramdisk into guest memory before the guest
// runs, which makes the domain need the unpacked size (5.5 MB instead of
// 1.9 MB) on top of the kernel; with a head that is not gzip it loads the
// blob as is and the guest kernel unpacks it (see pkg/hostimage/vmlinux.go
// for the memory figures). Directory records
// are explicit (u-root's WriteRecordsAndDirs would invent parents with mode
// 0777), /dev/console and /dev/null are character devices so the kernel can
// open the initial console before devtmpfs is mounted, and every record is
// made reproducible (zero times, fixed inode numbers and owners) so the
// same inputs give byte-identical output.
//
// Layout:
//
//	/init                                  vxn-init
//	/sbin/poweroff -> /init                 kernel's orderly_poweroff helper
//	/dev/console, /dev/null                 device nodes
//	/proc /sys /tmp /mnt /etc               empty mount points
//	/lib/modules/<release>/<path>.ko        the modules, as in the kernel package
//	/lib/modules/<release>/vxn.modules      load order, one relative path a line
//
// vxn-init loads modules with finit_module(2) in the listed order, so no
// modprobe, depmod or modules.dep is needed in the guest. Dependencies are
// resolved on the host from each module's .modinfo (kmod.ResolveModules).
package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/vxn-dev/vxn/pkg/kmod"
)

// XenModules are what a PV guest under Xen needs: the block frontend, ext4
// (crc32c_generic first: mkfs enables metadata_csum), overlayfs and the
// network frontend (the vif of --network bridge; 97 KB, idle without one).
var XenModules = []string{"xen-blkfront", "crc32c_generic", "ext4", "overlay", "xen-netfront"}

// QEMUModules are the plain-QEMU (virtio) equivalent, used by the tests.
var QEMUModules = []string{"virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "overlay", "virtio_net"}

// Options describe one initramfs.
type Options struct {
	// Init is the vxn-init binary (static; see BuildInit).
	Init []byte
	// ModDir is lib/modules/<release> of the guest kernel's extracted
	// package. Empty means no modules (a kernel with everything built in).
	ModDir string
	// Release is the kernel release; default: the base name of ModDir.
	Release string
	// Modules are the wanted module names ('-' or '_'); dependencies are
	// added. Modules built into the kernel are skipped.
	Modules []string
}

// Info describes a written initramfs.
type Info struct {
	// Modules are the module files in load order (relative to ModDir).
	Modules []string
	// Builtin are wanted modules that the kernel has built in.
	Builtin []string
	// Raw and Compressed are the cpio size and the written size in bytes.
	Raw, Compressed int64
}

// Write writes the archive (uncompressed head, gzip-compressed files) to w.
func Write(w io.Writer, opt Options) (*Info, error) {
	if len(opt.Init) == 0 {
		return nil, fmt.Errorf("initramfs: no init binary")
	}
	info := &Info{}
	a := NewArchive()
	for _, d := range []string{"proc", "sys", "tmp", "mnt", "etc", "sbin"} {
		a.Dir(d)
	}
	a.Symlink("sbin/poweroff", "/init")
	a.File("init", opt.Init, 0o755)
	if opt.ModDir != "" {
		rel := opt.Release
		if rel == "" {
			rel = filepath.Base(opt.ModDir)
		}
		set, err := kmod.ResolveModules(opt.ModDir, opt.Modules)
		if err != nil {
			return nil, fmt.Errorf("initramfs: %w", err)
		}
		base := "lib/modules/" + rel
		for _, m := range set.Order {
			b, err := os.ReadFile(filepath.Join(opt.ModDir, filepath.FromSlash(m)))
			if err != nil {
				return nil, fmt.Errorf("initramfs: %w", err)
			}
			a.File(path.Join(base, m), b, 0o644)
		}
		order := strings.Join(set.Order, "\n") + "\n"
		a.File(base+"/vxn.modules", []byte(order), 0o644)
		info.Modules, info.Builtin = set.Order, set.Builtin
	}
	sz, err := a.Write(w, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	info.Raw, info.Compressed = sz.Raw, sz.Written
	return info, nil
}

// WriteFile writes the initramfs to path (atomically, via a temp file).
func WriteFile(p string, opt Options) (*Info, error) {
	var b bytes.Buffer
	info, err := Write(&b, opt)
	if err != nil {
		return nil, err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return info, os.Rename(tmp, p)
}

// BuildInit compiles cmd/vxn-init as a static, stripped binary (CGO off,
// -trimpath -ldflags='-s -w') and returns it. moduleDir is any directory
// inside the vxn Go module (the build runs there); goarch "" means the
// host's.
func BuildInit(ctx context.Context, moduleDir, goarch string) ([]byte, error) {
	out, err := os.MkdirTemp("", "vxn-init-build")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(out)
	bin := filepath.Join(out, "vxn-init")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/vxn-dev/vxn/cmd/vxn-init")
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if goarch != "" {
		cmd.Env = append(cmd.Env, "GOARCH="+goarch)
	}
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building vxn-init: %v\n%s", err, msg)
	}
	return os.ReadFile(bin)
}
