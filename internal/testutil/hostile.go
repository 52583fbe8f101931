package testutil

import (
	"archive/tar"
	"bytes"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"strconv"
)

// Builders of hostile inputs for the tests of issue 11: small files that
// declare (or expand to) enormous sizes.

// SparseFragment is one data fragment of a sparse file: Data at Offset.
type SparseFragment struct {
	Offset int64
	Data   []byte
}

// ustarHeader returns one 512-byte ustar header block.
func ustarHeader(name string, typ byte, size int64) []byte {
	h := make([]byte, 512)
	copy(h[0:100], name)
	copy(h[100:108], "0000644\x00")
	copy(h[108:116], "0000000\x00")
	copy(h[116:124], "0000000\x00")
	copy(h[124:136], fmt.Sprintf("%011o\x00", size))
	copy(h[136:148], "00000000000\x00")
	h[156] = typ
	copy(h[257:263], "ustar\x00")
	copy(h[263:265], "00")
	for i := 148; i < 156; i++ {
		h[i] = ' '
	}
	var sum int
	for _, b := range h {
		sum += int(b)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// paxRecord formats one PAX record "LEN key=value\n".
func paxRecord(k, v string) string {
	rec := " " + k + "=" + v + "\n"
	n := len(rec)
	for {
		s := strconv.Itoa(n) + rec
		if len(s) == n {
			return s
		}
		n = len(s)
	}
}

func pad512(b []byte) []byte {
	if r := len(b) % 512; r != 0 {
		b = append(b, make([]byte, 512-r)...)
	}
	return b
}

// PAXSparseEntry returns the blocks of one PAX (GNU sparse format 1.0)
// sparse regular file named name whose real size is realsize, holding the
// fragments (in order, inside realsize) and holes elsewhere: what GNU tar
// writes for `tar --sparse --format=pax`. The stored size is only the
// sparse map and the fragments' data.
func PAXSparseEntry(name string, realsize int64, frags []SparseFragment) []byte {
	var pax paxBuf
	pax.add("GNU.sparse.major", "1")
	pax.add("GNU.sparse.minor", "0")
	pax.add("GNU.sparse.name", name)
	pax.add("GNU.sparse.realsize", strconv.FormatInt(realsize, 10))
	var m bytes.Buffer
	fmt.Fprintf(&m, "%d\n", len(frags))
	for _, f := range frags {
		fmt.Fprintf(&m, "%d\n%d\n", f.Offset, len(f.Data))
	}
	body := pad512(m.Bytes())
	for _, f := range frags {
		body = append(body, f.Data...)
	}
	stored := int64(len(body))
	body = pad512(body)
	var out []byte
	out = append(out, ustarHeader("PaxHeaders/"+name, tar.TypeXHeader, int64(len(pax.b)))...)
	out = append(out, pad512([]byte(pax.b))...)
	out = append(out, ustarHeader("GNUSparseFile.0/"+name, tar.TypeReg, stored)...)
	return append(out, body...)
}

type paxBuf struct{ b string }

func (s *paxBuf) add(k, v string) { s.b += paxRecord(k, v) }

// EndOfArchive is the tar end-of-archive marker (two zero blocks).
func EndOfArchive() []byte { return make([]byte, 1024) }

// PAXSparseTar is a whole archive holding one PAXSparseEntry.
func PAXSparseTar(name string, realsize int64, frags []SparseFragment) []byte {
	return append(PAXSparseEntry(name, realsize, frags), EndOfArchive()...)
}

// ZstdZeroTar returns a zstd stream, a few bytes per 128 KiB, of a tar
// archive holding one regular file named name of size bytes of zeros: a
// decompression bomb that takes long to read (about 32000:1) but is made
// instantly, of RLE blocks.
func ZstdZeroTar(name string, size int64) []byte {
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: size, Format: tar.FormatPAX})
	// The zeros after the header: the content, its padding, the
	// end-of-archive marker.
	zeros := (size+511)/512*512 + 1024
	var out bytes.Buffer
	out.Write([]byte{0x28, 0xb5, 0x2f, 0xfd}) // magic
	out.WriteByte(0x00)                       // no checksum, not single segment, no content size
	out.WriteByte(7 << 3)                     // window 128 KiB
	block := func(last bool, typ int, size int, data []byte) {
		v := uint32(size)<<3 | uint32(typ)<<1
		if last {
			v |= 1
		}
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], v)
		out.Write(b[:3])
		out.Write(data)
	}
	h := hdr.Bytes()
	block(zeros == 0, 0, len(h), h) // raw block: the header blocks
	const max = 128 << 10
	for zeros > 0 {
		n := min(zeros, max)
		zeros -= n
		block(zeros == 0, 1, int(n), []byte{0}) // RLE block of zeros
	}
	return out.Bytes()
}

// Qcow2ZeroBomb returns a qcow2 image (64 KiB clusters) of the given
// virtual size (a multiple of 512 MiB) whose every cluster is a compressed
// cluster decompressing to zeros: 8 bytes of L2 table per 64 KiB of disk,
// so converting it costs a decompression per cluster while writing
// nothing. Two descriptors of the same data alternate, so that no cache of
// the last cluster helps.
func Qcow2ZeroBomb(virtual int64) []byte {
	const cl = 1 << 16
	be := binary.BigEndian
	l2s := virtual / (cl * cl / 8)
	dataCluster := 2 + l2s
	img := make([]byte, (dataCluster+1)*cl)
	copy(img, "QFI\xfb")
	be.PutUint32(img[4:], 3)
	be.PutUint32(img[20:], 16)
	be.PutUint64(img[24:], uint64(virtual))
	be.PutUint32(img[36:], uint32(l2s)) // l1_size
	be.PutUint64(img[40:], 1*cl)        // l1_table_offset
	be.PutUint32(img[96:], 4)           // refcount_order
	be.PutUint32(img[100:], 104)        // header_length
	var z bytes.Buffer
	fw, _ := flate.NewWriter(&z, flate.BestCompression)
	fw.Write(make([]byte, cl))
	fw.Close()
	copy(img[dataCluster*cl:], z.Bytes())
	for i := int64(0); i < l2s; i++ {
		be.PutUint64(img[cl+8*i:], uint64((2+i)*cl)|1<<63)
		for j := int64(0); j < cl/8; j++ {
			nsec := uint64(j & 1) // 1 or 2 sectors
			be.PutUint64(img[(2+i)*cl+8*j:], 1<<62|nsec<<54|uint64(dataCluster*cl))
		}
	}
	return img
}
