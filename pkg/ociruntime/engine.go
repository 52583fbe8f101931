package ociruntime

import (
	"context"
	"os"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/toolstack"
)

// Engine is the container lifecycle the runtime drives: pkg/container's
// monitor API (ContainerEngine), or a stand-in in unit tests.
type Engine interface {
	// Spawn starts a container's monitor, waits until the guest holds the
	// entrypoint (status "created") and returns the monitor's PID.
	Spawn(ctx context.Context, r SpawnRequest) (pid int, err error)
	// Load finds a container; the error wraps fs.ErrNotExist when there is
	// none.
	Load(root, id string) (Container, error)
}

// SpawnRequest is one container to create.
type SpawnRequest struct {
	// ID is the container id, Root the runtime's state directory (--root),
	// Bundle the OCI bundle.
	ID, Root, Bundle string
	// Kernel, Initramfs and ImageDisk are the guest's kernel, vxn
	// initramfs and read-only root disk.
	Kernel, Initramfs, ImageDisk string
	// MemoryMB and VCPUs size the guest; Type is "pv" or "pvh"; Bridge,
	// when set, gives it a vif on that bridge.
	MemoryMB, VCPUs int
	Type, Bridge    string
	// Args, Env, Cwd, User, Hostname and TTY are the process.
	Args, Env           []string
	Cwd, User, Hostname string
	TTY                 bool
	// Stdio are the container's stdin, stdout and stderr (nil: /dev/null),
	// inherited by the monitor.
	Stdio [3]*os.File
	// ConsoleSocket receives the pty master of a TTY container.
	ConsoleSocket string
	// Annotations are recorded in the state.
	Annotations map[string]string
	// Toolstack is the toolstack the container's monitor uses (the vxn
	// config's xl: and $VXN_TOOLSTACK).
	Toolstack toolstack.Selection
}

// ExecRequest is one more process in a running container.
type ExecRequest struct {
	// Args, Env, Cwd, User and TTY are the process.
	Args, Env []string
	Cwd, User string
	TTY       bool
	// Stdio are its stdin, stdout and stderr (nil: /dev/null).
	Stdio [3]*os.File
	// ConsoleSocket receives the pty master when TTY.
	ConsoleSocket string
}

// ContainerState is what the runtime reports of a container.
type ContainerState struct {
	// ID, Bundle and Annotations are as created.
	ID, Bundle  string
	Annotations map[string]string
	// Status is "creating", "created", "running", "paused" or "stopped".
	Status string
	// PID is the monitor's PID (0 once stopped).
	PID int
	// Created is when the container was created.
	Created time.Time
	// Started reports that the process was started (it may have exited
	// since).
	Started bool
}

// Container is one existing container.
type Container interface {
	// State is the live state ("stopped" once the monitor is gone).
	State() ContainerState
	// Start runs the held entrypoint (created -> running).
	Start(ctx context.Context) error
	// Kill signals the entrypoint (all: every process of the container).
	Kill(ctx context.Context, sig syscall.Signal, all bool) error
	// Pause and Resume pause and unpause the guest.
	Pause(ctx context.Context) error
	Resume(ctx context.Context) error
	// Delete destroys the guest (a live one needs force) and removes the
	// state.
	Delete(ctx context.Context, force bool) error
	// SpawnExec starts a process whose monitor PID it returns; the monitor
	// exits with the process's status.
	SpawnExec(ctx context.Context, r ExecRequest) (pid int, err error)
	// Exec runs a process in the foreground on r.Stdio and returns its
	// exit status.
	Exec(ctx context.Context, r ExecRequest) (int, error)
}
