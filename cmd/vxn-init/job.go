package main

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"github.com/vxn-dev/vxn/pkg/guestproto"
	"github.com/vxn-dev/vxn/pkg/guestserver"
)

// defaultPath is docker's PATH for containers that set none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// plan is everything needed to start the entrypoint, computed from the
// spec and the container root before forking.
type plan struct {
	Root string   // container root on the init's file system
	Path string   // executable, absolute inside the container
	Args []string // argv, verbatim
	Env  []string
	Cwd  string
	ID   *ident
}

// makePlan resolves the user, environment, working directory and
// executable of spec inside root. It creates the working directory when
// missing, as docker does.
func makePlan(root string, spec *guestproto.Spec) (*plan, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	id, err := resolveUser(root, spec.User)
	if err != nil {
		return nil, err
	}
	p := &plan{Root: root, Args: spec.Args, ID: id}
	p.Env = buildEnv(spec.Env, id.Home, spec.Hostname)
	p.Cwd = spec.Cwd
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if !path.IsAbs(p.Cwd) {
		return nil, fmt.Errorf("working directory %q is not absolute", p.Cwd)
	}
	hp, err := resolveIn(root, p.Cwd)
	if err != nil {
		return nil, err
	}
	if st, err := os.Stat(hp); err != nil {
		if err := os.MkdirAll(hp, 0o755); err != nil {
			return nil, fmt.Errorf("creating working directory %s: %w", p.Cwd, err)
		}
	} else if !st.IsDir() {
		return nil, fmt.Errorf("working directory %s is not a directory", p.Cwd)
	}
	p.Path, err = lookPath(root, spec.Args[0], getenv(p.Env, "PATH"))
	if err != nil {
		return nil, err
	}
	return p, nil
}

// buildEnv applies docker's defaults: later duplicates win, PATH, HOSTNAME
// and HOME are added when missing.
func buildEnv(env []string, home, hostname string) []string {
	var out []string
	idx := map[string]int{}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		if i, ok := idx[k]; ok {
			out[i] = e
			continue
		}
		idx[k] = len(out)
		out = append(out, e)
	}
	add := func(k, v string) {
		if _, ok := idx[k]; !ok {
			idx[k] = len(out)
			out = append(out, k+"="+v)
		}
	}
	add("PATH", defaultPath)
	if hostname != "" {
		add("HOSTNAME", hostname)
	}
	if home == "" {
		home = "/"
	}
	add("HOME", home)
	return out
}

func getenv(env []string, k string) string {
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, k+"="); ok {
			return v
		}
	}
	return ""
}

// lookPath finds argv0 in PATH inside root, like execvp in the container.
func lookPath(root, argv0, pathEnv string) (string, error) {
	check := func(p string) error {
		hp, err := resolveIn(root, p)
		if err != nil {
			return err
		}
		st, err := os.Stat(hp)
		if err != nil {
			return err
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return os.ErrPermission
		}
		return nil
	}
	if strings.Contains(argv0, "/") {
		p := argv0
		if !path.IsAbs(p) {
			p = path.Join("/", p) // relative to cwd; resolved by the kernel later
			return argv0, nil
		}
		if err := check(p); err != nil {
			if errors.Is(err, os.ErrPermission) {
				return "", &guestserver.StartError{Status: 126, Msg: fmt.Sprintf("exec: %q: permission denied", argv0)}
			}
			return "", &guestserver.StartError{Status: 127, Msg: fmt.Sprintf("exec: %q: no such file or directory", argv0)}
		}
		return p, nil
	}
	denied := false
	for _, dir := range strings.Split(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, argv0)
		if !path.IsAbs(p) {
			continue
		}
		err := check(p)
		if err == nil {
			return p, nil
		}
		if errors.Is(err, os.ErrPermission) {
			denied = true
		}
	}
	if denied {
		return "", &guestserver.StartError{Status: 126, Msg: fmt.Sprintf("exec: %q: permission denied", argv0)}
	}
	return "", &guestserver.StartError{Status: 127, Msg: fmt.Sprintf("exec: %q: executable file not found in $PATH", argv0)}
}
