// Package ociruntime is vxn-oci-runtime: an OCI runtime with runc's command
// line that runs each container as a Xen guest, so that containerd (through
// its stock runc shim with BinaryName), Docker and Podman run containers as
// VMs. cmd/vxn-oci-runtime is a thin wrapper around Main.
//
// # Command line
//
// Global options --root (default /run/vxn-oci-runtime), --log, --log-format
// text|json (runc's JSON lines {"level","msg","time"}, which the shim reads
// to report errors), --debug, and --systemd-cgroup, --criu, --rootless
// (accepted, meaningless for a VM). Verbs: create, start, state, kill,
// delete, features, ps, exec, pause, resume; --version. Errors print the
// message on stderr and a log line, and exit 1.
//
// create maps the bundle's config.json (MapSpec), makes the guest disk
// (BuildDisk) and spawns the container's monitor through the Engine: a
// process that outlives the runtime, inherits the runtime's stdin, stdout
// and stderr as the container's (that is how shims hand over their pipes
// and fifos), boots the guest to the point where it holds the entrypoint,
// and later exits with the container's exit status. Its PID goes to
// --pid-file, so the engine reports the real exit code. With a terminal the
// monitor does not inherit the runtime's stdio (go-runc reads them to EOF)
// and the pty master goes to --console-socket.
//
// # config.json
//
// Honoured: process.args (verbatim, no shell), env, cwd, user (uid:gid),
// terminal, hostname, root.path (relative to the bundle), mounts (below),
// linux.resources.memory.limit (guest memory, bounded to 96-4096 MB) and
// cpu quota/period (vcpus, at most the host's CPUs). Any 1.x ociVersion is
// accepted.
//
// Mounts: proc, sysfs, devpts, tmpfs, mqueue and cgroup at their usual
// places are provided by the guest itself and need nothing. Bind mounts of
// host files and directories are copied into the guest disk at create: a
// read-only snapshot (changes on either side are not shared), at most
// MaxCopyBytes in all. Bind mounts of host /dev, /proc and /sys paths, or
// onto them, and other mount types are skipped. root.readonly: the guest
// writes to a throw-away layer, the bundle's rootfs is never modified.
//
// What a VM cannot honour (namespaces, seccomp, AppArmor, SELinux,
// capabilities, rlimits, cgroup limits other than memory and cpu quota,
// devices, sysctls, hooks, additional gids, skipped mounts) is logged once
// per create as warning lines, never silently dropped.
//
// # Guest disk
//
// The bundle's rootfs becomes a read-only ext4 image (pkg/disk/ext4, sized
// to the content with headroom). A container with bind mounts to copy gets
// its own image under <root>/.disks/, removed on delete. Without copies,
// when the rootfs is an overlay mount whose upper layer is still empty (an
// engine's freshly mounted snapshot), the image depends only on the lower
// layers, which never change once committed: it is cached under
// <image store>/oci-disks/ keyed by their paths, inodes and change times,
// and shared by every container of the same image (unused entries are
// pruned after CacheMaxAge).
//
// # Configuration
//
// The runtime has no options of its own for the guest: it reads vxn's
// config file (package vxnconf: /etc/vxn/config.yaml, or $VXN_CONFIG) for
// the guest kernel and initramfs (kernel:, initramfs:), the default memory
// and vCPUs, the guest type, the bridge, the image store (where the guest
// disk cache lives) and the xl program (xl:). Each container's monitor uses
// the toolstack chosen there; the runtime tells it over its options pipe.
//
// # Network
//
// Engines' network namespaces cannot reach a VM. The guest has no network
// unless the annotation io.vxn.network=bridge gives it a vif on the vxn
// config's bridge (default xenbr0).
package ociruntime
