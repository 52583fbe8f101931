package hostimage

// initramfsInit is /init of the shared initramfs used by dom0 and by the
// reference guest: load the disk and ext4 modules, mount root= and
// switch_root into it. Kernel arguments: root=, rootfstype=, ro/rw, init=.
const initramfsInit = `#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin /proc /sys /dev /newroot
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
root=/dev/vda fstype=ext4 mode=rw rinit=/sbin/init
for a in $(cat /proc/cmdline); do
	case "$a" in
	root=*) root="${a#root=}" ;;
	rootfstype=*) fstype="${a#rootfstype=}" ;;
	ro) mode=ro ;;
	rw) mode=rw ;;
	init=*) rinit="${a#init=}" ;;
	esac
done
echo "vxn-initramfs: loading modules"
# Skip the block driver the root device does not need (insmod under TCG is
# slow: every module's signature is checked).
case "$root" in
/dev/xvd*) skip=virtio ;;
*) skip=xen-blkfront ;;
esac
while read -r m; do
	case "$m" in *"$skip"*) continue ;; esac
	[ -n "$m" ] && insmod "/lib/modules/$(uname -r)/$m" 2>/dev/null
done < /etc/modules.load
n=0
while [ ! -b "$root" ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n+1)); done
if ! mount -t "$fstype" -o "$mode" "$root" /newroot; then
	echo "vxn-initramfs: cannot mount $root; dropping to a shell"
	exec sh
fi
echo "vxn-initramfs: switching to $root"
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot "$rinit"
`

// inittab is busybox init's configuration for dom0 and guests: rcS at
// boot, a getty with login on the console, rcK at poweroff.
const inittab = `::sysinit:/etc/init.d/rcS
::respawn:/sbin/getty -L 115200 %s vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/etc/init.d/rcK
::shutdown:/bin/sync
::shutdown:/bin/umount -a -r
`

// rcS runs the sysvinit-style start links in /etc/rcS.d.
const rcS = `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
/bin/busybox --install -s 2>/dev/null
for s in /etc/rcS.d/S*; do
	[ -x "$s" ] && "$s" start
done
`

// rcK runs the stop links in /etc/rc0.d at shutdown.
const rcK = `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
for s in /etc/rc0.d/K*; do
	[ -x "$s" ] && "$s" stop
done
`

// baseMounts mounts the API filesystems (both images).
const baseMounts = `#!/bin/sh
case "$1" in
start)
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	grep -q " /dev " /proc/mounts || mount -t devtmpfs devtmpfs /dev
	mkdir -p /dev/pts /dev/shm
	mount -t devpts devpts /dev/pts
	mount -t tmpfs tmpfs /run
	mount -t tmpfs tmpfs /tmp
	mkdir -p /run/lock /var/log
	ln -sf /proc/self/fd /dev/fd
	ln -sf /proc/self/fd/0 /dev/stdin
	ln -sf /proc/self/fd/1 /dev/stdout
	ln -sf /proc/self/fd/2 /dev/stderr
	mount -o remount,rw / 2>/dev/null
	hostname -F /etc/hostname
	echo "%s: init"
	;;
stop)
	sync
	;;
esac
`

// xenToolstack brings up the Xen toolstack in dom0 (what Debian's
// /etc/init.d/xen does, reduced to busybox): modules, xenfs, C xenstored,
// xen-init-dom0 and xenconsoled.
const xenToolstack = `#!/bin/sh
XENDIR=/%[1]s/bin
export PATH=$XENDIR:/usr/sbin:/usr/bin:/sbin:/bin
case "$1" in
start)
	while read -r m; do
		[ -n "$m" ] && insmod "/lib/modules/$(uname -r)/$m" 2>/dev/null
	done < /etc/modules.load
	if [ ! -e /proc/xen/capabilities ]; then
		mkdir -p /proc/xen
		mount -t xenfs xenfs /proc/xen
	fi
	if ! grep -q control_d /proc/xen/capabilities 2>/dev/null; then
		echo "vxn-dom0: not running as Xen dom0; toolstack not started"
		exit 0
	fi
	mkdir -p /run/xen /run/xenstored /var/log/xen/console /var/lib/xen /var/lib/xenstored
	export XENSTORED_ROOTDIR=/run/xenstored
	xenstored --pid-file /run/xenstore.pid
	n=0
	until xenstore-read -s / >/dev/null 2>&1; do
		sleep 0.1; n=$((n+1))
		[ $n -gt 300 ] && { echo "vxn-dom0: xenstored did not come up"; exit 1; }
	done
	xen-init-dom0
	xenconsoled --pid-file /run/xenconsoled.pid --log=guest --log-dir=/var/log/xen/console
	echo "vxn-dom0: toolstack ready"
	;;
stop)
	[ -f /run/xenconsoled.pid ] && kill $(cat /run/xenconsoled.pid) 2>/dev/null
	;;
esac
`

// xendomainsWrap runs the real Debian xendomains script, prints a marker
// for boot timing and, at start, keeps xendomains' output for the
// autostart check and starts that check in the background (xendomains
// reports success even when a guest failed to start).
const xendomainsWrap = `#!/bin/sh
export PATH=/%[1]s/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "$1" = start ]; then
	mkdir -p /run/xen
	/etc/init.d/xendomains start > /run/xen/xendomains-start.log 2>&1
	rc=$?
	cat /run/xen/xendomains-start.log
	echo "vxn-dom0: xendomains start done rc=$rc"
	/usr/sbin/xendomains-check < /dev/null > /dev/null 2>&1 &
	exit $rc
fi
/etc/init.d/xendomains "$@"
rc=$?
echo "vxn-dom0: xendomains $1 done rc=$rc"
`

const profile = `export PATH=/%[1]s/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PS1='\u@\h:\w# '
export TERM=dumb
`

const passwd = "root::0:0:root:/root:/bin/sh\n"
const group = "root:x:0:\n"

// defaultXendomains replaces Debian's /etc/default/xendomains. Debian sets
// XENDOMAINS_SAVE=/var/lib/xen/save, which makes xendomains *save* every
// guest to disk at poweroff and restore it at boot; the reference image
// (like the Yocto one) shuts guests down instead and starts /etc/xen/auto.
const defaultXendomains = `# Written by vxn hostimage (Debian's default saves domains instead).
XENDOMAINS_MIGRATE=""
XENDOMAINS_SAVE=""
XENDOMAINS_RESTORE=false
XENDOMAINS_AUTO=/etc/xen/auto
XENDOMAINS_STOP_MAXWAIT=120
`

// systemdUnits are the unit files of the systemd variant of dom0 (built
// only to compare boot times with busybox init). They reuse the busybox
// variant's scripts, so both variants start the same daemons.
var systemdUnits = map[string]string{
	"busybox-links.service": `[Unit]
Description=Install busybox applet links
DefaultDependencies=no
Before=sysinit.target
[Service]
Type=oneshot
ExecStart=/bin/busybox --install -s
`,
	"xen-toolstack.service": `[Unit]
Description=Xen toolstack (xenstored, xen-init-dom0, xenconsoled)
After=busybox-links.service local-fs.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/etc/init.d/xen-toolstack start
ExecStop=/etc/init.d/xen-toolstack stop
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
`,
	"xendomains.service": `[Unit]
Description=Start and stop the guests in /etc/xen/auto (Debian xendomains)
After=xen-toolstack.service
Requires=xen-toolstack.service
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/etc/init.d/xendomains-boot start
ExecStop=/etc/init.d/xendomains-boot stop
TimeoutStopSec=180
StandardOutput=journal+console
[Install]
WantedBy=multi-user.target
`,
	"vxn-getty.service": `[Unit]
Description=busybox getty on the Xen console
After=xendomains.service
[Service]
ExecStart=/sbin/getty -L 115200 hvc0 vt100
Restart=always
[Install]
WantedBy=multi-user.target
`,
}

// dom0Network brings up dom0's network the way Yocto's bridged Xen image
// does: the bridge xenbr0 with eth0 (QEMU user-mode networking) enslaved
// and the address on the bridge, so that guest vifs (`vif =
// ['bridge=xenbr0']`, Xen's vif-bridge hotplug script with busybox's ip and
// brctl) share dom0's link. The address comes from DHCP (QEMU's user-mode
// network answers with 10.0.2.15/24, gateway 10.0.2.2 = the build host,
// DNS 10.0.2.3); without a DHCP answer dom0 stays reachable only locally.
const dom0Network = `#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
case "$1" in
start)
	ip link set lo up
	nic=""
	for d in /sys/class/net/*; do
		n=${d##*/}
		case "$n" in lo|xenbr*|vif*|docker*|br-*) continue ;; esac
		[ -e "$d/device" ] && { nic=$n; break; }
	done
	if [ -z "$nic" ]; then
		echo "vxn-dom0: network: no network interface"
		exit 0
	fi
	if [ ! -e /sys/class/net/xenbr0 ]; then
		brctl addbr xenbr0
		brctl stp xenbr0 off
		brctl setfd xenbr0 0
	fi
	ip link set "$nic" up
	brctl addif xenbr0 "$nic"
	ip link set xenbr0 up
	if udhcpc -i xenbr0 -s /etc/udhcpc.script -n -q -f -t 5 -T 1 -A 1 >/dev/null 2>&1; then
		echo "vxn-dom0: network xenbr0 $(ip -4 addr show dev xenbr0 | awk '/inet /{print $2; exit}') via $nic"
	else
		echo "vxn-dom0: network: no DHCP answer on xenbr0 ($nic)"
	fi
	;;
stop)
	;;
esac
`

// udhcpcScript configures the lease busybox udhcpc obtained.
const udhcpcScript = `#!/bin/sh
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	if [ -n "$router" ]; then
		ip route del default 2>/dev/null
		for r in $router; do ip route add default via "$r" dev "$interface" && break; done
	fi
	: > /etc/resolv.conf.new
	[ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf.new
	for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf.new; done
	mv /etc/resolv.conf.new /etc/resolv.conf
	;;
esac
exit 0
`

// blockScript is /etc/xen/scripts/block of the reference Dom0 (busybox sh),
// in place of Debian's bash script, whose locking and forks take 13–60 s
// per disk under TCG and outlive libxl's fixed hotplug timeout on a busy
// host. It does what libxl needs for the disks xenbundle and vxn write
// (file-backed raw images and phy: block devices, modes r and w): a loop
// device for a file (read-only for mode r), physical-device (hex
// major:minor), physical-device-path and hotplug-status in the backend's
// xenstore directory; on remove it detaches the loop device it attached.
// It keeps the one sharing check that protects data: a file is not
// attached for writing while it is attached elsewhere, nor read-only while
// it is attached for writing. Errors go to hotplug-error, which libxl
// prints. Debian's script stays as block-debian (xl disk option
// script=block-debian).
const blockScript = `#!/bin/sh
export PATH=${PATH:+$PATH:}/%[1]s/bin:/usr/sbin:/usr/bin:/sbin:/bin
# util-linux's losetup (-j, -O, --show): busybox sh would run its own
# applet of that name whatever PATH says.
losetup() { /usr/sbin/losetup "$@"; }
dir=$XENBUS_PATH
fail() {
	echo "block: $*" >&2
	[ -n "$dir" ] && xenstore-write "$dir/hotplug-error" "$*" "$dir/hotplug-status" error 2>/dev/null
	exit 1
}
[ -n "$dir" ] || fail "XENBUS_PATH is not set (libxl runs this script)"
case "$1" in
add)
	params=$(xenstore-read "$dir/params") || fail "cannot read $dir/params"
	mode=$(xenstore-read "$dir/mode" 2>/dev/null)
	if [ -b "$params" ]; then
		dev=$params
	elif [ -f "$params" ]; then
		mkdir -p /run/xen
		exec 9>/run/xen/block.lock
		command -v flock >/dev/null && flock 9
		ro=-r
		case "$mode" in w*) ro= ;; esac
		while read -r name rof; do
			[ -n "$name" ] || continue
			if [ -z "$ro" ]; then
				fail "$params is in use by $name; refusing to attach it for writing"
			elif [ "$rof" = 0 ]; then
				fail "$params is attached for writing by $name; refusing to share it"
			fi
		done <<END
$(losetup -n -O NAME,RO -j "$params" 2>/dev/null)
END
		dev=$(losetup -f --show $ro "$params" 2>&1) || fail "losetup -f --show $ro $params: $dev"
		xenstore-write "$dir/node" "$dev"
		exec 9>&-
	else
		fail "$params is neither a block device nor a regular file"
	fi
	mm=$(stat -L -c %%t:%%T "$dev") || fail "stat $dev failed"
	xenstore-write "$dir/physical-device" "$mm" "$dir/physical-device-path" "$dev" "$dir/hotplug-status" connected ||
		fail "cannot write to $dir"
	;;
remove)
	node=$(xenstore-read "$dir/node" 2>/dev/null)
	case "$node" in /dev/loop*) losetup -d "$node" 2>/dev/null ;; esac
	;;
esac
exit 0
`

// AutostartStatusFile is where the Dom0 boot writes the state of each
// autostart guest: one line "NAME ok|FAILED DETAIL" per guest in
// /etc/xen/auto, then a last line "done ok=N failed=M". Until that line
// is there the check is still running ("pending" is its first line).
const AutostartStatusFile = "/run/xen/autostart.status"

// autostartCheck runs in the background after xendomains has started the
// guests of /etc/xen/auto (xendomainsWrap). A guest that xendomains did not
// start is created once more after a short pause (a hotplug script that
// timed out on a busy host is the usual cause); a guest still not running
// is reported with libxl's error lines. A started guest is watched until
// its console shows a login prompt, or for the first WINDOW seconds
// (default 60): a domain that disappears (crashed, destroyed) or whose
// console shows a kernel panic is reported with the last lines of its
// console. Each result goes to the console and to AutostartStatusFile.
const autostartCheck = `#!/bin/sh
export PATH=/%[1]s/bin:/usr/sbin:/usr/bin:/sbin:/bin
status=%[2]s
startlog=/run/xen/xendomains-start.log
work=/run/xen/autostart
window=${1:-60}
mkdir -p "$work"
rm -f "$work"/*
echo pending > "$status.tmp" && mv "$status.tmp" "$status"
say() { echo "vxn-dom0: autostart: $*" > /dev/console; }
flat() { tr -d '\r' | grep -v '^[[:space:]]*$' | tail -n "$1" | sed 's/^[[:space:]]*//' | tr '\n' '|' | sed 's/|$//; s/|/ | /g'; }
result() { # name state detail
	echo "$1 $2 $3" >> "$work/results"
	say "$1 $2: $3"
}
now() { cut -d. -f1 /proc/uptime; }
names=""
for cfg in /etc/xen/auto/*; do
	[ -f "$cfg" ] || continue
	n=$(sed -n "s/^[[:space:]]*name[[:space:]]*=[[:space:]]*[\"']\([^\"']*\)[\"'].*/\1/p" "$cfg" | head -n 1)
	[ -n "$n" ] || n=$(basename "$cfg" .cfg)
	id=$(xl domid "$n" 2>/dev/null)
	if [ -z "$id" ]; then
		why=$(awk -v n="$n" '/Starting Xen domain/ {on = index($0, "domain " n " ") > 0; next} on' "$startlog" 2>/dev/null | grep -i -e error -e fail | head -n 3 | flat 3)
		say "$n did not start (${why:-no error line from xendomains}); retrying in 5 s"
		sleep 5
		if xl create "$cfg" > "$work/$n.retry" 2>&1; then
			id=$(xl domid "$n" 2>/dev/null)
			echo retried > "$work/$n.note"
		else
			result "$n" FAILED "not started by xendomains nor by a retry: $(grep -i -e error -e fail "$work/$n.retry" | head -n 3 | flat 3)"
			continue
		fi
	fi
	echo "$id" > "$work/$n.id"
	now > "$work/$n.t0"
	names="$names $n"
done
while [ -n "$names" ]; do
	left=""
	for n in $names; do
		id=$(cat "$work/$n.id"); t0=$(cat "$work/$n.t0")
		log=/var/log/xen/console/guest-$n.log
		age=$(( $(now) - t0 ))
		note=""; [ -f "$work/$n.note" ] && note=" (started by the retry)"
		if grep -q 'Kernel panic' "$log" 2>/dev/null; then
			result "$n" FAILED "kernel panic ${age} s after start$note; console: $(grep 'Kernel panic' "$log" | flat 1)"
		elif ! xenstore-read "/local/domain/$id/name" >/dev/null 2>&1; then
			result "$n" FAILED "domain $id gone ${age} s after start (crashed or destroyed)$note; console: $(flat 5 < "$log" 2>/dev/null)"
		elif grep -q 'login:' "$log" 2>/dev/null; then
			result "$n" ok "login prompt ${age} s after start$note"
		elif [ "$age" -ge "$window" ]; then
			result "$n" ok "running for ${age} s$note"
		else
			left="$left $n"
		fi
	done
	names=$left
	[ -n "$names" ] && sleep 2
done
ok=$(grep -c ' ok ' "$work/results" 2>/dev/null); failed=$(grep -c ' FAILED ' "$work/results" 2>/dev/null)
{ cat "$work/results" 2>/dev/null; echo "done ok=${ok:-0} failed=${failed:-0}"; } > "$status.tmp" && mv "$status.tmp" "$status"
say "done ok=${ok:-0} failed=${failed:-0}"
`
