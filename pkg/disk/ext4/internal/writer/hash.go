package writer

import "math/bits"

// dirHash is the htree hash of a name: the "half MD4" hash of the kernel's
// fs/ext4/hash.c with signed characters (the superblock says so with
// EXT2_FLAGS_SIGNED_HASH), seeded by the superblock's hash seed. The low
// bit is cleared: index entries use it to mark hash collisions that
// continue in the next leaf.
func dirHash(name []byte, seed [4]uint32) uint32 {
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if seed != [4]uint32{} {
		buf = seed
	}
	var in [8]uint32
	for n := len(name); n > 0; n -= 32 {
		hashBuf(name, n, in[:])
		halfMD4(&buf, &in)
		if n > 32 {
			name = name[32:]
		}
	}
	h := buf[1] &^ 1
	if h == 0x7fffffff<<1 {
		h = (0x7fffffff - 1) << 1
	}
	return h
}

// hashBuf packs up to 4*len(out) bytes of msg into big-endian-ish words
// padded with the remaining length, as the kernel's str2hashbuf does.
func hashBuf(msg []byte, length int, out []uint32) {
	num := len(out)
	pad := uint32(length) | uint32(length)<<8
	pad |= pad << 16
	val := pad
	if length > num*4 {
		length = num * 4
	}
	j := 0
	for i := 0; i < length; i++ {
		val = uint32(int32(int8(msg[i]))) + val<<8
		if i%4 == 3 {
			out[j] = val
			j++
			val = pad
			num--
		}
	}
	num--
	if num >= 0 {
		out[j] = val
		j++
	}
	for num--; num >= 0; num-- {
		out[j] = pad
		j++
	}
}

// halfMD4 is the three rounds of MD4 over eight words used by the hash.
func halfMD4(buf *[4]uint32, in *[8]uint32) {
	const k2, k3 = 0x5a827999, 0x6ed9eba1
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	r := bits.RotateLeft32
	// Round 1.
	a = r(a+f(b, c, d)+in[0], 3)
	d = r(d+f(a, b, c)+in[1], 7)
	c = r(c+f(d, a, b)+in[2], 11)
	b = r(b+f(c, d, a)+in[3], 19)
	a = r(a+f(b, c, d)+in[4], 3)
	d = r(d+f(a, b, c)+in[5], 7)
	c = r(c+f(d, a, b)+in[6], 11)
	b = r(b+f(c, d, a)+in[7], 19)
	// Round 2.
	a = r(a+g(b, c, d)+in[1]+k2, 3)
	d = r(d+g(a, b, c)+in[3]+k2, 5)
	c = r(c+g(d, a, b)+in[5]+k2, 9)
	b = r(b+g(c, d, a)+in[7]+k2, 13)
	a = r(a+g(b, c, d)+in[0]+k2, 3)
	d = r(d+g(a, b, c)+in[2]+k2, 5)
	c = r(c+g(d, a, b)+in[4]+k2, 9)
	b = r(b+g(c, d, a)+in[6]+k2, 13)
	// Round 3.
	a = r(a+h(b, c, d)+in[3]+k3, 3)
	d = r(d+h(a, b, c)+in[7]+k3, 9)
	c = r(c+h(d, a, b)+in[2]+k3, 11)
	b = r(b+h(c, d, a)+in[6]+k3, 15)
	a = r(a+h(b, c, d)+in[1]+k3, 3)
	d = r(d+h(a, b, c)+in[5]+k3, 9)
	c = r(c+h(d, a, b)+in[0]+k3, 11)
	b = r(b+h(c, d, a)+in[4]+k3, 15)
	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}

// xattrEntryHash is the hash of one extended attribute entry: its name
// bytes, then its value as little-endian words (zero padded).
func xattrEntryHash(name, value []byte) uint32 {
	var h uint32
	for _, c := range name {
		h = h<<5 ^ h>>27 ^ uint32(c)
	}
	for i := 0; i < len(value); i += 4 {
		var w [4]byte
		copy(w[:], value[i:])
		h = h<<16 ^ h>>16 ^ le.Uint32(w[:])
	}
	return h
}

// xattrBlockHash combines the entry hashes of an xattr block.
func xattrBlockHash(hashes []uint32) uint32 {
	var h uint32
	for _, e := range hashes {
		if e == 0 {
			return 0
		}
		h = h<<16 ^ h>>16 ^ e
	}
	return h
}
