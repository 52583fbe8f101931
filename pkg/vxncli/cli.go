// Package vxncli is the `vxn` command line: docker-style commands that run
// OCI containers as Xen guests on Dom0 (run, pull, images, rmi, tag, image
// inspect). cmd/vxn is a thin wrapper around Main.
//
// The commands glue the other packages together: pkg/oci for references and
// docker run semantics, pkg/imagestore for the local store and guest disks,
// pkg/container for a container's lifecycle and pkg/toolstack for Xen. The
// command tree uses cobra; pull progress is drawn with mpb on a terminal and
// left out when stderr is not one.
//
// vxn's exit status is the container's (0–255); vxn's own failures exit
// 125, as docker's do.
package vxncli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/spf13/cobra"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/vxn-dev/vxn/pkg/container"
	"github.com/vxn-dev/vxn/pkg/imagestore"
	"github.com/vxn-dev/vxn/pkg/oci"
	"github.com/vxn-dev/vxn/pkg/toolstack"
	"github.com/vxn-dev/vxn/pkg/vxnconf"
)

// ExitVxnError is vxn's exit status for its own failures (docker's 125).
const ExitVxnError = 125

// App is one vxn invocation's environment. The zero value is not usable;
// NewApp fills in the process's own.
type App struct {
	// Stdin, Stdout and Stderr are the standard streams.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// LookupEnv reads the environment (-e K, VXN_CONFIG).
	LookupEnv func(string) (string, bool)
	// NewToolstack returns the Xen toolstack; default: xl.
	NewToolstack func(cfg *vxnconf.Config) toolstack.Toolstack
	// Signals starts delivering interrupts for the container and returns
	// a stop function; default: SIGINT, SIGTERM and SIGHUP of the process.
	Signals func() (<-chan os.Signal, func())
	// IsTerminal reports whether w is a terminal (progress bars).
	IsTerminal func(w io.Writer) bool
	// AssetRoot is where guest assets are looked up
	// (vxnconf.DefaultAssetRoot).
	AssetRoot string
	// Name is the front-end: NameVxn (default), NameVdkr or NameVpdmn.
	Name string
	// Transport carries registry requests of pulls; nil means
	// go-containerregistry's default.
	Transport http.RoundTripper

	code int
	// global flags
	configPath, storeRoot, runtimeDir string
	debug                             bool
	cfg                               *vxnconf.Config
	mirrors                           []oci.Mirror // cfg.RegistryMirrors
}

// NewApp returns an App for the running process.
func NewApp() *App {
	return &App{
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		LookupEnv: os.LookupEnv,
		Signals: func() (<-chan os.Signal, func()) {
			c := make(chan os.Signal, 4)
			signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
			return c, func() { signal.Stop(c) }
		},
		IsTerminal: isTerminal,
		AssetRoot:  vxnconf.DefaultAssetRoot,
	}
}

// Main runs vxn with the process's environment and returns the exit status;
// the program name (os.Args[0]) selects the front-end (Personality).
func Main(args []string) int {
	a := NewApp()
	a.Name = Personality(os.Args[0])
	return a.Main(args)
}

// Main runs one vxn command line (without the program name) and returns the
// exit status: the container's for run, 0 for success, 125 for errors.
func (a *App) Main(args []string) int {
	if a.LookupEnv == nil {
		a.LookupEnv = func(string) (string, bool) { return "", false }
	}
	if a.IsTerminal == nil {
		a.IsTerminal = func(io.Writer) bool { return false }
	}
	if a.AssetRoot == "" {
		a.AssetRoot = vxnconf.DefaultAssetRoot
	}
	if a.Name == "" {
		a.Name = NameVxn
	}
	a.code = 0
	root := a.Command()
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		// One line per error of a joined list (rm a b), each with the
		// front-end's name.
		for _, l := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(a.Stderr, "%s: %s\n", a.Name, l)
		}
		return ExitVxnError
	}
	return a.code
}

// Command returns the root cobra command.
func (a *App) Command() *cobra.Command {
	short := "Run OCI containers as Xen guests"
	switch a.Name {
	case NameVdkr:
		short = "Docker-like, daemonless: run OCI containers as Xen guests"
	case NameVpdmn:
		short = "Podman-like, daemonless: run OCI containers as Xen guests"
	}
	name := a.Name
	if name == "" {
		name = NameVxn
	}
	root := &cobra.Command{
		Use:   name,
		Short: short,
		Long: `vxn runs OCI containers as Xen guests on Dom0: each container is its own
virtual machine booting a small Linux whose init executes the entrypoint
directly (no container runtime in the guest). Images are pulled into a local
store and converted once per image into a read-only guest disk.`,
		Example: `  vxn run --rm alpine echo hello
  vxn run -i -e NAME=value -w /tmp alpine sh -c 'cat; pwd'
  vxn pull localhost:5000/test:1
  vxn images`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(a.Stdin)
	root.SetOut(a.Stdout)
	root.SetErr(a.Stderr)
	def, _ := vxnconf.File(a.LookupEnv)
	pf := root.PersistentFlags()
	pf.StringVar(&a.configPath, "config", def, "config file (env VXN_CONFIG)")
	pf.StringVar(&a.storeRoot, "root", "", "image store directory (default "+vxnconf.DefaultImageStore+")")
	pf.StringVar(&a.runtimeDir, "runtime-dir", "", "state of running containers (default "+vxnconf.DefaultRuntimeDir+")")
	pf.BoolVar(&a.debug, "debug", false, "show the guest init's log")
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		optional := !cmd.Flags().Changed("config") && a.configPath == vxnconf.DefaultFile
		cfg, err := vxnconf.Load(a.configPath, optional)
		if err != nil {
			return err
		}
		a.cfg = cfg
		if a.mirrors, err = configMirrors(a.configPath, cfg); err != nil {
			return err
		}
		if a.storeRoot == "" {
			a.storeRoot = cfg.ImageStoreRoot()
		}
		if a.runtimeDir == "" {
			a.runtimeDir = cfg.RuntimeDir
		}
		return nil
	}
	root.AddCommand(a.runCommand(), a.pullCommand(), a.imagesCommand(), a.rmiCommand(), a.tagCommand(), a.imageCommand(),
		a.psCommand(), a.logsCommand(), a.execCommand(), a.stopCommand(), a.killCommand(), a.rmCommand(),
		a.inspectCommand(), a.pauseCommand(true), a.pauseCommand(false), a.waitCommand())
	return root
}

// configMirrors parses the registry mirrors of the config file at path.
func configMirrors(path string, cfg *vxnconf.Config) ([]oci.Mirror, error) {
	ms, err := oci.ParseMirrors(cfg.RegistryMirrors)
	if err != nil {
		return nil, fmt.Errorf("%s: registry_mirrors: %w", path, err)
	}
	return ms, nil
}

// selection is the configured toolstack (config file and environment).
func (a *App) selection() toolstack.Selection {
	cfg := a.cfg
	if cfg == nil {
		cfg = &vxnconf.Config{}
	}
	return cfg.Toolstack(a.LookupEnv)
}

func (a *App) toolstack() (toolstack.Toolstack, error) {
	if a.NewToolstack != nil {
		return a.NewToolstack(a.cfg), nil
	}
	return a.selection().Open()
}

// pullOptions returns fetch options (the configured registry mirrors, a
// progress bar on a terminal) and a function ending the bar.
func (a *App) pullOptions(ref string) (oci.Options, func(ok bool)) {
	opt := oci.Options{Mirrors: a.mirrors, Transport: a.Transport}
	if !a.IsTerminal(a.Stderr) {
		return opt, func(bool) {}
	}
	p := mpb.New(mpb.WithOutput(a.Stderr), mpb.WithWidth(40), mpb.WithAutoRefresh())
	bar := p.AddBar(0,
		mpb.PrependDecorators(decor.Name("pulling "+ref+" ")),
		mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f")))
	opt.Progress = func(pr oci.Progress) {
		bar.SetTotal(pr.Total, false)
		bar.SetCurrent(pr.Complete)
	}
	return opt, func(ok bool) {
		if ok {
			bar.SetTotal(-1, true)
		} else {
			bar.Abort(false)
		}
		p.Wait()
	}
}

func (a *App) store() (*imagestore.Store, error) { return imagestore.Open(a.storeRoot) }

func (a *App) pullCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "pull IMAGE",
		Short: "Pull an image into the local store",
		Long: `Pull an image into the local store. IMAGE is a registry reference (alpine,
localhost:5000/x:tag, ghcr.io/o/r@sha256:...), oci-layout:DIR[:TAG],
docker-archive:FILE or dir:ROOTFS.`,
		Example: "  vxn pull alpine:3.20\n  vxn pull oci-layout:./build/layout:test",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store()
			if err != nil {
				return err
			}
			opt, done := a.pullOptions(args[0])
			img, err := s.Pull(cmd.Context(), args[0], opt)
			done(err == nil)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Stdout, "%s\n%s\n", strings.Join(img.Names, " "), img.Digest)
			return nil
		},
	}
}

// splitName splits a canonical name into docker's REPOSITORY and TAG columns.
func splitName(n string) (repo, tag string) {
	for _, p := range []string{"index.docker.io/library/", "index.docker.io/"} {
		if strings.HasPrefix(n, p) {
			n = n[len(p):]
			break
		}
	}
	if strings.Contains(n, "@") {
		return n, "<none>"
	}
	i := strings.LastIndex(n, ":")
	if i < 0 || strings.Contains(n[i:], "/") {
		return n, "<none>"
	}
	return n[:i], n[i+1:]
}

func (a *App) imagesCommand() *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "images",
		Short: "List images in the local store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store()
			if err != nil {
				return err
			}
			imgs, err := s.List()
			if err != nil {
				return err
			}
			if quiet {
				for _, img := range imgs {
					fmt.Fprintln(a.Stdout, shortID(img.ID))
				}
				return nil
			}
			tw := tabwriter.NewWriter(a.Stdout, 0, 8, 3, ' ', 0)
			fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tSIZE")
			for _, img := range imgs {
				for _, n := range img.Names {
					repo, tag := splitName(n)
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", repo, tag, shortID(img.ID), humanize.Bytes(uint64(img.Size)))
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only show image IDs")
	return cmd
}

func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		id = id[:12]
	}
	return id
}

func (a *App) rmiCommand() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rmi IMAGE...",
		Short:   "Remove images (names, or IDs) from the local store",
		Example: "  vxn rmi alpine\n  vxn rmi -f 3f57d9401f8d",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store()
			if err != nil {
				return err
			}
			var errs []error
			for _, ref := range args {
				r, err := s.Remove(ref, force)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				for _, u := range r.Untagged {
					fmt.Fprintf(a.Stdout, "Untagged: %s\n", u)
				}
				if r.Deleted != "" {
					fmt.Fprintf(a.Stdout, "Deleted: %s\n", r.Deleted)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove an image with several names by ID")
	return cmd
}

func (a *App) tagCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "tag SOURCE TARGET",
		Short:   "Give an image another name",
		Example: "  vxn tag alpine localhost:5000/alpine:mine",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store()
			if err != nil {
				return err
			}
			return s.Tag(args[0], args[1])
		},
	}
}

func (a *App) imageCommand() *cobra.Command {
	img := &cobra.Command{Use: "image", Short: "Manage images"}
	inspect := &cobra.Command{
		Use:     "inspect IMAGE...",
		Short:   "Show images' details as JSON (docker image inspect)",
		Example: "  vxn image inspect alpine",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.store()
			if err != nil {
				return err
			}
			out := []*imagestore.InspectInfo{}
			var errs []error
			for _, ref := range args {
				info, err := s.Inspect(ref)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				out = append(out, info)
			}
			b, _ := json.MarshalIndent(out, "", "    ")
			fmt.Fprintf(a.Stdout, "%s\n", b)
			return errors.Join(errs...)
		},
	}
	ls := a.imagesCommand()
	ls.Use, ls.Aliases = "ls", nil
	rm := a.rmiCommand()
	rm.Use = "rm IMAGE..."
	pull := a.pullCommand()
	tag := a.tagCommand()
	img.AddCommand(inspect, ls, rm, pull, tag)
	return img
}

// timings formats a run's breakdown for --timings.
func timings(pull, disk time.Duration, diskHit bool, r *container.Result, total time.Duration) string {
	t := r.Timings
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }
	hit := "converted"
	if diskHit {
		hit = "cached"
	}
	return fmt.Sprintf("vxn: timings: pull %s, disk %s (%s), prepare %s, create %s, attach %s, boot %s, init-to-exec %s, run %s, cleanup %s, total %s; host-side preparation %s",
		ms(pull), ms(disk), hit, ms(t.Prepare), ms(t.Create), ms(t.Attach), ms(t.Boot), ms(t.InitToExec), ms(t.Run), ms(t.Cleanup), ms(total),
		ms(total-t.Create-t.Attach-t.Boot-t.Run-t.Cleanup))
}
