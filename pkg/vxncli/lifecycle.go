package vxncli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/vxn-dev/vxn/pkg/container"
	"github.com/vxn-dev/vxn/pkg/vxnconf"
)

// Personalities: the name vxn is called by selects the front-end.
const (
	NameVxn   = "vxn"
	NameVdkr  = "vdkr"  // Docker-like
	NameVpdmn = "vpdmn" // Podman-like
)

// Personality returns the front-end for a program name (argv[0]): vdkr,
// vpdmn, or vxn for anything else.
func Personality(argv0 string) string {
	base := argv0
	if i := strings.LastIndexByte(base, '/'); i >= 0 {
		base = base[i+1:]
	}
	switch base {
	case NameVdkr, NameVpdmn:
		return base
	}
	return NameVxn
}

func (a *App) runtimeDirOrDefault() string {
	if a.runtimeDir != "" {
		return a.runtimeDir
	}
	return vxnconf.DefaultRuntimeDir
}

// needXen checks, cheaply, that this is a Xen Dom0 with xl: the front-ends
// say so clearly instead of failing in the middle of a run.
func (a *App) needXen() error {
	sel := a.selection()
	if a.NewToolstack != nil || sel.Name != "" && sel.Name != "xl" {
		return nil // not Xen's xl: Open says whether it exists
	}
	xl := "xl"
	if sel.XL != "" {
		xl = sel.XL
	}
	why := ""
	if _, err := exec.LookPath(xl); err != nil {
		why = fmt.Sprintf("%s not found in PATH", xl)
	} else if b, err := os.ReadFile("/proc/xen/capabilities"); err != nil {
		why = "/proc/xen/capabilities: " + errors.Unwrap(err).Error() + " (not running on Xen, or xenfs not mounted)"
	} else if !strings.Contains(string(b), "control_d") {
		why = "this is a Xen guest, not Dom0 (/proc/xen/capabilities has no control_d)"
	}
	if why == "" {
		return nil
	}
	return fmt.Errorf("Xen not available: %s (this front-end runs containers as Xen guests; run it in a Xen Dom0)", why)
}

// find resolves a container reference (id, id prefix or name).
func (a *App) find(ref string) (*container.Handle, error) {
	h, err := container.Find(a.runtimeDir, ref)
	if err != nil {
		return nil, err
	}
	if h.Toolstack, err = a.toolstack(); err != nil {
		return nil, err
	}
	return h, nil
}

// forEach runs f on every reference, printing each one done like docker.
func (a *App) forEach(refs []string, print bool, f func(h *container.Handle) error) error {
	var errs []error
	for _, ref := range refs {
		h, err := a.find(ref)
		if err == nil {
			err = f(h)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if print {
			fmt.Fprintln(a.Stdout, ref)
		}
	}
	return errors.Join(errs...)
}

// dockerStatus is docker's word for a status.
func dockerStatus(s container.Status) string {
	switch s {
	case container.StatusStopped:
		return "exited"
	case container.StatusCreating:
		return "created"
	}
	return string(s)
}

func ago(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return humanize.Time(t)
}

// statusText is docker ps's STATUS column.
func statusText(st container.State) string {
	switch st.Status {
	case container.StatusRunning, container.StatusPaused:
		up := "Up"
		if st.Started != nil {
			up = "Up " + strings.TrimSuffix(humanize.RelTime(*st.Started, time.Now(), "", ""), " ")
		}
		if st.Status == container.StatusPaused {
			up += " (Paused)"
		}
		return up
	case container.StatusStopped:
		code := "?"
		if st.ExitCode != nil {
			code = strconv.Itoa(*st.ExitCode)
		}
		s := "Exited (" + code + ")"
		if st.Finished != nil {
			s += " " + ago(*st.Finished)
		}
		return s
	}
	return "Created"
}

func (a *App) psCommand() *cobra.Command {
	var all, quiet, noTrunc bool
	cmd := &cobra.Command{
		Use:     "ps",
		Aliases: []string{"list"},
		Short:   "List containers",
		Example: "  vxn ps\n  vxn ps -a -q",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sts, err := container.List(a.runtimeDir)
			if err != nil {
				return err
			}
			id := func(s string) string {
				if noTrunc {
					return s
				}
				return shortID(s)
			}
			var shown []container.State
			for _, st := range sts {
				if all || st.Status != container.StatusStopped {
					shown = append(shown, st)
				}
			}
			if quiet {
				for _, st := range shown {
					fmt.Fprintln(a.Stdout, id(st.ID))
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tNAMES")
			for _, st := range shown {
				c := strings.Join(st.Args, " ")
				if !noTrunc && len(c) > 20 {
					c = c[:19] + "…"
				}
				fmt.Fprintf(tw, "%s\t%s\t%q\t%s\t%s\t%s\n", id(st.ID), st.Image, c, ago(st.Created), statusText(st), st.Name)
			}
			return tw.Flush()
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all", "a", false, "show stopped containers too")
	fl.BoolVarP(&quiet, "quiet", "q", false, "only show container IDs")
	fl.BoolVar(&noTrunc, "no-trunc", false, "do not truncate IDs and commands")
	return cmd
}

func (a *App) logsCommand() *cobra.Command {
	var follow, timestamps bool
	var tail string
	cmd := &cobra.Command{
		Use:     "logs [OPTIONS] CONTAINER",
		Short:   "Show a container's output (stdout and stderr kept apart)",
		Example: "  vxn logs web\n  vxn logs -f --tail 10 -t web",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := a.find(args[0])
			if err != nil {
				return err
			}
			st := h.State()
			if st.LogPath == "" {
				return fmt.Errorf("container %s has no log (it was started with --rm in the foreground)", args[0])
			}
			n := -1
			if tail != "all" && tail != "" {
				if n, err = strconv.Atoi(tail); err != nil || n < 0 {
					return fmt.Errorf("--tail %q: expected a number of lines or \"all\"", tail)
				}
			}
			return container.ReadLogs(cmd.Context(), st.LogPath, container.LogOptions{Follow: follow, Tail: n, Timestamps: timestamps,
				Stopped: func() bool { return h.State().Status == container.StatusStopped }}, a.Stdout, a.Stderr)
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&follow, "follow", "f", false, "follow the output until the container stops")
	fl.StringVarP(&tail, "tail", "n", "all", "number of lines to show from the end")
	fl.BoolVarP(&timestamps, "timestamps", "t", false, "show timestamps")
	return cmd
}

// parseSignal reads a signal name (KILL, SIGKILL) or number.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %q: numbers are 1-64", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	for n := 1; n < 32; n++ {
		if strings.TrimPrefix(unix.SignalName(syscall.Signal(n)), "SIG") == name {
			return syscall.Signal(n), nil
		}
	}
	return 0, fmt.Errorf("signal %q: not a signal name (KILL, TERM, INT, HUP, USR1, ...) or number", s)
}

func (a *App) killCommand() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:     "kill [OPTIONS] CONTAINER...",
		Short:   "Send a signal to containers' entrypoints (KILL destroys the guest)",
		Example: "  vxn kill web\n  vxn kill -s HUP web",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := parseSignal(sig)
			if err != nil {
				return err
			}
			return a.forEach(args, true, func(h *container.Handle) error { return h.Kill(cmd.Context(), s, false) })
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal to send")
	return cmd
}

// stop asks the entrypoint to stop (SIGTERM) and destroys the guest after
// the grace period.
func stop(ctx context.Context, h *container.Handle, grace time.Duration) error {
	if h.State().Status == container.StatusStopped {
		return nil
	}
	if err := h.Kill(ctx, syscall.SIGTERM, false); err != nil {
		if h.State().Status == container.StatusStopped {
			return nil
		}
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, grace)
	_, err := h.Wait(wctx)
	cancel()
	if err == nil {
		return nil
	}
	if err := h.Kill(ctx, syscall.SIGKILL, true); err != nil && h.State().Status != container.StatusStopped {
		return err
	}
	wctx, cancel = context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	_, err = h.Wait(wctx)
	return err
}

func (a *App) stopCommand() *cobra.Command {
	var secs int
	cmd := &cobra.Command{
		Use:     "stop [OPTIONS] CONTAINER...",
		Short:   "Stop containers: SIGTERM, then destroy the guest after the grace period",
		Example: "  vxn stop web\n  vxn stop -t 2 web db",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if secs < 0 {
				return fmt.Errorf("--time %d: must not be negative", secs)
			}
			return a.forEach(args, true, func(h *container.Handle) error {
				return stop(cmd.Context(), h, time.Duration(secs)*time.Second)
			})
		},
	}
	cmd.Flags().IntVarP(&secs, "time", "t", 10, "seconds to wait before destroying the guest")
	return cmd
}

func (a *App) rmCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] CONTAINER...",
		Short:   "Remove stopped containers (-f: running ones too)",
		Example: "  vxn rm web\n  vxn rm -f $(vxn ps -aq)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.forEach(args, true, func(h *container.Handle) error { return h.Delete(cmd.Context(), force) })
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill and remove running containers")
	return cmd
}

func (a *App) pauseCommand(pause bool) *cobra.Command {
	use, short := "pause", "Pause containers' guests (xl pause)"
	if !pause {
		use, short = "unpause", "Unpause containers' guests (xl unpause)"
	}
	return &cobra.Command{
		Use:   use + " CONTAINER...",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.forEach(args, true, func(h *container.Handle) error {
				if pause {
					return h.Pause(cmd.Context())
				}
				return h.Resume(cmd.Context())
			})
		},
	}
}

func (a *App) waitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "wait CONTAINER...",
		Short: "Wait until containers stop and print their exit codes",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.forEach(args, false, func(h *container.Handle) error {
				st, err := h.Wait(cmd.Context())
				if err != nil {
					return err
				}
				code := -1
				if st.ExitCode != nil {
					code = *st.ExitCode
				}
				fmt.Fprintln(a.Stdout, code)
				return nil
			})
		},
	}
}

// InspectInfo is `vxn inspect`'s JSON for one container, with docker's
// field names for what docker has.
type InspectInfo struct {
	ID         string            `json:"Id"`
	Created    time.Time         `json:"Created"`
	Path       string            `json:"Path"`
	Args       []string          `json:"Args"`
	State      InspectState      `json:"State"`
	Image      string            `json:"Image"`
	Name       string            `json:"Name"`
	LogPath    string            `json:"LogPath"`
	Config     InspectConfig     `json:"Config"`
	HostConfig InspectHostConfig `json:"HostConfig"`
	// NetworkSettings has the guest's address (--network bridge).
	NetworkSettings struct {
		IPAddress string `json:"IPAddress"`
	} `json:"NetworkSettings"`
	// Vxn is what only vxn has: the guest domain.
	Vxn InspectVxn `json:"Vxn"`
}

// InspectState is docker's State object.
type InspectState struct {
	Status     string `json:"Status"`
	Running    bool   `json:"Running"`
	Paused     bool   `json:"Paused"`
	ExitCode   int    `json:"ExitCode"`
	Pid        int    `json:"Pid"`
	Error      string `json:"Error"`
	StartedAt  string `json:"StartedAt"`
	FinishedAt string `json:"FinishedAt"`
}

// InspectConfig is docker's Config object (the subset vxn knows).
type InspectConfig struct {
	Hostname   string   `json:"Hostname"`
	Image      string   `json:"Image"`
	Cmd        []string `json:"Cmd"`
	Env        []string `json:"Env"`
	WorkingDir string   `json:"WorkingDir"`
	User       string   `json:"User"`
	Tty        bool     `json:"Tty"`
}

// InspectHostConfig is docker's HostConfig object (memory in bytes).
type InspectHostConfig struct {
	Memory     int64 `json:"Memory"`
	NanoCpus   int64 `json:"NanoCpus"`
	AutoRemove bool  `json:"AutoRemove"`
}

// InspectVxn names the container's Xen guest.
type InspectVxn struct {
	Domain   string `json:"Domain"`
	DomID    int    `json:"DomID"`
	VCPUs    int    `json:"VCPUs"`
	MemoryMB int    `json:"MemoryMB"`
}

func timeText(t *time.Time) string {
	if t == nil {
		return "0001-01-01T00:00:00Z"
	}
	return t.Format(time.RFC3339Nano)
}

// inspect builds the JSON of one container. The environment's values are
// asked of a running container's monitor (vxn keeps them in no file, as
// they may be secrets); for a stopped one only the names are known.
func inspect(ctx context.Context, h *container.Handle) InspectInfo {
	st := h.State()
	info := InspectInfo{ID: st.ID, Created: st.Created, Image: st.Image, LogPath: st.LogPath,
		State: InspectState{Status: dockerStatus(st.Status), Running: st.Status == container.StatusRunning || st.Status == container.StatusPaused,
			Paused: st.Status == container.StatusPaused, Pid: st.MonitorPID, Error: st.Error,
			StartedAt: timeText(st.Started), FinishedAt: timeText(st.Finished)},
		Config:     InspectConfig{Hostname: shortID(st.ID), Image: st.Image, Cmd: st.Args, WorkingDir: st.Cwd, User: st.User, Tty: st.TTY},
		HostConfig: InspectHostConfig{Memory: int64(st.MemoryMB) << 20, NanoCpus: int64(st.VCPUs) * 1e9, AutoRemove: !st.Keep},
		Vxn:        InspectVxn{Domain: st.Domain, DomID: st.DomID, VCPUs: st.VCPUs, MemoryMB: st.MemoryMB}}
	if st.Name != "" {
		info.Name = "/" + st.Name
	}
	info.NetworkSettings.IPAddress = st.Address
	if len(st.Args) > 0 {
		info.Path, info.Args = st.Args[0], st.Args[1:]
	}
	if st.ExitCode != nil {
		info.State.ExitCode = *st.ExitCode
	}
	if !info.State.Running {
		info.State.Pid = 0
	}
	info.Config.Env = st.EnvNames
	if info.State.Running {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if env, err := h.Env(cctx); err == nil {
			info.Config.Env = env
		}
		cancel()
	}
	if info.Config.Env == nil {
		info.Config.Env = []string{}
	}
	return info
}

func (a *App) inspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "inspect CONTAINER...",
		Short:   "Show containers' details as JSON (docker inspect)",
		Example: "  vxn inspect web",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := []InspectInfo{}
			var errs []error
			for _, ref := range args {
				h, err := a.find(ref)
				if err != nil {
					// docker inspect also accepts images.
					if s, serr := a.store(); serr == nil {
						if info, ierr := s.Inspect(ref); ierr == nil {
							b, _ := json.MarshalIndent([]any{info}, "", "    ")
							fmt.Fprintf(a.Stdout, "%s\n", b)
							continue
						}
					}
					errs = append(errs, err)
					continue
				}
				out = append(out, inspect(cmd.Context(), h))
			}
			if len(out) > 0 || len(errs) == 0 {
				b, _ := json.MarshalIndent(out, "", "    ")
				fmt.Fprintf(a.Stdout, "%s\n", b)
			}
			return errors.Join(errs...)
		},
	}
}

func (a *App) execCommand() *cobra.Command {
	var interactive, tty, detach bool
	var env []string
	var workdir, user string
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] CONTAINER COMMAND [ARG...]",
		Short: "Run one more process in a running container",
		Long: `Run one more process in a running container (in its guest, in the
container's filesystem), and exit with its exit status.`,
		Example: "  vxn exec web cat /etc/os-release\n  vxn exec -it web sh\n  vxn exec -e DEBUG=1 -w /tmp -u nobody web env",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			h, err := a.find(args[0])
			if err != nil {
				return err
			}
			p := container.ExecOptions{Args: args[1:], Cwd: workdir, User: user, TTY: tty}
			if len(env) > 0 {
				// -e adds to the container's environment, as docker's.
				base, err := h.Env(ctx)
				if err != nil {
					return err
				}
				p.Env = append([]string(nil), base...)
				for _, e := range env {
					if !strings.Contains(e, "=") {
						v, ok := a.LookupEnv(e)
						if !ok {
							continue
						}
						e += "=" + v
					}
					p.Env = append(p.Env, e)
				}
			}
			if detach {
				p.Stdio = [3]*os.File{}
				_, err := h.SpawnExec(ctx, p)
				return err
			}
			var stdin = a.Stdin
			if !interactive {
				stdin = nil
			}
			if a.Signals != nil {
				sigs, stopSig := a.Signals()
				defer stopSig()
				p.Signals = sigs
			}
			if tty {
				if in := terminalFile(a.Stdin); in != nil && interactive {
					restore, _ := makeRaw(in)
					defer restore()
				}
				if t := terminalFile(a.Stdout); t != nil {
					ws, stopWS := windowSizes(t)
					defer stopWS()
					p.WindowSizes = ws
				}
			}
			code, err := h.Exec(ctx, p, stdin, a.Stdout, a.Stderr)
			if err != nil {
				return err
			}
			a.code = code
			return nil
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.BoolVarP(&interactive, "interactive", "i", false, "keep stdin open and forward it")
	fl.BoolVarP(&tty, "tty", "t", false, "allocate a terminal")
	fl.BoolVarP(&detach, "detach", "d", false, "run the process in the background")
	fl.StringArrayVarP(&env, "env", "e", nil, "set an environment variable (K=V, or K to copy it)")
	fl.StringVarP(&workdir, "workdir", "w", "", "working directory inside the container")
	fl.StringVarP(&user, "user", "u", "", "USER[:GROUP] to run as")
	return cmd
}
