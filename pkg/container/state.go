package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/toolstack"
)

// DefaultRuntimeDir is where container state lives unless configured: a
// tmpfs on systemd hosts, so nothing survives a reboot (and nor do domains).
const DefaultRuntimeDir = "/run/vxn/containers"

// State is the state.json of one container, written before its domain is
// created so that a killed vxn can be cleaned up by the next one.
type State struct {
	// ID is the container id (64 hex digits).
	ID string `json:"id"`
	// Name is --name, "" when not given.
	Name string `json:"name,omitempty"`
	// Domain is the Xen domain name, "vxn-<id12>".
	Domain string `json:"domain"`
	// DomID is the domain id once created, 0 before.
	DomID int `json:"domid,omitempty"`
	// PID is the vxn process owning the container.
	PID int `json:"pid"`
	// Image is the image reference, for humans.
	Image string `json:"image,omitempty"`
	// Created is when the state was written.
	Created time.Time `json:"created"`
}

// stateDir is one container's directory, held locked while vxn runs it.
type stateDir struct {
	path string
	lock *os.File
	st   State
}

// flock takes an exclusive lock on f; with nonblock it fails at once when
// another process holds it.
func flock(f *os.File, nonblock bool) error {
	how := syscall.LOCK_EX
	if nonblock {
		how |= syscall.LOCK_NB
	}
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

// lockRuntime takes the runtime directory's lock, serialising creation
// (name checks) with Reap.
func lockRuntime(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("runtime directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("runtime directory: %w", err)
	}
	if err := flock(f, false); err != nil {
		f.Close()
		return nil, fmt.Errorf("runtime directory lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// newStateDir creates and locks <dir>/<id>, refusing a --name in use by a
// live container.
func newStateDir(dir string, st State) (*stateDir, error) {
	g, err := lockRuntime(dir)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	if st.Name != "" {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") || !e.IsDir() {
				continue
			}
			other, err := readState(filepath.Join(dir, e.Name()))
			if err != nil || other.Name != st.Name {
				continue
			}
			if live, _ := held(filepath.Join(dir, e.Name())); live {
				return nil, fmt.Errorf("the container name %q is already in use by container %s", st.Name, short(other.ID))
			}
		}
	}
	p := filepath.Join(dir, st.ID)
	if err := os.Mkdir(p, 0o700); err != nil {
		return nil, fmt.Errorf("container state: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(p, "lock"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = flock(lock, true)
	}
	if err != nil {
		os.RemoveAll(p)
		return nil, fmt.Errorf("container state lock: %w", err)
	}
	s := &stateDir{path: p, lock: lock, st: st}
	if err := s.save(); err != nil {
		s.remove()
		return nil, err
	}
	return s, nil
}

func (s *stateDir) save() error {
	b, _ := json.MarshalIndent(s.st, "", "  ")
	tmp := filepath.Join(s.path, "state.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("container state: %w", err)
	}
	return os.Rename(tmp, filepath.Join(s.path, "state.json"))
}

// remove deletes the directory, then releases the lock.
func (s *stateDir) remove() error {
	err := os.RemoveAll(s.path)
	s.lock.Close()
	return err
}

func readState(dir string) (State, error) {
	var st State
	p := filepath.Join(dir, "state.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", p, err)
	}
	return st, nil
}

// held reports whether a live vxn holds dir's lock. When it does not, the
// returned file holds the lock for the caller (nil when dir has no lock).
func held(dir string) (bool, *os.File) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR, 0)
	if err != nil {
		return false, nil
	}
	if err := flock(f, true); err != nil {
		f.Close()
		return true, nil
	}
	return false, f
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Reaped is one container Reap cleaned up.
type Reaped struct {
	// ID and Domain identify the container.
	ID, Domain string
	// Destroyed reports that its domain was still there and was destroyed.
	Destroyed bool
}

// Reap cleans up after vxn processes that were killed: for every container
// directory under dir whose lock is free (its owner is gone; flock locks die
// with their process) it destroys the domain, found by name (domain ids may
// have been reused), and removes the directory. Directories without a lock
// file (a vxn killed while creating it) are removed when their owner pid is
// dead. Live containers are not touched. Call it at the start of every vxn
// invocation; a missing dir is not an error.
func Reap(ctx context.Context, ts toolstack.Toolstack, dir string) ([]Reaped, error) {
	if dir == "" {
		dir = DefaultRuntimeDir
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	g, err := lockRuntime(dir)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []Reaped
	var errs []error
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		live, lock := held(p)
		if live {
			continue
		}
		st, serr := readState(p)
		if lock == nil && serr == nil && pidAlive(st.PID) && st.PID != os.Getpid() {
			continue // no lock file yet: its creator is still setting up
		}
		r := Reaped{ID: e.Name(), Domain: st.Domain}
		if r.Domain == "" {
			r.Domain = DomainName(e.Name())
		}
		if id, err := ts.DomID(ctx, r.Domain); err == nil {
			if err := ts.Destroy(ctx, id); err != nil && !errors.Is(err, toolstack.ErrNoDomain) {
				errs = append(errs, fmt.Errorf("reap container %s: %w", short(r.ID), err))
				if lock != nil {
					lock.Close()
				}
				continue
			}
			r.Destroyed = true
		} else if !errors.Is(err, toolstack.ErrNoDomain) {
			errs = append(errs, fmt.Errorf("reap container %s: %w", short(r.ID), err))
			if lock != nil {
				lock.Close()
			}
			continue
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("reap container %s: %w", short(r.ID), err))
		}
		if lock != nil {
			lock.Close()
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// short is the 12-digit form of an id.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// DomainName is the Xen domain name of container id: "vxn-<id12>".
func DomainName(id string) string { return "vxn-" + short(id) }
