package guestproto

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrOutputLost is wrapped by Demux's error when frames were lost (console
// corruption). The exit code is still valid in that case.
var ErrOutputLost = errors.New("guestproto: container output lost on the console")

// ErrNoExit is wrapped by Demux's error when the stream ended without an
// Exit frame (the guest crashed or was destroyed).
var ErrNoExit = errors.New("guestproto: guest console closed before the exit status")

// Demuxer routes a guest's frames to writers on Dom0. The zero value
// discards everything; set the fields before calling Run.
type Demuxer struct {
	Stdout, Stderr io.Writer
	// Log receives vxn-init's diagnostic lines (nil: discarded).
	Log io.Writer
	// OnFrame, when set, sees every frame before it is routed; vxn uses it
	// to send the Spec after TypeReady and to collect timings. An error
	// stops Run.
	OnFrame func(Frame) error

	// Ready and Started hold the last decoded info frames.
	Ready   *ReadyInfo
	Started *StartedInfo
	// Stats are the reader's counters once Run returned.
	Stats Stats
	// Tail is the last non-frame console text, filled when Run fails
	// without an exit status (it usually explains why: a kernel panic).
	Tail []byte
}

// Demux copies the guest's stdout and stderr frames from r to stdout and
// stderr as they arrive, and returns the exit status. Messages of a failing
// vxn-init go to stderr prefixed "vxn-init: ". When frames were lost the
// error wraps ErrOutputLost but the exit code is valid; when the stream ends
// first the error wraps ErrNoExit and shows the last console text.
func Demux(ctx context.Context, r io.Reader, stdout, stderr io.Writer) (int, error) {
	d := &Demuxer{Stdout: stdout, Stderr: stderr}
	return d.Run(ctx, r)
}

type result struct {
	code int
	err  error
}

// Run demultiplexes r until the Exit frame, the end of r, or ctx is done.
// When ctx ends first, Run returns -1 and ctx.Err() at once and the reading
// goroutine stops writing; the caller should close r to end it. Ready,
// Started, Stats and Tail must not be read after such an early return.
func (d *Demuxer) Run(ctx context.Context, r io.Reader) (int, error) {
	done := make(chan result, 1)
	go func() {
		c, err := d.run(ctx, r)
		done <- result{c, err}
	}()
	select {
	case res := <-done:
		return res.code, res.err
	case <-ctx.Done():
		return -1, ctx.Err()
	}
}

func write(w io.Writer, p []byte) error {
	if w == nil {
		return nil
	}
	_, err := w.Write(p)
	return err
}

func (d *Demuxer) run(ctx context.Context, r io.Reader) (int, error) {
	fr := NewReader(r)
	defer func() { d.Stats = fr.Stats() }()
	for {
		f, err := fr.Next()
		if err != nil {
			d.Tail = fr.GarbageTail()
			if err == io.EOF {
				err = ErrNoExit
			}
			return -1, fmt.Errorf("%w (%d frames, %d bytes of other console output; last console text: %q)",
				err, fr.Stats().Frames, fr.Stats().Garbage, lastLines(d.Tail, 5))
		}
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		if d.OnFrame != nil {
			if err := d.OnFrame(f); err != nil {
				return -1, err
			}
		}
		switch f.Type {
		case TypeStdout:
			err = write(d.Stdout, f.Payload)
		case TypeStderr:
			err = write(d.Stderr, f.Payload)
		case TypeLog:
			err = write(d.Log, append(f.Payload, '\n'))
		case TypeFatal:
			err = write(d.Stderr, []byte("vxn-init: "+string(f.Payload)+"\n"))
		case TypeReady:
			var ri ReadyInfo
			if json.Unmarshal(f.Payload, &ri) == nil {
				d.Ready = &ri
			}
		case TypeStarted:
			var si StartedInfo
			if json.Unmarshal(f.Payload, &si) == nil {
				d.Started = &si
			}
		case TypeExit:
			code, perr := strconv.Atoi(string(f.Payload))
			if perr != nil || code < 0 || code > 255 {
				return -1, fmt.Errorf("guestproto: frame %d: exit status %q is not 0-255", f.Seq, f.Payload)
			}
			if st := fr.Stats(); st.Lost > 0 {
				return code, fmt.Errorf("%w: %d frame(s) missing (%d bytes of console noise)", ErrOutputLost, st.Lost, st.Garbage)
			}
			return code, nil
		}
		if err != nil {
			return -1, fmt.Errorf("guestproto: writing %s: %w", f.Type, err)
		}
	}
}

func lastLines(b []byte, n int) string {
	s := strings.TrimRight(string(b), "\r\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
