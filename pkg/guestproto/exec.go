package guestproto

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Exec sessions: more processes in a running container (`vxn exec`, the
// OCI runtime's exec). They share the console with the main process; every
// exec frame carries the session id that Dom0 chose (1, 2, …; 0 is the
// main process and never used here).
//
//	Dom0 → guest  TypeExec       JSON ExecSpec (starts session ID)
//	both ways     TypeExecData   ExecData: id, stream, bytes
//	                             (stream 0 = stdin; empty data = stdin EOF;
//	                             1 = stdout, 2 = stderr, guest → Dom0)
//	Dom0 → guest  TypeExecSignal "<id> <signal number>"
//	guest → Dom0  TypeExecExit   JSON ExecExit (status, or why it failed)
//
// Window sizes for a session with a terminal travel in TypeWindow as
// "rows cols id"; "rows cols" alone is the main process.
const (
	TypeExec       Type = 'B' // start an exec session; payload: JSON ExecSpec
	TypeExecData   Type = 'D' // exec session data; payload: ExecData encoding
	TypeExecSignal Type = 'G' // signal an exec session: "<id> <signo>"
	TypeExecExit   Type = 'Q' // exec session ended; payload: JSON ExecExit
)

// Exec stream numbers in ExecData.
const (
	StreamStdin  = 0
	StreamStdout = 1
	StreamStderr = 2
)

// ExecSpec starts one more process in the running container. Args, Env,
// Cwd and User mean what they mean in Spec; the process runs in the
// container's root with the container's hostname.
type ExecSpec struct {
	// ID is the session id chosen by Dom0 (non-zero, unique while running).
	ID uint32 `json:"id"`
	// Args is argv, executed verbatim.
	Args []string `json:"args"`
	// Env is KEY=VALUE; the main process's environment when empty.
	Env []string `json:"env,omitempty"`
	// Cwd is the working directory ("" = the main process's).
	Cwd string `json:"cwd,omitempty"`
	// User is "", "name", "uid", "name:group" or "uid:gid".
	User string `json:"user,omitempty"`
	// TTY gives the process a terminal (a pty in the guest); its output
	// then comes on stream 1 only.
	TTY bool `json:"tty,omitempty"`
	// Stdin keeps the process's stdin open, fed by stream-0 data.
	Stdin bool `json:"stdin,omitempty"`
}

// Validate checks an exec spec before it is sent or run.
func (s *ExecSpec) Validate() error {
	if s.ID == 0 {
		return fmt.Errorf("exec spec: session id 0 is reserved for the main process")
	}
	main := Spec{Args: s.Args, Env: s.Env}
	if err := main.Validate(); err != nil {
		return fmt.Errorf("exec spec %d: %w", s.ID, err)
	}
	return nil
}

// Marshal encodes the spec for a TypeExec frame.
func (s *ExecSpec) Marshal() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return marshalPayload("exec spec", s)
}

// ParseExecSpec decodes and validates a TypeExec payload.
func ParseExecSpec(b []byte) (*ExecSpec, error) {
	var s ExecSpec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("exec spec: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// ExecData is the payload of TypeExecData: 4 bytes big-endian session id,
// 1 byte stream number, then the data.
type ExecData struct {
	ID     uint32
	Stream byte
	Data   []byte
}

// AppendExecData encodes d after dst.
func AppendExecData(dst []byte, d ExecData) []byte {
	dst = binary.BigEndian.AppendUint32(dst, d.ID)
	dst = append(dst, d.Stream)
	return append(dst, d.Data...)
}

// ParseExecData decodes a TypeExecData payload; Data aliases b.
func ParseExecData(b []byte) (ExecData, error) {
	if len(b) < 5 {
		return ExecData{}, fmt.Errorf("exec data: %d bytes, want at least 5", len(b))
	}
	d := ExecData{ID: binary.BigEndian.Uint32(b), Stream: b[4], Data: b[5:]}
	if d.ID == 0 || d.Stream > StreamStderr {
		return ExecData{}, fmt.Errorf("exec data: session %d stream %d is not valid", d.ID, d.Stream)
	}
	return d, nil
}

// ExecStream returns a writer that sends everything written to it as
// TypeExecData frames of session id and stream, in chunks of at most
// ChunkSize bytes. Writing zero bytes sends nothing; use CloseExecStdin for
// EOF.
func (w *Writer) ExecStream(id uint32, stream byte) interface{ Write([]byte) (int, error) } {
	return &execStream{w: w, id: id, stream: stream}
}

type execStream struct {
	w      *Writer
	id     uint32
	stream byte
}

func (s *execStream) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := p
		if len(c) > ChunkSize-5 {
			c = c[:ChunkSize-5]
		}
		if err := s.w.WriteFrame(TypeExecData, AppendExecData(nil, ExecData{ID: s.id, Stream: s.stream, Data: c})); err != nil {
			return n, err
		}
		n += len(c)
		p = p[len(c):]
	}
	return n, nil
}

// CloseExecStdin sends stdin EOF for session id.
func (w *Writer) CloseExecStdin(id uint32) error {
	return w.WriteFrame(TypeExecData, AppendExecData(nil, ExecData{ID: id, Stream: StreamStdin}))
}

// ExecExit is the payload of TypeExecExit.
type ExecExit struct {
	// ID is the session.
	ID uint32 `json:"id"`
	// Status is the exit status (0–255, 128+n for signal n); -1 when the
	// process could not be started (Error says why).
	Status int `json:"status"`
	// Error is why the process could not be started, "" otherwise. It is
	// also set with status 127 (not found) and 126 (not executable), the
	// statuses docker gives in those cases.
	Error string `json:"error,omitempty"`
}

// ParseExecExit decodes a TypeExecExit payload.
func ParseExecExit(b []byte) (ExecExit, error) {
	var e ExecExit
	if err := json.Unmarshal(b, &e); err != nil {
		return ExecExit{}, fmt.Errorf("exec exit: %w", err)
	}
	if e.ID == 0 || e.Status < -1 || e.Status > 255 {
		return ExecExit{}, fmt.Errorf("exec exit: session %d status %d is not valid", e.ID, e.Status)
	}
	return e, nil
}

// FormatSignal encodes a TypeExecSignal payload.
func FormatSignal(id uint32, signo int) []byte {
	return []byte(strconv.FormatUint(uint64(id), 10) + " " + strconv.Itoa(signo))
}

// ParseExecSignal decodes a TypeExecSignal payload.
func ParseExecSignal(b []byte) (id uint32, signo int, err error) {
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("exec signal %q: want \"<id> <signal>\"", b)
	}
	v, err1 := strconv.ParseUint(f[0], 10, 32)
	s, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || v == 0 || s <= 0 || s > 64 {
		return 0, 0, fmt.Errorf("exec signal %q: want a session id and a signal number 1-64", b)
	}
	return uint32(v), s, nil
}

// Window is a terminal size for the main process (ID 0) or a session.
type Window struct {
	Rows, Cols uint16
	ID         uint32
}

// FormatWindow encodes a TypeWindow payload.
func FormatWindow(w Window) []byte {
	s := strconv.Itoa(int(w.Rows)) + " " + strconv.Itoa(int(w.Cols))
	if w.ID != 0 {
		s += " " + strconv.FormatUint(uint64(w.ID), 10)
	}
	return []byte(s)
}

// ParseWindow decodes a TypeWindow payload.
func ParseWindow(b []byte) (Window, error) {
	f := strings.Fields(string(b))
	if len(f) != 2 && len(f) != 3 {
		return Window{}, fmt.Errorf("window %q: want \"rows cols [id]\"", b)
	}
	r, err1 := strconv.ParseUint(f[0], 10, 16)
	c, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil {
		return Window{}, fmt.Errorf("window %q: rows and cols must be 0-65535", b)
	}
	w := Window{Rows: uint16(r), Cols: uint16(c)}
	if len(f) == 3 {
		id, err := strconv.ParseUint(f[2], 10, 32)
		if err != nil {
			return Window{}, fmt.Errorf("window %q: bad session id", b)
		}
		w.ID = uint32(id)
	}
	return w, nil
}
