package importer

import (
	"archive/tar"
	"context"
	"fmt"
	"github.com/vxn-dev/vxn/pkg/tarsafe"
	"io"
	"path/filepath"
)

// Size estimation for new ext4 images.
//
// mkfs.ext4 -d fails with "Could not allocate block" when the image is too
// small (as upstream's bash bundler lets happen), so we compute the space the content needs and
// validate or choose the image size before writing anything. The tar
// estimate is deliberately pessimistic: every file is rounded up to 4 KiB blocks, every
// inode costs 256 bytes, every directory a block plus its entries, long
// symlinks and large xattr sets a block each, and big files their extent
// tree blocks. MinimumBytes then adds the file system's own
// metadata (inode tables, bitmaps, group descriptors). For directories the
// ext4 package's own EstimateDir gives the content size.

const fsBlock = 4096

// usage accumulates the space an ext4 tree needs.
type usage struct {
	data    int64 // file, symlink and xattr blocks
	dirents int64 // directory entry bytes
	dirs    int64
	inodes  int64
	entries int64
}

func roundUp(n, to int64) int64 { return (n + to - 1) / to * to }

// add accounts one entry. For a hardlink only the directory entry counts.
func (u *usage) add(typ byte, name string, size int64, linkTarget string, xattrBytes int64) {
	u.entries++
	u.dirents += roundUp(8+int64(len(filepath.Base(name))), 4)
	if typ == tar.TypeLink {
		return
	}
	u.inodes++
	switch typ {
	case tar.TypeReg:
		u.data += roundUp(size, fsBlock)
		// An inode holds 4 extents of up to 128 MiB; beyond that, extent
		// tree leaf blocks of 340 extents each.
		if ext := (size + 128*MiB - 1) / (128 * MiB); ext > 4 {
			u.data += fsBlock * ((ext + 339) / 340)
		}
	case tar.TypeDir:
		u.dirs++
	case tar.TypeSymlink:
		if len(linkTarget) >= 60 {
			u.data += fsBlock
		}
	}
	if xattrBytes > 96 { // more than fits inside a 256-byte inode
		u.data += roundUp(xattrBytes, fsBlock)
	}
}

// bytes is the estimated space of the tree, without file system overhead.
func (u *usage) bytes() int64 {
	return u.data + u.dirs*fsBlock + roundUp(u.dirents, fsBlock) + u.inodes*256
}

func (u *usage) String() string {
	return fmt.Sprintf("%d entries, %d bytes", u.entries, u.bytes())
}

// MinimumBytes returns the smallest ext4 image, in bytes, that holds content
// bytes of estimated content as written by pkg/disk/ext4 (no journal, no
// reserved blocks, inode tables at one 256-byte inode per 16 KiB): content
// plus 3% for inode tables, bitmaps and descriptors, and 2 MiB of slack,
// rounded up to a MiB.
func MinimumBytes(content int64) int64 {
	return roundUp(content*100/97+2*MiB, MiB)
}

// MinimumMB is MinimumBytes in MiB.
func MinimumMB(content int64) int {
	return int(MinimumBytes(content) / MiB)
}

// DefaultSizeMB is the automatic image size for small contents, upstream's
// usual XEN_GUEST_IMAGE_SIZE.
const DefaultSizeMB = 128

// AutoSizeMB is the image size chosen when SizeMB is 0: the content plus 25%
// and 16 MiB of headroom for the guest's first writes, at least
// DefaultSizeMB, and never below MinimumMB.
func AutoSizeMB(content int64) int {
	mb := int((content*5/4+MiB-1)/MiB) + 16
	return max(mb, DefaultSizeMB, MinimumMB(content))
}

// checkFSSize validates an explicit size for a file system import, and
// that the automatic size stays within MaxImageMB.
func checkFSSize(req Request, content int64, what string) error {
	if req.SizeMB == 0 {
		if mb := AutoSizeMB(content); mb > MaxImageMB {
			return reqError(req, fmt.Errorf("%s needs a %d MB image, more than the maximum of %d MB (16 TiB)", what, mb, MaxImageMB))
		}
		return nil
	}
	if need := MinimumMB(content); req.SizeMB < need {
		return &SizeError{Guest: req.Guest, Type: req.Type, NeededMB: need, GivenMB: req.SizeMB, What: what}
	}
	return nil
}

// fsSizeBytes is the image size an import will use.
func fsSizeBytes(req Request, content int64) int64 {
	if req.SizeMB > 0 {
		return int64(req.SizeMB) * MiB
	}
	return int64(AutoSizeMB(content)) * MiB
}

// estimateTar runs the sanitizer over a tar stream and accounts every entry
// it would emit. It reads the whole archive, so it also finds corrupt or
// unsafe archives before any work.
func estimateTar(ctx context.Context, r io.Reader, opt tarsafe.Options) (*usage, error) {
	u := &usage{}
	err := tarsafe.Walk(ctx, r, opt, func(h *tar.Header, body io.Reader) error {
		var xattr int64
		for k, v := range h.PAXRecords {
			xattr += int64(len(k)-len(tarsafe.PAXXattr)+len(v)) + 16
		}
		u.add(h.Typeflag, h.Name, h.Size, h.Linkname, xattr)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}
