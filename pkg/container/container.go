// Package container runs OCI containers as Xen guests on Dom0: the
// lifecycle behind `vxn run`, the other vxn verbs and the OCI runtime.
//
// # Monitors
//
// Every container has one monitor, the only code that talks to the
// toolstack about it. The monitor creates the container's state directory
// under a runtime directory (DefaultRuntimeDir; 0700, locked with flock
// while the monitor lives), renders the xl config (RenderConfig), checks
// Xen's free memory (CheckMemory) while it prepares, creates the domain
// paused, attaches its console, unpauses it, waits for vxn-init's Ready
// frame, sends the job Spec over the console (at once, or on Handle.Start
// with SpawnOptions.Hold), then streams the container's stdout and stderr
// while it runs, forwards stdin, signals and window sizes, runs exec
// sessions, and records the exact exit status. Whatever happens (success,
// failure, cancellation, a second Ctrl-C), the domain is destroyed and the
// state directory removed (or, with Keep, marked stopped) before the
// monitor ends; if a monitor is killed, Reap, run at the start of the next
// vxn, cleans up.
//
// A monitor runs either in the caller's process (Run: foreground `vxn
// run`, whose output goes straight to the caller's writers) or in a
// process of its own (Spawn: `vxn run -d` and the OCI runtime; a re-exec of
// the binary with MonitorArg that outlives its caller). Both serve the same
// control socket (RuntimeDir/<ID>/ctl.sock), so Handle operations — Start,
// Kill, Pause, Resume, Exec, Delete — work on foreground and detached
// containers alike; foreground run keeps the container in-process because
// that is the fastest path and keeps its output unbuffered.
//
// # Exit status
//
// The exit status comes in the guest's Exit frame. The domain is created
// with on_poweroff="preserve", and vxn-init writes the status to the
// xenstore key ExitKey just before the frame; when the frame is lost (the
// console ended early, or noise destroyed it), the monitor reads the key
// before it destroys the domain.
//
// Environment values (which may be secrets) only travel in the console
// stream and in memory (the options pipe of a spawned monitor): not on the
// kernel command line, not in the xl config, not on the argv of any Dom0
// process, not in any file (state.json lists the names only).
//
// Everything here talks to Xen through toolstack.Toolstack, so the whole
// lifecycle is tested without Xen with package faketoolstack's Fake
// (VXN_TOOLSTACK=fake selects it in a spawned monitor of a test binary).
package container

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

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
	// Network, with Bridge, gives the guest a static address leased from
	// this pool (Spec.Net), released when the container stops.
	Network *NetworkPool

	// Args, Env, Cwd and User are the process (oci.Resolve's result).
	Args []string
	Env  []string
	Cwd  string
	User string
	// Hostname defaults to the short id, as docker does.
	Hostname string
	// ResolvConf, when set, becomes the container's /etc/resolv.conf.
	ResolvConf string

	// TTY runs the entrypoint on a terminal in the guest (-t); its output
	// then comes as stdout only.
	TTY bool
	// Keep keeps the stopped container's state (status, exit code, logs)
	// until Delete, as docker run without --rm does; Run removes it
	// otherwise.
	Keep bool

	// Stdin, when non-nil, is forwarded to the container (-i); otherwise
	// the container's stdin is /dev/null.
	Stdin io.Reader `json:"-"`
	// Stdout and Stderr receive the container's streams (nil: discarded).
	Stdout io.Writer `json:"-"`
	Stderr io.Writer `json:"-"`
	// Log receives vxn-init's diagnostic lines (nil: discarded).
	Log io.Writer `json:"-"`
	// Signals are interrupts for the container: the first is forwarded to
	// the entrypoint as a Signal frame, the second destroys the guest.
	Signals <-chan os.Signal `json:"-"`
	// WindowSizes delivers the terminal size of a TTY container (the
	// first value at once, then changes).
	WindowSizes <-chan WindowSize `json:"-"`
	// HostInfo, when set, is used by the memory check instead of asking
	// the toolstack: vxn run starts `xl info` early, in parallel with the
	// image lookup (Spawn ignores it).
	HostInfo func(ctx context.Context) (toolstack.Info, error) `json:"-"`
	// ReadyTimeout bounds the wait for the guest's Ready frame (boot);
	// default 5 minutes (emulated hosts are slow).
	ReadyTimeout time.Duration
}

// WindowSize is a terminal size.
type WindowSize struct {
	Rows, Cols uint16
}

// Timings break a run down.
type Timings struct {
	// Prepare is state directory, config, scratch disk and memory check.
	Prepare time.Duration
	// Create is `xl create -p`.
	Create time.Duration
	// Attach is attaching the console and unpausing (xl console, xl
	// unpause).
	Attach time.Duration
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
	// ExitFromXenstore reports that the Exit frame was lost and the exit
	// status was read from the guest's xenstore key instead.
	ExitFromXenstore bool
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
