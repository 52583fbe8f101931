package guestproto

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"strings"
	"testing"
	"time"
)

func frames(t testing.TB, fs ...Frame) []byte {
	var b bytes.Buffer
	w := NewWriter(&b)
	for _, f := range fs {
		if err := w.WriteFrame(f.Type, f.Payload); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

func readAll(t testing.TB, in []byte) ([]Frame, Stats) {
	r := NewReader(bytes.NewReader(in))
	var out []Frame
	for {
		f, err := r.Next()
		if err == io.EOF {
			return out, r.Stats()
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
}

func TestRoundTrip(t *testing.T) {
	bin := make([]byte, 256)
	for i := range bin {
		bin[i] = byte(i)
	}
	tests := []struct {
		name string
		typ  Type
		p    []byte
	}{
		{"empty", TypeStdinClose, nil},
		{"text", TypeStdout, []byte("hello\n")},
		{"binary", TypeStderr, bin},
		{"marker inside", TypeStdout, []byte("#vxn:O00000000\n#vxn:")},
		{"max", TypeSpec, bytes.Repeat([]byte{0xff}, MaxPayload)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, st := readAll(t, frames(t, Frame{Type: tc.typ, Payload: tc.p}))
			if len(got) != 1 || got[0].Type != tc.typ || !bytes.Equal(got[0].Payload, tc.p) {
				t.Fatalf("got %+v", got)
			}
			if st.Garbage != 0 || st.Bad != 0 || st.Lost != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestWriterErrors(t *testing.T) {
	w := NewWriter(io.Discard)
	if err := w.WriteFrame(TypeSpec, make([]byte, MaxPayload+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversize: %v", err)
	}
	if err := w.WriteFrame('a', nil); err == nil {
		t.Error("lower-case type accepted")
	}
}

func TestStreamSplits(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	data := bytes.Repeat([]byte("x"), 2*ChunkSize+5)
	if n, err := w.Stream(TypeStdout).Write(data); n != len(data) || err != nil {
		t.Fatal(n, err)
	}
	got, _ := readAll(t, b.Bytes())
	if len(got) != 3 {
		t.Fatalf("%d frames, want 3", len(got))
	}
	var all []byte
	for i, f := range got {
		if f.Seq != uint32(i) {
			t.Errorf("frame %d seq %d", i, f.Seq)
		}
		all = append(all, f.Payload...)
	}
	if !bytes.Equal(all, data) {
		t.Error("payload differs")
	}
}

// TestNoise checks that garbage around frames is skipped and that damage
// inside a frame drops only that frame and is counted.
func TestNoise(t *testing.T) {
	bc := frames(t, Frame{Type: TypeStdout, Payload: []byte("one")}, Frame{Type: TypeStdout, Payload: []byte("two")}, Frame{Type: TypeStdout, Payload: []byte("three")})
	lines := bytes.SplitAfter(bc, []byte("\n"))
	f1, f2, f3 := lines[0], lines[1], lines[2]
	kmsg := []byte("[    1.234567] random: crng init done\r\n")
	tests := []struct {
		name     string
		in       []byte
		want     []string
		lost     int64
		bad      int64
		garbage0 bool
	}{
		{"clean", cat(f1, f2, f3), []string{"one", "two", "three"}, 0, 0, true},
		{"kmsg between", cat(kmsg, f1, kmsg, f2, kmsg, f3, kmsg), []string{"one", "two", "three"}, 0, 0, false},
		{"partial kmsg before marker", cat([]byte("[ 2.0] no newline"), f1, f2, f3), []string{"one", "two", "three"}, 0, 0, false},
		{"kmsg inside frame", cat(f1, f2[:10], kmsg, f2[10:], f3), []string{"one", "three"}, 1, 1, false},
		{"kmsg inside w/o newline", cat(f1, f2[:12], []byte("oops"), f2[12:], f3), []string{"one", "three"}, 1, 1, false},
		{"crlf", cat(bytes.Replace(f1, []byte("\n"), []byte("\r\n"), 1), f2, f3), []string{"one", "two", "three"}, 0, 0, true},
		{"flipped bit", cat(f1, flip(f2, 25), f3), []string{"one", "three"}, 1, 1, false},
		{"truncated last", cat(f1, f2, f3[:len(f3)-4]), []string{"one", "two"}, 0, 0, false},
		{"truncated header", cat(f1, f2[:8], []byte("\n"), f3), []string{"one", "three"}, 1, 1, false},
		{"binary garbage", cat([]byte{0, 1, 2, 0xff, '\n', 0x1b, '[', '2', 'J'}, f1, f2, f3), []string{"one", "two", "three"}, 0, 0, false},
		{"huge line", cat(f1, bytes.Repeat([]byte("A"), 3*MaxLine), []byte("\n"), f2, f3), []string{"one", "two", "three"}, 0, 0, false},
		{"huge marker line", cat(f1, []byte(Marker+"O0000000100000000"), bytes.Repeat([]byte("A"), 2*MaxLine), []byte("\n"), f2, f3), []string{"one", "two", "three"}, 0, 0, false},
		{"duplicate", cat(f1, f2, f2, f3), []string{"one", "two", "two", "three"}, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, st := readAll(t, tc.in)
			var s []string
			for _, f := range got {
				s = append(s, string(f.Payload))
			}
			if strings.Join(s, ",") != strings.Join(tc.want, ",") {
				t.Errorf("payloads %q, want %q", s, tc.want)
			}
			if st.Lost != tc.lost || st.Bad != tc.bad {
				t.Errorf("lost %d bad %d, want %d %d", st.Lost, st.Bad, tc.lost, tc.bad)
			}
			if (st.Garbage == 0) != tc.garbage0 {
				t.Errorf("garbage %d", st.Garbage)
			}
		})
	}
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	if c[i] == 'A' {
		c[i] = 'B'
	} else {
		c[i] = 'A'
	}
	return c
}

func TestGarbageTail(t *testing.T) {
	r := NewReader(strings.NewReader(strings.Repeat("x", 10000) + "\nKernel panic - not syncing: VFS\n"))
	if _, err := r.Next(); err != io.EOF {
		t.Fatal(err)
	}
	tail := r.GarbageTail()
	if len(tail) > tailMax || !bytes.HasSuffix(tail, []byte("Kernel panic - not syncing: VFS\n")) {
		t.Errorf("tail %d bytes: %q", len(tail), tail[max(0, len(tail)-40):])
	}
}

func TestDemux(t *testing.T) {
	var in bytes.Buffer
	w := NewWriter(&in)
	in.WriteString("[    0.5] kernel says hi\n")
	w.WriteFrame(TypeReady, []byte(`{"version":1,"uptime_ms":500}`))
	w.Stream(TypeStdout).Write([]byte("out1\n"))
	w.Stream(TypeStderr).Write([]byte("err1\n"))
	w.Stream(TypeStdout).Write([]byte{0, 1, 2})
	w.WriteExit(42)
	in.WriteString("reboot: Power down\n")
	var o, e bytes.Buffer
	code, err := Demux(context.Background(), &in, &o, &e)
	if err != nil || code != 42 {
		t.Fatalf("code %d err %v", code, err)
	}
	if o.String() != "out1\n\x00\x01\x02" || e.String() != "err1\n" {
		t.Errorf("stdout %q stderr %q", o.String(), e.String())
	}
}

func TestDemuxErrors(t *testing.T) {
	full := func(mod func(w *Writer, b *bytes.Buffer)) []byte {
		var b bytes.Buffer
		w := NewWriter(&b)
		mod(w, &b)
		return b.Bytes()
	}
	tests := []struct {
		name     string
		in       []byte
		code     int
		is       error
		contains string
	}{
		{"no exit", full(func(w *Writer, b *bytes.Buffer) {
			w.Stream(TypeStdout).Write([]byte("x"))
			b.WriteString("Kernel panic - not syncing: Attempted to kill init!\n")
		}), -1, ErrNoExit, "Kernel panic"},
		{"lost", full(func(w *Writer, b *bytes.Buffer) {
			w.Stream(TypeStdout).Write([]byte("x"))
			w.seq++
			w.WriteExit(3)
		}), 3, ErrOutputLost, "1 frame"},
		{"bad exit", full(func(w *Writer, b *bytes.Buffer) { w.WriteFrame(TypeExit, []byte("256")) }), -1, nil, "not 0-255"},
		{"fatal", full(func(w *Writer, b *bytes.Buffer) {
			w.WriteFrame(TypeFatal, []byte("mount /dev/xvda: no such device"))
			w.WriteExit(125)
		}), 125, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e bytes.Buffer
			code, err := Demux(context.Background(), bytes.NewReader(tc.in), io.Discard, &e)
			if code != tc.code {
				t.Errorf("code %d want %d", code, tc.code)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err %v, want %v", err, tc.is)
			}
			if tc.contains != "" && (err == nil || !strings.Contains(err.Error(), tc.contains)) {
				t.Errorf("err %v does not mention %q", err, tc.contains)
			}
			if tc.contains == "" && err != nil {
				t.Errorf("err %v", err)
			}
			if tc.name == "fatal" && !strings.Contains(e.String(), "vxn-init: mount /dev/xvda") {
				t.Errorf("stderr %q", e.String())
			}
		})
	}
}

// TestDemuxStreams checks that output is delivered before the exit frame
// exists (streaming) and that cancelling the context returns at once.
func TestDemuxStreams(t *testing.T) {
	pr, pw := io.Pipe()
	got := make(chan []byte, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Demux(ctx, pr, writerFunc(func(p []byte) (int, error) {
			got <- append([]byte(nil), p...)
			return len(p), nil
		}), io.Discard)
		done <- err
	}()
	w := NewWriter(pw)
	go w.Stream(TypeStdout).Write([]byte("first line\n"))
	select {
	case p := <-got:
		if string(p) != "first line\n" {
			t.Errorf("got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("first line not delivered before exit")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("err %v", err)
	}
	pw.Close()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestRandomInterleave mixes frames with random noise lines at line
// boundaries: every frame must come back unchanged.
func TestRandomInterleave(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var in bytes.Buffer
	w := NewWriter(&in)
	var want [][]byte
	for i := 0; i < 500; i++ {
		if rng.Intn(3) == 0 {
			noise := make([]byte, rng.Intn(200))
			rng.Read(noise)
			in.Write(bytes.ReplaceAll(noise, []byte(Marker), nil))
			in.WriteByte('\n')
		}
		p := make([]byte, rng.Intn(ChunkSize))
		rng.Read(p)
		want = append(want, p)
		w.WriteFrame(TypeStdout, p)
	}
	got, st := readAll(t, in.Bytes())
	if len(got) != len(want) || st.Lost != 0 {
		t.Fatalf("%d frames, want %d; stats %+v", len(got), len(want), st)
	}
	for i := range got {
		if !bytes.Equal(got[i].Payload, want[i]) {
			t.Fatalf("frame %d differs", i)
		}
	}
}

func TestSpec(t *testing.T) {
	s := &Spec{Args: []string{"/bin/echo", "a b", ""}, Env: []string{"A=1", "SECRET=x=y"}, User: "1000:1000"}
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseSpec(b)
	if err != nil || len(got.Args) != 3 || got.Args[2] != "" || got.Env[1] != "SECRET=x=y" {
		t.Fatalf("%+v %v", got, err)
	}
	bad := []struct {
		in, want string
	}{
		{`{"args":[]}`, "empty argv"},
		{`{"args":["x"],"env":["NOEQUALS"]}`, "not KEY=VALUE"},
		{`{"args":["x"],"env":["=v"]}`, "not KEY=VALUE"},
		{`{"args":`, "job spec"},
		{`{"args":["x"],"net":{"address":"10.0.2.15"}}`, "net.address"},
		{`{"args":["x"],"net":{"address":"fe80::1/64"}}`, "net.address"},
		{`{"args":["x"],"net":{"address":"10.0.2.15/24","gateway":"x"}}`, "net.gateway"},
		{`{"args":["x"],"net":{"address":"10.0.2.15/24","dns":["1.1.1.1","nope"]}}`, "net.dns[1]"},
		{`{"args":["x"],"net":{"interface":"a/b","address":"10.0.2.15/24"}}`, "net.interface"},
	}
	good := `{"args":["x"],"net":{"address":"10.0.2.15/24","gateway":"10.0.2.2","dns":["10.0.2.3","2001:db8::1"]}}`
	if s, err := ParseSpec([]byte(good)); err != nil || s.Net == nil || s.Net.Gateway != "10.0.2.2" || len(s.Net.DNS) != 2 {
		t.Errorf("net spec: %+v %v", s, err)
	}
	for _, tc := range bad {
		if _, err := ParseSpec([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", tc.in, err, tc.want)
		}
	}
	big := &Spec{Args: []string{"x"}, Env: []string{"A=" + strings.Repeat("v", MaxSpec)}}
	if _, err := big.Marshal(); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("big spec: %v", err)
	}
}
