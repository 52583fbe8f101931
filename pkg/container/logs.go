package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// LogFile is the name of a container's docker json-file log in its state
// directory (vxn logs).
const LogFile = "container-log.json"

// LogEntry is one line of a docker json-file log.
type LogEntry struct {
	// Log is the text, with its newline when it ended one.
	Log string `json:"log"`
	// Stream is "stdout" or "stderr".
	Stream string `json:"stream"`
	// Time is when vxn received it.
	Time time.Time `json:"time"`
}

// maxLogLine is where a line without a newline is cut into an entry of its
// own (docker's json-file driver does the same at 16 KiB).
const maxLogLine = 16 << 10

// jsonLog appends container output to a docker json-file log: one entry per
// line, per stream; partial lines are held until their newline, the cut
// size, or Close.
type jsonLog struct {
	mu   sync.Mutex
	f    *os.File
	bufs map[string]*bytes.Buffer
}

func openJSONLog(path string) (*jsonLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("container log: %w", err)
	}
	return &jsonLog{f: f, bufs: map[string]*bytes.Buffer{}}, nil
}

// Stream returns the writer of one stream ("stdout", "stderr").
func (l *jsonLog) Stream(name string) io.Writer { return logStream{l, name} }

type logStream struct {
	l    *jsonLog
	name string
}

func (s logStream) Write(p []byte) (int, error) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	b := s.l.bufs[s.name]
	if b == nil {
		b = &bytes.Buffer{}
		s.l.bufs[s.name] = b
	}
	b.Write(p)
	for {
		i := bytes.IndexByte(b.Bytes(), '\n')
		if i < 0 && b.Len() < maxLogLine {
			break
		}
		n := i + 1
		if i < 0 || n > maxLogLine {
			n = maxLogLine
		}
		if err := s.l.emit(s.name, b.Next(n)); err != nil {
			return len(p), nil // logging never fails the container
		}
	}
	return len(p), nil
}

func (l *jsonLog) emit(stream string, line []byte) error {
	b, err := json.Marshal(LogEntry{Log: string(line), Stream: stream, Time: time.Now().UTC()})
	if err != nil {
		return err
	}
	_, err = l.f.Write(append(b, '\n'))
	return err
}

// Close writes the partial lines and closes the file.
func (l *jsonLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range []string{"stdout", "stderr"} {
		if b := l.bufs[s]; b != nil && b.Len() > 0 {
			l.emit(s, b.Bytes())
			b.Reset()
		}
	}
	return l.f.Close()
}

// LogOptions select what ReadLogs prints.
type LogOptions struct {
	// Follow keeps reading until Stopped reports true (vxn logs -f).
	Follow bool
	// Tail is the number of last entries to print; negative is all.
	Tail int
	// Timestamps prefixes each entry with its RFC 3339 time (-t).
	Timestamps bool
	// Stopped reports that the container stopped (no more output);
	// needed with Follow.
	Stopped func() bool
	// Poll is how often a followed log is checked (default 200 ms).
	Poll time.Duration
}

// ReadLogs copies a docker json-file log to stdout and stderr by stream.
// Lines that are not valid entries are skipped.
func ReadLogs(ctx context.Context, path string, o LogOptions, stdout, stderr io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("container log: %w", err)
	}
	defer f.Close()
	if o.Poll == 0 {
		o.Poll = 200 * time.Millisecond
	}
	out := func(e LogEntry) {
		w := stdout
		if e.Stream == "stderr" {
			w = stderr
		}
		if o.Timestamps {
			fmt.Fprintf(w, "%s %s", e.Time.Format(time.RFC3339Nano), e.Log)
			return
		}
		io.WriteString(w, e.Log)
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var pending []byte
	// next returns the next complete entry, or false at the current end.
	next := func() (LogEntry, bool, error) {
		for {
			line, err := r.ReadBytes('\n')
			pending = append(pending, line...)
			if err == io.EOF {
				return LogEntry{}, false, nil
			}
			if err != nil {
				return LogEntry{}, false, err
			}
			var e LogEntry
			jerr := json.Unmarshal(pending, &e)
			pending = pending[:0]
			if jerr == nil {
				return e, true, nil
			}
		}
	}
	if o.Tail >= 0 {
		var ring []LogEntry
		for {
			e, ok, err := next()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if o.Tail == 0 {
				continue
			}
			if len(ring) == o.Tail {
				ring = ring[1:]
			}
			ring = append(ring, e)
		}
		for _, e := range ring {
			out(e)
		}
	}
	for {
		e, ok, err := next()
		if err != nil {
			return err
		}
		if ok {
			out(e)
			continue
		}
		if !o.Follow || o.Stopped == nil {
			return nil
		}
		if o.Stopped() {
			// One more pass: output written just before it stopped.
			for {
				e, ok, err := next()
				if err != nil || !ok {
					return err
				}
				out(e)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(o.Poll):
		}
	}
}
