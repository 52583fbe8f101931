# Template guest bundle: xen-guest-image-minimal, autostarted, 1 GB.
#
#   xenbundle pack --conf example-xen-guest-bundle_1.0.bb \
#       --deploy-dir tmp/deploy/images/qemux86-64 --format deb --output out/
#   dpkg --root=rootfs -i out/example-xen-guest-bundle_1.0_all.deb   # or opkg
#   xenbundle merge --rootfs rootfs
#
# Install it into the host image only (a global IMAGE_INSTALL append makes
# the guest image depend on itself):
#   IMAGE_INSTALL:append:pn-xen-image-minimal = " example-xen-guest-bundle"
SUMMARY = "Example Xen guest bundle"
LICENSE = "MIT"

inherit xen-guest-bundle

XEN_GUEST_BUNDLES = "xen-guest-image-minimal:autostart"
XEN_GUEST_MEMORY[xen-guest-image-minimal] = "1024"

# More settings, per guest:
# XEN_GUEST_VCPUS[xen-guest-image-minimal] = "2"
# XEN_GUEST_VIF[xen-guest-image-minimal] = "bridge=xenbr0"
# XEN_GUEST_EXTRA[xen-guest-image-minimal] = "root=/dev/xvda ro console=hvc0 ip=dhcp"
#
# A custom config (its disk and kernel paths are rewritten):
# SRC_URI += "file://my-custom-guest.cfg"
# XEN_GUEST_CONFIG_FILE[xen-guest-image-minimal] = "${UNPACKDIR}/my-custom-guest.cfg"
#
# A third-party guest with its own kernel:
# XEN_GUEST_BUNDLES += "my-vendor-guest:external"
# XEN_GUEST_ROOTFS[my-vendor-guest] = "vendor-rootfs.ext4"
# XEN_GUEST_KERNEL[my-vendor-guest] = "vendor-kernel"
