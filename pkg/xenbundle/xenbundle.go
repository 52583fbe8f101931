// Package xenbundle implements the xenbundle command line: it wires flags
// to packages guest, bbconf, plan, importer and dom0fs. cmd/xenbundle only
// calls Main.
package xenbundle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vxn-dev/vxn/pkg/bundle"
	"github.com/vxn-dev/vxn/pkg/dom0fs"
	"github.com/vxn-dev/vxn/pkg/importer"
	"github.com/vxn-dev/vxn/pkg/plan"
)

// Main runs the command with args and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := NewCommand()
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "xenbundle: error:", indent(err.Error()))
		return 1
	}
	return 0
}

func indent(s string) string {
	if !strings.Contains(s, "\n") {
		return s
	}
	return "\n  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// extraCommands are constructors of the commands that other files of this
// package (bundle, image and boot commands) register from their init
// functions; each Main call builds fresh commands, so no flag state leaks
// between runs.
var extraCommands []func() *cobra.Command

// NewCommand returns the root cobra command.
func NewCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "xenbundle",
		Short: "Bundle Xen guests into a Dom0 root filesystem",
		Long: `xenbundle turns guest images (Yocto-built or third-party: rootfs directories and
tarballs, qcow2, ext4, raw) into a Xen Dom0 root filesystem: images in
/var/lib/xen/images, xl configs in /etc/xen, autostart links in /etc/xen/auto.
Guests are described by the bitbake variables Yocto users already write
(BUNDLED_XEN_GUESTS, XEN_GUEST_MEMORY[guest], ...) or by a YAML manifest.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(planCommand(), installCommand(), importCommand())
	for _, mk := range extraCommands {
		root.AddCommand(mk())
	}
	return root
}

func addInputFlags(cmd *cobra.Command, in *Inputs) {
	f := cmd.Flags()
	f.StringArrayVar(&in.Confs, "conf", nil, "bitbake-style configuration file (repeatable), e.g. local.conf")
	f.StringVar(&in.Manifest, "manifest", "", "YAML guest manifest (instead of --conf)")
	f.StringVar(&in.DeployDir, "deploy-dir", "", "DEPLOY_DIR_IMAGE: where guest images and the shared kernel are")
	f.StringVar(&in.UnpackDir, "unpackdir", "", "UNPACKDIR: where fetched sources, custom kernels and configs are")
	f.StringVar(&in.Machine, "machine", "", "MACHINE (default qemux86-64)")
	f.StringVar(&in.Image, "image", "xen-image-minimal", "host image name: activates :pn-<image> overrides")
	f.StringVar(&in.KernelType, "kernel-imagetype", "", "KERNEL_IMAGETYPE (default bzImage on x86, Image on arm64)")
	f.StringArrayVar(&in.Sets, "set", nil, "set a variable, VAR=VALUE or VAR[flag]=VALUE (repeatable)")
	f.StringArrayVar(&in.Guests, "guest", nil, "add a guest entry name[:autostart][:external] (repeatable)")
	f.StringVar(&in.List, "list", "", "variable holding the guest list (default BUNDLED_XEN_GUESTS)")
	f.IntVar(&in.HostMemoryMB, "host-memory", 4096, "host memory budget in MB, for the memory warning")
	f.IntVar(&in.Dom0MemoryMB, "dom0-memory", 512, "Dom0 memory (dom0_mem) in MB, for the memory warning")
}

func defaultCacheDir() string {
	if d := os.Getenv("XENBUNDLE_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "xenbundle")
	}
	return filepath.Join(os.TempDir(), "xenbundle-cache")
}

// planWithBundles makes the plan install would carry out: when the target
// root filesystem exists, the bundles installed in it are merged into the
// same plan (a dry run: nothing is written).
func planWithBundles(cmd *cobra.Command, in *Inputs, rootfs string) (*plan.Plan, error) {
	if rootfs == "" {
		p, _, err := makePlan(cmd.Context(), in, "")
		return p, err
	}
	if _, err := os.Stat(rootfs); err != nil {
		p, _, err := makePlan(cmd.Context(), in, "")
		return p, err
	}
	specs, env, err := in.load()
	if err != nil {
		return nil, err
	}
	target, err := dom0fs.Open(rootfs)
	if err != nil {
		return nil, err
	}
	res, err := bundle.Merge(cmd.Context(), bundle.MergeOptions{Target: target, Specs: specs, Env: env, Registry: in.registry, DryRun: true, CacheDir: os.TempDir(),
		AllowPrivateFiles: in.AllowPrivateFiles})
	if res != nil {
		for _, w := range res.Warnings {
			fmt.Fprintln(cmd.ErrOrStderr(), "xenbundle: warning:", w)
		}
	}
	if err != nil {
		return nil, err
	}
	return res.Plan, nil
}

// makePlan loads the inputs and makes the plan; it returns the import
// registry (built-ins plus declared custom types) that Apply must use.
func makePlan(ctx context.Context, in *Inputs, cacheDir string) (*plan.Plan, *importer.Registry, error) {
	specs, env, err := in.load()
	if err != nil {
		return nil, nil, err
	}
	p, err := plan.MakeContext(ctx, specs, env, plan.Options{Registry: in.registry, CacheDir: cacheDir, AllowPrivateFiles: in.AllowPrivateFiles})
	return p, in.registry, err
}

func planCommand() *cobra.Command {
	var in Inputs
	var rootfs, cacheDir string
	var asJSON, showConfigs bool
	cmd := &cobra.Command{
		Use:   "plan --conf FILE... | --manifest FILE --deploy-dir DIR [--rootfs R]",
		Short: "Print every file install would write and every check made; write nothing",
		Example: `  xenbundle plan --conf local.conf --deploy-dir tmp/deploy/images/qemux86-64 --rootfs rootfs/
  xenbundle plan --manifest guests.yaml --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := planWithBundles(cmd, &in, rootfs)
			if err != nil {
				return err
			}
			var target dom0fs.FS
			if _, err := os.Stat(rootfs); rootfs != "" && err == nil {
				if target, err = dom0fs.Open(rootfs); err != nil {
					return err
				}
			}
			p.Stale = plan.FindStale(target, cacheDir)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Rootfs string `json:"rootfs,omitempty"`
					*plan.Plan
				}{rootfs, p})
			}
			printPlan(out, p, rootfs, showConfigs)
			for _, n := range in.features.Notes {
				fmt.Fprintln(out, "image (xenbundle build-image):", n)
			}
			for _, w := range p.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "xenbundle: warning:", w)
			}
			return nil
		},
	}
	addInputFlags(cmd, &in)
	cmd.Flags().StringVar(&rootfs, "rootfs", "", "target Dom0 root filesystem (directory or ext4 image); shown only")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.Flags().BoolVar(&showConfigs, "show-configs", true, "print the rendered xl configs")
	cmd.Flags().BoolVar(&in.AllowPrivateFiles, "allow-private-files", false, "accept a guest kernel, ramdisk or rootfs outside the deploy and unpack directories that others may not read (refused by default)")
	cmd.Flags().StringVar(&cacheDir, "cache-dir", defaultCacheDir(), "cache of import outputs ($XENBUNDLE_CACHE), checked for stale temporaries")
	return cmd
}

func printPlan(w io.Writer, p *plan.Plan, rootfs string, showConfigs bool) {
	if rootfs != "" {
		fmt.Fprintf(w, "target: %s\n", rootfs)
	}
	fmt.Fprintf(w, "machine: %s  deploy: %s  unpack: %s  kernel: %s\n\nchecks:\n", p.Env.Machine, orNone(p.Env.DeployDir), orNone(p.Env.UnpackDir), p.Env.KernelImageType)
	for _, c := range p.Checks {
		if c.Guest != "" {
			fmt.Fprintf(w, "  ok  %-24s %s: %s\n", c.Guest, c.What, c.Result)
		} else {
			fmt.Fprintf(w, "  ok  %-24s %s: %s\n", "*", c.What, c.Result)
		}
	}
	fmt.Fprintln(w, "\nactions:")
	for _, a := range p.Actions {
		switch a.Kind {
		case plan.KindMkdir:
			fmt.Fprintf(w, "  mkdir   %s\n", a.Path)
		case plan.KindImport:
			fmt.Fprintf(w, "  import  %s  <- %s %s (%d MB)\n", a.Path, a.ImportType, a.Source, a.SizeMB)
		case plan.KindCopy:
			fmt.Fprintf(w, "  copy    %s  <- %s\n", a.Path, a.Source)
		case plan.KindConfig:
			fmt.Fprintf(w, "  write   %s  (%s)\n", a.Path, a.Note)
		case plan.KindSymlink:
			fmt.Fprintf(w, "  symlink %s -> %s\n", a.Path, a.Target)
		case plan.KindUnlink:
			fmt.Fprintf(w, "  unlink  %s  (if it is a stale autostart link)\n", a.Path)
		}
	}
	if len(p.Stale) > 0 {
		fmt.Fprintln(w, "\nstale temporaries (left by an interrupted run; install removes them):")
		for _, s := range p.Stale {
			fmt.Fprintf(w, "  remove  %s\n", s)
		}
	}
	if showConfigs {
		for _, g := range p.Guests {
			fmt.Fprintf(w, "\n--- %s\n%s", g.ConfigPath, g.Config)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func epochFromEnv() (*time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q: expected seconds since 1970", v)
	}
	t := time.Unix(n, 0).UTC()
	return &t, nil
}

func installCommand() *cobra.Command {
	var in Inputs
	var rootfs, cacheDir string
	var quiet, keepPayload bool
	var winners []string
	cmd := &cobra.Command{
		Use:   "install --conf FILE... | --manifest FILE --deploy-dir DIR --rootfs R",
		Short: "Write the guests into a Dom0 root filesystem (directory or ext4 image)",
		Example: `  xenbundle install --conf local.conf --deploy-dir tmp/deploy/images/qemux86-64 --rootfs rootfs/
  xenbundle install --manifest guests.yaml --rootfs dom0.ext4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rootfs == "" {
				return errors.New("--rootfs is required: a Dom0 root filesystem directory or ext4 image file")
			}
			epoch, err := epochFromEnv()
			if err != nil {
				return err
			}
			specs, env, err := in.load()
			if err != nil {
				return err
			}
			target, err := dom0fs.Open(rootfs)
			if err != nil {
				return err
			}
			logf := func(format string, args ...any) {
				if !quiet {
					fmt.Fprintf(cmd.OutOrStdout(), format+"\n", args...)
				}
			}
			// Bundles installed in the target are merged first, then the
			// variable-driven guests, in one validated plan (one code
			// path: with no bundle installed this is a plain install).
			opt := bundle.MergeOptions{Target: target, Specs: specs, Env: env, CacheDir: cacheDir,
				Registry: in.registry, Epoch: epoch, Log: logf, KeepPayload: keepPayload, AllowPrivateFiles: in.AllowPrivateFiles}
			for _, w := range winners {
				v, err := bundle.ParseWinner(w)
				if err != nil {
					return err
				}
				opt.Winner = append(opt.Winner, v)
			}
			start := time.Now()
			res, err := bundle.Merge(cmd.Context(), opt)
			if res != nil {
				for _, w := range res.Warnings {
					fmt.Fprintln(cmd.ErrOrStderr(), "xenbundle: warning:", w)
				}
			}
			if err != nil {
				return err
			}
			p, st := res.Plan, res.Stats
			names := make([]string, 0, len(p.Guests))
			for _, g := range p.Guests {
				names = append(names, g.Spec.Name)
			}
			sort.Strings(names)
			logf("installed %d guest(s) into %s in %.2fs: %s (imports: %d built, %d cached; copies: %d, %d unchanged)",
				len(p.Guests), rootfs, time.Since(start).Seconds(), strings.Join(names, ", "), st.Imported, st.ImportCached, st.Copied, st.CopySkipped)
			return nil
		},
	}
	addInputFlags(cmd, &in)
	cmd.Flags().StringVar(&rootfs, "rootfs", "", "target Dom0 root filesystem: a directory (created if missing) or an ext4 image file")
	cmd.Flags().BoolVar(&keepPayload, "keep-payload", false, "keep the payload of merged bundle packages (see merge)")
	cmd.Flags().StringArrayVar(&winners, "winner", nil, "conflict winner, vars or bundle=NAME (repeatable; see merge)")
	cmd.Flags().StringVar(&cacheDir, "cache-dir", defaultCacheDir(), "cache of import outputs ($XENBUNDLE_CACHE)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only warnings and errors")
	cmd.Flags().BoolVar(&in.AllowPrivateFiles, "allow-private-files", false, "accept a guest kernel, ramdisk or rootfs outside the deploy and unpack directories that others may not read (refused by default)")
	return cmd
}

func importCommand() *cobra.Command {
	var typ, src, out, backingDir string
	var size int
	cmd := &cobra.Command{
		Use:   "import --type T --source S --output O [--size MB] [--backing-dir DIR]",
		Short: "Run one import handler (rootfs_dir, rootfs_tar, qcow2, ext4, raw or a custom type)",
		Example: `  xenbundle import --type rootfs_tar --source alpine-minirootfs.tar.gz --output alpine.img --size 128
  xenbundle import --type qcow2 --source disk.qcow2 --output disk.img`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if typ == "" || src == "" || out == "" {
				return errors.New("--type, --source and --output are required")
			}
			epoch, err := epochFromEnv()
			if err != nil {
				return err
			}
			reg := importer.NewRegistry()
			h, err := reg.Lookup(typ)
			if err != nil {
				return err
			}
			if err := importer.CheckTools(h.Tools()); err != nil {
				return err
			}
			if backingDir != "" && typ != importer.TypeQcow2 {
				return fmt.Errorf("--backing-dir applies to --type %s only (got --type %s)", importer.TypeQcow2, typ)
			}
			req := importer.Request{Guest: strings.TrimSuffix(filepath.Base(out), filepath.Ext(out)), Type: typ, Source: src, Output: out, SizeMB: size, Epoch: epoch, BackingDir: backingDir}
			if err := h.Check(req); err != nil {
				return err
			}
			if _, err := h.Estimate(cmd.Context(), req); err != nil {
				return err
			}
			start := time.Now()
			if err := h.Import(cmd.Context(), req); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s import of %s done in %.2fs\n", out, typ, src, time.Since(start).Seconds())
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "import type")
	f.StringVar(&src, "source", "", "source file or directory")
	f.StringVar(&out, "output", "", "output image file")
	f.IntVar(&size, "size", 0, "output size in MB (0 = automatic)")
	f.StringVar(&backingDir, "backing-dir", "", "qcow2: another directory the image's backing files may be in (by default only relative names inside the source's directory are followed)")
	return cmd
}
