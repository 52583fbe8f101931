package guestproto

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
)

// FuzzReader feeds arbitrary console bytes to the reader and Demux: no
// panic, bounded work, and frames written around the input still decode.
func FuzzReader(f *testing.F) {
	var seed bytes.Buffer
	w := NewWriter(&seed)
	w.WriteFrame(TypeReady, []byte(`{"version":1}`))
	w.Stream(TypeStdout).Write([]byte("hello\n"))
	w.WriteExit(0)
	f.Add(seed.Bytes())
	f.Add([]byte("[ 0.1] kmsg\n" + Marker + "O0000000000000000\n"))
	f.Add([]byte(Marker + "X00000000ffffffffNDI=\r\n"))
	f.Add([]byte(Marker + Marker + "\n\n\r\n"))
	f.Add(bytes.Repeat([]byte("A"), MaxLine+10))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewReader(bytes.NewReader(in))
		n := 0
		for {
			fr, err := r.Next()
			if err != nil {
				break
			}
			if len(fr.Payload) > MaxPayload {
				t.Fatalf("payload %d > MaxPayload", len(fr.Payload))
			}
			n++
			if n > len(in) {
				t.Fatal("more frames than input bytes")
			}
		}
		st := r.Stats()
		if st.Garbage > int64(len(in)) {
			t.Fatalf("garbage %d > input %d", st.Garbage, len(in))
		}
		Demux(context.Background(), bytes.NewReader(in), io.Discard, io.Discard)

		// A frame after arbitrary noise (ended by a newline) must survive.
		var b bytes.Buffer
		b.Write(in)
		b.WriteByte('\n')
		NewWriter(&b).WriteFrame(TypeStdout, in)
		r = NewReader(&b)
		var last Frame
		for {
			fr, err := r.Next()
			if err != nil {
				break
			}
			last = fr
		}
		if len(in) <= MaxPayload && (last.Type != TypeStdout || !bytes.Equal(last.Payload, in)) {
			t.Fatalf("trailing frame lost after noise")
		}
	})
}

// FuzzParseSpec: any payload either fails with an error naming the job
// spec, or gives a spec that validates and marshals again.
func FuzzParseSpec(f *testing.F) {
	f.Add([]byte(`{"args":["x"],"env":["A=1"],"net":{"address":"10.0.2.15/24","gateway":"10.0.2.2","dns":["10.0.2.3"]}}`))
	f.Add([]byte(`{"args":["x"],"net":{"address":"::1/0"}}`))
	f.Add([]byte(`{"args":[""],"net":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSpec(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "job spec") {
				t.Fatalf("error does not name the job spec: %v", err)
			}
			return
		}
		if _, err := s.Marshal(); err != nil && len(b) < MaxPayload/2 {
			t.Fatalf("valid spec does not marshal: %v", err)
		}
	})
}
