# Alpine Linux minirootfs as a Xen guest bundle (the spec's 3rd-party example).
#
#   xenbundle pack --conf alpine-xen-guest-bundle_3.23.bb \
#       --unpackdir DOWNLOADS --deploy-dir tmp/deploy/images/qemux86-64 \
#       --format ipk --output out/
#
# DOWNLOADS holds the tarball as fetched from SRC_URI (not extracted):
# the rootfs_tar import streams it straight into an ext4 image, keeping
# owners, modes and the /bin/sh -> busybox symlinks, without root or fakeroot.
# Upstream instead extracts it (SRC_URI ...;subdir=alpine-rootfs) and imports
# the directory; that works here too:
#   XEN_GUEST_SOURCE_TYPE[alpine] = "rootfs_dir"
#   XEN_GUEST_SOURCE_FILE[alpine] = "alpine-rootfs"
SUMMARY = "Alpine Linux minirootfs Xen guest bundle"
LICENSE = "MIT"

inherit xen-guest-bundle

ALPINE_VERSION = "3.23.3"
ALPINE_ARCH = "aarch64"
ALPINE_ARCH:x86-64 = "x86_64"

SRC_URI = "https://dl-cdn.alpinelinux.org/alpine/v3.23/releases/${ALPINE_ARCH}/alpine-minirootfs-${ALPINE_VERSION}-${ALPINE_ARCH}.tar.gz;name=${ALPINE_ARCH}"

# external: third-party image; pack prints the redistribution notice.
XEN_GUEST_BUNDLES = "alpine:autostart:external"
XEN_GUEST_SOURCE_TYPE[alpine] = "rootfs_tar"
XEN_GUEST_SOURCE_FILE[alpine] = "alpine-minirootfs-${ALPINE_VERSION}-${ALPINE_ARCH}.tar.gz"
XEN_GUEST_IMAGE_SIZE[alpine] = "128"
XEN_GUEST_MEMORY[alpine] = "256"
# The minirootfs has no init system (/sbin/init dangles without openrc):
# boot straight into the shell, or the guest boot-loops.
XEN_GUEST_EXTRA[alpine] = "root=/dev/xvda ro console=hvc0 init=/bin/sh"
# No XEN_GUEST_KERNEL: the guest boots the shared host kernel
# (${DEPLOY_DIR_IMAGE}/${KERNEL_IMAGETYPE}).
