#!/usr/bin/env bash
# Installs the Debian packages the build and the tests need, once.
# Idempotent: does nothing when everything is present. Runs as root or
# through sudo. When another apt or dpkg holds the package locks it waits
# for them (up to $DEPS_LOCK_TIMEOUT seconds, default 600) instead of
# failing at once.
#
# --arch arm64 (or --machine qemuarm64) adds what the arm64 machine needs:
# qemu-system-aarch64 (package qemu-system-arm) and dpkg's arm64
# architecture (`dpkg --add-architecture arm64` + `apt-get update`), so
# that apt can fetch the arm64 Debian packages the image is built from.
set -euo pipefail
foreign=""
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) foreign=${2:?--arch needs a Debian architecture}; shift 2 ;;
    --machine) case "${2:?--machine needs a machine}" in
                 qemuarm64) foreign=arm64 ;;
                 qemux86-64) ;;
                 *) echo "deps: unknown machine $2 (qemux86-64, qemuarm64)" >&2; exit 2 ;;
               esac; shift 2 ;;
    *) echo "usage: $0 [--arch arm64 | --machine qemuarm64]" >&2; exit 2 ;;
  esac
done
[ "$foreign" != "$(dpkg --print-architecture)" ] || foreign=""
need=()
add_arch=""
if [ -n "$foreign" ]; then
  case "$foreign" in
    arm64) have() { command -v "$1" >/dev/null 2>&1; }; have qemu-system-aarch64 || need+=(qemu-system-arm) ;;
    *) echo "deps: architecture $foreign is not supported (arm64)" >&2; exit 2 ;;
  esac
  dpkg --print-foreign-architectures | grep -qx "$foreign" || add_arch=$foreign
fi
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
[ ${#need[@]} -gt 0 ] || [ -n "$add_arch" ] || exit 0

sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
if [ -n "$add_arch" ]; then
  echo "deps: dpkg --add-architecture $add_arch" >&2
  $sudo dpkg --add-architecture "$add_arch"
fi
timeout=${DEPS_LOCK_TIMEOUT:-600}
start=$SECONDS

# apt and dpkg hold their locks with fcntl(2) record locks, which flock(1)
# cannot see and fuser (psmisc) may not be installed to find: look the
# lock files' inodes up in /proc/locks (readable without root).
locks=(/var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock /var/cache/apt/archives/lock)
held() {
  local f ino
  for f in "${locks[@]}"; do
    ino=$(stat -c %i "$f" 2>/dev/null) || continue
    grep -qE " [0-9a-f]+:[0-9a-f]+:${ino} " /proc/locks 2>/dev/null && return 0
  done
  return 1
}
said=""
waiting() {
  [ -n "$said" ] || echo "deps: waiting for the dpkg lock (another apt is running)…" >&2
  said=1
}
# wait_locks waits (bounded) until no apt/dpkg lock is held, saying so.
wait_locks() {
  held || return 0
  waiting
  while held && [ $((SECONDS - start)) -lt "$timeout" ]; do sleep 2; done
}
# DPkg::Lock::Timeout (apt >= 1.9.11) makes apt-get itself wait for the
# dpkg lock, closing the race after wait_locks; it does not cover the
# package lists' lock of `apt-get update`, which is retried below. The
# environment goes through env(1): sudo would drop it.
apt=($sudo env DEBIAN_FRONTEND=noninteractive LC_ALL=C apt-get -o "DPkg::Lock::Timeout=$timeout")

while :; do
  wait_locks
  if out=$("${apt[@]}" update -qq 2>&1); then
    [ -z "$out" ] || printf '%s\n' "$out"
    break
  fi
  if grep -q 'Could not get lock' <<<"$out" && [ $((SECONDS - start)) -lt "$timeout" ]; then
    waiting
    sleep 2
    continue
  fi
  printf '%s\n' "$out" >&2
  echo "deps: apt-get update failed" >&2
  exit 1
done
wait_locks
[ ${#need[@]} -eq 0 ] || "${apt[@]}" install -y -qq --no-install-recommends "${need[@]}" >/dev/null
