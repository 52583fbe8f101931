package guestproto

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

// bigSpec returns a spec whose env and args are about n bytes.
func bigSpec(n int) *Spec {
	s := &Spec{Args: []string{"echo", "hi"}}
	for i := 0; i < n/20000; i++ {
		s.Env = append(s.Env, fmt.Sprintf("V%d=%s", i, strings.Repeat(string(rune('a'+i%26)), 10000)))
		s.Args = append(s.Args, strings.Repeat("x", 10000))
	}
	return s
}

// readSpec decodes the frames in wire with a SpecReader.
func readSpec(wire []byte) (*Spec, error) {
	rd := NewReader(bytes.NewReader(wire))
	var sr SpecReader
	for {
		f, err := rd.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("no spec frame")
		}
		if err != nil {
			return nil, err
		}
		if f.Type == TypeSpec {
			return sr.Frame(f)
		}
		sr.Frame(f)
	}
}

// TestSpecLarge: env and args beyond one frame (64 KiB) used to fail at
// SendSpec, after `create` had succeeded, leaving an OCI container that
// never started; they now travel in parts, up to MaxSpec.
func TestSpecLarge(t *testing.T) {
	for _, n := range []int{100, 70 << 10, 3 << 20, 17 << 20} {
		var wire bytes.Buffer
		s := bigSpec(n)
		if err := NewWriter(&wire).SendSpec(s); err != nil {
			t.Fatalf("%d bytes: SendSpec: %v", n, err)
		}
		got, err := readSpec(wire.Bytes())
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Fatalf("%d bytes: spec changed on the way", n)
		}
	}
}

// TestSpecLargeDamaged: a lost or corrupted part is an error, never a
// silently shortened environment.
func TestSpecLargeDamaged(t *testing.T) {
	var wire bytes.Buffer
	if err := NewWriter(&wire).SendSpec(bigSpec(300 << 10)); err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(wire.Bytes(), []byte("\n"))
	drop := append(append([]byte(nil), bytes.Join(lines[:1], nil)...), bytes.Join(lines[2:], nil)...)
	if _, err := readSpec(drop); err == nil || !strings.Contains(err.Error(), "lost") {
		t.Errorf("lost part: err = %v", err)
	}
	// Two parts swapped: same count and length, wrong checksum.
	sw := bytes.Join(append([][]byte{lines[1], lines[0]}, lines[2:]...), nil)
	if _, err := readSpec(sw); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("swapped parts: err = %v", err)
	}
	// A part without its summary, then a plain spec.
	var w2 bytes.Buffer
	wr := NewWriter(&w2)
	wr.WriteFrame(TypeSpecPart, []byte("junk"))
	wr.SendSpec(&Spec{Args: []string{"x"}})
	if _, err := readSpec(w2.Bytes()); err == nil || !strings.Contains(err.Error(), "came before") {
		t.Errorf("stray part: err = %v", err)
	}
}

// FuzzSpecReader feeds arbitrary part and spec frames to a SpecReader:
// errors or specs, never a panic, memory bounded by MaxSpec.
func FuzzSpecReader(f *testing.F) {
	var wire bytes.Buffer
	NewWriter(&wire).SendSpec(bigSpec(150 << 10))
	lines := bytes.SplitAfter(wire.Bytes(), []byte("\n"))
	f.Add([]byte("part"), []byte(lines[len(lines)-2][:0]), uint8(3))
	f.Add([]byte(`{"args":["x"]}`), []byte(`{"spec_parts":{"parts":1,"bytes":14,"crc32":0}}`), uint8(1))
	f.Add([]byte(`{"args":["x"]}`), []byte(`{"spec_parts":{"parts":1,"bytes":14,"crc32":2392226498}}`), uint8(1))
	f.Fuzz(func(t *testing.T, part, final []byte, n uint8) {
		var r SpecReader
		for range n % 8 {
			r.Frame(Frame{Type: TypeSpecPart, Payload: part})
		}
		s, err := r.Frame(Frame{Type: TypeSpec, Payload: final})
		if err == nil && s == nil {
			t.Fatal("no spec and no error")
		}
		if err != nil && !strings.HasPrefix(err.Error(), "job spec") {
			t.Fatalf("error does not name the job spec: %v", err)
		}
		if len(r.buf) != 0 || r.parts != 0 {
			t.Fatal("reader not reset after the spec frame")
		}
	})
}
