package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// The control socket: RuntimeDir/<ID>/ctl.sock, a SOCK_SEQPACKET unix
// socket (0600 in a 0700 directory) served by the container's monitor.
// Every message is one JSON ctlRequest or ctlReply; seqpacket keeps message
// boundaries, so file descriptors (SCM_RIGHTS) travel with the request they
// belong to. One connection per operation:
//
//	start, kill, pause, resume, inspect: request, reply.
//	exec: request with the client's stdin (when Stdin), stdout and stderr
//	  descriptors; reply {} once the process was sent to the guest; then
//	  window and signal requests from the client (no reply) and, at the
//	  end, the reply with the exit status. The monitor writes the exec's
//	  output straight to the passed descriptors, so it reaches them before
//	  the exit reply.
const ctlSocket = "ctl.sock"

// errNotRunning is the refusal of a signal to a container that is not
// running.
var errNotRunning = errors.New("the container is not running")

// maxCtlMessage bounds one control message (an exec spec fits in a frame).
const maxCtlMessage = guestproto.MaxPayload + 4096

type ctlRequest struct {
	Op     string               `json:"op"`
	Signal int                  `json:"signal,omitempty"`
	All    bool                 `json:"all,omitempty"`
	Exec   *guestproto.ExecSpec `json:"exec,omitempty"`
	Window *guestproto.Window   `json:"window,omitempty"`
}

type ctlReply struct {
	Error string `json:"error,omitempty"`
	// Exit is an exec's exit status (final exec reply).
	Exit *int `json:"exit,omitempty"`
	// Env is the container's environment (inspect).
	Env []string `json:"env,omitempty"`
}

// socketPath calls f with a name for path that fits a unix socket address
// (108 bytes): path itself, or, when too long (a deep --root), the same file
// through /proc/self/fd/<directory descriptor>.
func socketPath(path string, f func(name string) error) error {
	if len(path) < 100 {
		return f(path)
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return f(fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), filepath.Base(path)))
}

func listenCtl(path string) (*net.UnixListener, error) {
	os.Remove(path)
	var ln *net.UnixListener
	err := socketPath(path, func(name string) error {
		old := syscall.Umask(0o077)
		var err error
		ln, err = net.ListenUnix("unixpacket", &net.UnixAddr{Name: name, Net: "unixpacket"})
		syscall.Umask(old)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Closing the listener must not unlink through a stale name.
	ln.SetUnlinkOnClose(false)
	os.Chmod(path, 0o600)
	return ln, nil
}

func readMsg(c *net.UnixConn, v any) ([]*os.File, error) {
	buf := make([]byte, maxCtlMessage)
	oob := make([]byte, syscall.CmsgSpace(4*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, io.EOF
	}
	var files []*os.File
	if oobn > 0 {
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err == nil {
			for _, m := range msgs {
				fds, err := syscall.ParseUnixRights(&m)
				if err != nil {
					continue
				}
				for _, fd := range fds {
					files = append(files, os.NewFile(uintptr(fd), "ctl-fd"))
				}
			}
		}
	}
	if err := json.Unmarshal(buf[:n], v); err != nil {
		closeFiles(files)
		return nil, fmt.Errorf("control message: %w", err)
	}
	return files, nil
}

func writeMsg(c *net.UnixConn, v any, files ...*os.File) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = syscall.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (m *monitor) serveCtl(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		m.conns.Add(1)
		go func() {
			defer m.conns.Done()
			m.serveConn(c)
		}()
	}
}

func (m *monitor) serveConn(c *net.UnixConn) {
	defer c.Close()
	var req ctlRequest
	files, err := readMsg(c, &req)
	if err != nil {
		return
	}
	if req.Op != "exec" {
		closeFiles(files)
	}
	reply := ctlReply{}
	switch req.Op {
	case "start":
		r := make(chan error, 1)
		err = m.request(func() { m.startc <- r })
		if err == nil {
			err = <-r
		}
	case "kill":
		if req.Signal <= 0 || req.Signal > 64 {
			err = fmt.Errorf("signal %d is not valid", req.Signal)
			break
		}
		r := make(chan error, 1)
		err = m.request(func() { m.killc <- killRequest{sig: syscall.Signal(req.Signal), all: req.All, reply: r} })
		if err == nil {
			err = <-r
		}
	case "pause", "resume":
		err = m.pauseResume(req.Op == "pause")
	case "inspect":
		reply.Env = m.o.Env
	case "exec":
		m.serveExec(c, &req, files)
		return
	default:
		err = fmt.Errorf("unknown control operation %q", req.Op)
	}
	reply.Error = errString(err)
	writeMsg(c, reply)
}

// request hands a request to the session loop, unless the container has
// already stopped.
func (m *monitor) request(send func()) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		send()
	}()
	for {
		select {
		case <-done:
			return nil
		case <-time.After(100 * time.Millisecond):
			m.mu.Lock()
			ex := m.exited
			m.mu.Unlock()
			if ex {
				return errNotRunning
			}
		}
	}
}

func (m *monitor) pauseResume(pause bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.sd.st.Status
	ctx := context.Background()
	switch {
	case pause && st == StatusRunning:
		if err := m.ts.Pause(ctx, m.sd.st.DomID); err != nil {
			return err
		}
		m.setStatusLocked(StatusPaused)
	case !pause && st == StatusPaused:
		if err := m.ts.Unpause(ctx, m.sd.st.DomID); err != nil {
			return err
		}
		m.setStatusLocked(StatusRunning)
	default:
		return fmt.Errorf("container %s is %s", short(m.o.ID), st)
	}
	return nil
}

// serveExec runs one exec session for a client: files are [stdin,]
// stdout, stderr.
func (m *monitor) serveExec(c *net.UnixConn, req *ctlRequest, files []*os.File) {
	defer closeFiles(files)
	fail := func(err error) { writeMsg(c, ctlReply{Error: err.Error()}) }
	if req.Exec == nil {
		fail(errors.New("exec: no process"))
		return
	}
	want := 2
	if req.Exec.Stdin {
		want = 3
	}
	if len(files) != want {
		fail(fmt.Errorf("exec: %d descriptors passed, want %d", len(files), want))
		return
	}
	var stdin *os.File
	if req.Exec.Stdin {
		stdin, files = files[0], files[1:]
	}
	spec := *req.Exec
	m.mu.Lock()
	if m.exited || m.w == nil || (m.sd.st.Status != StatusRunning && m.sd.st.Status != StatusPaused) {
		st := m.sd.st.Status
		m.mu.Unlock()
		fail(fmt.Errorf("container %s is %s, not running", short(m.o.ID), st))
		return
	}
	m.nextExec++
	spec.ID = m.nextExec
	s := &execSession{id: spec.ID, stdout: files[0], stderr: files[1], exitc: make(chan guestproto.ExecExit, 1)}
	if spec.TTY {
		s.stderr = files[0]
	}
	b, err := spec.Marshal()
	if err == nil {
		m.execs[spec.ID] = s
		err = m.w.WriteFrame(guestproto.TypeExec, b)
		if err != nil {
			delete(m.execs, spec.ID)
		}
	}
	w := m.w
	m.mu.Unlock()
	if err != nil {
		fail(err)
		return
	}
	writeMsg(c, ctlReply{})
	if stdin != nil {
		go func() {
			io.Copy(w.ExecStream(spec.ID, guestproto.StreamStdin), stdin)
			w.CloseExecStdin(spec.ID)
		}()
	}
	// Window and signal requests until the client hangs up.
	go func() {
		for {
			var r ctlRequest
			fs, err := readMsg(c, &r)
			closeFiles(fs)
			if err != nil {
				return
			}
			switch {
			case r.Op == "window" && r.Window != nil:
				win := *r.Window
				win.ID = spec.ID
				w.WriteFrame(guestproto.TypeWindow, guestproto.FormatWindow(win))
			case r.Op == "signal" && r.Signal > 0 && r.Signal <= 64:
				w.WriteFrame(guestproto.TypeExecSignal, guestproto.FormatSignal(spec.ID, r.Signal))
			}
		}
	}()
	e := <-s.exitc
	status := e.Status
	writeMsg(c, ctlReply{Exit: &status, Error: e.Error})
}
