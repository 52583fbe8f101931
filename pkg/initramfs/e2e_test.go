package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/internal/testutil"
	"github.com/vxn-dev/vxn/pkg/disk/ext4"
	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// testProg is the container's entrypoint in the end-to-end test.
const testProg = `package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

func main() {
	switch os.Args[1] {
	case "stream":
		fmt.Println("out1")
		fmt.Fprintln(os.Stderr, "err1")
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		fmt.Printf("out2 got %q\n", line)
		os.Exit(42)
	case "exit":
		n, _ := strconv.Atoi(os.Args[2])
		os.Exit(n)
	case "net":
		route, _ := os.ReadFile("/proc/net/route")
		for _, l := range strings.Split(string(route), "\n")[1:] {
			if f := strings.Fields(l); len(f) > 2 && f[1] == "00000000" {
				fmt.Printf("default via %s dev %s\n", f[2], f[0])
			}
		}
		rc, _ := os.ReadFile("/etc/resolv.conf")
		fmt.Printf("resolv=%q\n", rc)
		c, err := net.Dial("tcp", os.Args[2])
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Printf("got %q\n", line)
	case "wait":
		fmt.Println("waiting")
		io.Copy(io.Discard, os.Stdin)
		os.Exit(5)
	case "tty":
		var t [64]byte
		_, _, e1 := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
		_, err := os.Open("/dev/tty")
		var ws [4]uint16
		syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGWINSZ, uintptr(unsafe.Pointer(&ws)))
		fmt.Printf("isatty=%v ctty=%v size=%dx%d\n", e1 == 0, err == nil, ws[0], ws[1])
		fmt.Fprintln(os.Stderr, "ready")
		r := bufio.NewReader(os.Stdin)
		for {
			l, err := r.ReadString('\n')
			if l != "" {
				fmt.Printf("line %q\n", l)
			}
			if err != nil {
				os.Exit(3)
			}
		}
	case "kill9":
		fmt.Println("dying")
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	case "info":
		wd, _ := os.Getwd()
		host, _ := os.Hostname()
		g, _ := os.Getgroups()
		sort.Ints(g)
		rc, _ := os.ReadFile("/etc/resolv.conf")
		werr := os.WriteFile("/written", []byte("x"), 0o644)
		fmt.Printf("args=%q\nid=%d:%d groups=%v\ncwd=%s\nFOO=%s\nhost=%s\nresolv=%q\nwrite=%v\n",
			os.Args[2:], os.Getuid(), os.Getgid(), g, wd, os.Getenv("FOO"), host, rc, werr)
		_, err := os.Stat("/proc/self/exe")
		fmt.Printf("proc=%v\n", err == nil)
	}
}
`

// TestBootQEMU boots the Debian kernel with the vxn initramfs under plain
// QEMU (TCG) and runs containers from an ext4 image: separate streamed
// stdout/stderr, exact exit codes, env/cwd/user/hostname/resolv.conf,
// a terminal (-t), exec sessions and the network.
func TestBootQEMU(t *testing.T) {
	if os.Getenv("VXN_E2E") != "1" {
		t.Skip("end-to-end QEMU boot: set VXN_E2E=1 to run")
	}
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatalf("VXN_E2E=1 but qemu-system-x86_64 is not installed (Debian package qemu-system-x86): %v", err)
	}
	kernel, modDir := cachedKernel(t)
	ctx := context.Background()
	dir := t.TempDir()

	t0 := time.Now()
	initBin, err := BuildInit(ctx, testutil.RepoRoot(t), "")
	if err != nil {
		t.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd.gz")
	info, err := WriteFile(initrd, Options{Init: initBin, ModDir: modDir, Modules: QEMUModules})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("vxn-init %d bytes; initramfs %d bytes gzipped (%d raw), %d modules; built in %v",
		len(initBin), info.Compressed, info.Raw, len(info.Modules), time.Since(t0).Round(time.Millisecond))

	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	os.WriteFile(filepath.Join(dir, "main.go"), []byte(testProg), 0o644)
	build := exec.Command("go", "build", "-o", filepath.Join(rootfs, "bin/vt"), "main.go")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building test program: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte("root:x:0:\nwheel:x:10:alice\nalice:x:1000:\n"), 0o644)
	img := filepath.Join(dir, "image.ext4")
	if err := ext4.FromDir(ctx, rootfs, img, ext4.Options{}); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from the host\n")
			c.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	tests := []struct {
		name   string
		spec   guestproto.Spec
		opt    bootOpts
		code   int
		stdout []string
		stderr string
	}{
		{"stream", guestproto.Spec{Args: []string{"vt", "stream"}, Stdin: true}, bootOpts{}, 42,
			[]string{"out1\nout2 got \"go\\n\"\n"}, "err1\n"},
		{"exit0", guestproto.Spec{Args: []string{"/bin/vt", "exit", "0"}}, bootOpts{}, 0, nil, ""},
		// Spec from a disk (vxn.spec=/dev/vdb) and writable layer on a scratch disk.
		{"exit1-specdisk-scratch", guestproto.Spec{Args: []string{"vt", "exit", "1"}, ScratchDev: "vdc"}, bootOpts{specDisk: true}, 1, nil, ""},
		{"kill9", guestproto.Spec{Args: []string{"vt", "kill9"}}, bootOpts{}, 137, []string{"dying\n"}, ""},
		{"info", guestproto.Spec{Args: []string{"vt", "info", "a b", "", "$X"}, Env: []string{"FOO=secret value", "PATH=/bin"},
			Cwd: "/home/alice/work", User: "alice", Hostname: "vxnbox", ResolvConf: "nameserver 10.0.0.1\n"}, bootOpts{}, 0,
			[]string{`args=["a b" "" "$X"]`, "id=1000:1000 groups=[10]", "cwd=/home/alice/work", "FOO=secret value",
				"host=vxnbox", `resolv="nameserver 10.0.0.1\n"`, "write=open /written: permission denied", "proc=true"}, ""},
		{"notfound", guestproto.Spec{Args: []string{"nosuch"}}, bootOpts{}, 127, nil, "vxn-init: exec: \"nosuch\": executable file not found in $PATH\n"},
		// A terminal: output (stderr included) on stdout with CRLF, size
		// from the Window frame sent before the spec, input through the pty.
		{"tty", guestproto.Spec{Args: []string{"vt", "tty"}, TTY: true, Stdin: true},
			bootOpts{window: &guestproto.Window{Rows: 30, Cols: 100}, onFrame: func(w *guestproto.Writer, f guestproto.Frame, _ io.Writer) {
				if f.Type == guestproto.TypeStdout && strings.Contains(string(f.Payload), "ready") {
					w.Stream(guestproto.TypeStdin).Write([]byte("hello\n"))
					w.WriteFrame(guestproto.TypeStdinClose, nil)
				}
			}}, 3, []string{"isatty=true ctty=true size=30x100\r\n", "hello\r\n" /* echo */, `line "hello\n"` + "\r\n"}, ""},
		// Network: virtio-net on QEMU's user network, configured from
		// Spec.Net; the program dials a listener of this test through the
		// gateway (QEMU forwards 10.0.2.2 to the host's loopback).
		{"net", guestproto.Spec{Args: []string{"vt", "net", "10.0.2.2:" + port},
			Net: &guestproto.Net{Address: "10.0.2.15/24", Gateway: "10.0.2.2", DNS: []string{"10.0.2.3"}}}, bootOpts{net: true}, 0,
			[]string{"default via 0202000A dev eth0\n", `resolv="nameserver 10.0.2.3\n"`, `got "hello from the host\n"`}, ""},
		{"exec", guestproto.Spec{Args: []string{"vt", "wait"}, Stdin: true}, bootOpts{onFrame: execScenario()}, 5,
			[]string{"waiting\n", `exec 1: status 7 error "" stdout "" stderr ""`,
				`exec 2: status 3 error "" stdout "isatty=true ctty=true size=7x9\r\n`, `line \"hi\\n\"\r\n" stderr ""`,
				`exec 3: status 127 error "exec: \"nosuch\": executable file not found in $PATH"`,
				`exec 4: status 0 error "" stdout "args=[]\nid=1000:1000 groups=[10]\ncwd=/tmp`}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := bootOnce(t, qemu, kernel, initrd, img, &tc.spec, tc.opt)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(r.stdout+r.report, w) {
					t.Errorf("stdout lacks %q:\n%s%s", w, r.stdout, r.report)
				}
			}
			if r.stderr != tc.stderr {
				t.Errorf("stderr %q, want %q", r.stderr, tc.stderr)
			}
		})
	}
}

type bootResult struct {
	code           int
	stdout, stderr string
	report         string // from bootOpts.onFrame
}

// syncBuf is a Buffer safe for the demux goroutine and the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
	on func(string)
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.b.Write(p)
	all := s.b.String()
	s.mu.Unlock()
	if s.on != nil {
		s.on(all)
	}
	return len(p), nil
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bootOpts select the alternative paths of vxn-init.
type bootOpts struct {
	// specDisk passes the spec on a second disk (vxn.spec=/dev/vdb)
	// instead of the console; a scratch disk (vdc) is attached when the
	// spec names one.
	specDisk bool
	// net adds a virtio-net NIC on QEMU's user network.
	net bool
	// window is sent before the spec.
	window *guestproto.Window
	// onFrame sees every frame after the spec was sent; it may answer,
	// and what it writes to report is checked like stdout.
	onFrame func(w *guestproto.Writer, f guestproto.Frame, report io.Writer)
}

// execScenario drives exec sessions beside a main process that waits for
// stdin EOF: an exit status, a session on a terminal with input and a
// window size, a program not found, another user and working directory.
// Each session's end is reported as a line
// "exec N: status S error E stdout O stderr R"; main's stdin is closed
// when all have ended.
func execScenario() func(w *guestproto.Writer, f guestproto.Frame, report io.Writer) {
	out := map[uint32]*strings.Builder{}
	ended, sent := 0, false
	send := func(w *guestproto.Writer, es guestproto.ExecSpec) {
		b, _ := es.Marshal()
		w.WriteFrame(guestproto.TypeExec, b)
	}
	return func(w *guestproto.Writer, f guestproto.Frame, report io.Writer) {
		switch f.Type {
		case guestproto.TypeStdout:
			if string(f.Payload) == "waiting\n" {
				send(w, guestproto.ExecSpec{ID: 1, Args: []string{"vt", "exit", "7"}})
				w.WriteFrame(guestproto.TypeWindow, guestproto.FormatWindow(guestproto.Window{Rows: 7, Cols: 9, ID: 2}))
				send(w, guestproto.ExecSpec{ID: 2, Args: []string{"vt", "tty"}, TTY: true, Stdin: true})
				send(w, guestproto.ExecSpec{ID: 3, Args: []string{"nosuch"}})
				send(w, guestproto.ExecSpec{ID: 4, Args: []string{"vt", "info"}, User: "alice", Cwd: "/tmp"})
			}
		case guestproto.TypeExecData:
			d, err := guestproto.ParseExecData(f.Payload)
			if err != nil {
				return
			}
			k := d.ID*10 + uint32(d.Stream)
			if out[k] == nil {
				out[k] = &strings.Builder{}
			}
			out[k].Write(d.Data)
			if d.ID == 2 && !sent && strings.Contains(out[k].String(), "ready") {
				sent = true
				w.WriteFrame(guestproto.TypeExecData, guestproto.AppendExecData(nil, guestproto.ExecData{ID: 2, Data: []byte("hi\n")}))
				w.WriteFrame(guestproto.TypeExecData, guestproto.AppendExecData(nil, guestproto.ExecData{ID: 2}))
			}
		case guestproto.TypeExecExit:
			e, err := guestproto.ParseExecExit(f.Payload)
			if err != nil {
				return
			}
			str := func(k uint32) string {
				if out[k] == nil {
					return ""
				}
				return out[k].String()
			}
			fmt.Fprintf(report, "exec %d: status %d error %q stdout %q stderr %q\n", e.ID, e.Status, e.Error, str(e.ID*10+1), str(e.ID*10+2))
			if ended++; ended == 4 {
				w.WriteFrame(guestproto.TypeStdinClose, nil)
			}
		}
	}
}

func bootOnce(t *testing.T, qemu, kernel, initrd, img string, spec *guestproto.Spec, opt bootOpts) bootResult {
	spec.RootDev = "vda"
	appendLine := "console=ttyS0 quiet loglevel=0 panic=-1 vxn.console=ttyS0 vxn.debug=1"
	var extra []string
	var scratch string
	if opt.specDisk {
		var b bytes.Buffer
		if err := guestproto.NewWriter(&b).SendSpec(spec); err != nil {
			t.Fatal(err)
		}
		b.Write(make([]byte, 4096-b.Len()%4096))
		sf := filepath.Join(t.TempDir(), "spec.img")
		os.WriteFile(sf, b.Bytes(), 0o600)
		extra = append(extra, "-drive", "file="+sf+",if=virtio,format=raw,readonly=on")
		appendLine += " vxn.spec=/dev/vdb"
		if spec.ScratchDev != "" {
			empty := t.TempDir()
			scratch = filepath.Join(t.TempDir(), "scratch.ext4")
			if err := ext4.FromDir(context.Background(), empty, scratch, ext4.Options{SizeBytes: 16 << 20}); err != nil {
				t.Fatal(err)
			}
			extra = append(extra, "-drive", "file="+scratch+",if=virtio,format=raw")
		}
	}
	if scratch != "" {
		defer func() {
			out, err := exec.Command("debugfs", "-R", "ls -l /", scratch).CombinedOutput()
			if err != nil {
				t.Logf("debugfs not usable, scratch disk not inspected: %v", err)
				return
			}
			if !bytes.Contains(out, []byte("upper")) || !bytes.Contains(out, []byte("work")) {
				t.Errorf("scratch disk has no overlay upper/work dirs:\n%s", out)
			}
		}()
	}
	args := []string{"-accel", "tcg", "-cpu", "qemu64,+rdrand", "-m", "256", "-smp", "1",
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd,
		"-append", appendLine,
		"-drive", "file=" + img + ",if=virtio,format=raw,readonly=on"}
	if opt.net {
		extra = append(extra, "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0")
	}
	cmd := exec.Command(qemu, append(args, extra...)...)
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	var qerr bytes.Buffer
	cmd.Stderr = &qerr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	w := guestproto.NewWriter(in)
	var tReady, tFirst time.Duration
	sentGo := false
	stdout := &syncBuf{on: func(all string) {
		if tFirst == 0 {
			tFirst = time.Since(start)
		}
		// Streaming proof: the container blocks on stdin after "out1";
		// stdin is only sent once "out1" has reached Dom0.
		if spec.Stdin && !sentGo && strings.HasPrefix(all, "out1\n") {
			sentGo = true
			w.Stream(guestproto.TypeStdin).Write([]byte("go\n"))
			w.WriteFrame(guestproto.TypeStdinClose, nil)
		}
	}}
	stderr := &syncBuf{}
	var logs, report syncBuf
	d := &guestproto.Demuxer{Stdout: stdout, Stderr: stderr, Log: &logs,
		OnFrame: func(f guestproto.Frame) error {
			if f.Type == guestproto.TypeReady {
				tReady = time.Since(start)
				if opt.window != nil {
					w.WriteFrame(guestproto.TypeWindow, guestproto.FormatWindow(*opt.window))
				}
				if !opt.specDisk {
					return w.SendSpec(spec)
				}
			}
			if opt.onFrame != nil {
				opt.onFrame(w, f, &report)
			}
			return nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code, err := d.Run(ctx, out)
	if err != nil {
		t.Fatalf("demux: %v\nqemu stderr: %s\ninit log:\n%s", err, qerr.String(), logs.String())
	}
	tExit := time.Since(start)
	in.Close()
	done := make(chan error, 1)
	go func() { io.Copy(io.Discard, out); done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("QEMU did not exit after the guest powered off")
	}
	tQuit := time.Since(start)
	var rd, st string
	if d.Ready != nil {
		rd = fmt.Sprintf("guest uptime at ready %dms (init %dms)", d.Ready.UptimeMS, d.Ready.InitMS)
	}
	if d.Started != nil {
		st = fmt.Sprintf("; entrypoint started at uptime %dms, init-to-exec %dms", d.Started.UptimeMS, d.Started.InitMS)
	}
	t.Logf("QEMU start → ready %v, → first stdout %v, → exit frame %v, → QEMU exit %v; %s%s; console noise %d bytes, lost frames %d",
		tReady.Round(time.Millisecond), tFirst.Round(time.Millisecond), tExit.Round(time.Millisecond), tQuit.Round(time.Millisecond),
		rd, st, d.Stats.Garbage, d.Stats.Lost)
	if testing.Verbose() {
		t.Logf("init log:\n%s", logs.String())
	}
	return bootResult{code, stdout.String(), stderr.String(), report.String()}
}
