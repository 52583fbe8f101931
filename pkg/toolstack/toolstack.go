// Package toolstack is vxn's one interface to Xen control on Dom0. Its
// implementation is XL, which runs the xl and xenstore-read programs of the
// Xen tools; tests use an in-process stand-in (package faketoolstack),
// chosen by name through Selection and Register.
//
// We exec xl instead of linking a library because the only Go binding of
// libxl (xen.git's tools/golang/xenlight) is cgo, experimental, generated per
// Xen release and refused by the module proxy, and libvirt would add a daemon;
// xl is what every Xen Dom0 has. The text xl prints
// (`xl list`, `xl info`, `xl domid`) is parsed here; those parsers accept any
// input without panicking and are fuzzed.
//
// The console is attached with `xl console -t pv <domid>` on a raw pty
// (xenconsole forwards its input only from a terminal). Creating paused (`xl
// create -p`), attaching the console and only then unpausing guarantees that
// no guest output is missed.
package toolstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

// ErrNoDomain is wrapped by errors about a domain that does not exist (any
// more). Cleanup code treats it as success.
var ErrNoDomain = errors.New("no such domain")

// Domain is one line of `xl list`.
type Domain struct {
	// Name is the domain name.
	Name string
	// ID is the domain id.
	ID int
	// MemoryMB is the current memory in MiB.
	MemoryMB int
	// VCPUs is the number of virtual CPUs.
	VCPUs int
	// State is xl's six-letter state ("r-----", "-b----", "--p---", ...).
	State string
}

// Info is what vxn needs from `xl info`.
type Info struct {
	// TotalMemoryMB and FreeMemoryMB are the host's memory and what is free
	// for new guests, in MiB.
	TotalMemoryMB, FreeMemoryMB int
	// XenVersion is the hypervisor version ("4.17.7"), "" when unknown.
	XenVersion string
	// NrCPUs is the number of physical CPUs, 0 when unknown.
	NrCPUs int
}

// Toolstack controls Xen domains. Domain ids come from Create; methods
// given an id that no longer exists return an error wrapping ErrNoDomain.
type Toolstack interface {
	// Create creates a domain from the xl config file cfgPath and returns
	// its id. With paused the domain does not run until Unpause.
	Create(ctx context.Context, cfgPath string, paused bool) (int, error)
	// Unpause lets a paused domain run.
	Unpause(ctx context.Context, domid int) error
	// Pause stops a domain's vCPUs until Unpause.
	Pause(ctx context.Context, domid int) error
	// Shutdown asks the guest to shut down (ACPI-style power button for
	// PV: the guest kernel runs its poweroff helper); it does not wait.
	Shutdown(ctx context.Context, domid int) error
	// Destroy kills the domain at once and releases its devices.
	Destroy(ctx context.Context, domid int) error
	// List returns every domain, Domain-0 included.
	List(ctx context.Context) ([]Domain, error)
	// DomID returns the id of the domain called name.
	DomID(ctx context.Context, name string) (int, error)
	// Info returns host memory figures.
	Info(ctx context.Context) (Info, error)
	// Console attaches to the domain's PV console: reads return guest
	// output, writes are guest input. Close detaches. The stream ends
	// (io.EOF) when the domain goes away.
	Console(ctx context.Context, domid int) (io.ReadWriteCloser, error)
	// XenstoreRead reads one xenstore key.
	XenstoreRead(ctx context.Context, path string) (string, error)
}

// Env is the environment variable selecting the toolstack of every vxn
// binary: unset or "xl" is XL; another name is a toolstack registered by a
// test build ("fake": package faketoolstack, linked into tests and into
// binaries built with -tags vxnfake).
const Env = "VXN_TOOLSTACK"

// Selection names a toolstack and its program: what the configuration
// chooses, and what a container monitor in a process of its own is told
// (it is JSON). The zero value is XL running "xl" from PATH.
type Selection struct {
	// Name is "" or "xl" for XL, else the name of a registered toolstack
	// (Register).
	Name string `json:"name,omitempty"`
	// XL is XL's xl program; "" is "xl" from PATH.
	XL string `json:"xl,omitempty"`
}

var (
	registryMu sync.Mutex
	registry   = map[string]func() Toolstack{}
)

// Register makes Open return open() for the toolstack called name. Test
// doubles register themselves this way (package faketoolstack as "fake");
// production builds register nothing.
func Register(name string, open func() Toolstack) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[name] = open
}

// Open returns the selected toolstack: XL, or a registered one. The error
// names the known toolstacks.
func (s Selection) Open() (Toolstack, error) {
	if s.Name == "" || s.Name == "xl" {
		return &XL{XL: s.XL}, nil
	}
	registryMu.Lock()
	open := registry[s.Name]
	names := []string{"xl"}
	for n := range registry {
		names = append(names, n)
	}
	registryMu.Unlock()
	if open == nil {
		sort.Strings(names[1:])
		return nil, fmt.Errorf("toolstack %q (%s) is not in this build; known: %s", s.Name, Env, strings.Join(names, ", "))
	}
	return open(), nil
}
