package ociruntime

import (
	"context"
	"io"
	"os"
	"syscall"

	"github.com/vxn-dev/vxn/pkg/container"
)

// ContainerEngine is the Engine of pkg/container: every container has a
// monitor process (a re-exec of the running binary with
// container.MonitorArg, so main must dispatch it first) that owns the guest
// and answers on a control socket; the monitor uses the request's toolstack
// (SpawnRequest.Toolstack), told over its options pipe.
type ContainerEngine struct{}

// Spawn implements Engine.
func (ContainerEngine) Spawn(ctx context.Context, r SpawnRequest) (int, error) {
	return container.Spawn(ctx, container.SpawnOptions{
		Options: container.Options{
			ID: r.ID, RuntimeDir: r.Root, Kernel: r.Kernel, Initramfs: r.Initramfs, ImageDisk: r.ImageDisk,
			MemoryMB: r.MemoryMB, VCPUs: r.VCPUs, Type: r.Type, Bridge: r.Bridge,
			Args: r.Args, Env: r.Env, Cwd: r.Cwd, User: r.User, Hostname: r.Hostname, TTY: r.TTY,
		},
		Stdio: r.Stdio, ConsoleSocket: r.ConsoleSocket, Hold: true,
		Bundle: r.Bundle, Annotations: r.Annotations, Toolstack: r.Toolstack,
	})
}

// Load implements Engine.
func (ContainerEngine) Load(root, id string) (Container, error) {
	h, err := container.Load(root, id)
	if err != nil {
		return nil, err
	}
	return handle{h}, nil
}

// handle adapts *container.Handle to Container.
type handle struct{ h *container.Handle }

func (c handle) State() ContainerState {
	st := c.h.State()
	return ContainerState{ID: st.ID, Bundle: st.Bundle, Annotations: st.Annotations, Status: string(st.Status),
		PID: st.MonitorPID, Created: st.Created, Started: st.Started != nil}
}

func (c handle) Start(ctx context.Context) error { return c.h.Start(ctx) }
func (c handle) Kill(ctx context.Context, sig syscall.Signal, all bool) error {
	return c.h.Kill(ctx, sig, all)
}
func (c handle) Pause(ctx context.Context) error  { return c.h.Pause(ctx) }
func (c handle) Resume(ctx context.Context) error { return c.h.Resume(ctx) }
func (c handle) Delete(ctx context.Context, force bool) error {
	return c.h.Delete(ctx, force)
}

func execOptions(r ExecRequest) container.ExecOptions {
	return container.ExecOptions{Args: r.Args, Env: r.Env, Cwd: r.Cwd, User: r.User, TTY: r.TTY,
		Stdio: r.Stdio, ConsoleSocket: r.ConsoleSocket}
}

func (c handle) SpawnExec(ctx context.Context, r ExecRequest) (int, error) {
	return c.h.SpawnExec(ctx, execOptions(r))
}

func (c handle) Exec(ctx context.Context, r ExecRequest) (int, error) {
	o := execOptions(r)
	o.Stdio = [3]*os.File{}
	var stdin io.Reader
	if r.Stdio[0] != nil {
		stdin, o.Stdin = r.Stdio[0], true
	}
	var out, errw io.Writer = io.Discard, io.Discard
	if r.Stdio[1] != nil {
		out = r.Stdio[1]
	}
	if r.Stdio[2] != nil {
		errw = r.Stdio[2]
	}
	return c.h.Exec(ctx, o, stdin, out, errw)
}
