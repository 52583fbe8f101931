package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// external runs a program as an import handler.
type external struct {
	typ   string
	path  string
	tools []Tool
}

// External returns a handler for a custom import type served by the program
// at path (the xen_guest_import_<type> extension point of the upstream
// class, as an executable instead of a shell function).
//
// Contract: the program is run as
//
//	path SOURCE OUTPUT SIZE_MB
//
// where OUTPUT is a temporary name in the directory of Request.Output (moved
// into place when the program exits 0) and SIZE_MB is Request.SizeMB in
// decimal, "0" meaning not set. The environment is inherited, plus
// XENBUNDLE_GUEST=<guest>, XENBUNDLE_IMPORT_TYPE=<type> and, when
// Request.Epoch is set, SOURCE_DATE_EPOCH. The program must create OUTPUT
// and exit 0; a non-zero exit, a signal, or a missing OUTPUT is an error that
// quotes the end of its output. Context cancellation kills it.
//
// tools are its native tool dependencies (XEN_GUEST_IMPORT_DEPENDS_<type>),
// returned by Tools; Check fails if any of them, or the program itself, is
// missing, so that nothing runs without them. Estimate returns 0: a custom
// handler's output size is not known in advance.
func External(typ, path string, tools []Tool) Handler {
	return &external{typ: typ, path: path, tools: slices.Clone(tools)}
}

func (e *external) Type() string  { return e.typ }
func (e *external) Tools() []Tool { return slices.Clone(e.tools) }

func (e *external) Check(req Request) error {
	if err := checkCommon(req); err != nil {
		return reqError(req, err)
	}
	if _, err := os.Stat(req.Source); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return reqError(req, fmt.Errorf("source %s does not exist", req.Source))
		}
		return reqError(req, err)
	}
	if !isExecutable(e.path) {
		return reqError(req, fmt.Errorf("import program %s is missing or not executable", e.path))
	}
	if err := CheckTools(e.tools); err != nil {
		return reqError(req, fmt.Errorf("import program %s: %w", e.path, err))
	}
	return nil
}

func (e *external) Estimate(_ context.Context, req Request) (int64, error) {
	return 0, e.Check(req)
}

// outputTail keeps the last bytes written to it.
type outputTail struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 4096

func (t *outputTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *outputTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > tailSize {
		b = b[len(b)-tailSize:]
	}
	return strings.TrimSpace(string(bytes.ToValidUTF8(b, []byte("?"))))
}

func (e *external) Import(ctx context.Context, req Request) error {
	if err := e.Check(req); err != nil {
		return err
	}
	if err := prepareOutput(req); err != nil {
		return reqError(req, err)
	}
	tmp := tempName(req.Output)
	cmd := exec.CommandContext(ctx, e.path, req.Source, tmp, strconv.Itoa(req.SizeMB))
	cmd.Env = append(os.Environ(), "XENBUNDLE_GUEST="+req.Guest, "XENBUNDLE_IMPORT_TYPE="+e.typ)
	if req.Epoch != nil {
		cmd.Env = append(cmd.Env, "SOURCE_DATE_EPOCH="+strconv.FormatInt(req.Epoch.Unix(), 10))
	}
	var out outputTail
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	if err == nil {
		if fi, serr := os.Stat(tmp); serr != nil {
			err = fmt.Errorf("exited 0 but did not create the output file %s", tmp)
		} else if !fi.Mode().IsRegular() {
			err = fmt.Errorf("exited 0 but the output %s is not a regular file", tmp)
		}
	}
	if err == nil {
		err = os.Rename(tmp, req.Output)
	}
	if err != nil {
		os.Remove(tmp)
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		msg := fmt.Sprintf("%s %s %s %d: %v", e.path, req.Source, tmp, req.SizeMB, err)
		if s := out.String(); s != "" {
			msg += "; output:\n" + s
		}
		return reqError(req, errors.New(msg))
	}
	return nil
}
