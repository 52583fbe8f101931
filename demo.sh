#!/usr/bin/env bash
# Main job on built-in defaults: builds the reference Xen host image
# (xen-image-minimal, from Debian 12 packages) with the spec's default
# local.conf — the reference guest bundled as :autostart, vxn and the
# container engines (DISTRO_FEATURES vxn vcontainer) — boots it under QEMU
# (KVM if usable, else TCG), shows `xl list` with Domain-0 and the guest,
# runs a container as a Xen guest with `vxn run` and with `vctr run`
# (containerd) on the offline image the Dom0 ships, and powers off.
# The bundling-only demo of every guest kind is scripts/demo-bundle.sh.
# --machine qemuarm64 does the same on the arm64 machine (default
# qemux86-64).
set -euo pipefail
cd "$(dirname "$0")"
machine=qemux86-64
while [ $# -gt 0 ]; do
  case "$1" in
    --machine) machine=${2:?--machine needs qemux86-64 or qemuarm64}; shift 2 ;;
    --machine=*) machine=${1#--machine=}; shift ;;
    *) echo "usage: $0 [--machine qemux86-64|qemuarm64]" >&2; exit 2 ;;
  esac
done
bash scripts/deps.sh --machine "$machine"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
go build -o out/bin/xenbundle ./cmd/xenbundle
xb=out/bin/xenbundle
start=$SECONDS
echo "== xenbundle build-image (packages are cached under .cache/ after the first run)"
"$xb" build-image --machine "$machine"
echo
echo "== xenbundle boot"
"$xb" boot --machine "$machine" \
  --run "xl list" \
  --run "ls /etc/xen/auto /var/lib/xen/images" \
  --run "cat /etc/xen/xen-guest-image-minimal.cfg" \
  --run "xl info | grep -E 'xen_version|total_memory|free_memory'" \
  --run "vxn images" \
  --run "vxn run --rm busybox echo hello" \
  --run "ctr images ls" \
  --run "vctr run --rm docker.io/library/busybox:latest demo1 echo hello"
echo
echo "demo: $((SECONDS - start)) s (build and boot)"
