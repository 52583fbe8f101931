package ociruntime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/vxn-dev/vxn/pkg/vxnconf"
)

// DefaultRoot is the state directory unless --root says otherwise.
const DefaultRoot = "/run/vxn-oci-runtime"

// Version is the runtime's version, printed by --version.
var Version = "0.1.0"

// NetworkAnnotation selects the guest's network: "none" (default) or
// "bridge" (a vif on the bridge of the vxn config, default
// vxnconf.DefaultBridge).
const NetworkAnnotation = "io.vxn.network"

// Runtime is one invocation of the OCI runtime.
type Runtime struct {
	// Engine runs containers (pkg/container unless a test replaces it).
	Engine Engine
	// Stdin, Stdout and Stderr are the runtime's own standard streams; at
	// create they become the container's (the engine hands pipes or fifos
	// over this way).
	Stdin, Stdout, Stderr *os.File
	// LookupEnv reads the environment (VXN_CONFIG, VXN_TOOLSTACK).
	LookupEnv func(string) (string, bool)
	// AssetRoot is where the guest kernel and initramfs are looked up
	// unless the config file names them (vxnconf.DefaultAssetRoot).
	AssetRoot string
	// Now is the clock of log lines.
	Now func() time.Time

	root   string
	log    *logger
	debug  bool
	closer io.Closer
}

// NewRuntime returns a Runtime for the running process with the given
// engine.
func NewRuntime(e Engine) *Runtime {
	return &Runtime{Engine: e, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		LookupEnv: os.LookupEnv, AssetRoot: vxnconf.DefaultAssetRoot, Now: time.Now}
}

var globalFlags = []*flagSpec{
	strFlag("state directory", "root"),
	strFlag("log file (default: stderr)", "log"),
	strFlag("log format: text or json", "log-format"),
	boolFlag("accepted for compatibility (the guest has no cgroups)", "systemd-cgroup"),
	boolFlag("debug logging", "debug"),
	strFlag("log level: debug, info, warning or error (debug = --debug)", "log-level"),
	strFlag("accepted for compatibility", "criu"),
	strFlag("accepted for compatibility (crun's; Podman passes it for --cgroups=disabled)", "cgroup-manager"),
	strFlag("accepted for compatibility (true, false or auto)", "rootless"),
	boolFlag("print the version", "version", "v"),
	boolFlag("show help", "help", "h"),
}

type verb struct {
	name, args, usage string
	interspersed      bool
	flags             []*flagSpec
	run               func(r *Runtime, ctx context.Context, fs *flagSet) (int, error)
}

var verbs []verb

func init() {
	verbs = []verb{
		{"create", "<container-id>", "create a container (the guest boots and holds the process until start)", true, []*flagSpec{
			strFlag("bundle directory (default: the current directory)", "bundle", "b"),
			strFlag("file to write the monitor's PID to", "pid-file"),
			strFlag("unix socket that receives the pty master of a terminal container", "console-socket"),
			strFlag("accepted for compatibility", "pidfd-socket"),
			boolFlag("accepted for compatibility", "no-pivot"),
			boolFlag("accepted for compatibility", "no-new-keyring"),
			strFlag("extra file descriptors (none can be passed to a guest)", "preserve-fds"),
		}, (*Runtime).create},
		{"start", "<container-id>", "run the created container's process", true, nil, (*Runtime).start},
		{"state", "<container-id>", "print the container's state as JSON", true, nil, (*Runtime).state},
		{"kill", "<container-id> [signal]", "send a signal (default SIGTERM) to the container's process", true, []*flagSpec{
			boolFlag("signal every process of the container", "all", "a"),
		}, (*Runtime).kill},
		{"delete", "<container-id>", "delete a stopped container (with --force, also a running one)", true, []*flagSpec{
			boolFlag("destroy the guest even if it is running", "force", "f"),
		}, (*Runtime).delete},
		{"features", "", "print the runtime's features as JSON", true, nil, (*Runtime).features},
		{"ps", "<container-id>", "list the container's processes", true, []*flagSpec{
			strFlag("table or json", "format", "f"),
		}, (*Runtime).ps},
		{"exec", "<container-id> [command...]", "run another process in the running container", false, []*flagSpec{
			strFlag("process.json with the process to run", "process", "p"),
			boolFlag("run in the background; --pid-file gets the PID of its monitor", "detach", "d"),
			strFlag("file to write the process monitor's PID to", "pid-file"),
			strFlag("unix socket that receives the pty master", "console-socket"),
			strFlag("accepted for compatibility", "pidfd-socket"),
			boolFlag("allocate a terminal", "tty", "t"),
			strFlag("working directory", "cwd"),
			multiFlag("environment variable KEY=VALUE (repeatable)", "env", "e"),
			strFlag("UID[:GID]", "user", "u"),
			multiFlag("accepted for compatibility", "additional-gids", "g"),
			multiFlag("accepted for compatibility", "cap", "c"),
			boolFlag("accepted for compatibility", "no-new-privs"),
			strFlag("accepted for compatibility", "process-label"),
			strFlag("accepted for compatibility", "apparmor"),
			strFlag("extra file descriptors (none can be passed to a guest)", "preserve-fds"),
			boolFlag("accepted for compatibility", "ignore-paused"),
			strFlag("accepted for compatibility", "cgroup"),
		}, (*Runtime).exec},
		{"pause", "<container-id>", "pause the guest", true, nil, (*Runtime).pause},
		{"resume", "<container-id>", "unpause the guest", true, nil, (*Runtime).resume},
	}
}

// Main runs the runtime with the process's arguments (without argv[0]) and
// returns the exit status.
func Main(args []string, e Engine) int {
	os.Setenv("PATH", WithSystemPath(os.Getenv("PATH")))
	return NewRuntime(e).Run(args)
}

// systemPath are the directories of the Xen tools and the usual commands.
var systemPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// WithSystemPath returns PATH with the system directories appended that it
// lacks: engines run runtimes with a minimal PATH (Podman's has no
// /usr/sbin, where xl lives), and the monitors inherit it.
func WithSystemPath(path string) string {
	have := map[string]bool{}
	for _, d := range filepath.SplitList(path) {
		have[d] = true
	}
	for _, d := range systemPath {
		if !have[d] {
			if path != "" {
				path += ":"
			}
			path += d
			have[d] = true
		}
	}
	return path
}

// Run parses args and runs the verb; it returns the exit status: 0, 1 for
// an error (reported on stderr and in the log), or a foreground exec's
// status.
func (r *Runtime) Run(args []string) int {
	defer func() {
		if r.closer != nil {
			r.closer.Close()
		}
	}()
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.LookupEnv == nil {
		r.LookupEnv = os.LookupEnv
	}
	g := newFlagSet("", false, globalFlags...)
	if err := g.parse(args); err != nil {
		return r.fail(err)
	}
	r.root = g.str("root")
	if r.root == "" {
		r.root = DefaultRoot
	}
	r.debug = g.bool("debug") || g.str("log-level") == "debug"
	r.log = &logger{w: r.Stderr, debug: r.debug, now: r.Now}
	switch g.str("log-format") {
	case "", "text":
	case "json":
		r.log.json = true
	default:
		return r.fail(usagef("--log-format %q: expected text or json", g.str("log-format")))
	}
	if p := g.str("log"); p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			// Not fatal: a shim cleaning up after a dead shim passes the
			// log of a bundle that may be gone, and delete must still work.
			r.log.warnf("--log: %v (logging to stderr)", err)
		} else {
			r.log.w, r.closer = f, f
		}
	}
	if g.bool("version") {
		fmt.Fprintf(r.Stdout, "vxn-oci-runtime version %s\nspec: %s\ngo: %s\n", Version, specs.Version, runtime.Version())
		return 0
	}
	rest := g.args
	if g.bool("help") || len(rest) == 0 || rest[0] == "help" {
		r.usage(r.Stdout)
		if len(rest) == 0 && !g.bool("help") {
			return 1
		}
		return 0
	}
	var v *verb
	for i := range verbs {
		if verbs[i].name == rest[0] {
			v = &verbs[i]
		}
	}
	if v == nil {
		return r.fail(usagef("unknown command %q (expected one of: %s)", rest[0], verbNames()))
	}
	fs := newFlagSet(v.name, v.interspersed, append(v.flags, boolFlag("show help", "help", "h"))...)
	if err := fs.parse(rest[1:]); err != nil {
		return r.fail(err)
	}
	if fs.bool("help") {
		fmt.Fprintf(r.Stdout, "usage: vxn-oci-runtime %s [options] %s\n\n%s\n\noptions:\n%s", v.name, v.args, v.usage, fs.help())
		return 0
	}
	r.log.debugf("%s %s", v.name, strings.Join(rest[1:], " "))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	code, err := v.run(r, ctx, fs)
	if err != nil {
		return r.fail(err)
	}
	return code
}

// fail reports err as runc does: a log line (JSON with --log-format json)
// and the plain message on stderr; exit status 1.
func (r *Runtime) fail(err error) int {
	if r.log == nil {
		r.log = &logger{w: r.Stderr, now: r.Now}
	}
	r.log.errorf("%v", err)
	if r.log.w != io.Writer(r.Stderr) && r.Stderr != nil {
		fmt.Fprintln(r.Stderr, err)
	}
	return 1
}

func verbNames() string {
	var ns []string
	for _, v := range verbs {
		ns = append(ns, v.name)
	}
	return strings.Join(ns, ", ")
}

func (r *Runtime) usage(w io.Writer) {
	fmt.Fprintf(w, `vxn-oci-runtime: an OCI runtime (runc command line) that runs each container as a Xen guest

usage: vxn-oci-runtime [global options] command [options] [arguments...]

commands:
`)
	for _, v := range verbs {
		fmt.Fprintf(w, "   %-9s %s\n", v.name, v.usage)
	}
	fmt.Fprintf(w, "\nglobal options:\n%s", newFlagSet("", false, globalFlags...).help())
}

// idPattern is runc's rule for container ids.
var idPattern = regexp.MustCompile(`^[\w+.-]+$`)

// ValidateID checks a container id as runc does.
func ValidateID(id string) error {
	if id == "" {
		return usagef("container id cannot be empty")
	}
	if !idPattern.MatchString(id) || id == "." || id == ".." || len(id) > 1024 {
		return usagef("invalid container id %q: expected letters, digits, '_', '+', '-' and '.'", id)
	}
	return nil
}

// oneID returns the single container id argument of a verb.
// loadOne loads the container named by the verb's only argument.
func (r *Runtime) loadOne(fs *flagSet) (string, Container, error) {
	id, err := oneID(fs, 0)
	if err != nil {
		return "", nil, err
	}
	c, err := r.load(id)
	return id, c, err
}

func oneID(fs *flagSet, extra int) (string, error) {
	if len(fs.args) < 1 {
		return "", usagef("%s: missing the container id", fs.verb)
	}
	if len(fs.args) > 1+extra {
		return "", usagef("%s: unexpected arguments %q", fs.verb, fs.args[1:])
	}
	id := fs.args[0]
	return id, ValidateID(id)
}

// load finds container id, with runc's message when it does not exist.
func (r *Runtime) load(id string) (Container, error) {
	c, err := r.Engine.Load(r.root, id)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("container %q does not exist", id)
	}
	return c, err
}

// vxnConfig is the vxn configuration (kernel, initramfs, memory, ...)
// and the path of its file.
func (r *Runtime) vxnConfig() (*vxnconf.Config, string, error) {
	path, optional := vxnconf.File(r.LookupEnv)
	cfg, err := vxnconf.Load(path, optional)
	return cfg, path, err
}

// diskPath is where a container's own guest disk is kept.
func (r *Runtime) diskPath(id string) string {
	return filepath.Join(r.root, ".disks", id+".ext4")
}

// Default guest bounds for config.json resource limits.
const (
	defaultMinMemoryMB = 96
	defaultMaxMemoryMB = 4096
)

func (r *Runtime) create(ctx context.Context, fs *flagSet) (int, error) {
	id, err := oneID(fs, 0)
	if err != nil {
		return 0, err
	}
	bundle := fs.str("bundle")
	if bundle == "" {
		bundle = "."
	}
	if bundle, err = filepath.Abs(bundle); err != nil {
		return 0, err
	}
	if n := fs.str("preserve-fds"); n != "" && n != "0" {
		return 0, usagef("--preserve-fds %s: file descriptors cannot be passed into a Xen guest", n)
	}
	if _, err := r.Engine.Load(r.root, id); err == nil {
		return 0, fmt.Errorf("container with id %q already exists", id)
	}
	spec, err := LoadSpec(bundle)
	if err != nil {
		return 0, err
	}
	cfg, cfgPath, err := r.vxnConfig()
	if err != nil {
		return 0, err
	}
	lim := Limits{DefaultMemoryMB: cfg.MemoryMB, MinMemoryMB: defaultMinMemoryMB, MaxMemoryMB: defaultMaxMemoryMB,
		DefaultVCPUs: cfg.VCPUs, MaxVCPUs: runtime.NumCPU()}
	if lim.DefaultMemoryMB > lim.MaxMemoryMB {
		lim.MaxMemoryMB = lim.DefaultMemoryMB
	}
	plan, err := MapSpec(spec, bundle, lim)
	if err != nil {
		return 0, err
	}
	sock := fs.str("console-socket")
	if plan.TTY && sock == "" {
		return 0, errors.New("process.terminal is set: --console-socket is required to receive the terminal")
	}
	if !plan.TTY && sock != "" {
		return 0, errors.New("--console-socket given but process.terminal is false")
	}
	network := plan.Annotations[NetworkAnnotation]
	guest, err := cfg.Guest(r.AssetRoot, vxnconf.GuestRequest{MemoryMB: plan.MemoryMB, VCPUs: plan.VCPUs, Network: network},
		"set kernel: and initramfs: in "+cfgPath)
	if err != nil {
		if network != "" && network != "none" && network != "bridge" {
			return 0, fmt.Errorf("annotation %s=%q: expected none or bridge", NetworkAnnotation, network)
		}
		return 0, err
	}
	for _, w := range plan.Warnings {
		r.log.warnf("container %s: %s", id, w)
	}
	dr, err := BuildDisk(ctx, DiskRequest{RootFS: plan.RootFS, Copies: plan.Copies, Out: r.diskPath(id),
		CacheDir: filepath.Join(cfg.ImageStoreRoot(), "oci-disks")})
	if err != nil {
		return 0, err
	}
	for _, w := range dr.Warnings {
		r.log.warnf("container %s: %s", id, w)
	}
	r.log.debugf("container %s: guest disk %s (cached %v, hit %v) in %v", id, dr.Path, dr.Cached, dr.Hit, dr.Took)
	req := SpawnRequest{ID: id, Root: r.root, Bundle: bundle,
		Kernel: guest.Kernel, Initramfs: guest.Initramfs, ImageDisk: dr.Path,
		MemoryMB: guest.MemoryMB, VCPUs: guest.VCPUs, Type: guest.Type, Bridge: guest.Bridge,
		Args: plan.Args, Env: plan.Env, Cwd: plan.Cwd, User: plan.User, Hostname: plan.Hostname, TTY: plan.TTY,
		ConsoleSocket: sock, Annotations: plan.Annotations, Toolstack: cfg.Toolstack(r.LookupEnv)}
	if !plan.TTY {
		// The engine's pipes or fifos are our stdio. With a terminal they
		// are not the container's: a caller reading them to EOF (go-runc
		// without IO) must not wait for the monitor.
		req.Stdio = [3]*os.File{r.Stdin, r.Stdout, r.Stderr}
	}
	tSpawn := time.Now()
	pid, err := r.Engine.Spawn(ctx, req)
	r.log.debugf("container %s: monitor %d, guest held after %v", id, pid, time.Since(tSpawn))
	if err != nil {
		if !dr.Cached {
			os.Remove(dr.Path)
		}
		return 0, err
	}
	if p := fs.str("pid-file"); p != "" {
		if err := writePidFile(p, pid); err != nil {
			// Nobody would know the monitor: do not leave the guest.
			if c, lerr := r.Engine.Load(r.root, id); lerr == nil {
				c.Delete(context.WithoutCancel(ctx), true)
			}
			if !dr.Cached {
				os.Remove(dr.Path)
			}
			return 0, err
		}
	}
	return 0, nil
}

// writePidFile writes pid to path through a temporary file and a rename,
// so that a reader never sees a partial number.
func writePidFile(path string, pid int) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("--pid-file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--pid-file: %w", err)
	}
	return nil
}

func (r *Runtime) start(ctx context.Context, fs *flagSet) (int, error) {
	id, c, err := r.loadOne(fs)
	if err != nil {
		return 0, err
	}
	switch st := c.State().Status; st {
	case "created":
	case "stopped":
		return 0, errors.New("cannot start a container that has stopped")
	default:
		return 0, fmt.Errorf("cannot start a container in the %s state", st)
	}
	if err := c.Start(ctx); err != nil {
		// A process that exits at once may end the monitor before it
		// answers; it did start.
		if st := c.State(); st.Started {
			r.log.debugf("container %s: start: %v (the process started and already exited)", id, err)
			return 0, nil
		}
		return 0, err
	}
	return 0, nil
}

// State is the JSON `state` prints: the runtime spec's State plus runc's
// rootfs, created and owner fields (go-runc reads them).
type State struct {
	specs.State
	// Rootfs is the bundle's root file system.
	Rootfs string `json:"rootfs"`
	// Created is when the container was created.
	Created time.Time `json:"created"`
	// Owner is runc's owner field (always empty).
	Owner string `json:"owner"`
}

// ociVersion is the runtime spec version the state and features report.
const ociVersion = "1.0.2"

func (r *Runtime) state(ctx context.Context, fs *flagSet) (int, error) {
	id, c, err := r.loadOne(fs)
	if err != nil {
		return 0, err
	}
	st := c.State()
	out := State{State: specs.State{Version: ociVersion, ID: id, Status: specs.ContainerState(st.Status), Pid: st.PID,
		Bundle: st.Bundle, Annotations: st.Annotations}, Created: st.Created.UTC()}
	if st.Status == "stopped" {
		out.Pid = 0
	}
	if st.Bundle != "" {
		out.Rootfs = filepath.Join(st.Bundle, "rootfs")
		if s, err := LoadSpec(st.Bundle); err == nil && s.Root != nil && s.Root.Path != "" {
			out.Rootfs = s.Root.Path
			if !filepath.IsAbs(out.Rootfs) {
				out.Rootfs = filepath.Join(st.Bundle, out.Rootfs)
			}
		}
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	fmt.Fprintf(r.Stdout, "%s\n", b)
	return 0, nil
}

// ParseSignal accepts a signal name with or without "SIG" (any case) or a
// number.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %q: expected 1-64", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	name = strings.TrimPrefix(name, "SIG")
	if name == "" {
		return 0, fmt.Errorf("unknown signal %q", s)
	}
	for n := syscall.Signal(1); n < 65; n++ {
		if sigName(n) == name {
			return n, nil
		}
	}
	if strings.HasPrefix(name, "RTMIN") || strings.HasPrefix(name, "RTMAX") {
		base, off := 34, 0
		rest := name[5:]
		if rest != "" {
			n, err := strconv.Atoi(rest)
			if err != nil {
				return 0, fmt.Errorf("unknown signal %q", s)
			}
			off = n
		}
		if strings.HasPrefix(name, "RTMAX") {
			base = 64
		}
		if v := base + off; v >= 34 && v <= 64 {
			return syscall.Signal(v), nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

var sigNames = map[syscall.Signal]string{
	syscall.SIGHUP: "HUP", syscall.SIGINT: "INT", syscall.SIGQUIT: "QUIT", syscall.SIGILL: "ILL", syscall.SIGTRAP: "TRAP",
	syscall.SIGABRT: "ABRT", syscall.SIGBUS: "BUS", syscall.SIGFPE: "FPE", syscall.SIGKILL: "KILL", syscall.SIGUSR1: "USR1",
	syscall.SIGSEGV: "SEGV", syscall.SIGUSR2: "USR2", syscall.SIGPIPE: "PIPE", syscall.SIGALRM: "ALRM", syscall.SIGTERM: "TERM",
	syscall.SIGSTKFLT: "STKFLT", syscall.SIGCHLD: "CHLD", syscall.SIGCONT: "CONT", syscall.SIGSTOP: "STOP", syscall.SIGTSTP: "TSTP",
	syscall.SIGTTIN: "TTIN", syscall.SIGTTOU: "TTOU", syscall.SIGURG: "URG", syscall.SIGXCPU: "XCPU", syscall.SIGXFSZ: "XFSZ",
	syscall.SIGVTALRM: "VTALRM", syscall.SIGPROF: "PROF", syscall.SIGWINCH: "WINCH", syscall.SIGIO: "IO", syscall.SIGPWR: "PWR",
	syscall.SIGSYS: "SYS",
}

func sigName(n syscall.Signal) string { return sigNames[n] }

func (r *Runtime) kill(ctx context.Context, fs *flagSet) (int, error) {
	id, err := oneID(fs, 1)
	if err != nil {
		return 0, err
	}
	sig := syscall.SIGTERM
	if len(fs.args) > 1 {
		if sig, err = ParseSignal(fs.args[1]); err != nil {
			return 0, err
		}
	}
	c, err := r.load(id)
	if err != nil {
		return 0, err
	}
	if st := c.State().Status; st == "stopped" {
		return 0, errors.New("container not running")
	}
	return 0, c.Kill(ctx, sig, fs.bool("all"))
}

func (r *Runtime) delete(ctx context.Context, fs *flagSet) (int, error) {
	id, err := oneID(fs, 0)
	if err != nil {
		return 0, err
	}
	force := fs.bool("force")
	c, err := r.Engine.Load(r.root, id)
	if errors.Is(err, os.ErrNotExist) {
		os.Remove(r.diskPath(id))
		if force {
			return 0, nil
		}
		return 0, fmt.Errorf("container %q does not exist", id)
	}
	if err != nil {
		return 0, err
	}
	switch st := c.State().Status; st {
	case "stopped", "created":
		// A created container never ran; runc deletes it without --force.
		force = force || st == "created"
	default:
		if !force {
			return 0, fmt.Errorf("cannot delete container %s that is not stopped: %s", id, st)
		}
	}
	if err := c.Delete(ctx, force); err != nil {
		return 0, err
	}
	if err := os.Remove(r.diskPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("removing the guest disk: %w", err)
	}
	return 0, nil
}

// Features is what `features` prints (runc 1.1+'s format).
func Features() map[string]any {
	return map[string]any{
		"ociVersionMin": "1.0.0",
		"ociVersionMax": specs.Version,
		"hooks":         []string{},
		"mountOptions":  []string{"bind", "rbind", "ro", "rw"},
		"linux": map[string]any{
			"namespaces":   []string{},
			"capabilities": []string{},
			"cgroup":       map[string]bool{"v1": false, "v2": false, "systemd": false, "systemdUser": false},
			"seccomp":      map[string]any{"enabled": false},
			"apparmor":     map[string]bool{"enabled": false},
			"selinux":      map[string]bool{"enabled": false},
		},
		"annotations": map[string]string{
			"io.vxn.runtime_type": "vm",
			"io.vxn.version":      Version,
		},
	}
}

func (r *Runtime) features(ctx context.Context, fs *flagSet) (int, error) {
	if len(fs.args) > 0 {
		return 0, usagef("features: unexpected arguments %q", fs.args)
	}
	b, _ := json.MarshalIndent(Features(), "", "    ")
	fmt.Fprintf(r.Stdout, "%s\n", b)
	return 0, nil
}

func (r *Runtime) ps(ctx context.Context, fs *flagSet) (int, error) {
	if len(fs.args) < 1 {
		return 0, usagef("ps: missing the container id")
	}
	id := fs.args[0]
	if err := ValidateID(id); err != nil {
		return 0, err
	}
	c, err := r.load(id)
	if err != nil {
		return 0, err
	}
	st := c.State()
	pids := []int{}
	if st.Status != "stopped" && st.PID > 0 {
		pids = append(pids, st.PID)
	}
	switch fs.str("format") {
	case "json":
		b, _ := json.Marshal(pids)
		fmt.Fprintf(r.Stdout, "%s\n", b)
	case "", "table":
		fmt.Fprintln(r.Stdout, "PID   CMD")
		for _, p := range pids {
			fmt.Fprintf(r.Stdout, "%-5d (Xen guest %s, monitor process)\n", p, id)
		}
	default:
		return 0, usagef("ps --format %q: expected table or json", fs.str("format"))
	}
	return 0, nil
}

func (r *Runtime) exec(ctx context.Context, fs *flagSet) (int, error) {
	if len(fs.args) < 1 {
		return 0, usagef("exec: missing the container id")
	}
	id := fs.args[0]
	if err := ValidateID(id); err != nil {
		return 0, err
	}
	if n := fs.str("preserve-fds"); n != "" && n != "0" {
		return 0, usagef("--preserve-fds %s: file descriptors cannot be passed into a Xen guest", n)
	}
	c, err := r.load(id)
	if err != nil {
		return 0, err
	}
	st := c.State()
	if st.Status != "running" {
		return 0, fmt.Errorf("cannot exec in a container that is %s", st.Status)
	}
	req, err := r.execRequest(fs, st)
	if err != nil {
		return 0, err
	}
	sock := fs.str("console-socket")
	if req.TTY && sock == "" && fs.bool("detach") {
		return 0, errors.New("a terminal exec with --detach needs --console-socket")
	}
	req.ConsoleSocket = sock
	if !req.TTY || sock == "" {
		req.Stdio = [3]*os.File{r.Stdin, r.Stdout, r.Stderr}
	}
	if fs.bool("detach") {
		pid, err := c.SpawnExec(ctx, req)
		if err != nil {
			return 0, err
		}
		if p := fs.str("pid-file"); p != "" {
			if err := writePidFile(p, pid); err != nil {
				return 0, err
			}
		}
		return 0, nil
	}
	return c.Exec(ctx, req)
}

// execRequest builds the exec process from --process or from the command
// line (with the container's config.json environment under --env).
func (r *Runtime) execRequest(fs *flagSet, st ContainerState) (ExecRequest, error) {
	var req ExecRequest
	if p := fs.str("process"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return req, fmt.Errorf("--process: %w", err)
		}
		pr, err := ParseProcess(p, b)
		if err != nil {
			return req, err
		}
		return pr, nil
	}
	args := fs.args[1:]
	if len(args) == 0 {
		return req, usagef("exec: no command given (and no --process)")
	}
	req.Args = args
	req.Cwd = fs.str("cwd")
	req.TTY = fs.bool("tty")
	if st.Bundle != "" {
		if s, err := LoadSpec(st.Bundle); err == nil && s.Process != nil {
			req.Env = append(req.Env, s.Process.Env...)
			if req.Cwd == "" {
				req.Cwd = s.Process.Cwd
			}
			req.User = fmt.Sprintf("%d:%d", s.Process.User.UID, s.Process.User.GID)
		}
	}
	for _, e := range fs.all("env") {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			return req, usagef("--env %q: expected KEY=VALUE", e)
		}
		req.Env = append(req.Env, e)
	}
	if u := fs.str("user"); u != "" {
		if err := checkNumericUser(u); err != nil {
			return req, err
		}
		req.User = u
	}
	return req, nil
}

// ParseProcess parses an exec process.json (a runtime spec Process).
func ParseProcess(name string, b []byte) (ExecRequest, error) {
	var p specs.Process
	if err := json.Unmarshal(b, &p); err != nil {
		return ExecRequest{}, fmt.Errorf("%s: not a valid process: %w", name, err)
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return ExecRequest{}, fmt.Errorf("%s: args is empty: expected the command to run", name)
	}
	for i, a := range p.Args {
		if strings.ContainsRune(a, 0) {
			return ExecRequest{}, fmt.Errorf("%s: args[%d] contains a NUL byte", name, i)
		}
	}
	for i, e := range p.Env {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") || strings.ContainsRune(e, 0) {
			return ExecRequest{}, fmt.Errorf("%s: env[%d] %q: expected KEY=VALUE", name, i, e)
		}
	}
	if p.Cwd != "" && !strings.HasPrefix(p.Cwd, "/") {
		return ExecRequest{}, fmt.Errorf("%s: cwd %q: expected an absolute path", name, p.Cwd)
	}
	return ExecRequest{Args: p.Args, Env: p.Env, Cwd: p.Cwd, TTY: p.Terminal,
		User: fmt.Sprintf("%d:%d", p.User.UID, p.User.GID)}, nil
}

// checkNumericUser accepts "uid" or "uid:gid" (runc's --user).
func checkNumericUser(u string) error {
	parts := strings.SplitN(u, ":", 2)
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 32); err != nil {
			return usagef("--user %q: expected UID[:GID] as numbers", u)
		}
	}
	return nil
}

func (r *Runtime) pause(ctx context.Context, fs *flagSet) (int, error) {
	id, c, err := r.loadOne(fs)
	if err != nil {
		return 0, err
	}
	if st := c.State().Status; st != "running" && st != "created" {
		return 0, fmt.Errorf("container %s is %s, not running", id, st)
	}
	return 0, c.Pause(ctx)
}

func (r *Runtime) resume(ctx context.Context, fs *flagSet) (int, error) {
	id, c, err := r.loadOne(fs)
	if err != nil {
		return 0, err
	}
	if st := c.State().Status; st != "paused" {
		return 0, fmt.Errorf("container %s is %s, not paused", id, st)
	}
	return 0, c.Resume(ctx)
}
