package writer

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Extended attribute name indexes (the prefix is stored as a number).
var xattrPrefixes = []struct {
	prefix string
	index  uint8
}{
	{"user.", 1},
	{"trusted.", 4},
	{"security.", 6},
	{"system.", 7},
}

const (
	xattrIndexACLAccess  = 2
	xattrIndexACLDefault = 3
	xattrIndexRichACL    = 8
)

// xattr is one attribute ready to encode.
type xattr struct {
	index uint8
	name  []byte // without the prefix
	value []byte
	hash  uint32
}

// size is the entry's size in an entry table (rounded to 4 bytes).
func (x *xattr) entrySize() int { return (16 + len(x.name) + 3) &^ 3 }

// valueSize is the value's size in the value area (rounded to 4 bytes).
func (x *xattr) valueSize() int { return (len(x.value) + 3) &^ 3 }

// inlineSpace is the room for attributes inside a 256-byte inode after
// the 32 extra bytes and the 4-byte magic.
const inlineSpace = InodeSize - 128 - extraIsize - 4

// blockSpace is the room in an xattr block after its 32-byte header.
const blockSpace = BlockSize - 32

// prepareXattrs converts a name → value map into sorted entries, turning
// POSIX ACLs from the kernel's xattr format into ext4's on-disk format.
func prepareXattrs(m map[string][]byte) ([]xattr, error) {
	out := make([]xattr, 0, len(m))
	for k, v := range m {
		x := xattr{value: v}
		switch k {
		case "system.posix_acl_access", "system.posix_acl_default":
			acl, err := aclToDisk(v)
			if err != nil {
				return nil, fmt.Errorf("xattr %s: %w", k, err)
			}
			x.value = acl
			x.index = xattrIndexACLAccess
			if k == "system.posix_acl_default" {
				x.index = xattrIndexACLDefault
			}
		case "system.richacl":
			x.index = xattrIndexRichACL
		default:
			for _, p := range xattrPrefixes {
				if rest, ok := strings.CutPrefix(k, p.prefix); ok {
					x.index = p.index
					x.name = []byte(rest)
					break
				}
			}
			if x.index == 0 {
				return nil, fmt.Errorf("xattr %q: unsupported name space (want user., trusted., security. or system.)", k)
			}
			if len(x.name) == 0 {
				return nil, fmt.Errorf("xattr %q: empty name after the prefix", k)
			}
		}
		if len(x.name) > 255 {
			return nil, fmt.Errorf("xattr %q: name longer than 255 bytes", k)
		}
		if 16+len(x.name)+len(x.value)+8 > blockSpace {
			return nil, fmt.Errorf("xattr %q: value of %d bytes does not fit in a %d-byte block", k, len(v), BlockSize)
		}
		x.hash = xattrEntryHash(x.name, x.value)
		out = append(out, x)
	}
	// The kernel looks attributes up in this order: index, name length, name.
	sort.Slice(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if a.index != b.index {
			return a.index < b.index
		}
		if len(a.name) != len(b.name) {
			return len(a.name) < len(b.name)
		}
		return bytes.Compare(a.name, b.name) < 0
	})
	return out, nil
}

// fits reports whether xs fit in space bytes of entries, terminator and
// values.
func fits(xs []xattr, space int) bool {
	n := 4 // terminator
	for i := range xs {
		n += xs[i].entrySize() + xs[i].valueSize()
	}
	return n <= space
}

// splitXattrs decides which attributes go into the inode and which into a
// block: all inline if they fit, else all in the block if they fit, else
// the small ones inline and the rest in the block.
func splitXattrs(xs []xattr) (inline, block []xattr, err error) {
	if len(xs) == 0 {
		return nil, nil, nil
	}
	if fits(xs, inlineSpace) {
		return xs, nil, nil
	}
	if fits(xs, blockSpace) {
		return nil, xs, nil
	}
	used := 4
	for i := range xs {
		s := xs[i].entrySize() + xs[i].valueSize()
		if used+s <= inlineSpace {
			inline = append(inline, xs[i])
			used += s
		} else {
			block = append(block, xs[i])
		}
	}
	if !fits(block, blockSpace) {
		return nil, nil, errors.New("extended attributes do not fit in the inode and one block")
	}
	return inline, block, nil
}

// encodeXattrs writes entries from the start of area and values from its
// end; value offsets are relative to base (the start of the entry table
// for in-inode attributes, the start of the block for a block). It returns
// the entry hashes.
func encodeXattrs(area []byte, base int, xs []xattr) []uint32 {
	off := 0
	end := len(area)
	hashes := make([]uint32, 0, len(xs))
	for i := range xs {
		x := &xs[i]
		vs := x.valueSize()
		voff := 0
		if len(x.value) > 0 {
			end -= vs
			copy(area[end:], x.value)
			voff = end + base
		}
		e := area[off:]
		e[0] = uint8(len(x.name))
		e[1] = x.index
		le.PutUint16(e[2:], uint16(voff))
		le.PutUint32(e[4:], 0)
		le.PutUint32(e[8:], uint32(len(x.value)))
		le.PutUint32(e[12:], x.hash)
		copy(e[16:], x.name)
		off += x.entrySize()
		hashes = append(hashes, x.hash)
	}
	return hashes
}

// inlineXattrs encodes attributes for the inode's extra space: the magic
// followed by the entries and values.
func inlineXattrs(xs []xattr) []byte {
	buf := make([]byte, 4+inlineSpace)
	le.PutUint32(buf, xattrMagic)
	encodeXattrs(buf[4:], 0, xs)
	return buf
}

// xattrBlock encodes an xattr block (its checksum is set later).
func xattrBlock(buf []byte, xs []xattr) {
	clear(buf)
	le.PutUint32(buf[0:], xattrMagic)
	le.PutUint32(buf[4:], 1) // refcount
	le.PutUint32(buf[8:], 1) // blocks
	hashes := encodeXattrs(buf[32:], 32, xs)
	le.PutUint32(buf[12:], xattrBlockHash(hashes))
}

// POSIX ACL tags.
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// aclToDisk converts an ACL from the kernel's xattr format (version 2,
// 8-byte entries of tag, permissions and id) to ext4's (version 1, 4-byte
// entries for the owner, group, mask and other entries and 8-byte entries
// with an id for named users and groups).
func aclToDisk(v []byte) ([]byte, error) {
	if len(v) < 4 || (len(v)-4)%8 != 0 {
		return nil, fmt.Errorf("POSIX ACL of %d bytes is not a version header and 8-byte entries", len(v))
	}
	if ver := le.Uint32(v); ver != 2 {
		return nil, fmt.Errorf("POSIX ACL version %d, want 2", ver)
	}
	out := make([]byte, 4, len(v))
	le.PutUint32(out, 1)
	for p := v[4:]; len(p) > 0; p = p[8:] {
		tag, perm, id := le.Uint16(p), le.Uint16(p[2:]), le.Uint32(p[4:])
		if perm&^7 != 0 {
			return nil, fmt.Errorf("POSIX ACL entry with permissions %#x", perm)
		}
		switch tag {
		case aclUserObj, aclGroupObj, aclMask, aclOther:
			out = le.AppendUint16(out, tag)
			out = le.AppendUint16(out, perm)
		case aclUser, aclGroup:
			out = le.AppendUint16(out, tag)
			out = le.AppendUint16(out, perm)
			out = le.AppendUint32(out, id)
		default:
			return nil, fmt.Errorf("POSIX ACL entry with unknown tag %#x", tag)
		}
	}
	return out, nil
}
