inherit xen-guest-bundle

ALPINE_VERSION = "3.23.0"
ALPINE_ARCH = "x86_64"
ALPINE_ARCH:aarch64 = "aarch64"

SRC_URI = "https://dl-cdn.alpinelinux.org/alpine/v3.23/releases/${ALPINE_ARCH}/alpine-minirootfs-${ALPINE_VERSION}-${ALPINE_ARCH}.tar.gz;subdir=alpine-rootfs"

XEN_GUEST_BUNDLES = "alpine:autostart:external"
XEN_GUEST_SOURCE_TYPE[alpine] = "rootfs_dir"
XEN_GUEST_SOURCE_FILE[alpine] = "alpine-rootfs"
XEN_GUEST_IMAGE_SIZE[alpine] = "128"
XEN_GUEST_MEMORY[alpine] = "256"
XEN_GUEST_EXTRA[alpine] = "root=/dev/xvda ro console=hvc0"

xen_guest_import_custom() {
	cp -a "$1" "$2"
}
XEN_GUEST_IMPORT_DEPENDS_custom = "coreutils-native"
