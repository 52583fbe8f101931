#!/bin/sh
# Regenerates the small seed images in this directory (needs qemu-img and
# qemu-io). The images are a few KB each: 64 KiB virtual size, 512-byte
# clusters, a mix of text, pseudo-random data, zeros and holes.
set -eu
cd "$(dirname "$0")"
rm -f base.raw *.qcow2
# 32 KiB raw source: 8 KiB text, 4 KiB pseudo-random, 4 KiB zeros, hole, tail.
{
	i=0
	while [ $i -lt 400 ]; do echo "line $i of the qcow2 seed image text"; i=$((i+1)); done | head -c 8192
	head -c 4096 /dev/urandom
	head -c 4096 /dev/zero
} >base.raw
truncate -s 28672 base.raw
printf 'tail of the image\n' >>base.raw
truncate -s 32768 base.raw
qemu-img convert -f raw -O qcow2 -o cluster_size=512 base.raw v3-512.qcow2
qemu-img convert -f raw -O qcow2 -o cluster_size=512,compat=0.10 base.raw v2-512.qcow2
qemu-img convert -f raw -O qcow2 -c -o cluster_size=512 base.raw zlib-512.qcow2
qemu-img convert -f raw -O qcow2 -c -o cluster_size=512,compression_type=zstd base.raw zstd-512.qcow2
qemu-img create -q -f qcow2 -o cluster_size=512 -b v3-512.qcow2 -F qcow2 overlay-512.qcow2
qemu-io -f qcow2 -c 'write -P 0x5a 1024 2048' -c 'write -z 8192 2048' -c 'write -z -u 10240 1024' overlay-512.qcow2 >/dev/null
rm -f base.raw
for f in *.qcow2; do qemu-img convert -f qcow2 -O raw "$f" "$f.raw"; echo "$(sha256sum <"$f.raw" | cut -d' ' -f1) $f"; rm -f "$f.raw"; done >SHA256SUMS
