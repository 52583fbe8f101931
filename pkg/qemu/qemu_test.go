package qemu

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testDesc() *Descriptor {
	return &Descriptor{
		Machine: "qemux86-64", Arch: "x86_64", QEMUBinary: "qemu-system-x86_64",
		CPUTCG: "qemu64,+npt,+rdrand", CPUKVM: "host", MemoryMB: 4096, SMP: 2,
		BootMethod: BootMultiboot, Hypervisor: "xen", XenCmdline: "console=com1 dom0_mem=512M",
		Kernel: "vmlinuz", Dom0Cmdline: "console=hvc0 root=/dev/vda rw", Initrd: "initrd.gz",
		RootDisk: "root.ext4", Dir: "/img",
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Descriptor)
		o    Options
		kvm  bool
		want []string
	}{
		{"tcg defaults", nil, Options{}, false, []string{
			"-accel", "tcg", "-cpu", "qemu64,+npt,+rdrand", "-m", "4096", "-smp", "2",
			"-display", "none", "-vga", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
			"-kernel", "/img/xen", "-append", "console=com1 dom0_mem=512M",
			"-initrd", "/img/vmlinuz console=hvc0 root=/dev/vda rw,/img/initrd.gz",
			"-drive", "file=/img/root.ext4,format=raw,if=virtio"}},
		{"kvm overrides disks", func(d *Descriptor) { d.QEMUMachine = "q35" },
			Options{MemoryMB: 2048, SMP: 1, RootDisk: "/tmp/r.ext4", DataDisks: []string{"/tmp/d.img"}, Snapshot: true, ExtraArgs: []string{"-x"}}, true,
			[]string{"-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "2048", "-smp", "1",
				"-display", "none", "-vga", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
				"-kernel", "/img/xen", "-append", "console=com1 dom0_mem=512M",
				"-initrd", "/img/vmlinuz console=hvc0 root=/dev/vda rw,/img/initrd.gz",
				"-drive", "file=/tmp/r.ext4,format=raw,if=virtio", "-drive", "file=/tmp/d.img,format=raw,if=virtio",
				"-snapshot", "-x"}},
		{"user net", func(d *Descriptor) { d.NetDevice = "virtio-net-pci" }, Options{HostForwards: []string{"tcp:127.0.0.1:2222-:22"}}, false, []string{
			"-accel", "tcg", "-cpu", "qemu64,+npt,+rdrand", "-m", "4096", "-smp", "2",
			"-display", "none", "-vga", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
			"-kernel", "/img/xen", "-append", "console=com1 dom0_mem=512M",
			"-initrd", "/img/vmlinuz console=hvc0 root=/dev/vda rw,/img/initrd.gz",
			"-drive", "file=/img/root.ext4,format=raw,if=virtio",
			"-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22", "-device", "virtio-net-pci,netdev=net0"}},
		{"no network", func(d *Descriptor) { d.NetDevice = "virtio-net-pci" }, Options{NoNetwork: true}, false, []string{
			"-accel", "tcg", "-cpu", "qemu64,+npt,+rdrand", "-m", "4096", "-smp", "2",
			"-display", "none", "-vga", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
			"-kernel", "/img/xen", "-append", "console=com1 dom0_mem=512M",
			"-initrd", "/img/vmlinuz console=hvc0 root=/dev/vda rw,/img/initrd.gz",
			"-drive", "file=/img/root.ext4,format=raw,if=virtio"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := testDesc()
			if tc.mod != nil {
				tc.mod(d)
			}
			got, err := Args(d, tc.o, tc.kvm)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestArgsGuestLoader checks the Arm boot: dom0 kernel below QEMU's device
// tree, initrd above it, commas doubled in bootargs and file names, disks
// as virtio-mmio devices; and the refusals of a kernel that would overlap
// the device tree and an initrd that does not fit in RAM.
func TestArgsGuestLoader(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"xen", "vm,linuz", "initrd.gz", "root.ext4"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	desc := func() *Descriptor {
		d := testDesc()
		d.Dir, d.Arch, d.QEMUBinary, d.QEMUMachine, d.CPUTCG = dir, "aarch64", "qemu-system-aarch64", "virt,gic-version=3,virtualization=on", "cortex-a57"
		d.BootMethod, d.Kernel, d.XenCmdline = BootGuestLoader, "vm,linuz", "console=dtuart bootscrub=0"
		d.Dom0Cmdline, d.DiskDevice, d.NetDevice = "console=hvc0 root=/dev/vda rw tests=A,B", "virtio-blk-device", "virtio-net-device"
		return d
	}
	got, err := Args(desc(), Options{DataDisks: []string{"/tmp/d.img"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"-machine", "virt,gic-version=3,virtualization=on", "-accel", "tcg", "-cpu", "cortex-a57", "-m", "4096", "-smp", "2",
		"-display", "none", "-vga", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot",
		"-kernel", dir + "/xen", "-append", "console=dtuart bootscrub=0",
		"-device", "guest-loader,addr=0x42000000,kernel=" + dir + "/vm,,linuz,bootargs=console=hvc0 root=/dev/vda rw tests=A,,B",
		"-device", "guest-loader,addr=0x50000000,initrd=" + dir + "/initrd.gz",
		"-drive", "file=" + dir + "/root.ext4,format=raw,if=none,id=disk0", "-device", "virtio-blk-device,drive=disk0",
		"-drive", "file=/tmp/d.img,format=raw,if=none,id=disk1", "-device", "virtio-blk-device,drive=disk1",
		"-netdev", "user,id=net0", "-device", "virtio-net-device,netdev=net0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(big, GuestLoaderDTBAddr-GuestLoaderKernelAddr+1); err != nil {
		t.Fatal(err)
	}
	d := desc()
	d.Kernel = "big"
	if _, err := Args(d, Options{}, false); err == nil || !strings.Contains(err.Error(), "overlap QEMU's device tree") {
		t.Errorf("kernel over the device tree: err = %v", err)
	}
	d = desc()
	d.Initrd = "big"
	if _, err := Args(d, Options{MemoryMB: 300}, false); err == nil || !strings.Contains(err.Error(), "does not fit in 300 MB") {
		t.Errorf("initrd beyond RAM: err = %v", err)
	}
}

// TestFatalConsole: a Xen panic on the console fails the wait at once
// (QEMU may well exit 0 afterwards), a dom0 kernel panic only before login.
func TestFatalConsole(t *testing.T) {
	vm := &VM{seen: map[string]bool{}, markers: DefaultMarkers()}
	vm.cond = sync.NewCond(&vm.mu)
	vm.mu.Lock()
	vm.booted = true
	vm.lineLocked(0, "Kernel panic - not syncing: from a guest log")
	vm.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := vm.waitFor(ctx, 0, contains("login:")); err == nil || strings.Contains(err.Error(), "died") {
		t.Fatalf("after login a kernel panic line must not be fatal: %v", err)
	}
	vm.mu.Lock()
	vm.lineLocked(0, "(XEN) Panic on CPU 0:")
	vm.mu.Unlock()
	if _, err := vm.waitFor(context.Background(), 0, contains("login:")); err == nil || !strings.Contains(err.Error(), "Panic on CPU") {
		t.Fatalf("err = %v, want the Xen panic", err)
	}
}

// TestConsoleNoise: Xen's guest messages that arrive on the shared serial
// console in the middle of a command's output (whole lines or inside one)
// are removed with the qemuarm64 pattern; the rest stays.
func TestConsoleNoise(t *testing.T) {
	vm := &VM{noise: []*regexp.Regexp{regexp.MustCompile(`\(XEN\) d[0-9]+v[0-9]+[: ][^\n]*\n`)}}
	for in, want := range map[string]string{
		"(XEN) d5v0: vGICR: SGI: unhandled word write 0x000000ffffffff to ICACTIVER0\nhello\nrc=0\n": "hello\nrc=0\n",
		"hello\nrc=(XEN) d12v1 Unhandled SMC/HVC: 0x84000050\n0\n":                                   "hello\nrc=0\n",
		"(XEN) Xen version 4.17\n": "(XEN) Xen version 4.17\n",
	} {
		if got := vm.denoise(in); got != want {
			t.Errorf("denoise(%q) = %q, want %q", in, got, want)
		}
	}
	if _, err := ParseDescriptor([]byte(`{"machine":"m","qemu_binary":"q","boot_method":"multiboot","hypervisor":"x","kernel":"k","cpu_tcg":"c","console_noise":["("]}`), "d.json"); err == nil || !strings.Contains(err.Error(), "console_noise") {
		t.Errorf("bad console_noise accepted: %v", err)
	}
}

func TestParseDescriptor(t *testing.T) {
	d := testDesc()
	path := filepath.Join(t.TempDir(), DescriptorName)
	if err := d.Write(path); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDescriptor(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	d.Dir = filepath.Dir(path)
	if diff := cmp.Diff(d, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	bad := []struct{ in, want string }{
		{"{\n  \"machine\": 3\n}", "d.json:2:15: field \"machine\""},
		{"{\n\"machine\": \"x\",,}", "d.json:2:17"},
		{`{"bogus": 1}`, "unknown field"},
		{`{"machine":"m"}`, "missing qemu_binary"},
		{`{"machine":"m","qemu_binary":"q","boot_method":"uefi","hypervisor":"x","kernel":"k","cpu_tcg":"c"}`, "boot_method \"uefi\""},
		{`{"machine":"m","qemu_binary":"q","boot_method":"multiboot","hypervisor":"x","kernel":"k","cpu_tcg":"c","dom0_cmdline":"a,b"}`, "must not contain ','"},
		{`{"machine":"m","qemu_binary":"q","boot_method":"multiboot","hypervisor":"../x","kernel":"k","cpu_tcg":"c"}`, "inside the image directory"},
		{`{"machine":"m","qemu_binary":"q","boot_method":"multiboot","hypervisor":"x","kernel":"k","cpu_tcg":"c","net_device":"e1000,x=1"}`, "net_device"},
	}
	for _, b := range bad {
		if _, err := ParseDescriptor([]byte(b.in), "d.json"); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("ParseDescriptor(%q) err = %v, want %q", b.in, err, b.want)
		}
	}
}

func FuzzParseDescriptor(f *testing.F) {
	b, _ := os.ReadFile("testdata/qemuboot.json")
	f.Add(string(b))
	f.Add(`{"machine":"m"}`)
	f.Add("{\n\"machine\": \"x\",,}")
	f.Fuzz(func(t *testing.T, in string) {
		d, err := ParseDescriptor([]byte(in), "fuzz")
		if err != nil {
			return
		}
		if err := d.Validate(); err != nil {
			t.Fatalf("accepted invalid descriptor: %v", err)
		}
		if _, err := Args(d, Options{}, false); err != nil {
			t.Fatalf("Args failed on a valid descriptor: %v", err)
		}
	})
}

// fakeQEMU is a bash script standing in for QEMU: it prints a login
// prompt, accepts a user name, then behaves like a shell on a
// canonical-mode tty: every input character is echoed as it arrives and
// each complete line is evaluated; "poweroff" exits.
const fakeQEMU = `#!/bin/bash
echo "Xen version 4.17 (fake)"
echo "Linux version 6.1 (fake)"
echo "vxn-dom0: init"
printf 'qemux86-64 login: '
read -r user
printf 'root@qemux86-64:~# '
line=
rc=0
while IFS= read -r -N1 c; do
	if [ "$c" != $'\n' ]; then
		printf '%s' "$c"
		line+=$c
		# Once, a "kernel message" interrupts the echo mid-chunk.
		if [ ${#line} -eq 20 ] && [ -z "$noised" ]; then printf '[ 1.0] noise\r\n'; noised=1; fi
		continue
	fi
	printf '\r\n'
	case "$line" in
	poweroff) echo "reboot: Power down"; exit 0 ;;
	"exec /bin/sh /dev/stdin") line=; continue ;;
	esac
	eval "(exit $rc); $line" </dev/null
	rc=$?
	line=
done
`

func TestBootRunShutdownFake(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-qemu")
	if err := os.WriteFile(bin, []byte(fakeQEMU), 0o755); err != nil {
		t.Fatal(err)
	}
	d := testDesc()
	d.QEMUBinary = bin
	d.Dir = dir
	d.LoginUser = "root"
	ctx := context.Background()
	logFile := filepath.Join(dir, "serial.log")
	vm, err := Boot(ctx, d, Options{NoKVM: true, BootTimeout: 10 * time.Second, TCGScale: 1, LogFile: logFile})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cmd    string
		out    string
		status int
	}{
		{"echo hello", "hello\n", 0},
		{"false", "", 1},
		{"sh -c 'echo a; echo b >&2; exit 42' 2>&1", "a\nb\n", 42},
		{"printf 'no newline'", "no newline", 0},
		{"echo __E_99__ 5; echo __S_1__", "__E_99__ 5\n__S_1__\n", 0},
		{"X=1", "", 0},
		{"echo $X", "1\n", 0}, // state persists between commands
		{"echo " + strings.Repeat("x", 300), strings.Repeat("x", 300) + "\n", 0},
		{"echo 'it''s' \"q\" # trailing comment", "its q\n", 0},
	}
	for _, tc := range tests {
		r, err := vm.Run(ctx, tc.cmd)
		if err != nil {
			t.Fatalf("%s: %v", tc.cmd, err)
		}
		if r.Output != tc.out || r.Status != tc.status {
			t.Errorf("Run(%q) = %d %q, want %d %q", tc.cmd, r.Status, r.Output, tc.status, tc.out)
		}
	}
	if _, err := vm.Run(ctx, "echo a\necho b"); err == nil {
		t.Error("multi-line command accepted")
	}
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := vm.Run(tctx, "sleep 5"); err == nil {
		t.Error("Run did not time out")
	}
	cancel()
	vm.Run(ctx, "true") // resynchronise after the timed-out command
	vm.Mark("custom")
	if err := vm.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range vm.Timings() {
		names = append(names, p.Name)
	}
	want := []string{PhaseXen, PhaseDom0Kernel, PhaseDom0Init, PhaseLoginPrompt, "custom"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("phases (-want +got):\n%s", diff)
	}
	b, err := os.ReadFile(logFile)
	if err != nil || !strings.Contains(string(b), "] Xen version 4.17 (fake)") {
		t.Errorf("serial log lacks timestamped lines: %v\n%s", err, b)
	}
}

func TestBootTimeoutFake(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-qemu")
	os.WriteFile(bin, []byte("#!/bin/sh\necho booting\nsleep 30\n"), 0o755)
	d := testDesc()
	d.QEMUBinary, d.Dir, d.LoginUser = bin, dir, "root"
	_, err := Boot(context.Background(), d, Options{NoKVM: true, BootTimeout: 500 * time.Millisecond, TCGScale: 1})
	if err == nil || !strings.Contains(err.Error(), "login prompt") || !strings.Contains(err.Error(), "booting") {
		t.Errorf("err = %v, want a login-prompt timeout with the console tail", err)
	}
}
