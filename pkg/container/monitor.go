package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/toolstack"
)

// IgnoreExitFrameEnv, set to 1 in a monitor's environment, makes it ignore
// the guest's Exit frame, so that the exit status comes from the xenstore
// fallback (the runtime suite proves that path with it).
const IgnoreExitFrameEnv = "VXN_IGNORE_EXIT_FRAME"

// ExitKey is the guest's xenstore key (relative to /local/domain/<domid>)
// holding the decimal exit status, written by vxn-init just before the Exit
// frame: the fallback when the frame is lost.
const ExitKey = "data/vxn-exit"

// errIgnoredExit stops the demuxer at an Exit frame under IgnoreExitFrameEnv.
var errIgnoredExit = errors.New("exit frame ignored (" + IgnoreExitFrameEnv + ")")

// xenstorePoll is how often a running container's xenstore exit key is
// read, in case the Exit frame is lost while the console stays open.
var xenstorePoll = 2 * time.Second

// monitor runs one container: the domain, its console session, the control
// socket, and the state file. Run uses it in-process; MonitorMain in a
// process of its own (Spawn).
type monitor struct {
	ts     toolstack.Toolstack
	o      Options
	sd     *stateDir
	hold   bool
	notify func(error) // called once: Ready (created or running) or failure
	logw   *jsonLog
	res    *Result

	mu       sync.Mutex
	notified bool
	w        *guestproto.Writer
	spec     *guestproto.Spec
	killed   int // signal that destroyed the domain, 0 when none
	execs    map[uint32]*execSession
	nextExec uint32
	conns    sync.WaitGroup // control connections being served
	lease    netip.Addr     // --network bridge address, released at the end
	startc   chan chan error
	killc    chan killRequest
	exited   bool
}

type killRequest struct {
	sig   syscall.Signal
	all   bool
	reply chan error
}

// execSession is one exec process as the monitor sees it.
type execSession struct {
	id             uint32
	stdout, stderr io.Writer
	exitc          chan guestproto.ExecExit
}

// Run runs the container described by o to completion on ts and returns its
// exit status. An error means vxn failed (the caller exits 125, like docker),
// except ErrKilled, which comes with exit status 137. Cleanup is complete
// when Run returns, whatever happened; cancelling ctx destroys the guest.
// While it runs, the container has a control socket like a spawned one, so
// Load, Exec, Kill and the other Handle operations work on it.
func Run(ctx context.Context, ts toolstack.Toolstack, o Options) (*Result, error) {
	o.defaults()
	res := &Result{ID: o.ID, Domain: DomainName(o.ID), ExitCode: -1}
	if err := o.check(); err != nil {
		return res, err
	}
	sd, err := newStateDir(o.RuntimeDir, initialState(&o, res.Domain, os.Getpid()))
	if err != nil {
		return res, err
	}
	m := &monitor{ts: ts, o: o, sd: sd, res: res}
	if o.Keep {
		// Kept for vxn logs after it stopped, as docker keeps it.
		p := filepath.Join(sd.path, LogFile)
		if m.logw, err = openJSONLog(p); err != nil {
			sd.remove()
			return res, err
		}
		sd.st.LogPath = p
		sd.save()
	}
	err = m.run(ctx)
	return res, err
}

// initialState is the state written before anything else.
func initialState(o *Options, domain string, pid int) State {
	names := make([]string, 0, len(o.Env))
	for _, e := range o.Env {
		k, _, _ := strings.Cut(e, "=")
		names = append(names, k)
	}
	return State{ID: o.ID, Name: o.Name, Domain: domain, MonitorPID: pid, Image: o.Image, Created: time.Now().UTC(),
		Status: StatusCreating, Args: o.Args, Cwd: o.Cwd, User: o.User, EnvNames: names,
		MemoryMB: o.MemoryMB, VCPUs: o.VCPUs, TTY: o.TTY, Keep: o.Keep}
}

// setStatus records a status change in the state file.
func (m *monitor) setStatusLocked(st Status) {
	m.sd.st.Status = st
	now := time.Now().UTC()
	switch st {
	case StatusRunning:
		if m.sd.st.Started == nil {
			m.sd.st.Started = &now
		}
	case StatusStopped:
		m.sd.st.Finished = &now
	}
	m.sd.save()
}

func (m *monitor) notifyOnce(err error) {
	if m.notified {
		return
	}
	m.notified = true
	if m.notify != nil {
		m.notify(err)
	}
}

func (m *monitor) run(ctx context.Context) (err error) {
	o := &m.o
	res, sd := m.res, m.sd
	m.execs = map[uint32]*execSession{}
	m.startc = make(chan chan error)
	m.killc = make(chan killRequest)
	t0 := time.Now()
	var con io.ReadWriteCloser
	var ln *net.UnixListener
	defer func() {
		tc := time.Now()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		var errs []error
		if sd.st.DomID != 0 {
			if derr := m.ts.Destroy(cctx, sd.st.DomID); derr != nil && !errors.Is(derr, toolstack.ErrNoDomain) {
				errs = append(errs, fmt.Errorf("destroy domain %s (%d): %w", res.Domain, sd.st.DomID, derr))
			}
		}
		if con != nil {
			con.Close()
		}
		// After the domain is gone: nobody else may use the address
		// while it still does.
		releaseLease(o.RuntimeDir, m.lease)
		m.mu.Lock()
		m.exited = true
		for id, s := range m.execs {
			s.exitc <- guestproto.ExecExit{ID: id, Status: -1, Error: "the container stopped"}
			delete(m.execs, id)
		}
		if res.ExitCode >= 0 {
			c := res.ExitCode
			sd.st.ExitCode = &c
		}
		if err != nil && !errors.Is(err, ErrKilled) {
			sd.st.Error = err.Error()
		}
		m.setStatusLocked(StatusStopped)
		m.notifyOnce(err)
		m.mu.Unlock()
		if ln != nil {
			ln.Close()
			// Let the replies in flight (a kill that ended the
			// container) reach their clients before the monitor exits.
			waited := make(chan struct{})
			go func() { m.conns.Wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(5 * time.Second):
			}
		}
		if m.logw != nil {
			m.logw.Close()
		}
		if len(errs) == 0 && !o.Keep {
			// Keep the state when the domain could not be destroyed, so
			// that Reap retries.
			if rerr := sd.remove(); rerr != nil {
				errs = append(errs, fmt.Errorf("remove container state: %w", rerr))
			}
		} else {
			sd.lock.Close()
		}
		res.Timings.Cleanup = time.Since(tc)
		if len(errs) > 0 {
			err = errors.Join(append([]error{err}, errs...)...)
		}
	}()

	// The memory check (`xl info`, the slow part of preparing) runs while
	// the disk and config are prepared.
	type infoResult struct {
		info toolstack.Info
		err  error
	}
	infoc := make(chan infoResult, 1)
	go func() {
		get := m.ts.Info
		if o.HostInfo != nil {
			get = o.HostInfo
		}
		info, err := get(ctx)
		infoc <- infoResult{info, err}
	}()
	cfgPath, perr := m.prepare(ctx)
	ir := <-infoc
	if perr != nil {
		return perr
	}
	if ir.err != nil {
		return fmt.Errorf("reading Xen's free memory: %w", ir.err)
	}
	if err := CheckMemory(ir.info, o.MemoryMB); err != nil {
		return err
	}
	spec := &guestproto.Spec{Args: o.Args, Env: o.Env, Cwd: o.Cwd, User: o.User, Hostname: o.Hostname,
		ResolvConf: o.ResolvConf, Stdin: o.Stdin != nil, TTY: o.TTY, RootDev: "xvda", RootFSType: "ext4"}
	if o.ScratchMB > 0 {
		spec.ScratchDev = "xvdb"
	}
	if o.Bridge != "" && o.Network != nil {
		a, err := acquireLease(o.RuntimeDir, o.ID, o.Network)
		if err != nil {
			return err
		}
		m.lease = a
		spec.Net = guestNet(o.Network, a)
		m.mu.Lock()
		sd.st.Address = a.String()
		sd.save()
		m.mu.Unlock()
	}
	// Everything that could keep the job from reaching the guest fails
	// here, before the domain exists (OCI create, not start).
	if _, err := spec.Marshal(); err != nil {
		return err
	}
	m.spec = spec
	ln, err = listenCtl(filepath.Join(sd.path, ctlSocket))
	if err != nil {
		return err
	}
	go m.serveCtl(ln)
	res.Timings.Prepare = time.Since(t0)

	t1 := time.Now()
	domid, err := m.ts.Create(ctx, cfgPath, true)
	if err != nil && strings.Contains(err.Error(), "because of timeout") && ctx.Err() == nil {
		// A hotplug script (block add) timed out: on a loaded host
		// libxl's 10 s limit is tight. The half-made domain is gone or
		// goes now; try once more.
		if id, lerr := m.ts.DomID(context.WithoutCancel(ctx), res.Domain); lerr == nil {
			m.ts.Destroy(context.WithoutCancel(ctx), id)
		}
		domid, err = m.ts.Create(ctx, cfgPath, true)
	}
	if err != nil {
		// A domain may exist even though create failed half-way.
		if id, lerr := m.ts.DomID(context.WithoutCancel(ctx), res.Domain); lerr == nil {
			sd.st.DomID = id
		}
		return fmt.Errorf("creating the guest: %w", err)
	}
	m.mu.Lock()
	sd.st.DomID, res.DomID = domid, domid
	err = sd.save()
	m.mu.Unlock()
	if err != nil {
		return err
	}
	res.Timings.Create = time.Since(t1)
	ta := time.Now()
	con, err = m.ts.Console(ctx, domid)
	if err != nil {
		return fmt.Errorf("attaching the guest console: %w", err)
	}
	if err := m.ts.Unpause(ctx, domid); err != nil {
		return fmt.Errorf("starting the guest: %w", err)
	}
	res.Timings.Attach = time.Since(ta)
	code, err := m.session(ctx, domid, con, time.Now())
	res.ExitCode = code
	return err
}

// prepare makes the scratch disk and writes the xl config; it returns the
// config's path.
func (m *monitor) prepare(ctx context.Context) (string, error) {
	o, sd := &m.o, m.sd
	scratch := ""
	if o.ScratchMB > 0 {
		scratch = filepath.Join(sd.path, "scratch.ext4")
		empty := filepath.Join(sd.path, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return "", err
		}
		err := ext4.FromDir(ctx, empty, scratch, ext4.Options{SizeBytes: int64(o.ScratchMB) << 20, Label: "vxn-scratch"})
		os.Remove(empty)
		if err != nil {
			return "", fmt.Errorf("scratch disk: %w", err)
		}
		os.Chmod(scratch, 0o600)
	}
	cfg, err := RenderConfig(DomainConfig{Name: m.res.Domain, Type: o.Type, MemoryMB: o.MemoryMB, VCPUs: o.VCPUs,
		Kernel: o.Kernel, Initramfs: o.Initramfs, ImageDisk: o.ImageDisk, ScratchDisk: scratch, Bridge: o.Bridge})
	if err != nil {
		return "", err
	}
	cfgPath := filepath.Join(sd.path, "domain.cfg")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return "", err
	}
	return cfgPath, nil
}

// startLocked sends the job spec: the entrypoint starts.
func (m *monitor) startLocked() error {
	// Running before the spec goes out: the entrypoint's first output
	// (and a client reacting to it) may come before SendSpec returns.
	prev := m.sd.st.Status
	m.setStatusLocked(StatusRunning)
	if err := m.w.SendSpec(m.spec); err != nil {
		m.sd.st.Status = prev
		return fmt.Errorf("sending the job to the guest: %w", err)
	}
	if m.o.Stdin != nil {
		w, in := m.w, m.o.Stdin
		go func() {
			io.Copy(w.Stream(guestproto.TypeStdin), in)
			w.WriteFrame(guestproto.TypeStdinClose, nil)
		}()
	}
	if m.o.WindowSizes != nil {
		w, c := m.w, m.o.WindowSizes
		go func() {
			for ws := range c {
				if w.WriteFrame(guestproto.TypeWindow, guestproto.FormatWindow(guestproto.Window{Rows: ws.Rows, Cols: ws.Cols})) != nil {
					return
				}
			}
		}()
	}
	return nil
}

// onFrame routes the frames the demuxer does not handle itself.
func (m *monitor) onFrame(f guestproto.Frame, readyc chan struct{}, readyOnce *sync.Once) error {
	switch f.Type {
	case guestproto.TypeReady:
		readyOnce.Do(func() { close(readyc) })
	case guestproto.TypeExit:
		if os.Getenv(IgnoreExitFrameEnv) == "1" {
			return errIgnoredExit
		}
	case guestproto.TypeExecData:
		d, err := guestproto.ParseExecData(f.Payload)
		if err != nil {
			return nil
		}
		m.mu.Lock()
		s := m.execs[d.ID]
		m.mu.Unlock()
		if s == nil {
			return nil
		}
		switch d.Stream {
		case guestproto.StreamStdout:
			s.stdout.Write(d.Data)
		case guestproto.StreamStderr:
			s.stderr.Write(d.Data)
		}
	case guestproto.TypeExecExit:
		e, err := guestproto.ParseExecExit(f.Payload)
		if err != nil {
			return nil
		}
		m.mu.Lock()
		s := m.execs[e.ID]
		delete(m.execs, e.ID)
		m.mu.Unlock()
		if s != nil {
			s.exitc <- e
		}
	}
	return nil
}

// session drives the console protocol until the exit status.
func (m *monitor) session(ctx context.Context, domid int, con io.ReadWriter, t2 time.Time) (int, error) {
	o, res := &m.o, m.res
	m.mu.Lock()
	m.w = guestproto.NewWriter(con)
	m.mu.Unlock()
	readyc := make(chan struct{})
	var readyOnce sync.Once
	stdout, stderr := o.Stdout, o.Stderr
	if m.logw != nil {
		stdout = io.MultiWriter(stdout, m.logw.Stream("stdout"))
		stderr = io.MultiWriter(stderr, m.logw.Stream("stderr"))
	}
	d := &guestproto.Demuxer{Stdout: stdout, Stderr: stderr, Log: o.Log,
		OnFrame: func(f guestproto.Frame) error { return m.onFrame(f, readyc, &readyOnce) }}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := d.Run(runCtx, con)
		done <- result{code, err}
	}()
	var tReady time.Time
	bootTimer := time.NewTimer(o.ReadyTimeout)
	defer bootTimer.Stop()
	var poll <-chan time.Time
	interrupts := 0
	isReady := func() bool { return !tReady.IsZero() }
	destroy := func(sig syscall.Signal) error {
		m.mu.Lock()
		m.killed = int(sig)
		m.mu.Unlock()
		if err := m.ts.Destroy(context.WithoutCancel(ctx), domid); err != nil && !errors.Is(err, toolstack.ErrNoDomain) {
			return fmt.Errorf("destroying the guest: %w", err)
		}
		return nil
	}
	signal := func(sig syscall.Signal, all bool) error {
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.sd.st.Status != StatusRunning && m.sd.st.Status != StatusPaused {
			return errNotRunning
		}
		if all {
			for id := range m.execs {
				m.w.WriteFrame(guestproto.TypeExecSignal, guestproto.FormatSignal(id, int(sig)))
			}
		}
		return m.w.WriteFrame(guestproto.TypeSignal, []byte(strconv.Itoa(int(sig))))
	}
	var xsCode = -1
	var xsGrace <-chan time.Time
	for {
		select {
		case r := <-done:
			return m.finish(ctx, domid, d, r.code, r.err, tReady)
		case <-readyc:
			readyc = nil
			tReady = time.Now()
			res.Timings.Boot = tReady.Sub(t2)
			m.mu.Lock()
			if m.hold {
				m.setStatusLocked(StatusCreated)
				m.notifyOnce(nil)
				m.mu.Unlock()
				continue
			}
			err := m.startLocked()
			m.notifyOnce(err)
			m.mu.Unlock()
			if err != nil {
				return -1, err
			}
			poll = time.Tick(xenstorePoll)
		case reply := <-m.startc:
			m.mu.Lock()
			var err error
			if m.sd.st.Status != StatusCreated {
				err = fmt.Errorf("container %s is %s, not created", short(m.o.ID), m.sd.st.Status)
			} else {
				err = m.startLocked()
			}
			m.mu.Unlock()
			reply <- err
			if err == nil {
				poll = time.Tick(xenstorePoll)
			}
		case k := <-m.killc:
			m.mu.Lock()
			st := m.sd.st.Status
			m.mu.Unlock()
			if k.sig == syscall.SIGKILL || st == StatusCreated || st == StatusCreating {
				k.reply <- destroy(k.sig)
				continue
			}
			k.reply <- signal(k.sig, k.all)
		case sig := <-o.Signals:
			interrupts++
			if interrupts == 1 && isReady() {
				n := syscall.SIGTERM
				if s, ok := sig.(syscall.Signal); ok {
					n = s
				}
				if signal(n, false) == nil {
					continue
				}
			}
			// Second interrupt, or one before the container started.
			if err := destroy(syscall.SIGKILL); err != nil {
				return -1, err
			}
		case <-poll:
			if xsGrace != nil {
				continue
			}
			if c, ok := m.readExitKey(ctx, domid); ok {
				// The guest wrote its exit status: give the Exit frame
				// a moment to arrive with the last output.
				xsCode = c
				xsGrace = time.After(3 * time.Second)
			}
		case <-xsGrace:
			cancel()
			<-done
			res.ExitFromXenstore = true
			res.Stats = d.Stats
			res.Timings.Run = time.Since(tReady)
			return xsCode, nil
		case <-bootTimer.C:
			if !isReady() {
				// Destroying the domain ends the console, so Run returns
				// normally and d.Tail is safe to read.
				m.ts.Destroy(context.WithoutCancel(ctx), domid)
				select {
				case <-done:
				case <-time.After(30 * time.Second):
					cancel()
					<-done
					return -1, fmt.Errorf("the guest did not start within %v (no Ready from vxn-init)", o.ReadyTimeout)
				}
				return -1, fmt.Errorf("the guest did not start within %v (no Ready from vxn-init); last console output:\n%s", o.ReadyTimeout, tail(d.Tail))
			}
		}
	}
}

// readExitKey reads the guest's xenstore exit status.
func (m *monitor) readExitKey(ctx context.Context, domid int) (int, bool) {
	v, err := m.ts.XenstoreRead(ctx, fmt.Sprintf("/local/domain/%d/%s", domid, ExitKey))
	if err != nil {
		return -1, false
	}
	c, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || c < 0 || c > 255 {
		return -1, false
	}
	return c, true
}

// finish turns the demuxer's result into the exit status.
func (m *monitor) finish(ctx context.Context, domid int, d *guestproto.Demuxer, code int, err error, tReady time.Time) (int, error) {
	res := m.res
	if !tReady.IsZero() {
		res.Timings.Run = time.Since(tReady)
	}
	if err != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return -1, err
	}
	res.Stats = d.Stats
	if d.Started != nil {
		res.Timings.InitToExec = time.Duration(d.Started.InitMS) * time.Millisecond
	}
	m.mu.Lock()
	killed := m.killed
	m.mu.Unlock()
	if killed != 0 {
		if killed == int(syscall.SIGKILL) {
			return 128 + killed, ErrKilled
		}
		return 128 + killed, nil
	}
	if err != nil && errors.Is(err, guestproto.ErrOutputLost) && code >= 0 {
		return code, nil
	}
	if err != nil && (errors.Is(err, guestproto.ErrNoExit) || errors.Is(err, errIgnoredExit)) {
		// The Exit frame is missing: the guest wrote the status to
		// xenstore just before it (the domain is preserved until
		// destroyed, so the key is still there).
		if c, ok := m.readExitKey(context.WithoutCancel(ctx), domid); ok {
			res.ExitFromXenstore = true
			return c, nil
		}
	}
	if err != nil {
		if errors.Is(err, guestproto.ErrNoExit) {
			return -1, fmt.Errorf("the guest stopped without reporting an exit status (%w); last console output:\n%s", guestproto.ErrNoExit, tail(d.Tail))
		}
		return -1, err
	}
	return code, nil
}

// tail formats the last console text for an error message.
func tail(b []byte) string {
	if len(b) > 2048 {
		b = b[len(b)-2048:]
	}
	if len(b) == 0 {
		return "(none)"
	}
	return string(b)
}
