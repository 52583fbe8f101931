package hostimage

// Container engines in dom0 (Options.Engines): Debian 12's containerd 1.6
// (with its runc shim, ctr and runc), docker.io 20.10 and podman 4.3 with
// conmon, so that vxn-oci-runtime can be driven by the real engines. They
// are an option group because they add about 250 MB to the dom0 rootfs
// (the demo image does not need them).
//
// Choices, all for a dom0 whose containers are Xen guests:
//   - cgroup2 is mounted at /sys/fs/cgroup (the engines and the runc shim
//     need a cgroup hierarchy; dom0 has no systemd, so cgroupfs drivers);
//   - storage: overlayfs for containerd, overlay2 for Docker and overlay for
//     Podman, on dom0's ext4 root (the overlay module is loaded);
//   - networking: containers use --network=none (a VM cannot join a netns);
//     dockerd runs with --bridge=none --iptables=false, Podman's default
//     netns is "none", so no veth, bridge netfilter or NAT modules are needed;
//   - containerd and dockerd start in the background at boot (rcS
//     S40engines) so that the console is not delayed; when both answer,
//     /run/vxn-engines.ready holds dom0's uptime at that moment. Podman is
//     daemonless;
//   - the vxn runtime is registered everywhere under the name "vxn" with
//     the binary /usr/bin/vxn-oci-runtime: containerd's CRI default runtime
//     (runc kept), a Docker runtime (runc stays Docker's default) and
//     Podman's default runtime.

// ShippedImagesDir holds OCI image archives (docker-archive .tar) that the
// engines script imports into containerd's default namespace at its first
// start: vxn's offline image is put there.
const ShippedImagesDir = "/usr/share/vxn/images"

// EngineRuntimeBinary is the OCI runtime the engines are configured with.
const EngineRuntimeBinary = "/usr/bin/vxn-oci-runtime"

// enginePackages are the engines and what they need at run time (the
// shared libraries are found by CheckSharedLibs' DT_NEEDED check).
var enginePackages = []PackageSpec{
	{Name: "containerd", Keep: []string{"usr/bin/containerd", "usr/bin/ctr"}, Drop: []string{"usr/bin/containerd-shim-runc-v1", "usr/bin/containerd-stress"}},
	{Name: "runc", Keep: []string{"usr/sbin/runc", "usr/bin/runc"}},
	{Name: "docker.io", Keep: []string{"usr/bin/docker", "usr/sbin/dockerd"}, Drop: []string{"usr/bin/docker-init"}},
	{Name: "podman", Keep: []string{"usr/bin/podman"}},
	{Name: "conmon"},
	// policy.json, registries.conf, shortnames and containers.conf defaults.
	{Name: "golang-github-containers-common"},
	{Name: "golang-github-containers-image"},
	// Shared libraries of dockerd, podman, conmon and runc.
	{Name: "libseccomp2"}, {Name: "libdevmapper1.02.1"}, {Name: "libudev1"}, {Name: "libsystemd0"},
	{Name: "libcap2"}, {Name: "libgcrypt20"}, {Name: "libgpg-error0"}, {Name: "liblz4-1"},
	{Name: "libgpgme11"}, {Name: "libassuan0"}, {Name: "libsubid4"}, {Name: "libaudit1"}, {Name: "libcap-ng0"},
	{Name: "libcrypt1"}, {Name: "libpam0g"}, {Name: "libsemanage2"}, {Name: "libsepol2"}, {Name: "libbz2-1.0"},
	{Name: "libglib2.0-0", Keep: []string{"usr/lib/x86_64-linux-gnu/libglib-2.0.so", "usr/lib/aarch64-linux-gnu/libglib-2.0.so"}},
	{Name: "libffi8"},
}

// engineModules are the kernel modules the engines need in dom0.
var engineModules = []string{"overlay"}

// engineFiles are the engines' configuration files in dom0.
var engineFiles = map[string]string{
	"etc/containerd/config.toml": `# Written by vxn hostimage: vxn is the CRI default runtime; runc is kept.
# ctr uses io.containerd.runc.v2 with --runc-binary ` + EngineRuntimeBinary + ` (or vctr).
version = 2

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "vxn"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.vxn]
  runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.vxn.options]
    BinaryName = "` + EngineRuntimeBinary + `"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "/etc/cni/net.d"
`,
	"etc/docker/daemon.json": `{
  "runtimes": {
    "vxn": { "path": "` + EngineRuntimeBinary + `" }
  },
  "storage-driver": "overlay2",
  "iptables": false,
  "ip-masq": false,
  "bridge": "none",
  "exec-opts": ["native.cgroupdriver=cgroupfs"],
  "log-driver": "json-file"
}
`,
	"etc/containers/containers.conf.d/vxn.conf": `# Written by vxn hostimage: containers are Xen guests run by vxn-oci-runtime.
[containers]
netns = "none"

[engine]
runtime = "vxn"
cgroup_manager = "cgroupfs"
events_logger = "file"

[engine.runtimes]
vxn = ["` + EngineRuntimeBinary + `"]
`,
	"etc/containers/storage.conf": `# Written by vxn hostimage.
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
`,
}

// enginesScript starts containerd and dockerd in the background and records
// when both answer; at poweroff it stops them.
const enginesScript = `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ready=/run/vxn-engines.ready
case "$1" in
start)
	grep -q '^cgroup2 /sys/fs/cgroup ' /proc/mounts || mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
	rm -f "$ready"
	(
		containerd </dev/null >/var/log/containerd.log 2>&1 &
		echo $! > /run/containerd.pid
		n=0
		until ctr version >/dev/null 2>&1; do
			sleep 0.2; n=$((n+1))
			[ $n -gt 1500 ] && { echo "containerd did not start" > "$ready.failed"; exit 1; }
		done
		# Images shipped with the Dom0 (vxn's offline busybox), imported
		# into containerd's default namespace once.
		for a in %[1]s/*.tar; do
			[ -f "$a" ] || continue
			stamp=/var/lib/containerd/vxn-imported.${a##*/}
			[ "$stamp" -nt "$a" ] && continue
			ctr -n default images import "$a" >>/var/log/vxn-image-import.log 2>&1 && touch "$stamp"
		done
		dockerd --containerd=/run/containerd/containerd.sock </dev/null >/var/log/dockerd.log 2>&1 &
		echo $! > /run/dockerd.pid
		n=0
		until docker version >/dev/null 2>&1; do
			sleep 0.2; n=$((n+1))
			[ $n -gt 1500 ] && { echo "dockerd did not start" > "$ready.failed"; exit 1; }
		done
		cut -d' ' -f1 /proc/uptime > "$ready.tmp" && mv "$ready.tmp" "$ready"
	) </dev/null >/dev/null 2>&1 &
	;;
stop)
	for p in dockerd containerd; do
		[ -f /run/$p.pid ] || continue
		pid=$(cat /run/$p.pid)
		kill "$pid" 2>/dev/null
		n=0
		while kill -0 "$pid" 2>/dev/null && [ $n -lt 50 ]; do sleep 0.2; n=$((n+1)); done
		kill -9 "$pid" 2>/dev/null
		rm -f /run/$p.pid
	done
	;;
esac
`
