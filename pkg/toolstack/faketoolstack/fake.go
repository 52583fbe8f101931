// Package faketoolstack is an in-process toolstack.Toolstack for tests
// without Xen: Fake keeps domains as records and "boots" one by running a Go
// function (GuestFunc) on an in-memory console; Init is such a function
// running vxn-init's own protocol server (pkg/guestserver) with a Program
// such as ScriptProgram as the container's processes.
//
// Linking the package registers the process's Fake (Shared) as the
// toolstack "fake" (toolstack.Register), selected with VXN_TOOLSTACK=fake.
// Only tests import it, and binaries built with -tags vxnfake (cmd/vxn,
// cmd/vxn-oci-runtime) for tests that drive the real command: production
// builds do not contain it.
package faketoolstack

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/xlcfg"
)

// GuestFunc is the "kernel and init" of a Fake domain: it runs once the
// domain is unpaused, talking to Dom0 through g.Console, and its return is
// the guest powering off. It must return when ctx is done (the domain was
// destroyed).
type GuestFunc func(ctx context.Context, g *Guest)

// Guest is what a GuestFunc sees of its domain.
type Guest struct {
	// Name, ID and MemoryMB describe the domain.
	Name     string
	ID       int
	MemoryMB int
	// Config is the parsed xl config the domain was created from.
	Config *xlcfg.File
	// Console is the guest end of the PV console: writes are console
	// output, reads are console input.
	Console io.ReadWriter
	// ShutdownRequested is closed by Fake.Shutdown (the kernel's poweroff
	// request).
	ShutdownRequested <-chan struct{}

	f *Fake
}

// XenstoreWrite writes a key of the domain's xenstore home, as a guest
// does: a relative key is under /local/domain/<ID>/. Fake.XenstoreRead then
// returns the value until the domain is destroyed (Xen removes the home
// with the domain; it is kept while a domain with on_poweroff = "preserve"
// stays shut down).
func (g *Guest) XenstoreWrite(key, value string) {
	if g.f == nil {
		return
	}
	if !strings.HasPrefix(key, "/") {
		key = xenstoreHome(g.ID) + key
	}
	g.f.mu.Lock()
	defer g.f.mu.Unlock()
	if d := g.f.doms[g.ID]; d == nil || d.dead {
		return // destroyed: its xenstore home is gone
	}
	if g.f.Xenstore == nil {
		g.f.Xenstore = map[string]string{}
	}
	g.f.Xenstore[key] = value
}

func xenstoreHome(domid int) string { return "/local/domain/" + strconv.Itoa(domid) + "/" }

// Fake is an in-process Toolstack for unit tests only: no Xen, no
// processes. Domains are records; unpausing one runs Guest in a goroutine
// with an in-memory console. Memory is accounted like Xen does it: free =
// TotalMemoryMB - Dom0MemoryMB - the memory of every domain, and Create fails
// when a domain does not fit.
type Fake struct {
	// TotalMemoryMB is the host memory (default 1024) and Dom0MemoryMB
	// Domain-0's share (default 512).
	TotalMemoryMB, Dom0MemoryMB int
	// Guest runs inside every unpaused domain; nil powers off at once.
	Guest GuestFunc
	// CreateErr, when set, makes Create fail with it (after parsing).
	CreateErr error
	// Xenstore holds the values XenstoreRead returns.
	// Guests write it with Guest.XenstoreWrite.
	Xenstore map[string]string

	mu    sync.Mutex
	next  int
	doms  map[int]*fakeDom
	calls []string
	cfgs  map[string][]byte
}

var _ toolstack.Toolstack = (*Fake)(nil)

type fakeDom struct {
	g        Guest
	paused   bool
	running  bool
	cancel   context.CancelFunc
	shutdown chan struct{}
	once     sync.Once
	// outR/outW carry guest output to Dom0, inR/inW Dom0 input to the
	// guest.
	outR *io.PipeReader
	outW *io.PipeWriter
	inR  *io.PipeReader
	inW  *io.PipeWriter
	done chan struct{}
	cons bool
	pres bool // on_poweroff = "preserve"
	dead bool
}

func (f *Fake) init() {
	if f.doms == nil {
		f.doms = map[int]*fakeDom{}
		f.cfgs = map[string][]byte{}
		f.next = 1
	}
}

func (f *Fake) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// Calls returns the operations performed so far ("create -p vxn-x",
// "unpause 1", "destroy 1", ...), for assertions.
func (f *Fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// ConfigOf returns the config file content a domain called name was created
// from (kept after the domain is gone), for assertions.
func (f *Fake) ConfigOf(name string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfgs[name]
}

func (f *Fake) mem() (total, dom0 int) {
	total, dom0 = f.TotalMemoryMB, f.Dom0MemoryMB
	if total == 0 {
		total = 1024
	}
	if dom0 == 0 {
		dom0 = 512
	}
	return total, dom0
}

func (f *Fake) freeLocked() int {
	total, dom0 := f.mem()
	free := total - dom0
	for _, d := range f.doms {
		free -= d.g.MemoryMB
	}
	return free
}

// Create implements toolstack.Toolstack.
func (f *Fake) Create(ctx context.Context, cfgPath string, paused bool) (int, error) {
	src, err := os.ReadFile(cfgPath)
	if err != nil {
		return 0, err
	}
	cfg, err := xlcfg.Parse(cfgPath, src)
	if err != nil {
		return 0, err
	}
	name, err := toolstack.ConfigName(cfgPath)
	if err != nil {
		return 0, err
	}
	mem := 128
	if v, ok := cfg.Get("memory"); ok {
		n, err := v.Int64()
		if err != nil {
			return 0, fmt.Errorf("%s: memory: %w", cfgPath, err)
		}
		mem = int(n)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	if paused {
		f.record("create -p %s", name)
	} else {
		f.record("create %s", name)
	}
	f.cfgs[name] = src
	if f.CreateErr != nil {
		return 0, f.CreateErr
	}
	for _, d := range f.doms {
		if d.g.Name == name {
			return 0, fmt.Errorf("fake xl create: domain with name %q already exists", name)
		}
	}
	if free := f.freeLocked(); mem > free {
		return 0, fmt.Errorf("fake xl create: libxl: cannot allocate %d MiB, %d MiB free", mem, free)
	}
	id := f.next
	f.next++
	d := &fakeDom{paused: true, shutdown: make(chan struct{}), done: make(chan struct{})}
	d.outR, d.outW = io.Pipe()
	d.inR, d.inW = io.Pipe()
	if v, ok := cfg.Get("on_poweroff"); ok && v.Text == "preserve" {
		d.pres = true
	}
	d.g = Guest{Name: name, ID: id, MemoryMB: mem, Config: cfg,
		Console: struct {
			io.Reader
			io.Writer
		}{d.inR, d.outW}, ShutdownRequested: d.shutdown, f: f}
	f.doms[id] = d
	if !paused {
		f.startLocked(d)
	}
	return id, nil
}

func (f *Fake) startLocked(d *fakeDom) {
	d.paused = false
	if d.running || d.dead {
		return
	}
	d.running = true
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	go func() {
		defer close(d.done)
		if f.Guest != nil {
			f.Guest(ctx, &d.g)
		}
		// Power off.
		f.mu.Lock()
		defer f.mu.Unlock()
		if d.pres && !d.dead {
			d.running = false
			d.outW.Close()
			return
		}
		f.removeLocked(d)
	}()
}

func (f *Fake) removeLocked(d *fakeDom) {
	if d.dead {
		return
	}
	d.dead = true
	if d.cancel != nil {
		d.cancel()
	}
	d.outW.Close()
	d.inR.Close()
	delete(f.doms, d.g.ID)
	home := xenstoreHome(d.g.ID)
	for k := range f.Xenstore {
		if strings.HasPrefix(k, home) {
			delete(f.Xenstore, k)
		}
	}
}

func (f *Fake) get(domid int) (*fakeDom, error) {
	f.init()
	d, ok := f.doms[domid]
	if !ok {
		return nil, fmt.Errorf("fake xl: domain %d: %w", domid, toolstack.ErrNoDomain)
	}
	return d, nil
}

// Unpause implements toolstack.Toolstack.
func (f *Fake) Unpause(ctx context.Context, domid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("unpause %d", domid)
	d, err := f.get(domid)
	if err != nil {
		return err
	}
	f.startLocked(d)
	return nil
}

// Pause implements toolstack.Toolstack: the domain is listed paused (its Go guest
// keeps running; nothing observes the difference in tests).
func (f *Fake) Pause(ctx context.Context, domid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("pause %d", domid)
	d, err := f.get(domid)
	if err != nil {
		return err
	}
	d.paused = true
	return nil
}

// Shutdown implements toolstack.Toolstack: it closes the guest's ShutdownRequested.
func (f *Fake) Shutdown(ctx context.Context, domid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("shutdown %d", domid)
	d, err := f.get(domid)
	if err != nil {
		return err
	}
	d.once.Do(func() { close(d.shutdown) })
	return nil
}

// Destroy implements toolstack.Toolstack: the guest's context is cancelled and its
// console closed at once.
func (f *Fake) Destroy(ctx context.Context, domid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("destroy %d", domid)
	d, err := f.get(domid)
	if err != nil {
		return err
	}
	f.removeLocked(d)
	return nil
}

// List implements toolstack.Toolstack; Domain-0 comes first.
func (f *Fake) List(ctx context.Context) ([]toolstack.Domain, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	_, dom0 := f.mem()
	out := []toolstack.Domain{{Name: "Domain-0", ID: 0, MemoryMB: dom0, VCPUs: 1, State: "r-----"}}
	ids := make([]int, 0, len(f.doms))
	for id := range f.doms {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		d := f.doms[id]
		st := "-b----"
		switch {
		case d.paused:
			st = "--p---"
		case !d.running:
			st = "---s--"
		}
		out = append(out, toolstack.Domain{Name: d.g.Name, ID: id, MemoryMB: d.g.MemoryMB, VCPUs: 1, State: st})
	}
	return out, nil
}

// DomID implements toolstack.Toolstack.
func (f *Fake) DomID(ctx context.Context, name string) (int, error) {
	doms, _ := f.List(ctx)
	for _, d := range doms {
		if d.Name == name {
			return d.ID, nil
		}
	}
	return 0, fmt.Errorf("fake xl: domain %q: %w", name, toolstack.ErrNoDomain)
}

// Info implements toolstack.Toolstack.
func (f *Fake) Info(ctx context.Context) (toolstack.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	total, _ := f.mem()
	return toolstack.Info{TotalMemoryMB: total, FreeMemoryMB: f.freeLocked(), XenVersion: "fake", NrCPUs: 1}, nil
}

// Console implements toolstack.Toolstack. Only one console may be attached at a
// time, as with xl console.
func (f *Fake) Console(ctx context.Context, domid int) (io.ReadWriteCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("console %d", domid)
	d, err := f.get(domid)
	if err != nil {
		return nil, err
	}
	if d.cons {
		return nil, fmt.Errorf("fake xl console %d: a console is already attached", domid)
	}
	d.cons = true
	return &fakeConsole{r: d.outR, w: d.inW}, nil
}

type fakeConsole struct {
	r *io.PipeReader
	w *io.PipeWriter
}

func (c *fakeConsole) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *fakeConsole) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *fakeConsole) Close() error {
	c.r.Close()
	c.w.Close()
	return nil
}

// XenstoreRead implements toolstack.Toolstack from the Xenstore map.
func (f *Fake) XenstoreRead(ctx context.Context, path string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.Xenstore[path]; ok {
		return v, nil
	}
	return "", fmt.Errorf("fake xenstore-read %s: no such key", strconv.Quote(path))
}
