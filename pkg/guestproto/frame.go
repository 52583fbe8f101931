package guestproto

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"sync"
)

// Type is the one-letter kind of a frame.
type Type byte

// Frame types. Guest → Dom0: Ready, Started, Stdout, Stderr, Log, Fatal,
// Exit, ExecData, ExecExit. Dom0 → guest: Spec, Stdin, StdinClose, Signal,
// Window, Exec, ExecData, ExecSignal (see exec.go).
const (
	TypeReady      Type = 'R' // init is up; payload: JSON ReadyInfo
	TypeStarted    Type = 'P' // entrypoint executed; payload: JSON StartedInfo
	TypeStdout     Type = 'O' // container stdout bytes
	TypeStderr     Type = 'E' // container stderr bytes
	TypeLog        Type = 'L' // a diagnostic line from vxn-init
	TypeFatal      Type = 'F' // vxn-init failed; payload: the message
	TypeExit       Type = 'X' // exit status, decimal 0-255
	TypeSpec       Type = 'S' // job spec, JSON Spec
	TypeStdin      Type = 'I' // stdin bytes for the container
	TypeStdinClose Type = 'C' // stdin EOF
	TypeSignal     Type = 'K' // signal number to forward, decimal
	TypeWindow     Type = 'W' // terminal size "rows cols [session]"
	TypeSpecPart   Type = 'J' // a piece of a job spec too large for one frame (see SendSpec)
)

// String returns the type's name.
func (t Type) String() string {
	switch t {
	case TypeReady:
		return "ready"
	case TypeStarted:
		return "started"
	case TypeStdout:
		return "stdout"
	case TypeStderr:
		return "stderr"
	case TypeLog:
		return "log"
	case TypeFatal:
		return "fatal"
	case TypeExit:
		return "exit"
	case TypeSpec:
		return "spec"
	case TypeStdin:
		return "stdin"
	case TypeStdinClose:
		return "stdin-close"
	case TypeSignal:
		return "signal"
	case TypeWindow:
		return "window"
	case TypeSpecPart:
		return "spec-part"
	case TypeExec:
		return "exec"
	case TypeExecData:
		return "exec-data"
	case TypeExecSignal:
		return "exec-signal"
	case TypeExecExit:
		return "exec-exit"
	}
	return fmt.Sprintf("type(%q)", byte(t))
}

// valid reports whether t is a printable type letter (not the marker's).
func (t Type) valid() bool { return t >= 'A' && t <= 'Z' }

const (
	// Marker starts every frame.
	Marker = "#vxn:"
	// headerLen is the marker, the type letter, 8 hex seq, 8 hex CRC.
	headerLen = len(Marker) + 1 + 8 + 8
	// ChunkSize is the largest payload of one data frame written by
	// Writer.Stream; bigger writes are split.
	ChunkSize = 3 << 10
	// MaxPayload is the largest payload of any frame. A larger job spec is
	// sent in several frames (see Writer.SendSpec), up to MaxSpec.
	MaxPayload = 64 << 10
	// MaxLine is the longest line the Reader considers; longer lines are
	// garbage and are skipped without being buffered.
	MaxLine = headerLen + (MaxPayload+2)/3*4 + 2
)

// Frame is one decoded message.
type Frame struct {
	Type    Type
	Seq     uint32
	Payload []byte
}

func checksum(t Type, seq uint32, p []byte) uint32 {
	var h [5]byte
	h[0] = byte(t)
	binary.BigEndian.PutUint32(h[1:], seq)
	c := crc32.Update(0, crc32.IEEETable, h[:])
	return crc32.Update(c, crc32.IEEETable, p)
}

// AppendFrame appends the wire form of one frame (with its newline) to dst.
// It panics only on programmer error: an invalid type or a payload over
// MaxPayload (Writer checks both and returns errors instead).
func AppendFrame(dst []byte, t Type, seq uint32, payload []byte) []byte {
	if !t.valid() || len(payload) > MaxPayload {
		panic("guestproto: invalid frame")
	}
	dst = append(dst, Marker...)
	dst = append(dst, byte(t))
	dst = appendHex32(dst, seq)
	dst = appendHex32(dst, checksum(t, seq, payload))
	dst = base64.StdEncoding.AppendEncode(dst, payload)
	return append(dst, '\n')
}

func appendHex32(dst []byte, v uint32) []byte {
	const hexd = "0123456789abcdef"
	for i := 28; i >= 0; i -= 4 {
		dst = append(dst, hexd[(v>>uint(i))&0xf])
	}
	return dst
}

func parseHex32(b []byte) (uint32, bool) {
	if len(b) != 8 {
		return 0, false
	}
	var v uint32
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// ErrTooLarge is returned by Writer.WriteFrame for payloads over MaxPayload.
var ErrTooLarge = errors.New("guestproto: frame payload larger than MaxPayload")

// Writer encodes frames onto a console. It is safe for concurrent use:
// every frame is written with one Write call while holding a lock, so
// frames from different streams never interleave.
type Writer struct {
	mu  sync.Mutex
	w   io.Writer
	seq uint32
	buf []byte
}

// NewWriter returns a Writer that writes frames to w (the guest's console
// in vxn-init, the console's input side in vxn).
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteFrame writes one frame of type t. The payload may be empty.
func (w *Writer) WriteFrame(t Type, payload []byte) error {
	if !t.valid() {
		return fmt.Errorf("guestproto: invalid frame type %q", byte(t))
	}
	if len(payload) > MaxPayload {
		return fmt.Errorf("%w: %d bytes, max %d", ErrTooLarge, len(payload), MaxPayload)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = AppendFrame(w.buf[:0], t, w.seq, payload)
	w.seq++
	_, err := w.w.Write(w.buf)
	return err
}

// Stream returns an io.Writer that sends everything written to it as
// frames of type t, split into ChunkSize pieces. It never buffers: each
// Write is on the wire when it returns.
func (w *Writer) Stream(t Type) io.Writer { return &stream{w: w, t: t} }

type stream struct {
	w *Writer
	t Type
}

func (s *stream) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		c := min(len(p), ChunkSize)
		if err := s.w.WriteFrame(s.t, p[:c]); err != nil {
			return n, err
		}
		n += c
		p = p[c:]
	}
	return n, nil
}

// WriteExit sends the exit status frame.
func (w *Writer) WriteExit(code int) error {
	return w.WriteFrame(TypeExit, strconv.AppendInt(nil, int64(code), 10))
}

// Stats counts what a Reader has seen.
type Stats struct {
	Frames  int64 // valid frames returned
	Garbage int64 // bytes that were not part of a valid frame
	Bad     int64 // lines that carried a marker but failed to decode
	Lost    int64 // frames missing according to the sequence numbers
}

// Reader decodes frames from a console stream, skipping anything that is
// not a valid frame. Memory use is bounded by MaxLine.
type Reader struct {
	br      *bufio.Reader
	next    uint32
	started bool
	stats   Stats
	tail    []byte // last garbage bytes, for diagnostics
	skip    bool   // discarding the rest of an over-long line
}

// NewReader returns a Reader decoding frames from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, MaxLine+1)}
}

// Stats returns the counters so far.
func (r *Reader) Stats() Stats { return r.stats }

// GarbageTail returns up to the last 4 KiB of non-frame text seen (kernel
// messages, a panic), useful when the guest dies without an Exit frame.
func (r *Reader) GarbageTail() []byte { return append([]byte(nil), r.tail...) }

const tailMax = 4 << 10

func (r *Reader) garbage(b []byte) {
	if len(b) == 0 {
		return
	}
	r.stats.Garbage += int64(len(b))
	if len(b) >= tailMax {
		r.tail = append(r.tail[:0], b[len(b)-tailMax:]...)
		return
	}
	if over := len(r.tail) + len(b) - tailMax; over > 0 {
		r.tail = append(r.tail[:0], r.tail[over:]...)
	}
	r.tail = append(r.tail, b...)
}

// Next returns the next valid frame. It returns io.EOF (or the underlying
// read error) when the stream ends; an incomplete last line is garbage.
func (r *Reader) Next() (Frame, error) {
	for {
		line, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			r.garbage(line)
			r.skip = true
			continue
		}
		if r.skip {
			r.garbage(line)
			r.skip = false
			if err != nil {
				return Frame{}, err
			}
			continue
		}
		if err != nil {
			r.garbage(line)
			return Frame{}, err
		}
		if f, ok := r.decode(line); ok {
			r.stats.Frames++
			if r.started && f.Seq != r.next {
				if d := f.Seq - r.next; d < 1<<31 {
					r.stats.Lost += int64(d)
				}
			} else if !r.started && f.Seq != 0 && f.Seq < 1<<16 {
				r.stats.Lost += int64(f.Seq)
			}
			r.started = true
			r.next = f.Seq + 1
			return f, nil
		}
	}
}

// decode parses the frame in line (which ends with '\n'), accounting the
// rest as garbage.
func (r *Reader) decode(line []byte) (Frame, bool) {
	i := bytes.LastIndex(line, []byte(Marker))
	if i < 0 {
		r.garbage(line)
		return Frame{}, false
	}
	r.garbage(line[:i])
	body := line[i:]
	end := len(body) - 1 // drop '\n'
	if end > 0 && body[end-1] == '\r' {
		end--
	}
	body = body[:end]
	fail := func() (Frame, bool) {
		r.stats.Bad++
		r.garbage(line[i:])
		return Frame{}, false
	}
	if len(body) < headerLen {
		return fail()
	}
	t := Type(body[len(Marker)])
	seq, ok1 := parseHex32(body[len(Marker)+1 : len(Marker)+9])
	sum, ok2 := parseHex32(body[len(Marker)+9 : headerLen])
	if !t.valid() || !ok1 || !ok2 {
		return fail()
	}
	enc := body[headerLen:]
	if base64.StdEncoding.DecodedLen(len(enc)) > MaxPayload+2 {
		return fail()
	}
	p := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(p, enc)
	if err != nil || n > MaxPayload {
		return fail()
	}
	p = p[:n]
	if checksum(t, seq, p) != sum {
		return fail()
	}
	return Frame{Type: t, Seq: seq, Payload: p}, true
}
