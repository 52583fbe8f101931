package container

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/vxnconf"
)

// DefaultRuntimeDir is where container state lives unless configured
// (the host default of vxnconf).
const DefaultRuntimeDir = vxnconf.DefaultRuntimeDir

// Status is a container's lifecycle state, as the OCI runtime spec names
// them.
type Status string

// Container statuses.
const (
	// StatusCreating: the state exists, the domain is being created and
	// booted.
	StatusCreating Status = "creating"
	// StatusCreated: the guest is Ready and holds the entrypoint until
	// Handle.Start (OCI create).
	StatusCreated Status = "created"
	// StatusRunning: the entrypoint runs.
	StatusRunning Status = "running"
	// StatusPaused: the domain is paused (xl pause).
	StatusPaused Status = "paused"
	// StatusStopped: the entrypoint exited (or the monitor is gone).
	StatusStopped Status = "stopped"
)

// State is the state.json of one container, written before its domain is
// created so that a killed vxn can be cleaned up by the next one, and
// updated by the container's monitor at every status change. It holds no
// environment values (they may be secrets): EnvNames lists the names only.
type State struct {
	// ID is the container id (64 hex digits).
	ID string `json:"id"`
	// Name is --name, "" when not given.
	Name string `json:"name,omitempty"`
	// Domain is the Xen domain name, "vxn-<id12>".
	Domain string `json:"domain"`
	// DomID is the domain id once created, 0 before.
	DomID int `json:"domid,omitempty"`
	// MonitorPID is the process monitoring the container: the monitor
	// started by Spawn, or the foreground vxn running it.
	MonitorPID int `json:"pid"`
	// Image is the image reference, for humans.
	Image string `json:"image,omitempty"`
	// Created is when the state was written.
	Created time.Time `json:"created"`

	// Status is the lifecycle state as last recorded by the monitor
	// (Handle.State reports StatusStopped once the monitor is gone).
	Status Status `json:"status,omitempty"`
	// ExitCode is the entrypoint's exit status once stopped; nil when
	// unknown (still running, or the monitor was killed).
	ExitCode *int `json:"exit_code,omitempty"`
	// Error says why the container failed, when vxn (not the entrypoint)
	// failed.
	Error string `json:"error,omitempty"`
	// Started and Finished are when the entrypoint started and stopped.
	Started  *time.Time `json:"started,omitempty"`
	Finished *time.Time `json:"finished,omitempty"`
	// Bundle and Annotations are the OCI bundle and its annotations.
	Bundle      string            `json:"bundle,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`

	// Args, Cwd, User, EnvNames, MemoryMB, VCPUs, TTY describe the
	// container (inspect).
	Args     []string `json:"args,omitempty"`
	Cwd      string   `json:"cwd,omitempty"`
	User     string   `json:"user,omitempty"`
	EnvNames []string `json:"env_names,omitempty"`
	MemoryMB int      `json:"memory_mb,omitempty"`
	VCPUs    int      `json:"vcpus,omitempty"`
	TTY      bool     `json:"tty,omitempty"`
	// Keep: the state stays after the container stops, until Delete
	// (docker run without --rm, OCI).
	Keep bool `json:"keep,omitempty"`
	// LogPath is the docker json-file log, "" when none.
	LogPath string `json:"log_path,omitempty"`
	// Address is the guest's leased IPv4 address (--network bridge).
	Address string `json:"address,omitempty"`
	// Toolstack is the toolstack a spawned monitor was told to use; Delete
	// cleans up after a dead monitor with it. nil for a container run in
	// the caller's process (Run), whose caller knows its toolstack.
	Toolstack *toolstack.Selection `json:"toolstack,omitempty"`
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
			live, l := held(filepath.Join(dir, e.Name()))
			if l != nil {
				l.Close()
			}
			if live || other.Keep {
				return nil, fmt.Errorf("the container name %q is already in use by container %s; remove it first (vxn rm) or choose another name", st.Name, short(other.ID))
			}
		}
	}
	p := filepath.Join(dir, st.ID)
	if err := os.Mkdir(p, 0o700); err != nil {
		return nil, fmt.Errorf("container state: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(p, "lock"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		// Blocking: Handle.State may hold it for an instant.
		err = flock(lock, false)
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

func (s *stateDir) save() error { return writeState(s.path, s.st) }

// writeState writes dir/state.json through a temporary file.
func writeState(dir string, st State) error {
	b, _ := json.MarshalIndent(st, "", "  ")
	f, err := os.CreateTemp(dir, ".state-*.tmp")
	if err != nil {
		return fmt.Errorf("container state: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, "state.json"))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("container state: %w", err)
	}
	return nil
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
		if lock == nil && serr == nil && pidAlive(st.MonitorPID) && st.MonitorPID != os.Getpid() {
			continue // no lock file yet: its creator is still setting up
		}
		if serr == nil && st.Keep && st.Status == StatusStopped && st.Finished != nil {
			// Stopped cleanly and kept for vxn rm: nothing to reap.
			if lock != nil {
				lock.Close()
			}
			continue
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
		if serr == nil && st.Keep {
			// Kept until vxn rm: record that it is stopped, exit code
			// unknown (its monitor was killed).
			now := time.Now().UTC()
			st.Status, st.Finished = StatusStopped, &now
			if st.Error == "" {
				st.Error = "the container's monitor was killed"
			}
			if err := writeState(p, st); err != nil {
				errs = append(errs, fmt.Errorf("reap container %s: %w", short(r.ID), err))
			}
		} else if err := os.RemoveAll(p); err != nil {
			errs = append(errs, fmt.Errorf("reap container %s: %w", short(r.ID), err))
		}
		if lock != nil {
			lock.Close()
		}
		out = append(out, r)
	}
	reapLeases(dir)
	return out, errors.Join(errs...)
}

// short is the 12-digit form of an id.
func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// DomainName is the Xen domain name of container id: "vxn-<id12>" for the
// 64-hex-digit ids vxn and the engines generate. Other ids are chosen by
// OCI runtime users ("web-1", "web-2" share their first 12 characters), so
// they are kept whole when short and plain, and otherwise cut and suffixed
// with a hash of the whole id: distinct ids never share a domain name.
func DomainName(id string) string {
	if len(id) == 64 && strings.Trim(id, "0123456789abcdef") == "" {
		return "vxn-" + id[:12]
	}
	plain := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
	}
	if len(id) <= 40 && strings.IndexFunc(id, func(r rune) bool { return !plain(r) }) < 0 {
		return "vxn-" + id
	}
	var b strings.Builder
	for _, r := range id {
		if b.Len() >= 24 {
			break
		}
		if plain(r) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	sum := sha256.Sum256([]byte(id))
	return "vxn-" + b.String() + "-" + hex.EncodeToString(sum[:6])
}
