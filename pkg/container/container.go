// Package container runs one OCI container as a Xen guest on Dom0: the
// lifecycle behind `vxn run`.
//
// Run creates the container's state directory under a runtime directory
// (DefaultRuntimeDir; 0700, locked with flock while vxn runs it), renders the
// xl config (RenderConfig), checks Xen's free memory (CheckMemory), creates
// the domain paused, attaches its console, unpauses it, waits for vxn-init's
// Ready frame, sends the job Spec over the console, then streams the
// container's stdout and stderr to the caller while it runs, forwards stdin
// and signals, and returns the guest's exact exit status. Whatever happens
// (success, failure, cancellation, a second Ctrl-C), the domain is destroyed
// and the state directory removed before Run returns; if vxn itself is
// killed, Reap, run at the start of the next vxn, does it.
//
// Environment values (which may be secrets) only travel in the console
// stream: not on the kernel command line, not in the xl config, not on the
// argv of any Dom0 process, not in any file.
//
// Everything here talks to Xen through toolstack.Toolstack, so the whole
// lifecycle is tested with toolstack.Fake without Xen.
package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/toolstack"
)

// ErrKilled is returned (with exit status 137) when the container was
// destroyed because of a second interrupt.
var ErrKilled = errors.New("container destroyed after a second interrupt")

// Options describe one container run.
type Options struct {
	// ID is the container id (64 hex digits); generated when empty.
	ID string
	// Name is --name (unique among running containers), optional.
	Name string
	// Image is the image reference, recorded in the state for humans.
	Image string
	// RuntimeDir holds the state directories; "" is DefaultRuntimeDir.
	RuntimeDir string

	// Kernel and Initramfs are the guest kernel and vxn initramfs.
	Kernel, Initramfs string
	// ImageDisk is the image's read-only guest disk (imagestore.Disk).
	ImageDisk string
	// ScratchMB, when positive, gives the writable layer an ext4 disk of
	// that size (created in the state directory, deleted afterwards);
	// otherwise it is a tmpfs in guest memory.
	ScratchMB int
	// MemoryMB and VCPUs size the guest (defaults DefaultMemoryMB,
	// DefaultVCPUs).
	MemoryMB, VCPUs int
	// Type is the guest type, "pv" (default) or "pvh".
	Type string
	// Bridge, when set, gives the guest a vif on that bridge.
	Bridge string

	// Args, Env, Cwd and User are the process (oci.Resolve's result).
	Args []string
	Env  []string
	Cwd  string
	User string
	// Hostname defaults to the short id, as docker does.
	Hostname string
	// ResolvConf, when set, becomes the container's /etc/resolv.conf.
	ResolvConf string

	// Stdin, when non-nil, is forwarded to the container (-i); otherwise
	// the container's stdin is /dev/null.
	Stdin io.Reader
	// Stdout and Stderr receive the container's streams (nil: discarded).
	Stdout, Stderr io.Writer
	// Log receives vxn-init's diagnostic lines (nil: discarded).
	Log io.Writer
	// Signals are interrupts for the container: the first is forwarded to
	// the entrypoint as a Signal frame, the second destroys the guest.
	Signals <-chan os.Signal
	// ReadyTimeout bounds the wait for the guest's Ready frame (boot);
	// default 5 minutes (emulated hosts are slow).
	ReadyTimeout time.Duration
}

// Timings break a run down.
type Timings struct {
	// Prepare is state directory, config, scratch disk and memory check.
	Prepare time.Duration
	// Create is `xl create -p`.
	Create time.Duration
	// Boot is unpause to vxn-init's Ready (kernel boot, module loading).
	Boot time.Duration
	// InitToExec is vxn-init's own time from its start to the exec of the
	// entrypoint, as the guest measured it (not counting the spec wait).
	InitToExec time.Duration
	// Run is Ready to the Exit frame.
	Run time.Duration
	// Cleanup is destroying the domain and removing the state.
	Cleanup time.Duration
}

// Result is the outcome of Run.
type Result struct {
	// ID and Domain identify the container; DomID is its domain id.
	ID, Domain string
	DomID      int
	// ExitCode is the container's exit status (0–255, 128+n for death by
	// signal n); -1 when there is none (the error says why).
	ExitCode int
	// Timings break the run down.
	Timings Timings
	// Stats are the console protocol counters; Stats.Lost > 0 means some
	// output was lost (the exit code is still right).
	Stats guestproto.Stats
}

// NewID returns a random 64-hex-digit container id.
func NewID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (o *Options) defaults() {
	if o.ID == "" {
		o.ID = NewID()
	}
	if o.RuntimeDir == "" {
		o.RuntimeDir = DefaultRuntimeDir
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = DefaultMemoryMB
	}
	if o.VCPUs == 0 {
		o.VCPUs = DefaultVCPUs
	}
	if o.Hostname == "" {
		o.Hostname = short(o.ID)
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 5 * time.Minute
	}
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
}

func (o *Options) check() error {
	if len(o.Args) == 0 {
		return errors.New("no command to run")
	}
	if o.MemoryMB < 0 || o.VCPUs < 0 || o.ScratchMB < 0 {
		return fmt.Errorf("memory (%d MB), vcpus (%d) and scratch size (%d MB) must not be negative", o.MemoryMB, o.VCPUs, o.ScratchMB)
	}
	for _, f := range []struct{ what, path string }{{"guest kernel", o.Kernel}, {"guest initramfs", o.Initramfs}, {"image disk", o.ImageDisk}} {
		if f.path == "" {
			return fmt.Errorf("no %s given", f.what)
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s: %w", f.what, err)
		}
	}
	return nil
}

// Run runs the container described by o to completion on ts and returns its
// exit status. An error means vxn failed (the caller exits 125, like docker),
// except ErrKilled, which comes with exit status 137. Cleanup is complete
// when Run returns, whatever happened; cancelling ctx destroys the guest.
func Run(ctx context.Context, ts toolstack.Toolstack, o Options) (res *Result, err error) {
	o.defaults()
	res = &Result{ID: o.ID, Domain: DomainName(o.ID), ExitCode: -1}
	if err := o.check(); err != nil {
		return res, err
	}
	t0 := time.Now()
	sd, err := newStateDir(o.RuntimeDir, State{ID: o.ID, Name: o.Name, Domain: res.Domain, PID: os.Getpid(), Image: o.Image, Created: t0.UTC()})
	if err != nil {
		return res, err
	}
	var con io.ReadWriteCloser
	defer func() {
		tc := time.Now()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		var errs []error
		if sd.st.DomID != 0 {
			if derr := ts.Destroy(cctx, sd.st.DomID); derr != nil && !errors.Is(derr, toolstack.ErrNoDomain) {
				errs = append(errs, fmt.Errorf("destroy domain %s (%d): %w", res.Domain, sd.st.DomID, derr))
			}
		}
		if con != nil {
			con.Close()
		}
		if len(errs) == 0 {
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

	scratch := ""
	if o.ScratchMB > 0 {
		scratch = filepath.Join(sd.path, "scratch.ext4")
		empty := filepath.Join(sd.path, "empty")
		if err := os.Mkdir(empty, 0o755); err != nil {
			return res, err
		}
		err := ext4.FromDir(ctx, empty, scratch, ext4.Options{SizeBytes: int64(o.ScratchMB) << 20, Label: "vxn-scratch"})
		os.Remove(empty)
		if err != nil {
			return res, fmt.Errorf("scratch disk: %w", err)
		}
		os.Chmod(scratch, 0o600)
	}
	cfg, err := RenderConfig(DomainConfig{Name: res.Domain, Type: o.Type, MemoryMB: o.MemoryMB, VCPUs: o.VCPUs,
		Kernel: o.Kernel, Initramfs: o.Initramfs, ImageDisk: o.ImageDisk, ScratchDisk: scratch, Bridge: o.Bridge})
	if err != nil {
		return res, err
	}
	cfgPath := filepath.Join(sd.path, "domain.cfg")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return res, err
	}
	info, err := ts.Info(ctx)
	if err != nil {
		return res, fmt.Errorf("reading Xen's free memory: %w", err)
	}
	if err := CheckMemory(info, o.MemoryMB); err != nil {
		return res, err
	}
	spec := &guestproto.Spec{Args: o.Args, Env: o.Env, Cwd: o.Cwd, User: o.User, Hostname: o.Hostname,
		ResolvConf: o.ResolvConf, Stdin: o.Stdin != nil, RootDev: "xvda", RootFSType: "ext4"}
	if scratch != "" {
		spec.ScratchDev = "xvdb"
	}
	if err := spec.Validate(); err != nil {
		return res, err
	}
	res.Timings.Prepare = time.Since(t0)

	t1 := time.Now()
	domid, err := ts.Create(ctx, cfgPath, true)
	if err != nil {
		// A domain may exist even though create failed half-way.
		if id, lerr := ts.DomID(context.WithoutCancel(ctx), res.Domain); lerr == nil {
			sd.st.DomID = id
		}
		return res, fmt.Errorf("creating the guest: %w", err)
	}
	sd.st.DomID, res.DomID = domid, domid
	if err := sd.save(); err != nil {
		return res, err
	}
	res.Timings.Create = time.Since(t1)
	con, err = ts.Console(ctx, domid)
	if err != nil {
		return res, fmt.Errorf("attaching the guest console: %w", err)
	}
	if err := ts.Unpause(ctx, domid); err != nil {
		return res, fmt.Errorf("starting the guest: %w", err)
	}
	t2 := time.Now()
	code, err := session(ctx, ts, domid, con, spec, &o, res, t2)
	res.ExitCode = code
	return res, err
}

// session drives the console protocol until the exit status.
func session(ctx context.Context, ts toolstack.Toolstack, domid int, con io.ReadWriter, spec *guestproto.Spec, o *Options, res *Result, t2 time.Time) (int, error) {
	w := guestproto.NewWriter(con)
	ready := make(chan struct{})
	var tReady time.Time
	var once sync.Once
	d := &guestproto.Demuxer{Stdout: o.Stdout, Stderr: o.Stderr, Log: o.Log,
		OnFrame: func(f guestproto.Frame) error {
			if f.Type != guestproto.TypeReady {
				return nil
			}
			var err error
			once.Do(func() {
				tReady = time.Now()
				if err = w.SendSpec(spec); err != nil {
					err = fmt.Errorf("sending the job to the guest: %w", err)
					return
				}
				close(ready)
				if o.Stdin != nil {
					go func() {
						io.Copy(w.Stream(guestproto.TypeStdin), o.Stdin)
						w.WriteFrame(guestproto.TypeStdinClose, nil)
					}()
				}
			})
			return err
		}}
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
	bootTimer := time.NewTimer(o.ReadyTimeout)
	defer bootTimer.Stop()
	interrupts := 0
	killed := false
	isReady := func() bool {
		select {
		case <-ready:
			return true
		default:
			return false
		}
	}
	for {
		select {
		case r := <-done:
			if !tReady.IsZero() {
				res.Timings.Boot = tReady.Sub(t2)
				res.Timings.Run = time.Since(tReady)
			}
			if r.err != nil && (errors.Is(r.err, context.Canceled) || errors.Is(r.err, context.DeadlineExceeded)) {
				return -1, r.err
			}
			res.Stats = d.Stats
			if d.Started != nil {
				res.Timings.InitToExec = time.Duration(d.Started.InitMS) * time.Millisecond
			}
			if killed {
				return 128 + int(syscall.SIGKILL), ErrKilled
			}
			if r.err != nil && errors.Is(r.err, guestproto.ErrOutputLost) && r.code >= 0 {
				return r.code, nil
			}
			if r.err != nil {
				if errors.Is(r.err, guestproto.ErrNoExit) {
					return -1, fmt.Errorf("the guest stopped without reporting an exit status (%w); last console output:\n%s", guestproto.ErrNoExit, tail(d.Tail))
				}
				return -1, r.err
			}
			return r.code, nil
		case sig := <-o.Signals:
			interrupts++
			if interrupts == 1 && isReady() {
				n := 15
				if s, ok := sig.(syscall.Signal); ok {
					n = int(s)
				}
				w.WriteFrame(guestproto.TypeSignal, []byte(strconv.Itoa(n)))
				continue
			}
			// Second interrupt, or one before the container started.
			killed = true
			if err := ts.Destroy(context.WithoutCancel(ctx), domid); err != nil && !errors.Is(err, toolstack.ErrNoDomain) {
				return -1, fmt.Errorf("destroying the guest: %w", err)
			}
		case <-bootTimer.C:
			if !isReady() {
				// Destroying the domain ends the console, so Run returns
				// normally and d.Tail is safe to read.
				ts.Destroy(context.WithoutCancel(ctx), domid)
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
