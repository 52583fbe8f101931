package guestproto

import (
	"bytes"
	"testing"
)

func TestExecDataRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	big := bytes.Repeat([]byte{0, 1, 2, '\n', 0xff}, ChunkSize)
	if _, err := w.ExecStream(7, StreamStderr).Write(big); err != nil {
		t.Fatal(err)
	}
	if err := w.CloseExecStdin(7); err != nil {
		t.Fatal(err)
	}
	r := NewReader(&buf)
	var got []byte
	for {
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != TypeExecData {
			t.Fatalf("type %v", f.Type)
		}
		d, err := ParseExecData(f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if d.ID != 7 {
			t.Fatalf("id %d", d.ID)
		}
		if d.Stream == StreamStdin {
			if len(d.Data) != 0 {
				t.Fatal("stdin EOF with data")
			}
			break
		}
		if len(f.Payload) > ChunkSize {
			t.Fatalf("payload %d > ChunkSize", len(f.Payload))
		}
		got = append(got, d.Data...)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("data differs: %d vs %d bytes", len(got), len(big))
	}
}

func TestExecParsers(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   func() error
		ok   bool
	}{
		{"spec ok", func() error { _, err := ParseExecSpec([]byte(`{"id":1,"args":["cat"]}`)); return err }, true},
		{"spec id 0", func() error { _, err := ParseExecSpec([]byte(`{"id":0,"args":["cat"]}`)); return err }, false},
		{"spec no args", func() error { _, err := ParseExecSpec([]byte(`{"id":1}`)); return err }, false},
		{"spec bad env", func() error { _, err := ParseExecSpec([]byte(`{"id":1,"args":["x"],"env":["NOEQ"]}`)); return err }, false},
		{"data short", func() error { _, err := ParseExecData([]byte{0, 0, 0, 1}); return err }, false},
		{"data stream 3", func() error { _, err := ParseExecData([]byte{0, 0, 0, 1, 3}); return err }, false},
		{"exit ok", func() error { _, err := ParseExecExit([]byte(`{"id":2,"status":137}`)); return err }, true},
		{"exit start failure", func() error {
			_, err := ParseExecExit([]byte(`{"id":2,"status":-1,"error":"no such file"}`))
			return err
		}, true},
		{"exit 256", func() error { _, err := ParseExecExit([]byte(`{"id":2,"status":256}`)); return err }, false},
		{"signal ok", func() error { _, _, err := ParseExecSignal(FormatSignal(3, 15)); return err }, true},
		{"signal 0", func() error { _, _, err := ParseExecSignal([]byte("3 0")); return err }, false},
		{"signal junk", func() error { _, _, err := ParseExecSignal([]byte("x y z")); return err }, false},
		{"window main", func() error { _, err := ParseWindow([]byte("24 80")); return err }, true},
		{"window session", func() error {
			w, err := ParseWindow(FormatWindow(Window{Rows: 50, Cols: 132, ID: 4}))
			if err == nil && (w.Rows != 50 || w.Cols != 132 || w.ID != 4) {
				t.Errorf("window round trip: %+v", w)
			}
			return err
		}, true},
		{"window big", func() error { _, err := ParseWindow([]byte("70000 80")); return err }, false},
	} {
		err := tc.fn()
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func FuzzExecPayloads(f *testing.F) {
	f.Add([]byte(`{"id":1,"args":["cat"]}`))
	f.Add([]byte{0, 0, 0, 1, 1, 'x'})
	f.Add([]byte("24 80 3"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, err := ParseExecSpec(b); err == nil {
			if _, err := s.Marshal(); err != nil && len(b) < MaxPayload {
				t.Fatalf("valid spec does not marshal: %v", err)
			}
		}
		if d, err := ParseExecData(b); err == nil {
			if !bytes.Equal(AppendExecData(nil, d), b) {
				t.Fatal("exec data does not round-trip")
			}
		}
		ParseExecExit(b)
		if id, s, err := ParseExecSignal(b); err == nil {
			if id2, s2, err := ParseExecSignal(FormatSignal(id, s)); err != nil || id2 != id || s2 != s {
				t.Fatal("signal does not round-trip")
			}
		}
		if w, err := ParseWindow(b); err == nil {
			if w2, err := ParseWindow(FormatWindow(w)); err != nil || w2 != w {
				t.Fatal("window does not round-trip")
			}
		}
	})
}
