# recipes-extended/xen-guest-bundles/my-guests_1.0.bb
inherit xen-guest-bundle

SRC_URI += "file://my-custom-guest.cfg"
XEN_GUEST_BUNDLES = "xen-guest-image-minimal:autostart"
XEN_GUEST_MEMORY[xen-guest-image-minimal] = "1024"
XEN_GUEST_CONFIG_FILE[xen-guest-image-minimal] = "${UNPACKDIR}/my-custom-guest.cfg"
