package vxncli

import (
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/vxn-dev/vxn/pkg/container"
	"github.com/vxn-dev/vxn/pkg/termios"
)

// makeRaw puts the terminal f in raw mode and returns the function
// restoring it; ok is false when f is not a terminal.
func makeRaw(f *os.File) (restore func(), ok bool) {
	r, err := termios.MakeRaw(int(f.Fd()))
	if err != nil {
		return func() {}, false
	}
	return func() { r() }, true
}

// windowSizes reports f's terminal size now and at every SIGWINCH, until
// stop is called.
func windowSizes(f *os.File) (<-chan container.WindowSize, func()) {
	c := make(chan container.WindowSize, 4)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGWINCH)
	done := make(chan struct{})
	send := func() {
		rows, cols, err := termios.GetSize(int(f.Fd()))
		if err != nil || rows == 0 {
			return
		}
		select {
		case c <- container.WindowSize{Rows: rows, Cols: cols}:
		default:
		}
	}
	send()
	go func() {
		for {
			select {
			case <-sig:
				send()
			case <-done:
				return
			}
		}
	}()
	return c, func() { signal.Stop(sig); close(done) }
}

// terminalFile returns the *os.File behind r or w when it is a terminal.
func terminalFile(v any) *os.File {
	f, ok := v.(*os.File)
	if !ok || !termios.IsTerminal(int(f.Fd())) {
		return nil
	}
	return f
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool { return terminalFile(w) != nil }
