package oci

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultPath is the PATH a container gets when neither the image nor the
// run options set one (docker's default for Linux containers).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ErrNoCommand is returned by Resolve when neither the image nor the run
// options give a command (docker: "no command specified").
var ErrNoCommand = errors.New("no command specified")

// RunOptions are the `docker run` overrides of the image config.
type RunOptions struct {
	// Entrypoint is --entrypoint: nil when not given. A non-nil value
	// replaces the image's Entrypoint and drops the image's Cmd; a pointer
	// to "" resets the entrypoint to none.
	Entrypoint *string
	// Cmd is the argument list after the image name; when non-empty it
	// replaces the image's Cmd.
	Cmd []string
	// EnvFiles are the parsed --env-file contents in flag order (see
	// ParseEnvFile); they apply before Env.
	EnvFiles [][]string
	// Env are the -e/--env values in flag order: "K=V", or "K" to copy K
	// from LookupEnv (dropped when it is not set there).
	Env []string
	// LookupEnv looks up "-e K" values; nil means none are set.
	LookupEnv func(string) (string, bool)
	// WorkDir is -w; it must be absolute. Empty keeps the image's.
	WorkDir string
	// User is -u USER[:GROUP] (names or numbers); empty keeps the image's.
	User string
	// TTY is -t: TERM=xterm is added unless TERM is already set.
	TTY bool
}

// Process is what the container runs, after Resolve.
type Process struct {
	// Args is the argv, Args[0] the program (looked up in PATH by the
	// guest when it has no slash).
	Args []string
	// Env is the environment, "K=V" entries, image order with overrides
	// replaced in place and new keys appended; it always has PATH.
	Env []string
	// Cwd is the absolute working directory ("/" by default).
	Cwd string
	// User is USER[:GROUP] as given, resolved in the guest against the
	// image's /etc/passwd and /etc/group; empty means root.
	User string
}

// Resolve applies docker run's rules to an image config:
//
//   - argv is Entrypoint + Cmd. --entrypoint replaces the image's Entrypoint
//     and also drops the image's Cmd (so only the CMD arguments given on the
//     command line follow it); --entrypoint "" clears it. CMD arguments
//     replace the image's Cmd. An empty argv is ErrNoCommand.
//   - env starts from the image's Env; --env-file entries, then -e entries,
//     override by key (later wins, replaced in place, new keys appended).
//     "-e K" copies K from LookupEnv or is dropped. PATH=DefaultPath is
//     appended when no PATH is set; TERM=xterm with TTY.
//   - cwd is -w (must be absolute), else the image's WorkingDir (a relative
//     one is taken from "/"), else "/".
//   - user is -u, else the image's User.
func Resolve(cfg v1.Config, opt RunOptions) (Process, error) {
	var p Process
	entry, cmd := cfg.Entrypoint, cfg.Cmd
	if opt.Entrypoint != nil {
		entry, cmd = nil, nil
		if *opt.Entrypoint != "" {
			entry = []string{*opt.Entrypoint}
		}
	}
	if len(opt.Cmd) > 0 {
		cmd = opt.Cmd
	}
	p.Args = append(append([]string{}, entry...), cmd...)
	if len(p.Args) == 0 {
		return Process{}, ErrNoCommand
	}

	p.Env = append([]string{}, cfg.Env...)
	set := func(kv string) error {
		k, _, _ := strings.Cut(kv, "=")
		if k == "" {
			return fmt.Errorf("invalid environment variable %q: empty name", kv)
		}
		for i, e := range p.Env {
			if ek, _, _ := strings.Cut(e, "="); ek == k {
				p.Env[i] = kv
				return nil
			}
		}
		p.Env = append(p.Env, kv)
		return nil
	}
	var over []string
	for _, f := range opt.EnvFiles {
		over = append(over, f...)
	}
	over = append(over, opt.Env...)
	for _, kv := range over {
		if !strings.Contains(kv, "=") {
			if kv == "" {
				return Process{}, fmt.Errorf("invalid environment variable: empty")
			}
			v, ok := "", false
			if opt.LookupEnv != nil {
				v, ok = opt.LookupEnv(kv)
			}
			if !ok {
				continue
			}
			kv += "=" + v
		}
		if err := set(kv); err != nil {
			return Process{}, err
		}
	}
	if !hasKey(p.Env, "PATH") {
		p.Env = append(p.Env, "PATH="+DefaultPath)
	}
	if opt.TTY && !hasKey(p.Env, "TERM") {
		p.Env = append(p.Env, "TERM=xterm")
	}

	switch {
	case opt.WorkDir != "":
		if !path.IsAbs(opt.WorkDir) {
			return Process{}, fmt.Errorf("the working directory %q is invalid: it needs to be an absolute path", opt.WorkDir)
		}
		p.Cwd = path.Clean(opt.WorkDir)
	case cfg.WorkingDir != "":
		p.Cwd = path.Join("/", cfg.WorkingDir)
	default:
		p.Cwd = "/"
	}

	p.User = cfg.User
	if opt.User != "" {
		p.User = opt.User
	}
	if err := checkUser(p.User); err != nil {
		return Process{}, err
	}
	return p, nil
}

func hasKey(env []string, key string) bool {
	for _, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			return true
		}
	}
	return false
}

// checkUser validates USER[:GROUP].
func checkUser(u string) error {
	if u == "" {
		return nil
	}
	user, group, hasGroup := strings.Cut(u, ":")
	if user == "" || (hasGroup && (group == "" || strings.Contains(group, ":"))) ||
		strings.ContainsFunc(u, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' }) {
		return fmt.Errorf("invalid user %q: want USER[:GROUP] (names or numeric ids)", u)
	}
	return nil
}

// ParseEnvFile parses a docker --env-file: one "K=V" or "K" per line,
// blank lines and lines starting with "#" ignored, leading white space of a
// line dropped, the value kept verbatim (no quote removal), a UTF-8 BOM at
// the start ignored. A name with white space or invalid UTF-8 is an error
// naming source and line. "K" lines are returned as is (Resolve looks them
// up).
func ParseEnvFile(source string, r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4<<10), 1<<20) // grows for long lines
	for n := 1; sc.Scan(); n++ {
		b := sc.Bytes()
		if n == 1 {
			b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
		}
		if !utf8.Valid(b) {
			return nil, fmt.Errorf("%s:%d: invalid UTF-8", source, n)
		}
		line := strings.TrimLeftFunc(string(b), unicode.IsSpace)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, _, _ := strings.Cut(line, "=")
		if k == "" {
			return nil, fmt.Errorf("%s:%d: no variable name before '='", source, n)
		}
		if strings.ContainsFunc(k, unicode.IsSpace) {
			return nil, fmt.Errorf("%s:%d: variable name %q contains white space", source, n, k)
		}
		if strings.ContainsRune(line, 0) {
			return nil, fmt.Errorf("%s:%d: NUL byte", source, n)
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	return out, nil
}
