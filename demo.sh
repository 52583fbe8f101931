#!/usr/bin/env bash
# Main job on built-in defaults: builds the reference Xen host image
# (xen-image-minimal, from Debian 12 packages) with the reference guest
# bundled as :autostart, boots it under QEMU (KVM if usable, else TCG),
# shows `xl list` with Domain-0 and the guest, and powers off cleanly.
# The bundling-only demo of every guest kind is scripts/demo-bundle.sh.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/deps.sh
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
go build -o out/bin/xenbundle ./cmd/xenbundle
xb=out/bin/xenbundle
echo "== xenbundle build-image (packages are cached under .cache/ after the first run)"
"$xb" build-image
echo
echo "== xenbundle boot"
"$xb" boot \
  --run "xl list" \
  --run "ls /etc/xen/auto /var/lib/xen/images" \
  --run "cat /etc/xen/xen-guest-image-minimal.cfg" \
  --run "xl info | grep -E 'xen_version|total_memory|free_memory'" \
  --run "grep -m1 -i 'login:' /var/log/xen/console/guest-xen-guest-image-minimal.log"
