package vxncli

import (
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/container"
)

// makeRaw puts the terminal f in raw mode (cfmakeraw) and returns the
// function restoring it; ok is false when f is not a terminal.
func makeRaw(f *os.File) (restore func(), ok bool) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {}, false
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return func() {}, false
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, true
}

// windowSizes reports f's terminal size now and at every SIGWINCH, until
// stop is called.
func windowSizes(f *os.File) (<-chan container.WindowSize, func()) {
	c := make(chan container.WindowSize, 4)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGWINCH)
	done := make(chan struct{})
	send := func() {
		ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
		if err != nil || ws.Row == 0 {
			return
		}
		select {
		case c <- container.WindowSize{Rows: ws.Row, Cols: ws.Col}:
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
	if !ok {
		return nil
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return nil
	}
	return f
}
