// Package termios handles terminals on Linux: raw mode, window sizes and
// pseudo-terminal pairs, through ioctl(2) only. The Dom0 tools use it for
// the user's terminal and for the ptys of xl console and OCI console
// sockets; the guest init uses it for its protocol console and for the
// terminals of its processes, so it depends on golang.org/x/sys/unix and the
// standard library only.
package termios

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether fd is a terminal.
func IsTerminal(fd int) bool {
	_, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	return err == nil
}

// MakeRaw puts the terminal fd in raw mode, as cfmakeraw(3) and `stty raw`
// do: no echo, no line editing, no CR/LF mapping, no output processing, no
// signals from ^C or ^Z, no flow control, 8-bit characters, reads return
// after one byte. restore sets the previous mode back.
func MakeRaw(fd int) (restore func() error, err error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON | unix.IXOFF
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	return func() error { return unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// GetSize returns the window size of the terminal fd, in rows and columns.
func GetSize(fd int) (rows, cols uint16, err error) {
	ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
	if err != nil {
		return 0, 0, err
	}
	return ws.Row, ws.Col, nil
}

// SetSize sets the window size of the terminal fd (on a pty master: the
// kernel then sends SIGWINCH to the foreground process group of its slave).
func SetSize(fd int, rows, cols uint16) error {
	return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

// OpenPty opens a new pseudo-terminal pair: the master is the
// multiplexer ptmx (/dev/ptmx, or the ptmx of a devpts instance), unlocked,
// and the slave is its number under the devpts directory pts (/dev/pts).
// Neither becomes the caller's controlling terminal, and both are closed on
// exec.
func OpenPty(ptmx, pts string) (master, slave *os.File, err error) {
	m, err := os.OpenFile(ptmx, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening a terminal: %w", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlocking the terminal: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("terminal number: %w", err)
	}
	s, err := os.OpenFile(filepath.Join(pts, strconv.Itoa(int(n))), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("opening the terminal's slave: %w", err)
	}
	return m, s, nil
}
