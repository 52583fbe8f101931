package toolstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/termios"
	"github.com/vxn-dev/vxn/pkg/xlcfg"
)

// XL is the Toolstack that runs Xen's command-line tools.
//
// Every child runs in its own process group, so a Ctrl-C typed at vxn's
// terminal reaches vxn only (which forwards it to the container) and not the
// xl console attached to the guest.
type XL struct {
	// XL is the xl program; "" means "xl" looked up in PATH.
	XL string
	// XenstoreReadPath is the xenstore-read program; "" means
	// "xenstore-read" in PATH.
	XenstoreReadPath string
}

var _ Toolstack = (*XL)(nil)

func (x *XL) xl() string {
	if x.XL != "" {
		return x.XL
	}
	return "xl"
}

// Available reports why the xl toolstack cannot be used here (nil when it
// can): xl missing from PATH or `xl info` failing (not Dom0, no xenstored).
func (x *XL) Available(ctx context.Context) error {
	if _, err := exec.LookPath(x.xl()); err != nil {
		return fmt.Errorf("xl not found: %w", err)
	}
	_, err := x.Info(ctx)
	return err
}

// command builds an xl (or other tool) command in its own process group.
func command(ctx context.Context, prog string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// `xl create` leaves a monitor process behind; should it keep our
	// pipes open, do not wait for it.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// run runs prog and returns its stdout; the error quotes the command and its
// stderr. Arguments never contain secrets (configs hold no environment).
func run(ctx context.Context, prog string, args ...string) ([]byte, error) {
	cmd := command(ctx, prog, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", prog, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// ConfigName returns the name = setting of the xl config at cfgPath.
func ConfigName(cfgPath string) (string, error) {
	src, err := os.ReadFile(cfgPath)
	if err != nil {
		return "", err
	}
	f, err := xlcfg.Parse(cfgPath, src)
	if err != nil {
		return "", err
	}
	v, ok := f.Get("name")
	if !ok || v.Kind != xlcfg.KindString || v.Text == "" {
		return "", fmt.Errorf("%s: no name = \"...\" setting", cfgPath)
	}
	return v.Text, nil
}

// Create implements Toolstack: `xl create [-p] cfg`, then `xl domid NAME`.
func (x *XL) Create(ctx context.Context, cfgPath string, paused bool) (int, error) {
	name, err := ConfigName(cfgPath)
	if err != nil {
		return 0, err
	}
	args := []string{"create"}
	if paused {
		args = append(args, "-p")
	}
	args = append(args, cfgPath)
	if _, err := run(ctx, x.xl(), args...); err != nil {
		return 0, err
	}
	return x.DomID(ctx, name)
}

// exists reports whether domid is still listed.
func (x *XL) exists(ctx context.Context, domid int) bool {
	doms, err := x.List(ctx)
	if err != nil {
		return true // unknown: do not claim it is gone
	}
	for _, d := range doms {
		if d.ID == domid {
			return true
		}
	}
	return false
}

// simple runs `xl VERB domid`, mapping a vanished domain to ErrNoDomain.
func (x *XL) simple(ctx context.Context, verb string, domid int) error {
	_, err := run(ctx, x.xl(), verb, strconv.Itoa(domid))
	if err != nil && !x.exists(ctx, domid) {
		return fmt.Errorf("xl %s %d: %w", verb, domid, ErrNoDomain)
	}
	return err
}

// Unpause implements Toolstack (`xl unpause`).
func (x *XL) Unpause(ctx context.Context, domid int) error { return x.simple(ctx, "unpause", domid) }

// Pause implements Toolstack (`xl pause`).
func (x *XL) Pause(ctx context.Context, domid int) error { return x.simple(ctx, "pause", domid) }

// Shutdown implements Toolstack (`xl shutdown`, without waiting).
func (x *XL) Shutdown(ctx context.Context, domid int) error {
	return x.simple(ctx, "shutdown", domid)
}

// Destroy implements Toolstack (`xl destroy`).
func (x *XL) Destroy(ctx context.Context, domid int) error { return x.simple(ctx, "destroy", domid) }

// List implements Toolstack (`xl list`).
func (x *XL) List(ctx context.Context) ([]Domain, error) {
	out, err := run(ctx, x.xl(), "list")
	if err != nil {
		return nil, err
	}
	return ParseList(out)
}

// DomID implements Toolstack (`xl domid`).
func (x *XL) DomID(ctx context.Context, name string) (int, error) {
	out, err := run(ctx, x.xl(), "domid", name)
	if err != nil {
		if bytes.Contains([]byte(err.Error()), []byte("invalid domain identifier")) || !x.nameListed(ctx, name) {
			return 0, fmt.Errorf("domain %q: %w", name, ErrNoDomain)
		}
		return 0, err
	}
	return ParseDomID(out)
}

func (x *XL) nameListed(ctx context.Context, name string) bool {
	doms, err := x.List(ctx)
	if err != nil {
		return true
	}
	for _, d := range doms {
		if d.Name == name {
			return true
		}
	}
	return false
}

// Info implements Toolstack (`xl info`).
func (x *XL) Info(ctx context.Context) (Info, error) {
	out, err := run(ctx, x.xl(), "info")
	if err != nil {
		return Info{}, err
	}
	return ParseInfo(out)
}

// XenstoreRead implements Toolstack (`xenstore-read PATH`).
func (x *XL) XenstoreRead(ctx context.Context, path string) (string, error) {
	prog := x.XenstoreReadPath
	if prog == "" {
		prog = "xenstore-read"
	}
	out, err := run(ctx, prog, path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(out), "\n"), nil
}

// Console implements Toolstack: `xl console -t pv DOMID` on a pty.
//
// xl console's stdin and stdout are the slave side of a pseudo-terminal,
// not pipes: xenconsole forwards its stdin to the guest only when stdin is
// a terminal (isatty), so with a pipe the guest never receives the job
// (found on real Xen by the runtime suite). The pty is raw (no echo, no
// CR/LF translation, no line buffering), as xenconsole itself sets it, so
// the protocol's bytes pass unchanged.
func (x *XL) Console(ctx context.Context, domid int) (io.ReadWriteCloser, error) {
	master, slave, err := openPty()
	if err != nil {
		return nil, fmt.Errorf("xl console %d: %w", domid, err)
	}
	defer slave.Close()
	// Not CommandContext: the console must outlive a cancelled ctx until
	// the caller closes it (cleanup still reads the tail).
	cmd := exec.Command(x.xl(), "console", "-t", "pv", strconv.Itoa(domid))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second
	cmd.Stdin, cmd.Stdout = slave, slave
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		master.Close()
		return nil, fmt.Errorf("xl console %d: %w", domid, err)
	}
	return &xlConsole{cmd: cmd, pty: master}, nil
}

// openPty opens a pseudo-terminal pair whose slave is raw.
func openPty() (master, slave *os.File, err error) {
	master, slave, err = termios.OpenPty("/dev/ptmx", "/dev/pts")
	if err != nil {
		return nil, nil, fmt.Errorf("pty: %w", err)
	}
	if _, err := termios.MakeRaw(int(slave.Fd())); err != nil {
		master.Close()
		slave.Close()
		return nil, nil, fmt.Errorf("pty: %w", err)
	}
	return master, slave, nil
}

type xlConsole struct {
	cmd  *exec.Cmd
	pty  *os.File
	once sync.Once
	err  error
}

// Read reads the guest's console output; the end of xl console (EIO on
// the pty master once the slave is closed) is io.EOF.
func (c *xlConsole) Read(p []byte) (int, error) {
	n, err := c.pty.Read(p)
	if err != nil && (errors.Is(err, syscall.EIO) || errors.Is(err, os.ErrClosed)) {
		err = io.EOF
	}
	return n, err
}

// Write sends bytes to the guest's console input.
func (c *xlConsole) Write(p []byte) (int, error) { return c.pty.Write(p) }

// Close ends the xl console process.
func (c *xlConsole) Close() error {
	c.once.Do(func() {
		if c.cmd.Process != nil {
			c.cmd.Process.Kill()
		}
		err := c.cmd.Wait()
		c.pty.Close()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			c.err = err
		}
	})
	return c.err
}
