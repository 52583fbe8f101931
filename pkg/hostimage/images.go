package hostimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
)

func run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// MakeExt4 builds an ext4 image at img from the directory dir with
// pkg/disk/ext4's writer (journal, metadata_csum, htree directories). The
// size is the content plus 25 % plus extraMB, rounded up to a MiB; the file
// is sparse. Ownership and modes come from dir, so build as root.
func MakeExt4(ctx context.Context, dir, img, label string, extraMB int64) error {
	used, entries, err := dirSize(dir)
	if err != nil {
		return err
	}
	size := used + used/4 + entries*512 + (16+extraMB)<<20
	size = (size + 1<<20 - 1) &^ (1<<20 - 1)
	inodes := entries*2 + 4096 + extraMB*16 // free space gets one inode per 64 KiB
	return ext4.FromDir(ctx, dir, img, ext4.Options{SizeBytes: size, Inodes: inodes, Label: label})
}

// MakeQcow2 converts a raw image to qcow2 with qemu-img (qemu-utils).
func MakeQcow2(ctx context.Context, raw, out string) error {
	os.Remove(out)
	return run(ctx, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out)
}

// MakeTarBz2 writes dir as a tar archive (numeric owner 0, sorted names)
// compressed with the host's bzip2 (Go's compress/bzip2 only decompresses).
func MakeTarBz2(ctx context.Context, dir, out string) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, "bzip2", "-c", "-9")
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pw, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("bzip2: %w", err)
	}
	werr := writeTar(dir, pw)
	pw.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("bzip2: %w: %s", err, stderr.String())
	}
	if werr != nil {
		return werr
	}
	return f.Close()
}

func writeTar(dir string, w io.Writer) error {
	tw := tar.NewWriter(w)
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, p := range paths {
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = "./" + filepath.ToSlash(rel)
		if info.IsDir() && rel != "." {
			hdr.Name += "/"
		} else if rel == "." {
			hdr.Name = "./"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "root", "root"
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			fh, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, fh)
			fh.Close()
			if err != nil {
				return err
			}
		}
	}
	return tw.Close()
}
