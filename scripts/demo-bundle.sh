#!/usr/bin/env bash
# Bundling demo: builds xenbundle, makes a demo Yocto-like deploy directory,
# plans and installs one guest of every kind (Yocto-built ext4, rootfs
# tarball import, qcow2 HVM appliance) into a Dom0 root filesystem directory
# (out/demo/rootfs), and shows the resulting tree and xl configs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
out=out/demo
rm -rf "$out"; mkdir -p "$out/deploy" "$out/unpack" "$out/src/guest/etc" "$out/src/alpine/bin" "$out/src/alpine/etc"
go build -o out/bin/xenbundle ./cmd/xenbundle
xb=out/bin/xenbundle

echo "== preparing a demo deploy directory"
echo xen-guest-image-minimal > "$out/src/guest/etc/hostname"
"$xb" import --type rootfs_dir --source "$out/src/guest" --output "$out/deploy/xen-guest-image-minimal-qemux86-64.ext4" --size 32
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | head -1 || true)
if [ -n "$kernel" ]; then cp "$kernel" "$out/deploy/bzImage"; else echo "demo placeholder kernel" > "$out/deploy/bzImage"; fi
echo alpine > "$out/src/alpine/etc/hostname"; ln -s /bin/busybox "$out/src/alpine/bin/sh"
tar -C "$out/src/alpine" -czf "$out/unpack/alpine-minirootfs.tar.gz" --owner=0 --group=0 .
truncate -s 64M "$out/appliance.raw"; printf 'vendor appliance disk' | dd of="$out/appliance.raw" conv=notrunc status=none
qemu-img convert -f raw -O qcow2 -c "$out/appliance.raw" "$out/unpack/appliance.qcow2"

args=(--conf examples/demo/local.conf --deploy-dir "$out/deploy" --unpackdir "$out/unpack" --machine qemux86-64)
echo; echo "== xenbundle plan"
"$xb" plan "${args[@]}" --rootfs "$out/rootfs" --show-configs=false
echo; echo "== xenbundle install"
"$xb" install "${args[@]}" --rootfs "$out/rootfs" --cache-dir "$out/cache"
echo; echo "== second install (unchanged inputs: no image work)"
"$xb" install "${args[@]}" --rootfs "$out/rootfs" --cache-dir "$out/cache" | tail -1
echo; echo "== Dom0 tree"
(cd "$out/rootfs" && find . -printf '%M %12s %p\t%l\n' | sed 's/\t$//; s/\t/ -> /' | sort -k3)
for f in "$out"/rootfs/etc/xen/*.cfg; do echo; echo "== ${f#$out/rootfs}"; cat "$f"; done
