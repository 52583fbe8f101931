package termios

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, s, err := OpenPty("/dev/ptmx", "/dev/pts")
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

func TestIsTerminal(t *testing.T) {
	m, s := openPty(t)
	if !IsTerminal(int(m.Fd())) || !IsTerminal(int(s.Fd())) {
		t.Error("a pty pair is not a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if IsTerminal(int(r.Fd())) {
		t.Error("a pipe is a terminal")
	}
	if _, err := MakeRaw(int(r.Fd())); err == nil {
		t.Error("MakeRaw of a pipe: no error")
	}
}

func TestMakeRawRestore(t *testing.T) {
	_, s := openPty(t)
	fd := int(s.Fd())
	before, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	restore, err := MakeRaw(fd)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := unix.IoctlGetTermios(fd, unix.TCGETS)
	if raw.Lflag&(unix.ECHO|unix.ICANON|unix.ISIG) != 0 || raw.Oflag&unix.OPOST != 0 ||
		raw.Iflag&(unix.ICRNL|unix.IXON|unix.IXOFF) != 0 || raw.Cflag&unix.CSIZE != unix.CS8 ||
		raw.Cc[unix.VMIN] != 1 || raw.Cc[unix.VTIME] != 0 {
		t.Errorf("not raw: %+v", raw)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	after, _ := unix.IoctlGetTermios(fd, unix.TCGETS)
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("restore: %+v, want %+v", after, before)
	}
}

func TestSize(t *testing.T) {
	m, s := openPty(t)
	if err := SetSize(int(m.Fd()), 33, 101); err != nil {
		t.Fatal(err)
	}
	rows, cols, err := GetSize(int(s.Fd()))
	if err != nil || rows != 33 || cols != 101 {
		t.Errorf("GetSize = %d, %d, %v; want 33, 101", rows, cols, err)
	}
}
