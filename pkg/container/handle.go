package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/toolstack"
)

// Handle is one container under a runtime directory. Its operations go to
// the container's monitor over the control socket; only cleanup after a dead
// monitor (Delete) uses the toolstack directly.
type Handle struct {
	// RuntimeDir and ID locate the container.
	RuntimeDir, ID string
	// Toolstack is used only to clean up after a dead monitor; nil is the
	// toolstack recorded in the container's state (SpawnOptions.Toolstack),
	// else xl from PATH.
	Toolstack toolstack.Toolstack
}

func (h *Handle) dir() string { return filepath.Join(h.RuntimeDir, h.ID) }

// noSuchContainer is the error of Load and Find; it wraps fs.ErrNotExist.
type noSuchContainer string

func (e noSuchContainer) Error() string { return "no such container: " + string(e) }
func (e noSuchContainer) Unwrap() error { return fs.ErrNotExist }

func rtDir(d string) string {
	if d == "" {
		return DefaultRuntimeDir
	}
	return d
}

// Load returns the container id under runtimeDir ("" = DefaultRuntimeDir).
// The error wraps fs.ErrNotExist when there is no such container.
func Load(runtimeDir, id string) (*Handle, error) {
	runtimeDir = rtDir(runtimeDir)
	if id == "" || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." || strings.HasPrefix(id, ".") {
		return nil, noSuchContainer(id)
	}
	if _, err := os.Stat(filepath.Join(runtimeDir, id, "state.json")); err != nil {
		return nil, noSuchContainer(id)
	}
	return &Handle{RuntimeDir: runtimeDir, ID: id}, nil
}

// Find resolves what a user typed (a full id, a unique id prefix or a name)
// to a container, like docker does.
func Find(runtimeDir, ref string) (*Handle, error) {
	runtimeDir = rtDir(runtimeDir)
	if h, err := Load(runtimeDir, ref); err == nil {
		return h, nil
	}
	sts, err := List(runtimeDir)
	if err != nil {
		return nil, err
	}
	var byPrefix []State
	for _, st := range sts {
		if st.Name != "" && st.Name == ref {
			return &Handle{RuntimeDir: runtimeDir, ID: st.ID}, nil
		}
		if ref != "" && strings.HasPrefix(st.ID, ref) {
			byPrefix = append(byPrefix, st)
		}
	}
	switch len(byPrefix) {
	case 1:
		return &Handle{RuntimeDir: runtimeDir, ID: byPrefix[0].ID}, nil
	case 0:
		return nil, noSuchContainer(ref)
	}
	return nil, fmt.Errorf("container id prefix %q is ambiguous (%d containers)", ref, len(byPrefix))
}

// List returns the state of every container under runtimeDir, oldest
// first; a missing directory is an empty list.
func List(runtimeDir string) ([]State, error) {
	runtimeDir = rtDir(runtimeDir)
	ents, err := os.ReadDir(runtimeDir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []State
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		h := &Handle{RuntimeDir: runtimeDir, ID: e.Name()}
		st, err := h.state()
		if err != nil {
			continue // being created or removed
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// alive reports whether the container's monitor holds its lock.
func (h *Handle) alive() bool {
	live, f := held(h.dir())
	if f != nil {
		f.Close()
	}
	return live
}

func (h *Handle) state() (State, error) {
	st, err := readState(h.dir())
	if err != nil {
		return st, err
	}
	if st.Status == "" {
		st.Status = StatusRunning
	}
	if st.Status != StatusStopped && !h.alive() {
		st.Status = StatusStopped
	}
	return st, nil
}

// State returns the container's state, live: StatusStopped once the
// monitor is gone. A container removed meanwhile is StatusStopped with only
// ID set.
func (h *Handle) State() State {
	st, err := h.state()
	if err != nil {
		return State{ID: h.ID, Status: StatusStopped}
	}
	return st
}

// call does one request/reply on the control socket.
func (h *Handle) call(ctx context.Context, req ctlRequest) (ctlReply, error) {
	var rep ctlReply
	c, err := h.dial(ctx)
	if err != nil {
		return rep, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if err := writeMsg(c, req); err != nil {
		return rep, fmt.Errorf("container %s: %w", short(h.ID), err)
	}
	if _, err := readMsg(c, &rep); err != nil {
		if errors.Is(err, io.EOF) {
			return rep, fmt.Errorf("container %s: %w (hung up)", short(h.ID), errNotRunning)
		}
		return rep, fmt.Errorf("container %s: %w", short(h.ID), err)
	}
	if rep.Error != "" {
		return rep, fmt.Errorf("container %s: %s", short(h.ID), rep.Error)
	}
	return rep, nil
}

func (h *Handle) dial(ctx context.Context) (*net.UnixConn, error) {
	var d net.Dialer
	var c net.Conn
	err := socketPath(filepath.Join(h.dir(), ctlSocket), func(name string) error {
		var err error
		c, err = d.DialContext(ctx, "unixpacket", name)
		return err
	})
	if err != nil {
		if !h.alive() {
			return nil, fmt.Errorf("container %s: %w", short(h.ID), errNotRunning)
		}
		return nil, fmt.Errorf("container %s: control socket: %w", short(h.ID), err)
	}
	return c.(*net.UnixConn), nil
}

// Start runs the entrypoint of a created container (created → running).
func (h *Handle) Start(ctx context.Context) error {
	_, err := h.call(ctx, ctlRequest{Op: "start"})
	return err
}

// Kill sends sig to the entrypoint (with all, to every exec process too).
// SIGKILL, or any signal before the entrypoint started, destroys the domain
// at once (exit status 128+sig, 137 for SIGKILL).
func (h *Handle) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	_, err := h.call(ctx, ctlRequest{Op: "kill", Signal: int(sig), All: all})
	return err
}

// Pause pauses the domain (xl pause): running → paused.
func (h *Handle) Pause(ctx context.Context) error {
	_, err := h.call(ctx, ctlRequest{Op: "pause"})
	return err
}

// Resume unpauses it (xl unpause): paused → running.
func (h *Handle) Resume(ctx context.Context) error {
	_, err := h.call(ctx, ctlRequest{Op: "resume"})
	return err
}

// Env returns the running container's environment, asked of its monitor
// (values are kept in no file); an error when it is not running.
func (h *Handle) Env(ctx context.Context) ([]string, error) {
	rep, err := h.call(ctx, ctlRequest{Op: "inspect"})
	return rep.Env, err
}

// Wait waits until the container stopped and its monitor is gone, polling,
// and returns the final state.
func (h *Handle) Wait(ctx context.Context) (State, error) {
	for {
		st := h.State()
		if st.Status == StatusStopped && !h.alive() {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Delete removes the container: its domain (if any) and its state. A
// container that is not stopped needs force, which kills it first.
func (h *Handle) Delete(ctx context.Context, force bool) error {
	st := h.State()
	if h.alive() {
		if st.Status != StatusStopped {
			if !force {
				return fmt.Errorf("container %s is %s: stop it first, or force the removal", short(h.ID), st.Status)
			}
			if err := h.Kill(ctx, syscall.SIGKILL, true); err != nil && !errors.Is(err, errNotRunning) && h.alive() {
				return err
			}
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := h.Wait(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("container %s: its monitor did not exit: %w", short(h.ID), err)
		}
	}
	// The monitor is gone: clean up what it may have left.
	ts := h.Toolstack
	if ts == nil {
		var sel toolstack.Selection
		if st.Toolstack != nil {
			sel = *st.Toolstack
		}
		var err error
		if ts, err = sel.Open(); err != nil {
			return fmt.Errorf("container %s: %w", short(h.ID), err)
		}
	}
	g, err := lockRuntime(h.RuntimeDir)
	if err != nil {
		return err
	}
	defer g.Close()
	live, lock := held(h.dir())
	if live {
		return fmt.Errorf("container %s is in use again", short(h.ID))
	}
	if lock != nil {
		defer lock.Close()
	}
	if _, err := os.Stat(h.dir()); errors.Is(err, fs.ErrNotExist) {
		return nil // removed by its monitor (AutoRemove)
	}
	dom := st.Domain
	if dom == "" {
		dom = DomainName(h.ID)
	}
	if id, err := ts.DomID(ctx, dom); err == nil {
		if err := ts.Destroy(ctx, id); err != nil && !errors.Is(err, toolstack.ErrNoDomain) {
			return fmt.Errorf("container %s: %w", short(h.ID), err)
		}
	} else if !errors.Is(err, toolstack.ErrNoDomain) {
		return fmt.Errorf("container %s: %w", short(h.ID), err)
	}
	return os.RemoveAll(h.dir())
}

// ExecOptions describe one more process in the running container.
type ExecOptions struct {
	// Args, Env, Cwd and User are the process (Env empty: the container's).
	Args, Env []string
	Cwd, User string
	// TTY gives the process a terminal; its output is then stdout only.
	TTY bool
	// Stdin forwards stdin to the process (Exec: stdin non-nil).
	Stdin bool
	// Stdio are the process's stdin, stdout, stderr for SpawnExec (nil =
	// /dev/null).
	Stdio [3]*os.File `json:"-"`
	// ConsoleSocket (SpawnExec): a pty whose master is sent there, as
	// for SpawnOptions.
	ConsoleSocket string
	// Signals (Exec) are forwarded to the process.
	Signals <-chan os.Signal `json:"-"`
	// WindowSizes (Exec, TTY) are sent to the process's terminal.
	WindowSizes <-chan WindowSize `json:"-"`
}

// Exec runs one more process in the running container, in the foreground,
// and returns its exit status. stdin may be nil (no stdin).
func (h *Handle) Exec(ctx context.Context, p ExecOptions, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	return h.exec(ctx, p, stdin, stdout, stderr, nil)
}

func (h *Handle) exec(ctx context.Context, p ExecOptions, stdin io.Reader, stdout, stderr io.Writer, started func(error)) (int, error) {
	if started == nil {
		started = func(error) {}
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	spec := &guestproto.ExecSpec{ID: 1, Args: p.Args, Env: p.Env, Cwd: p.Cwd, User: p.User, TTY: p.TTY, Stdin: stdin != nil}
	if err := spec.Validate(); err != nil {
		started(err)
		return -1, err
	}
	// The monitor writes to descriptors: pass files as they are, others
	// through pipes copied here.
	var files, mine []*os.File
	var copies []chan struct{}
	defer func() { closeFiles(mine) }()
	if stdin != nil {
		if f, ok := stdin.(*os.File); ok {
			files = append(files, f)
		} else {
			r, w, err := os.Pipe()
			if err != nil {
				return -1, err
			}
			mine = append(mine, r)
			files = append(files, r)
			go func() { io.Copy(w, stdin); w.Close() }()
		}
	}
	for _, out := range []io.Writer{stdout, stderr} {
		if f, ok := out.(*os.File); ok {
			files = append(files, f)
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return -1, err
		}
		mine = append(mine, w)
		files = append(files, w)
		done := make(chan struct{})
		copies = append(copies, done)
		go func(out io.Writer) { io.Copy(out, r); r.Close(); close(done) }(out)
	}
	c, err := h.dial(ctx)
	if err != nil {
		started(err)
		return -1, err
	}
	defer c.Close()
	if err := writeMsg(c, ctlRequest{Op: "exec", Exec: spec}, files...); err != nil {
		started(err)
		return -1, err
	}
	// Our copies of the pipe ends the monitor writes to must be closed
	// for the copies to end; the monitor closes its own at exit.
	closeFiles(mine)
	mine = nil
	var rep ctlReply
	if _, err := readMsg(c, &rep); err != nil || rep.Error != "" {
		if err == nil {
			err = errors.New(rep.Error)
		}
		err = fmt.Errorf("exec in container %s: %w", short(h.ID), err)
		started(err)
		return -1, err
	}
	started(nil)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case s, ok := <-p.Signals:
				if !ok {
					p.Signals = nil
					continue
				}
				n := syscall.SIGTERM
				if sig, ok := s.(syscall.Signal); ok {
					n = sig
				}
				writeMsg(c, ctlRequest{Op: "signal", Signal: int(n)})
			case ws, ok := <-p.WindowSizes:
				if !ok {
					p.WindowSizes = nil
					continue
				}
				writeMsg(c, ctlRequest{Op: "window", Window: &guestproto.Window{Rows: ws.Rows, Cols: ws.Cols}})
			}
		}
	}()
	type result struct {
		rep ctlReply
		err error
	}
	rc := make(chan result, 1)
	go func() {
		var rep ctlReply
		_, err := readMsg(c, &rep)
		rc <- result{rep, err}
	}()
	var r result
	select {
	case r = <-rc:
	case <-ctx.Done():
		return -1, ctx.Err()
	}
	for _, d := range copies {
		<-d
	}
	if r.err != nil {
		return -1, fmt.Errorf("exec in container %s: the monitor hung up: %w", short(h.ID), r.err)
	}
	if r.rep.Exit == nil || *r.rep.Exit < 0 {
		msg := r.rep.Error
		if msg == "" {
			msg = "no exit status"
		}
		return -1, fmt.Errorf("exec in container %s: %s", short(h.ID), msg)
	}
	if r.rep.Error != "" {
		// The process could not be started (126, 127): say why, as a
		// shell would.
		fmt.Fprintf(stderr, "%s\n", r.rep.Error)
	}
	return *r.rep.Exit, nil
}

// SpawnExec starts one more process in the running container as a
// long-lived process of its own (OCI exec --detach), which exits with the
// process's exit status; it returns that PID once the process started.
func (h *Handle) SpawnExec(ctx context.Context, p ExecOptions) (int, error) {
	if p.ConsoleSocket != "" {
		p.TTY = true
		p.Stdin = true
	} else {
		p.Stdin = p.Stdio[0] != nil
	}
	cfg := monitorConfig{Mode: "exec", RuntimeDir: h.RuntimeDir, ID: h.ID, Exec: &p}
	return startMonitor(ctx, cfg, p.Stdio, nil)
}

func monitorExec(cfg *monitorConfig, report func(error)) int {
	h, err := Load(cfg.RuntimeDir, cfg.ID)
	if err != nil {
		report(err)
		return 125
	}
	p := *cfg.Exec
	var stdin io.Reader
	var stdout, stderr io.Writer = os.Stdout, os.Stderr
	if p.Stdin {
		stdin = os.Stdin
	}
	if p.ConsoleSocket != "" {
		pty, err := consolePty(p.ConsoleSocket)
		if err != nil {
			report(err)
			return 125
		}
		defer pty.Close()
		stdin, stdout, stderr = pty, pty, pty
		p.WindowSizes = watchWindow(pty)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	p.Signals = sigs
	code, err := h.exec(context.Background(), p, stdin, stdout, stderr, report)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vxn: %v\n", err)
		return 125
	}
	return code
}
