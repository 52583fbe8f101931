// Package writer streams a file tree into an ext4 file system image. It is
// written from the on-disk format as the Linux kernel documents it
// (Documentation/filesystems/ext4 and the structures of fs/ext4/ext4.h and
// include/linux/jbd2.h) and checked against e2fsprogs (e2fsck, debugfs,
// dumpe2fs) as the oracle. See pkg/disk/ext4's package comment for the
// features it writes and the sizing rules.
package writer

import (
	"encoding/binary"
	"hash/crc32"
)

// Geometry fixed by this writer.
const (
	// BlockSize is the file system block size.
	BlockSize = 4096
	// InodeSize is the size of one on-disk inode.
	InodeSize = 256
	// blocksPerGroup is the number of blocks a block bitmap covers.
	blocksPerGroup = 8 * BlockSize
	// maxInodesPerGroup is the number of inodes an inode bitmap covers.
	maxInodesPerGroup = 8 * BlockSize
	// descSize is the size of a group descriptor (no 64bit feature).
	descSize = 32
	// extraIsize is the used part of the inode beyond the first 128 bytes.
	extraIsize = 32
	// inodesPerBlock is the number of inodes in an inode table block.
	inodesPerBlock = BlockSize / InodeSize
	// logGroupsPerFlex: 16 groups per flex group, like mke2fs.
	logGroupsPerFlex = 4
	// maxExtentLen is the longest initialized extent.
	maxExtentLen = 32768
	// maxBlocks is the largest file system (32-bit block numbers).
	maxBlocks = 1<<32 - 1
	// minJournalBlocks is jbd2's smallest journal.
	minJournalBlocks = 1024
	// maxHops bounds symlink resolution of parent directories (MAXSYMLINKS).
	maxHops = 40
	// maxNameLen is the longest file name ext4 stores.
	maxNameLen = 255
)

// Reserved inode numbers.
const (
	rootIno    = 2
	journalIno = 8
	firstIno   = 11 // first non-reserved inode: lost+found
	lpfIno     = 11
)

// Mode type bits.
const (
	sIFMT   = 0xf000
	sIFSOCK = 0xc000
	sIFLNK  = 0xa000
	sIFREG  = 0x8000
	sIFBLK  = 0x6000
	sIFDIR  = 0x4000
	sIFCHR  = 0x2000
	sIFIFO  = 0x1000
)

// Feature flags written to the superblock.
const (
	compatHasJournal = 0x4
	compatExtAttr    = 0x8
	compatDirIndex   = 0x20

	incompatFiletype = 0x2
	incompatExtents  = 0x40
	incompatFlexBG   = 0x200

	roCompatSparseSuper  = 0x1
	roCompatLargeFile    = 0x2
	roCompatHugeFile     = 0x8
	roCompatDirNlink     = 0x20
	roCompatExtraIsize   = 0x40
	roCompatMetadataCsum = 0x400
)

// Inode flags.
const (
	flagIndex   = 0x1000
	flagExtents = 0x80000
)

// Group descriptor flags.
const bgInodeZeroed = 0x4

// Magic numbers.
const (
	sbMagic      = 0xef53
	extentMagic  = 0xf30a
	xattrMagic   = 0xea020000
	jbd2Magic    = 0xc03b3998
	jbd2SuperV2  = 4
	dirTailFT    = 0xde
	hashHalfMD4  = 1
	flagsSignedH = 0x1
)

// Directory entry file types.
const (
	ftUnknown = 0
	ftReg     = 1
	ftDir     = 2
	ftChr     = 3
	ftBlk     = 4
	ftFifo    = 5
	ftSock    = 6
	ftSymlink = 7
)

var le = binary.LittleEndian

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c is the kernel's ext4_chksum: CRC-32C continued from seed without
// the usual pre- and post-inversion.
func crc32c(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}

// fileType maps a mode to the directory entry file type.
func fileType(mode uint16) uint8 {
	switch mode & sIFMT {
	case sIFREG:
		return ftReg
	case sIFDIR:
		return ftDir
	case sIFCHR:
		return ftChr
	case sIFBLK:
		return ftBlk
	case sIFIFO:
		return ftFifo
	case sIFSOCK:
		return ftSock
	case sIFLNK:
		return ftSymlink
	}
	return ftUnknown
}

// hasBackup reports whether group g holds a superblock and descriptor
// copy under sparse_super: groups 0, 1 and the powers of 3, 5 and 7.
func hasBackup(g uint64) bool {
	if g <= 1 {
		return true
	}
	for _, b := range []uint64{3, 5, 7} {
		n := b
		for n < g {
			n *= b
		}
		if n == g {
			return true
		}
	}
	return false
}

// nextBackup returns the first group after g that holds a backup.
func nextBackup(g uint64) uint64 {
	best := uint64(1<<63 - 1)
	if g < 1 {
		return 1
	}
	for _, b := range []uint64{3, 5, 7} {
		n := b
		for n <= g {
			n *= b
		}
		if n < best {
			best = n
		}
	}
	return best
}

// defaultJournalBlocks is mke2fs's journal size for a file system of n
// 4 KiB blocks (e2fsprogs' ext2fs_default_journal_size), 0 for none.
func defaultJournalBlocks(n uint64) uint64 {
	switch {
	case n < 2048:
		return 0
	case n < 32768:
		return 1024
	case n < 256*1024:
		return 4096
	case n < 512*1024:
		return 8192
	case n < 4096*1024:
		return 16384
	case n < 8192*1024:
		return 32768
	case n < 16384*1024:
		return 65536
	case n < 32768*1024:
		return 131072
	}
	return 262144
}

// Timestamp is a time as ext4 stores it: seconds since the epoch and
// nanoseconds.
type Timestamp struct {
	Sec  int64
	Nsec uint32
}

// encode returns the 32-bit seconds field and the extra field (two epoch
// bits extending the seconds, and the nanoseconds).
func (t Timestamp) encode() (lo, extra uint32) {
	lo = uint32(t.Sec)
	ep := (t.Sec - int64(int32(lo))) >> 32
	return lo, uint32(ep)&3 | (t.Nsec%1e9)<<2
}
