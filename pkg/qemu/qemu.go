// Package qemu boots a built Xen host image (see pkg/hostimage) under QEMU
// and drives its serial console non-interactively: it waits for the login
// prompt, logs in, runs commands in dom0 with unique start/end markers so
// that each command's output and exit status are recovered reliably, records
// boot phase timings from timestamped serial lines, and shuts the machine
// down with poweroff (killing QEMU if that does not finish in time).
//
// We drive the console ourselves rather than with an expect library
// (Netflix/go-expect, hugelgupf/vmtest): the protocol is a handful of
// markers on one byte stream, and owning the reader lets us timestamp every
// line for the phase timings.
package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Options control one boot.
type Options struct {
	// MemoryMB and SMP override the descriptor (0 keeps it).
	MemoryMB, SMP int
	// NoKVM forces TCG even when KVM is usable.
	NoKVM bool
	// RootDisk overrides the descriptor's root disk (e.g. a copy that has
	// guests bundled into it).
	RootDisk string
	// DataDisks are extra raw disk images attached after the root disk.
	DataDisks []string
	// Snapshot discards writes to disks (-snapshot).
	Snapshot bool
	// NoNetwork leaves out the descriptor's network device.
	NoNetwork bool
	// HostForwards are QEMU user-net hostfwd rules for dom0's NIC, e.g.
	// "tcp:127.0.0.1:2222-:22" (ignored without a network device).
	HostForwards []string
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string
	// BootTimeout is the KVM boot timeout (default 120 s); under TCG it is
	// multiplied by TCGScale (default 4).
	BootTimeout time.Duration
	TCGScale    int
	// LogFile receives the serial console with a host timestamp
	// (seconds since QEMU start) on every line.
	LogFile string
	// Console, when set, receives the raw serial output as it arrives.
	Console io.Writer
}

// KVMUsable reports whether KVM can run Xen here: /dev/kvm must answer
// KVM_CREATE_VM and the CPU must advertise vmx or svm. The second check
// matters in sandboxes whose /dev/kvm exists but cannot run a nested
// hypervisor (Xen dies there with "KVM internal error ... emulation
// failure").
func KVMUsable() (bool, string) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false, err.Error()
	}
	defer f.Close()
	const kvmCreateVM = 0xAE01
	fd, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), kvmCreateVM, 0)
	if errno != 0 {
		return false, "KVM_CREATE_VM: " + errno.Error()
	}
	syscall.Close(int(fd))
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false, err.Error()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "flags") {
			for _, fl := range strings.Fields(l) {
				if fl == "vmx" || fl == "svm" {
					return true, "kvm with " + fl
				}
			}
			return false, "/dev/kvm works but the CPU has no vmx/svm flag (nested hypervisors fail)"
		}
	}
	return false, "no cpu flags in /proc/cpuinfo"
}

// hostArch maps Go's architecture names to QEMU's.
var hostArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i386", "riscv64": "riscv64"}

// KVMUsableFor is KVMUsable for a machine of QEMU architecture arch: KVM
// cannot run another architecture than the build machine's.
func KVMUsableFor(arch string) (bool, string) {
	if arch != "" && hostArch[runtime.GOARCH] != arch {
		return false, fmt.Sprintf("the machine is %s, this host %s", arch, runtime.GOARCH)
	}
	return KVMUsable()
}

// Args builds the QEMU argument vector (without the program name).
func Args(d *Descriptor, o Options, kvm bool) ([]string, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	mem, smp := d.MemoryMB, d.SMP
	if o.MemoryMB > 0 {
		mem = o.MemoryMB
	}
	if o.SMP > 0 {
		smp = o.SMP
	}
	if mem == 0 {
		mem = 4096
	}
	if smp == 0 {
		smp = 2
	}
	var a []string
	if d.QEMUMachine != "" {
		a = append(a, "-machine", d.QEMUMachine)
	}
	if kvm {
		cpu := d.CPUKVM
		if cpu == "" {
			cpu = "host"
		}
		a = append(a, "-accel", "kvm", "-cpu", cpu)
	} else {
		a = append(a, "-accel", "tcg", "-cpu", d.CPUTCG)
	}
	a = append(a, "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(smp),
		"-display", "none", "-vga", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot")
	switch d.BootMethod {
	case BootMultiboot:
		mods := d.Path(d.Kernel)
		if d.Dom0Cmdline != "" {
			mods += " " + d.Dom0Cmdline
		}
		if d.Initrd != "" {
			mods += "," + d.Path(d.Initrd)
		}
		a = append(a, "-kernel", d.Path(d.Hypervisor), "-append", d.XenCmdline, "-initrd", mods)
	case BootGuestLoader:
		gl, err := guestLoaderArgs(d, mem)
		if err != nil {
			return nil, err
		}
		a = append(a, gl...)
	}
	iface := d.DiskInterface
	if iface == "" {
		iface = "virtio"
	}
	root := d.Path(d.RootDisk)
	if o.RootDisk != "" {
		root = o.RootDisk
	}
	format := d.RootDiskFormat
	if format == "" {
		format = "raw"
	}
	disk := func(n int, file, format string) {
		if d.DiskDevice == "" {
			a = append(a, "-drive", "file="+file+",format="+format+",if="+iface)
			return
		}
		id := "disk" + strconv.Itoa(n)
		a = append(a, "-drive", "file="+optEscape(file)+",format="+format+",if=none,id="+id,
			"-device", d.DiskDevice+",drive="+id)
	}
	if root != "" {
		disk(0, root, format)
	}
	for i, dd := range o.DataDisks {
		disk(i+1, dd, "raw")
	}
	if d.NetDevice != "" && !o.NoNetwork {
		netdev := "user,id=net0"
		for _, f := range o.HostForwards {
			if strings.ContainsAny(f, ", ") {
				return nil, fmt.Errorf("host forward %q: want PROTO:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT without commas or spaces", f)
			}
			netdev += ",hostfwd=" + f
		}
		a = append(a, "-netdev", netdev, "-device", d.NetDevice+",netdev=net0")
	}
	if o.Snapshot {
		a = append(a, "-snapshot")
	}
	a = append(a, d.ExtraArgs...)
	a = append(a, o.ExtraArgs...)
	return a, nil
}

// Guest-loader layout on Arm "virt": RAM starts at 0x40000000 and QEMU
// puts its device tree at RAM base + 128 MiB (0x48000000) when booting
// -kernel without -initrd. QEMU does not check guest-loader images against
// it: an overlap makes Xen panic ("Xen BUG at common/page_alloc.c"). So the
// dom0 kernel goes below the device tree and the initramfs above it.
const (
	GuestLoaderRAMBase    = 0x40000000
	GuestLoaderDTBAddr    = GuestLoaderRAMBase + 128<<20
	GuestLoaderDTBSize    = 2 << 20
	GuestLoaderKernelAddr = 0x42000000
	GuestLoaderInitrdAddr = 0x50000000
)

// optEscape doubles commas, QEMU's escape inside an option value.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// guestLoaderArgs returns Xen as -kernel with its command line and the
// dom0 kernel (with its bootargs) and initrd as guest-loader devices,
// after checking that neither overlaps the device tree or leaves RAM.
func guestLoaderArgs(d *Descriptor, memMB int) ([]string, error) {
	kernel, initrd := d.Path(d.Kernel), d.Path(d.Initrd)
	size := func(p string) (uint64, error) {
		st, err := os.Stat(p)
		if err != nil {
			return 0, fmt.Errorf("guest-loader: %w", err)
		}
		return uint64(st.Size()), nil
	}
	ks, err := size(kernel)
	if err != nil {
		return nil, err
	}
	if GuestLoaderKernelAddr+ks > GuestLoaderDTBAddr {
		return nil, fmt.Errorf("guest-loader: dom0 kernel %s (%d MB) loaded at %#x would overlap QEMU's device tree at %#x (at most %d MB)",
			d.Kernel, ks>>20, GuestLoaderKernelAddr, GuestLoaderDTBAddr, (GuestLoaderDTBAddr-GuestLoaderKernelAddr)>>20)
	}
	a := []string{"-kernel", d.Path(d.Hypervisor), "-append", d.XenCmdline,
		"-device", "guest-loader,addr=" + fmt.Sprintf("%#x", GuestLoaderKernelAddr) + ",kernel=" + optEscape(kernel) + ",bootargs=" + optEscape(d.Dom0Cmdline)}
	if d.Initrd != "" {
		is, err := size(initrd)
		if err != nil {
			return nil, err
		}
		end := uint64(GuestLoaderRAMBase) + uint64(memMB)<<20
		if GuestLoaderInitrdAddr+is > end {
			return nil, fmt.Errorf("guest-loader: initrd %s (%d MB) at %#x does not fit in %d MB of RAM (memory_mb / -m)", d.Initrd, is>>20, GuestLoaderInitrdAddr, memMB)
		}
		a = append(a, "-device", "guest-loader,addr="+fmt.Sprintf("%#x", GuestLoaderInitrdAddr)+",initrd="+optEscape(initrd))
	}
	return a, nil
}

// fatalMarkers are console lines after which the machine is dead: Xen's
// panic (Xen may reboot after it, and QEMU with -no-reboot then exits 0),
// and, before the login, a dom0 kernel panic.
var fatalMarkers = []struct {
	sub      string
	bootOnly bool
}{
	{"(XEN) Panic on CPU", false},
	{"Kernel panic - not syncing", true},
}

// Phase is one boot phase reached at At (host time since QEMU start).
type Phase struct {
	Name string
	At   time.Duration
	Line string
}

// Result is the outcome of one command run in dom0.
type Result struct {
	Output string
	Status int
}

// VM is a running QEMU instance.
type VM struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	start   time.Time
	kvm     bool
	scale   int
	markers map[string]string
	log     io.WriteCloser

	mu      sync.Mutex
	cond    *sync.Cond
	buf     []byte // everything received
	partial []byte // current incomplete line
	phases  []Phase
	seen    map[string]bool
	exited  bool
	exitErr error
	seq     int
	runMu   sync.Mutex
	// fatal is the first fatal console line (see fatalMarkers); booted is
	// set once the login completed.
	fatal  string
	booted bool
	noise  []*regexp.Regexp
}

// Accel returns "kvm" or "tcg".
func (vm *VM) Accel() string {
	if vm.kvm {
		return "kvm"
	}
	return "tcg"
}

// Scale returns the timeout multiplier in effect (1 under KVM).
func (vm *VM) Scale() int { return vm.scale }

// Boot starts QEMU for the descriptor, waits for the console login prompt
// (within the boot timeout), logs in and prepares the shell for Run.
func Boot(ctx context.Context, d *Descriptor, o Options) (*VM, error) {
	kvm := false
	if !o.NoKVM {
		kvm, _ = KVMUsableFor(d.Arch)
	}
	args, err := Args(d, o, kvm)
	if err != nil {
		return nil, err
	}
	if o.BootTimeout == 0 {
		o.BootTimeout = 120 * time.Second
	}
	if o.TCGScale == 0 {
		o.TCGScale = 4
	}
	vm := &VM{kvm: kvm, scale: 1, markers: d.Markers, seen: map[string]bool{}}
	for _, re := range d.ConsoleNoise {
		vm.noise = append(vm.noise, regexp.MustCompile(re)) // checked by Validate
	}
	if vm.markers == nil {
		vm.markers = DefaultMarkers()
	}
	if !kvm {
		vm.scale = o.TCGScale
	}
	vm.cond = sync.NewCond(&vm.mu)
	if o.LogFile != "" {
		if vm.log, err = os.Create(o.LogFile); err != nil {
			return nil, err
		}
		fmt.Fprintf(vm.log, "# %s %s\n", d.QEMUBinary, strings.Join(args, " "))
	}
	vm.cmd = exec.Command(d.QEMUBinary, args...)
	vm.cmd.Dir = d.Dir
	stdout, err := vm.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	vm.cmd.Stderr = vm.cmd.Stdout
	if vm.stdin, err = vm.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	vm.start = time.Now()
	if err := vm.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", d.QEMUBinary, err)
	}
	go vm.reader(stdout, o.Console)
	go func() {
		err := vm.cmd.Wait()
		vm.mu.Lock()
		vm.exited, vm.exitErr = true, err
		vm.cond.Broadcast()
		vm.mu.Unlock()
	}()
	bctx, cancel := context.WithTimeout(ctx, o.BootTimeout*time.Duration(vm.scale))
	defer cancel()
	if err := vm.login(bctx, d.LoginUser); err != nil {
		vm.Kill()
		return nil, fmt.Errorf("boot (%s, timeout %v): %w; last console output:\n%s", vm.Accel(), o.BootTimeout*time.Duration(vm.scale), err, vm.tail(2000))
	}
	return vm, nil
}

func (vm *VM) reader(r io.Reader, console io.Writer) {
	br := bufio.NewReaderSize(r, 64*1024)
	chunk := make([]byte, 4096)
	for {
		n, err := br.Read(chunk)
		if n > 0 {
			data := chunk[:n]
			if console != nil {
				console.Write(data)
			}
			now := time.Since(vm.start)
			vm.mu.Lock()
			vm.buf = append(vm.buf, data...)
			for _, c := range data {
				if c == '\n' {
					line := strings.TrimRight(string(vm.partial), "\r")
					vm.partial = vm.partial[:0]
					vm.lineLocked(now, line)
					continue
				}
				vm.partial = append(vm.partial, c)
			}
			// Prompts arrive without a newline.
			if p := string(vm.partial); strings.Contains(p, "login:") {
				vm.phaseLocked(now, p)
			}
			vm.cond.Broadcast()
			vm.mu.Unlock()
		}
		if err != nil {
			vm.mu.Lock()
			vm.cond.Broadcast()
			vm.mu.Unlock()
			return
		}
	}
}

func (vm *VM) lineLocked(now time.Duration, line string) {
	if vm.log != nil {
		fmt.Fprintf(vm.log, "[%8.3f] %s\n", now.Seconds(), line)
	}
	vm.phaseLocked(now, line)
}

func (vm *VM) phaseLocked(now time.Duration, line string) {
	if vm.fatal == "" {
		for _, f := range fatalMarkers {
			if strings.Contains(line, f.sub) && (!f.bootOnly || !vm.booted) {
				vm.fatal = line
			}
		}
	}
	for name, sub := range vm.markers {
		if !vm.seen[name] && sub != "" && strings.Contains(line, sub) {
			vm.seen[name] = true
			vm.phases = append(vm.phases, Phase{Name: name, At: now, Line: line})
		}
	}
}

// Mark records a custom phase (e.g. "guest-up") at the current time.
func (vm *VM) Mark(name string) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if !vm.seen[name] {
		vm.seen[name] = true
		vm.phases = append(vm.phases, Phase{Name: name, At: time.Since(vm.start)})
	}
}

// Timings returns the phases reached so far, in order.
func (vm *VM) Timings() []Phase {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]Phase(nil), vm.phases...)
}

// Console returns everything received on the serial console so far.
func (vm *VM) Console() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return string(vm.buf)
}

func (vm *VM) tail(n int) string {
	s := vm.Console()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

// waitFor waits until match(buf[from:]) returns >= 0 and returns the end
// offset of the match in buf.
func (vm *VM) waitFor(ctx context.Context, from int, match func([]byte) int) (int, error) {
	stop := context.AfterFunc(ctx, func() {
		vm.mu.Lock()
		vm.cond.Broadcast()
		vm.mu.Unlock()
	})
	defer stop()
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for {
		if from <= len(vm.buf) {
			if i := match(vm.buf[from:]); i >= 0 {
				return from + i, nil
			}
		}
		if vm.fatal != "" {
			return 0, fmt.Errorf("the machine died: %q on the console", vm.fatal)
		}
		if vm.exited {
			return 0, fmt.Errorf("qemu exited (status %v) without the awaited console output", vm.exitErr)
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		vm.cond.Wait()
	}
}

func (vm *VM) offset() int {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return len(vm.buf)
}

func contains(s string) func([]byte) int {
	return func(b []byte) int {
		i := bytes.Index(b, []byte(s))
		if i < 0 {
			return -1
		}
		return i + len(s)
	}
}

// send writes to the console in small chunks without flow control (used
// before the command shell runs).
func (vm *VM) send(s string) error {
	for len(s) > 0 {
		n := min(len(s), 32)
		if _, err := io.WriteString(vm.stdin, s[:n]); err != nil {
			return err
		}
		s = s[n:]
		if len(s) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

// echoChunk is the largest piece of input written before waiting for its
// echo. Xen forwards serial input to dom0 through a 128-byte ring and
// silently drops characters when dom0 does not drain it in time (seen under
// TCG on a loaded host), so input is paced by the tty's own echo.
const echoChunk = 48

// sendEchoed writes a single line (ending in '\n') in chunks and waits for
// the tty to echo each chunk before sending the next, starting the echo
// search at offset from. It returns the offset after the last echo.
func (vm *VM) sendEchoed(ctx context.Context, line string, from int) (int, error) {
	pos := from
	for len(line) > 0 {
		n := min(len(line), echoChunk)
		chunk := line[:n]
		if _, err := io.WriteString(vm.stdin, chunk); err != nil {
			return 0, err
		}
		line = line[n:]
		want := strings.TrimSuffix(chunk, "\n")
		if want == "" {
			continue
		}
		// A kernel message can land in the middle of the echo; then the
		// chunk never appears contiguously, so fall back to a time-based
		// pace after echoWait instead of failing.
		wctx, cancel := context.WithTimeout(ctx, echoWait*time.Duration(vm.scale))
		end, err := vm.waitFor(wctx, pos, contains(want))
		cancel()
		switch {
		case err == nil:
			pos = end
		case ctx.Err() != nil:
			return 0, fmt.Errorf("waiting for the console to echo %q: %w", want, ctx.Err())
		case errors.Is(err, context.DeadlineExceeded):
			vm.mu.Lock()
			pos = len(vm.buf)
			vm.mu.Unlock()
		default:
			return 0, fmt.Errorf("waiting for the console to echo %q: %w", want, err)
		}
	}
	return pos, nil
}

// echoWait bounds the wait for one chunk's echo (times the TCG scale).
const echoWait = 2 * time.Second

// plainShell is what the login shell is replaced with.
const plainShell = "exec /bin/sh /dev/stdin"

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (vm *VM) login(ctx context.Context, user string) error {
	if user != "" {
		if _, err := vm.waitFor(ctx, 0, contains("login:")); err != nil {
			return fmt.Errorf("waiting for login prompt: %w", err)
		}
		from := vm.offset()
		if err := vm.send(user + "\n"); err != nil {
			return err
		}
		if _, err := vm.waitFor(ctx, from, contains("# ")); err != nil {
			return fmt.Errorf("waiting for shell prompt after login: %w", err)
		}
	}
	// Replace the interactive shell (whose line editor redraws long lines
	// and queries the cursor position) by a non-interactive shell that
	// reads its "script" from the canonical-mode tty: every input
	// character is echoed exactly once by the tty, which paces our input
	// (see echoChunk), and there is no prompt. (sh -s on a tty would still
	// be interactive, and `cat | sh` stalls because busybox cat buffers.)
	if err := vm.send(plainShell + "\n"); err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond)
	r, err := vm.Run(ctx, "export TERM=dumb; dmesg -n 1 2>/dev/null; true")
	if err != nil {
		return err
	}
	if r.Status != 0 {
		return fmt.Errorf("shell setup exited %d: %s", r.Status, r.Output)
	}
	vm.mu.Lock()
	vm.booted = true
	vm.mu.Unlock()
	return nil
}

// Run executes cmd in the dom0 shell and returns its combined output and
// exit status. The command runs in the login shell itself, so `cd` and
// variables persist; use a subshell to isolate. An error means the output
// could not be recovered (timeout, QEMU exited); a failing command is a
// nil error with a non-zero Status.
func (vm *VM) Run(ctx context.Context, cmd string) (Result, error) {
	if strings.Contains(cmd, "\n") {
		return Result{}, errors.New("qemu: Run: command must be a single line")
	}
	vm.runMu.Lock()
	defer vm.runMu.Unlock()
	vm.seq++
	n := vm.seq
	start := fmt.Sprintf("__S_%d__", n)
	end := fmt.Sprintf("__E_%d__", n)
	from := vm.offset()
	// One line, so that the whole line is echoed before anything runs;
	// eval keeps a trailing '&' or comment in cmd from breaking it.
	line := fmt.Sprintf("printf '\\n__S_%%s__\\n' %d; eval %s; printf '\\n__E_%%s__ %%d\\n' %d $?\n", n, shellQuote(cmd), n)
	echoed, err := vm.sendEchoed(ctx, line, from)
	if err != nil {
		return Result{}, fmt.Errorf("run %q: %w", cmd, err)
	}
	from = echoed
	endRe := func(b []byte) int {
		i := bytes.Index(b, []byte(end+" "))
		if i < 0 {
			return -1
		}
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		return i + j + 1
	}
	stop, err := vm.waitFor(ctx, from, endRe)
	if err != nil {
		return Result{}, fmt.Errorf("run %q: %w; console tail:\n%s", cmd, err, vm.tail(1500))
	}
	vm.mu.Lock()
	seg := strings.ReplaceAll(string(vm.buf[from:stop]), "\r", "")
	vm.mu.Unlock()
	si := strings.Index(seg, start+"\n")
	ei := strings.LastIndex(seg, "\n"+end+" ")
	if si < 0 || ei < 0 || ei < si {
		return Result{}, fmt.Errorf("run %q: markers not found in %q", cmd, seg)
	}
	out := vm.denoise(seg[si+len(start)+1 : ei])
	status, err := strconv.Atoi(strings.TrimSpace(seg[ei+len(end)+2:]))
	if err != nil {
		return Result{}, fmt.Errorf("run %q: bad status line in %q", cmd, seg[ei:])
	}
	return Result{Output: out, Status: status}, nil
}

// denoise removes the descriptor's console noise from command output.
func (vm *VM) denoise(out string) string {
	for _, re := range vm.noise {
		out = re.ReplaceAllString(out, "")
	}
	return out
}

// Shutdown powers dom0 off (xendomains stops the guests from rcK) and waits
// for QEMU to exit; after the context's deadline (or 120 s × scale) QEMU
// is killed.
func (vm *VM) Shutdown(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 120*time.Second*time.Duration(vm.scale))
		defer cancel()
	}
	vm.send("poweroff\n")
	_, err := vm.waitFor(ctx, 0, func([]byte) int { return -1 })
	vm.mu.Lock()
	exited := vm.exited
	vm.mu.Unlock()
	if !exited {
		vm.Kill()
		return fmt.Errorf("qemu did not exit after poweroff (%v); killed", err)
	}
	vm.closeLog()
	return nil
}

// Kill stops QEMU at once.
func (vm *VM) Kill() {
	if vm.cmd != nil && vm.cmd.Process != nil {
		vm.cmd.Process.Kill()
	}
	vm.mu.Lock()
	for !vm.exited {
		vm.cond.Wait()
	}
	vm.mu.Unlock()
	vm.closeLog()
}

func (vm *VM) closeLog() {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.log != nil {
		if len(vm.partial) > 0 {
			fmt.Fprintf(vm.log, "[%8.3f] %s\n", time.Since(vm.start).Seconds(), vm.partial)
		}
		vm.log.Close()
		vm.log = nil
	}
}
