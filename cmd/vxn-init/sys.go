package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// cmdline holds the vxn.* kernel parameters. Only non-secret, per-boot
// settings live there; the job itself comes as a Spec frame.
type cmdline struct {
	Console string // vxn.console: protocol device under /dev (default hvc0)
	Spec    string // vxn.spec: "console" (default) or a device/file holding a Spec frame
	Debug   bool   // vxn.debug=1: Log frames for each step
}

func parseCmdline(s string) cmdline {
	c := cmdline{Console: "hvc0", Spec: "console"}
	for _, f := range strings.Fields(s) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "vxn.console":
			c.Console = strings.TrimPrefix(v, "/dev/")
		case "vxn.spec":
			c.Spec = v
		case "vxn.debug":
			c.Debug = v == "1" || v == "true"
		}
	}
	return c
}

// mountBase mounts the init's own proc, sys, dev and tmp.
func mountBase() error {
	for _, m := range []struct{ src, dst, typ, data string }{
		{"proc", "/proc", "proc", ""},
		{"sysfs", "/sys", "sysfs", ""},
		{"devtmpfs", "/dev", "devtmpfs", "mode=0755"},
		{"tmpfs", "/tmp", "tmpfs", "mode=1777"},
	} {
		os.MkdirAll(m.dst, 0o755)
		if err := unix.Mount(m.src, m.dst, m.typ, unix.MS_NOSUID, m.data); err != nil && err != unix.EBUSY {
			return fmt.Errorf("mount %s on %s: %w", m.typ, m.dst, err)
		}
	}
	return nil
}

// drain waits until the tty has sent its output (tcdrain).
func drain(f *os.File) { unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1) }

// quietKernel stops printk output to consoles (except emergencies), the
// runtime counterpart of `quiet loglevel=0`.
func quietKernel() { unix.Klogctl(unix.SYSLOG_ACTION_CONSOLE_OFF, nil) }

// loadModules loads the modules listed (load order, paths relative to
// /lib/modules/<release>) in list. Modules already loaded are fine.
func loadModules(list string, logf func(string, ...any)) error {
	b, err := os.ReadFile(list)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	dir := filepath.Dir(list)
	var errs []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rel := strings.TrimSpace(sc.Text())
		if rel == "" || rel[0] == '#' {
			continue
		}
		f, err := os.Open(filepath.Join(dir, rel))
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		t := time.Now()
		err = unix.FinitModule(int(f.Fd()), "", 0)
		f.Close()
		if err != nil && err != unix.EEXIST {
			errs = append(errs, fmt.Sprintf("insmod %s: %v", rel, err))
			continue
		}
		logf("insmod %s: %v", filepath.Base(rel), time.Since(t).Round(time.Millisecond))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// waitDev waits for a block device node to appear (blkfront probes
// asynchronously).
func waitDev(p string, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(p); err == nil {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("device %s did not appear within %v (wrong disk name, or missing driver module?)", p, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mount(src, dst, typ string, flags uintptr, data string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(src, dst, typ, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", src, typ, dst, err)
	}
	return nil
}

// setupRoot mounts the image disk read-only, the writable layer (tmpfs or
// the scratch disk) and the overlay of both at /mnt/root, then proc, sys
// and dev inside it. It returns the container root.
func setupRoot(s *guestproto.Spec) (string, error) {
	dev := "/dev/" + strings.TrimPrefix(def(s.RootDev, "xvda"), "/dev/")
	if err := waitDev(dev, 10*time.Second); err != nil {
		return "", err
	}
	if err := mount(dev, "/mnt/lower", def(s.RootFSType, "ext4"), unix.MS_RDONLY, ""); err != nil {
		return "", err
	}
	if s.ScratchDev != "" {
		sd := "/dev/" + strings.TrimPrefix(s.ScratchDev, "/dev/")
		if err := waitDev(sd, 10*time.Second); err != nil {
			return "", err
		}
		if err := mount(sd, "/mnt/rw", "ext4", 0, ""); err != nil {
			return "", err
		}
	} else {
		opt := "mode=0755"
		if s.TmpfsSize != "" {
			opt += ",size=" + s.TmpfsSize
		}
		if err := mount("tmpfs", "/mnt/rw", "tmpfs", 0, opt); err != nil {
			return "", err
		}
	}
	for _, d := range []string{"/mnt/rw/upper", "/mnt/rw/work"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	const root = "/mnt/root"
	if err := mount("overlay", root, "overlay", 0, "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work"); err != nil {
		return "", err
	}
	for _, m := range []struct {
		src, dst, typ string
		flags         uintptr
		data          string
	}{
		{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
		{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_RDONLY, ""},
		{"/dev", "/dev", "", unix.MS_BIND | unix.MS_REC, ""},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
		{"shm", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	} {
		dst, err := resolveIn(root, m.dst)
		if err != nil {
			return "", err
		}
		if err := mount(m.src, dst, m.typ, m.flags, m.data); err != nil {
			return "", err
		}
	}
	// /dev/ptmx must open the container's devpts instance (newinstance).
	ptmx := filepath.Join(root, "dev/ptmx")
	os.Remove(ptmx)
	if err := os.Symlink("pts/ptmx", ptmx); err != nil {
		return "", fmt.Errorf("linking /dev/ptmx: %w", err)
	}
	return root, nil
}

// writeResolvConf writes /etc/resolv.conf in the container (on the
// writable layer).
func writeResolvConf(root, content string) error {
	p, err := resolveIn(root, "/etc/resolv.conf")
	if err != nil {
		return err
	}
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.Remove(p) // may be a dangling symlink into /run
	return os.WriteFile(p, []byte(content), 0o644)
}

func def(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// xenstoreWrite writes key=value relative to the domain's xenstore home
// with one raw XS_WRITE on /dev/xen/xenbus (no Xen userspace needed). It
// returns quietly when not running under Xen.
func xenstoreWrite(key, value string) error {
	f, err := os.OpenFile("/dev/xen/xenbus", os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	payload := append(append([]byte(key), 0), value...)
	msg := make([]byte, 16, 16+len(payload))
	binary.LittleEndian.PutUint32(msg[0:], 11) // XS_WRITE
	binary.LittleEndian.PutUint32(msg[4:], 1)  // req_id
	binary.LittleEndian.PutUint32(msg[8:], 0)  // tx_id
	binary.LittleEndian.PutUint32(msg[12:], uint32(len(payload)))
	msg = append(msg, payload...)
	if _, err := f.Write(msg); err != nil {
		return fmt.Errorf("xenstore write %s: %w", key, err)
	}
	done := make(chan error, 1)
	go func() {
		hdr := make([]byte, 64)
		_, err := f.Read(hdr)
		if err == nil && binary.LittleEndian.Uint32(hdr) == 16 { // XS_ERROR
			err = fmt.Errorf("xenstore write %s: error reply", key)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Second):
		return fmt.Errorf("xenstore write %s: no reply", key)
	}
}

// uptime returns CLOCK_BOOTTIME.
func uptime() time.Duration {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
