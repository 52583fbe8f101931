#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, once.
# Idempotent: does nothing when everything is present.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have mkfs.ext4 || need+=(e2fsprogs)
have debugfs || need+=(e2fsprogs)
have qemu-img || need+=(qemu-utils)
have qemu-io || need+=(qemu-utils)
have bzip2 || need+=(bzip2)
have xz || need+=(xz-utils)
have zstd || need+=(zstd)
have cpio || need+=(cpio)
have depmod || need+=(kmod)
have qemu-system-x86_64 || need+=(qemu-system-x86)
[ -e /usr/include/libxlutil.h ] || need+=(libxen-dev)   # xlcfg differential tests against xl's own parser
[ -e /bin/busybox ] || [ -e /usr/bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
