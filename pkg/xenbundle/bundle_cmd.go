package xenbundle

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vxn-dev/vxn/pkg/bundle"
	"github.com/vxn-dev/vxn/pkg/dom0fs"
	"github.com/vxn-dev/vxn/pkg/guest"
	"github.com/vxn-dev/vxn/pkg/importer"
)

func init() {
	extraCommands = append(extraCommands, packCommand, mergeCommand, pushCommand, pullCommand)
}

// recipeNameVersion derives PN and PV from a recipe file name
// (my-guests_1.0.bb → my-guests, 1.0), as bitbake does.
func recipeNameVersion(confs []string) (string, string) {
	for _, c := range confs {
		base := filepath.Base(c)
		if !strings.HasSuffix(base, ".bb") {
			continue
		}
		base = strings.TrimSuffix(base, ".bb")
		pn, pv, ok := strings.Cut(base, "_")
		if !ok {
			return pn, ""
		}
		return pn, pv
	}
	return "", ""
}

func packCommand() *cobra.Command {
	var in Inputs
	var opt bundle.PackOptions
	cmd := &cobra.Command{
		Use:   "pack --conf recipe.bb | --manifest FILE --name BUNDLE --version V --format deb|ipk|dir --output DIR",
		Short: "Build a guest bundle package from XEN_GUEST_BUNDLES (or a YAML manifest)",
		Long: `pack resolves the guests of XEN_GUEST_BUNDLES exactly like install (imports,
kernels, custom configs), then lays them out as a bundle:

  /usr/share/xen-guest-bundles/<bundle>/images/      root disks, kernels, ramdisks
  /usr/share/xen-guest-bundles/<bundle>/configs/     <guest>.cfg
  /usr/share/xen-guest-bundles/<bundle>/manifest.json  versioned, sha256 of every file
  /usr/share/xen-guest-bundles/<bundle>/manifest       upstream's line manifest

and writes a .deb or .ipk (installable with dpkg/apt/opkg) or the directory.
Output is byte-identical for the same inputs: every timestamp is
SOURCE_DATE_EPOCH (or 1970-01-01). --name and --version default to the
recipe file name (my-guests_1.0.bb).`,
		Example: `  xenbundle pack --conf my-guests_1.0.bb --deploy-dir tmp/deploy/images/qemux86-64 --format deb --output out/
  xenbundle pack --conf examples/bundles/alpine-xen-guest-bundle_3.23.bb --unpackdir downloads --deploy-dir deploy --format ipk --output out/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in, opt := in, opt // flag-bound values stay as parsed
			if in.List == "" {
				in.List = guest.ListBundles
			}
			pn, pv := recipeNameVersion(in.Confs)
			if opt.Name == "" {
				opt.Name = pn
			}
			if opt.Version == "" {
				opt.Version = pv
			}
			if opt.Name == "" || opt.Version == "" {
				return errors.New("--name and --version are required (or a recipe file named NAME_VERSION.bb)")
			}
			epoch, err := epochFromEnv()
			if err != nil {
				return err
			}
			if epoch != nil {
				opt.Epoch = *epoch
			} else {
				opt.Epoch = time.Unix(0, 0).UTC()
			}
			specs, env, err := in.load()
			if err != nil {
				return err
			}
			opt.Registry = importer.NewRegistry()
			opt.Notice = func(msg string) { fmt.Fprintln(cmd.ErrOrStderr(), "xenbundle: warning:", msg) }
			start := time.Now()
			res, err := bundle.Pack(cmd.Context(), specs, env, opt)
			if err != nil {
				return err
			}
			for _, w := range res.Plan.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "xenbundle: warning:", w)
			}
			size := int64(0)
			if st, err := os.Stat(res.Path); err == nil && !st.IsDir() {
				size = st.Size()
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: bundle %s %s, %d guest(s), payload %d bytes, package %d bytes, %.2fs\n",
				res.Path, opt.Name, opt.Version, len(res.Manifest.Guests), res.PayloadBytes, size, time.Since(start).Seconds())
			return nil
		},
	}
	addInputFlags(cmd, &in)
	f := cmd.Flags()
	f.Lookup("list").DefValue = guest.ListBundles
	f.Lookup("list").Usage = "variable holding the guest list (default XEN_GUEST_BUNDLES)"
	f.StringVar(&opt.Name, "name", "", "bundle (package) name; default from the recipe file name")
	f.StringVar(&opt.Version, "version", "", "bundle (package) version; default from the recipe file name")
	f.StringVar(&opt.Format, "format", bundle.FormatDeb, "output format: deb, ipk or dir")
	f.StringVar(&opt.Output, "output", ".", "output directory")
	f.StringVar(&opt.Arch, "arch", "all", "package architecture")
	f.StringVar(&opt.Maintainer, "maintainer", "", "package maintainer")
	f.StringVar(&opt.Description, "description", "", "package description")
	f.StringVar(&opt.License, "license", "", "package license")
	f.StringVar(&opt.CacheDir, "cache-dir", defaultCacheDir(), "cache of import outputs ($XENBUNDLE_CACHE)")
	return cmd
}

func mergeCommand() *cobra.Command {
	var in Inputs
	var rootfs, kernelConflict string
	var winners []string
	opt := bundle.MergeOptions{}
	cmd := &cobra.Command{
		Use:   "merge --rootfs R [--keep-payload] [--winner bundle=NAME|vars]... [--conf FILE...]",
		Short: "Deploy the guest bundles installed in a Dom0 root filesystem (merge_installed_xen_bundles)",
		Long: `merge finds the bundles installed under /usr/share/xen-guest-bundles/ in the
Dom0 root filesystem (a directory or an ext4 image), verifies every file against
its manifest.json (a missing, corrupt or extra file fails the merge and nothing
is written), and deploys the guests through the same plan as install. Guests
given with --conf/--manifest/--guest (BUNDLED_XEN_GUESTS) are added to the same
plan, after the bundles' guests.

Conflicts are errors naming both sources: one guest in two bundles, a guest in
a bundle and in BUNDLED_XEN_GUESTS, one domain name used twice, two different
kernels under one file name. --winner chooses who wins guest and domain-name
conflicts (repeatable, first has precedence): "vars" for the variable list,
"bundle=NAME" for a bundle; the loser is not deployed. --kernel-conflict=rename
installs different kernels with one name side by side (name-<sha256 prefix>).

After deploying, the payload is removed (as upstream does, it would double
the image size) and the bundle package is deregistered from the dpkg or opkg
database found in the root filesystem, so the database does not list files
that are gone. --keep-payload keeps both.`,
		Example: `  xenbundle merge --rootfs rootfs/
  xenbundle merge --rootfs dom0.ext4 --keep-payload
  xenbundle merge --rootfs rootfs/ --conf local.conf --deploy-dir deploy --winner vars`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rootfs == "" {
				return errors.New("--rootfs is required: a Dom0 root filesystem directory or ext4 image file")
			}
			in, opt := in, opt // flag-bound values stay as parsed
			for _, w := range winners {
				v, err := bundle.ParseWinner(w)
				if err != nil {
					return err
				}
				opt.Winner = append(opt.Winner, v)
			}
			switch kernelConflict {
			case "error":
			case "rename":
				opt.KernelRename = true
			default:
				return fmt.Errorf("--kernel-conflict %q: expected error or rename", kernelConflict)
			}
			if len(in.Confs) > 0 || in.Manifest != "" || len(in.Guests) > 0 {
				specs, env, err := in.load()
				if err != nil {
					return err
				}
				opt.Specs, opt.Env = specs, env
			}
			epoch, err := epochFromEnv()
			if err != nil {
				return err
			}
			opt.Epoch = epoch
			if _, err := os.Stat(rootfs); err != nil {
				return fmt.Errorf("--rootfs %s: %w", rootfs, err)
			}
			target, err := dom0fs.Open(rootfs)
			if err != nil {
				return err
			}
			opt.Target = target
			opt.Registry = importer.NewRegistry()
			opt.Log = func(format string, args ...any) { fmt.Fprintf(cmd.OutOrStdout(), format+"\n", args...) }
			res, err := bundle.Merge(cmd.Context(), opt)
			for _, w := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "xenbundle: warning:", w)
			}
			if err != nil {
				return err
			}
			var names []string
			for _, b := range res.Bundles {
				names = append(names, b.Name)
			}
			verb := "merged"
			if opt.DryRun {
				verb = "would merge"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %d bundle(s) (%s), %d guest(s) into %s", verb, len(res.Bundles), strings.Join(names, ", "), len(res.Plan.Guests), rootfs)
			if len(res.Deregistered) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "; deregistered %s", strings.Join(res.Deregistered, ", "))
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	addInputFlags(cmd, &in)
	f := cmd.Flags()
	f.StringVar(&rootfs, "rootfs", "", "Dom0 root filesystem: a directory or an ext4 image file")
	f.BoolVar(&opt.KeepPayload, "keep-payload", false, "keep /usr/share/xen-guest-bundles and the package registration after deploying")
	f.StringArrayVar(&winners, "winner", nil, "who wins a guest or domain-name conflict: vars or bundle=NAME (repeatable, first wins)")
	f.StringVar(&kernelConflict, "kernel-conflict", "error", "different kernels with one file name: error, or rename (name-<sha256 prefix>)")
	f.BoolVar(&opt.DryRun, "dry-run", false, "verify and plan only; write nothing")
	f.StringVar(&opt.CacheDir, "cache-dir", defaultCacheDir(), "cache of import outputs ($XENBUNDLE_CACHE)")
	f.StringVar(&opt.TmpDir, "tmpdir", "", "where the payload of an ext4 image is copied out (default $TMPDIR)")
	return cmd
}

func pushCommand() *cobra.Command {
	var opt bundle.RegistryOptions
	cmd := &cobra.Command{
		Use:   "push BUNDLE REF",
		Short: "Publish a bundle (directory, .deb or .ipk) to an OCI registry",
		Long: `push uploads a bundle directory (as written by pack --format dir) or a .deb/.ipk
bundle package as an OCI artifact (artifactType ` + bundle.ArtifactType + `).
Registries on localhost use plain HTTP; --insecure allows it elsewhere.
Credentials come from the Docker config (docker login).`,
		Example: `  xenbundle push out/my-guests localhost:5000/guests/my-guests:1.0
  xenbundle push out/my-guests_1.0_all.deb registry.example.com/guests/my-guests:1.0-deb`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			dgst, err := bundle.Push(cmd.Context(), args[0], args[1], opt)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed %s to %s@%s\n", args[0], args[1], dgst)
			return nil
		},
	}
	cmd.Flags().BoolVar(&opt.Insecure, "insecure", false, "allow plain HTTP and self-signed TLS")
	return cmd
}

func pullCommand() *cobra.Command {
	var opt bundle.RegistryOptions
	var out string
	cmd := &cobra.Command{
		Use:   "pull REF [--output DIR]",
		Short: "Fetch a bundle artifact from an OCI registry (verified)",
		Example: `  xenbundle pull localhost:5000/guests/my-guests:1.0 --output bundles/
  # then: cp -a bundles/my-guests rootfs/usr/share/xen-guest-bundles/ && xenbundle merge --rootfs rootfs/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := bundle.Pull(cmd.Context(), args[0], out, opt)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pulled %s to %s\n", args[0], p)
			return nil
		},
	}
	cmd.Flags().BoolVar(&opt.Insecure, "insecure", false, "allow plain HTTP and self-signed TLS")
	cmd.Flags().StringVarP(&out, "output", "o", ".", "output directory")
	return cmd
}
