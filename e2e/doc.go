// Package e2e boots the reference Xen host image (pkg/hostimage) under QEMU
// (pkg/qemu) and runs a runtime suite modelled on meta-virtualization's
// tests/test_xen_runtime.py: dom0 boot checks and guest bundling checks
// (xendomains autostart, manual xl create, imported qcow2 and rootfs
// tarball guests, xl shutdown). The image is built and the guests bundled
// by package refimage: the same pipeline as `xenbundle build-image`.
//
// The tests only run when enabled:
//
//	go test ./e2e -v -args -e2e [-machine qemux86-64] [-boot-timeout 120s] [-no-kvm]
//	VXN_E2E=1 go test ./e2e -v
//
// The image is built once into the repository's .cache/ (package downloads
// and extraction are cached), and the machine is booted once per test
// binary in TestMain.
//
// Host packages (Debian 12) the CI must install:
//
//	apt-get install -y qemu-system-x86 qemu-utils e2fsprogs xz-utils bzip2 kmod cpio
//
// apt-get, apt-cache and dpkg-deb (always present on Debian) fetch and
// unpack the image packages; kmod (depmod) is optional; cpio is only used by
// a unit test to cross-check the initramfs. KVM is used only when /dev/kvm
// works and the CPU advertises vmx/svm; otherwise QEMU runs TCG and the boot
// timeout is multiplied by 4.
package e2e
