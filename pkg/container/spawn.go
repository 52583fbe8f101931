package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/termios"
	"github.com/vxn-dev/vxn/pkg/toolstack"
)

// MonitorArg is the hidden first argument that makes any vxn binary run a
// container monitor. Every main() calls, first thing:
//
//	if len(os.Args) > 1 && os.Args[1] == container.MonitorArg { os.Exit(container.MonitorMain()) }
const MonitorArg = "__vxn-monitor"

// monitorEnv marks a monitor's environment. A binary whose main (or a test
// binary whose TestMain) lacks the MonitorArg dispatch would otherwise run
// its normal code again when re-executed as a monitor, and spawn again: a
// fork bomb. Spawn refuses to run under that mark.
const monitorEnv = "VXN_MONITOR_CHILD"

// notInMonitor fails when called inside a re-executed monitor.
func notInMonitor() error {
	if os.Getenv(monitorEnv) != "" {
		return fmt.Errorf("refusing to spawn a container monitor from a monitor process: the program's main (or TestMain) must dispatch %q to container.MonitorMain first", MonitorArg)
	}
	return nil
}

// Descriptors of a monitor process: its options come on fd 3 (a pipe, read
// to EOF), it reports readiness on fd 4 (one JSON spawnReply, then close),
// and a container monitor inherits the state directory's lock on fd 5.
// maxMonitorOptions bounds the options a monitor reads from its pipe: room
// for a job spec of guestproto.MaxSpec (environment and arguments) twice
// over (the state records them too) and the rest. Spawn refuses more.
const maxMonitorOptions = 3 * guestproto.MaxSpec

const (
	fdOptions = 3
	fdReady   = 4
	fdLock    = 5
)

// SpawnOptions describe a container whose monitor is a separate long-lived
// process.
type SpawnOptions struct {
	// Options are as for Run; Stdin, Stdout, Stderr, Log, Signals and
	// WindowSizes are ignored (see Stdio and ConsoleSocket). Keep is
	// forced on: the state stays until Delete, unless AutoRemove.
	Options
	// Stdio are the container's stdin, stdout and stderr, inherited by the
	// monitor (nil = /dev/null; a nil stdin means no stdin).
	Stdio [3]*os.File `json:"-"`
	// ConsoleSocket is OCI's --console-socket: the monitor makes a pty
	// pair, sends the master over this unix socket with SCM_RIGHTS (as
	// runc does) and uses the slave as the container's terminal (TTY).
	ConsoleSocket string
	// Hold boots the guest to Ready but holds the entrypoint until
	// Handle.Start (OCI create/start).
	Hold bool
	// LogPath, when set, also receives stdout and stderr as docker
	// json-file lines (vxn logs).
	LogPath string
	// Bundle and Annotations are recorded in the state (OCI).
	Bundle      string
	Annotations map[string]string
	// AutoRemove removes the state when the container stops (run --rm -d).
	AutoRemove bool
	// Toolstack is the toolstack the monitor opens (the caller's choice,
	// e.g. vxnconf's); it is also recorded in the state, for Delete.
	Toolstack toolstack.Selection
}

// monitorConfig travels over the options pipe.
type monitorConfig struct {
	Mode     string        `json:"mode"` // "container" or "exec"
	Spawn    *SpawnOptions `json:"spawn,omitempty"`
	HasStdin bool          `json:"has_stdin,omitempty"`
	// exec
	RuntimeDir string       `json:"runtime_dir,omitempty"`
	ID         string       `json:"id,omitempty"`
	Exec       *ExecOptions `json:"exec,omitempty"`
}

type spawnReply struct {
	Error string `json:"error,omitempty"`
}

// Spawn starts the container's monitor (a re-exec of /proc/self/exe with
// MonitorArg; the options go over a pipe, never on argv, in the environment
// or in a file, since env values may be secrets), waits until the guest is
// Ready (status "created" with Hold, else "running") or failed, and returns
// the monitor's PID. The monitor runs in a session of its own; it exits only
// after all container output is drained, with the container's exit status
// (0–255; 128+n for signal n) as its own (125 when vxn failed).
func Spawn(ctx context.Context, o SpawnOptions) (int, error) {
	if err := notInMonitor(); err != nil {
		return 0, err
	}
	o.defaults()
	o.Keep = !o.AutoRemove
	if o.ConsoleSocket != "" {
		o.TTY = true
	}
	if err := o.check(); err != nil {
		return 0, err
	}
	st := initialState(&o.Options, DomainName(o.ID), 0)
	st.Bundle, st.Annotations, st.LogPath = o.Bundle, o.Annotations, o.LogPath
	st.Toolstack = &o.Toolstack
	sd, err := newStateDir(o.RuntimeDir, st)
	if err != nil {
		return 0, err
	}
	cfg := monitorConfig{Mode: "container", Spawn: &o, HasStdin: o.Stdio[0] != nil}
	pid, err := startMonitor(ctx, cfg, o.Stdio, sd.lock)
	if err != nil {
		// The monitor did not take over: clean up here (it may have
		// created a domain before failing; it destroys it itself).
		sd.remove()
		return 0, err
	}
	sd.lock.Close() // the monitor holds its own copy
	return pid, nil
}

// startMonitor starts a monitor process and waits for its readiness report.
func startMonitor(ctx context.Context, cfg monitorConfig, stdio [3]*os.File, lock *os.File) (int, error) {
	if err := notInMonitor(); err != nil {
		return 0, err
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return 0, err
	}
	if len(b) > maxMonitorOptions {
		return 0, fmt.Errorf("container options are %d bytes encoded (environment, arguments), more than the limit of %d bytes", len(b), maxMonitorOptions)
	}
	optR, optW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		optR.Close()
		optW.Close()
		return 0, err
	}
	defer readyR.Close()
	cmd := exec.Command("/proc/self/exe", MonitorArg)
	cmd.Env = append(os.Environ(), monitorEnv+"=1")
	if stdio[0] != nil {
		cmd.Stdin = stdio[0]
	}
	if stdio[1] != nil {
		cmd.Stdout = stdio[1]
	}
	if stdio[2] != nil {
		cmd.Stderr = stdio[2]
	}
	cmd.ExtraFiles = []*os.File{optR, readyW}
	if lock != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, lock)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	optR.Close()
	readyW.Close()
	if err != nil {
		optW.Close()
		return 0, fmt.Errorf("starting the container monitor: %w", err)
	}
	go func() {
		optW.Write(b)
		optW.Close()
	}()
	type result struct {
		r   spawnReply
		err error
	}
	rc := make(chan result, 1)
	go func() {
		// One JSON object; not to EOF, in case a child of the monitor
		// inherited the pipe.
		var r spawnReply
		err := json.NewDecoder(readyR).Decode(&r)
		if errors.Is(err, io.EOF) {
			err = errors.New("the container monitor exited without reporting")
		}
		rc <- result{r, err}
	}()
	var res result
	select {
	case res = <-rc:
	case <-ctx.Done():
		cmd.Process.Kill()
		cmd.Wait()
		return 0, ctx.Err()
	}
	if res.err == nil && res.r.Error != "" {
		res.err = errors.New(res.r.Error)
	}
	if res.err != nil {
		// Reap it (it exits after a failure).
		go cmd.Wait()
		return 0, res.err
	}
	pid := cmd.Process.Pid
	cmd.Process.Release()
	return pid, nil
}

// MonitorMain runs a monitor process (see MonitorArg) and returns its exit
// status.
func MonitorMain() int {
	signal.Ignore(syscall.SIGPIPE, syscall.SIGHUP)
	os.Unsetenv(monitorEnv)
	// Nothing the monitor starts (xl and its daemons) may inherit these.
	for _, fd := range []int{fdOptions, fdReady, fdLock} {
		syscall.CloseOnExec(fd)
	}
	readyF := os.NewFile(fdReady, "ready")
	report := func(err error) {
		if readyF == nil {
			return
		}
		b, _ := json.Marshal(spawnReply{Error: errString(err)})
		readyF.Write(b)
		readyF.Close()
		readyF = nil
	}
	var cfg monitorConfig
	optF := os.NewFile(fdOptions, "options")
	b, err := io.ReadAll(io.LimitReader(optF, maxMonitorOptions+1))
	optF.Close()
	if err == nil && len(b) > maxMonitorOptions {
		err = fmt.Errorf("more than %d bytes", maxMonitorOptions)
	}
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		report(fmt.Errorf("container monitor options: %w", err))
		return 125
	}
	switch {
	case cfg.Mode == "container" && cfg.Spawn != nil:
		return monitorContainer(&cfg, report)
	case cfg.Mode == "exec" && cfg.Exec != nil:
		return monitorExec(&cfg, report)
	}
	report(fmt.Errorf("container monitor: unknown mode %q", cfg.Mode))
	return 125
}

func monitorContainer(cfg *monitorConfig, report func(error)) int {
	o := cfg.Spawn
	lock := os.NewFile(fdLock, "lock")
	ts, err := o.Toolstack.Open()
	if err != nil {
		report(err)
		return 125
	}
	st, err := readState(filepath.Join(o.RuntimeDir, o.ID))
	if err != nil {
		report(err)
		return 125
	}
	st.MonitorPID = os.Getpid()
	sd := &stateDir{path: filepath.Join(o.RuntimeDir, o.ID), lock: lock, st: st}
	sd.save()
	opts := o.Options
	opts.Stdout, opts.Stderr = os.Stdout, os.Stderr
	if cfg.HasStdin {
		opts.Stdin = os.Stdin
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	opts.Signals = sigs
	if o.ConsoleSocket != "" {
		pty, err := consolePty(o.ConsoleSocket)
		if err != nil {
			report(err)
			return 125
		}
		defer pty.Close()
		opts.Stdin, opts.Stdout, opts.Stderr = pty, pty, pty
		opts.TTY = true
		opts.WindowSizes = watchWindow(pty)
	}
	res := &Result{ID: o.ID, Domain: DomainName(o.ID), ExitCode: -1}
	m := &monitor{ts: ts, o: opts, sd: sd, res: res, hold: o.Hold, notify: report}
	if o.LogPath != "" {
		if m.logw, err = openJSONLog(o.LogPath); err != nil {
			report(err)
			return 125
		}
	}
	err = m.run(context.Background())
	if res.ExitCode >= 0 {
		return res.ExitCode
	}
	return 125
}

// consolePty makes a pty pair, sends the master over the console socket
// and returns the slave, in raw mode (the guest's pty does the echo and
// line discipline).
func consolePty(socket string) (*os.File, error) {
	master, slave, err := termios.OpenPty("/dev/ptmx", "/dev/pts")
	if err != nil {
		return nil, fmt.Errorf("console: pty: %w", err)
	}
	defer master.Close()
	if _, err := termios.MakeRaw(int(slave.Fd())); err != nil {
		slave.Close()
		return nil, fmt.Errorf("console: pty: %w", err)
	}
	if err := SendFd(socket, master); err != nil {
		slave.Close()
		return nil, err
	}
	return slave, nil
}

// SendFd sends f over the unix stream socket at path with SCM_RIGHTS and
// the name "/dev/ptmx" as data, the way runc hands a console to
// --console-socket.
func SendFd(path string, f *os.File) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("console socket %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return fmt.Errorf("console socket %s: %w", path, err)
	}
	if err := unix.Sendmsg(fd, []byte("/dev/ptmx"), unix.UnixRights(int(f.Fd())), nil, 0); err != nil {
		return fmt.Errorf("console socket %s: %w", path, err)
	}
	return nil
}

// watchWindow reports f's terminal size now and whenever it changes (the
// engine resizes the master; the slave sees the new size).
func watchWindow(f *os.File) <-chan WindowSize {
	c := make(chan WindowSize, 1)
	go func() {
		var last WindowSize
		for {
			rows, cols, err := termios.GetSize(int(f.Fd()))
			if err != nil {
				close(c)
				return
			}
			cur := WindowSize{Rows: rows, Cols: cols}
			if cur != last && cur.Rows > 0 {
				last = cur
				select {
				case c <- cur:
				default:
				}
			}
			time.Sleep(time.Second)
		}
	}()
	return c
}
