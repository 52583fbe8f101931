package refimage

import (
	"context"
	"time"

	"github.com/vxn-dev/vxn/pkg/bbconf"
	"github.com/vxn-dev/vxn/pkg/bundle"
	"github.com/vxn-dev/vxn/pkg/guest"
)

// BundleOptions configure PackBundle.
type BundleOptions struct {
	// Name and Version of the package.
	Name, Version string
	// Recipe is bitbake-style text with XEN_GUEST_BUNDLES (a bundle recipe
	// such as examples/bundles/*.bb); RecipeName names it in errors.
	Recipe     []byte
	RecipeName string
	// Machine, DeployDir and UnpackDir resolve the recipe's files.
	Machine, DeployDir, UnpackDir string
	// Format is bundle.FormatDeb (default) or bundle.FormatIPK.
	Format string
	// Output receives the package; CacheDir is the import cache.
	Output, CacheDir string
	// Log receives progress lines; Notice the redistribution notice.
	Log    func(format string, args ...any)
	Notice func(string)
}

// PackBundle packs a bundle recipe into a package, like `xenbundle pack
// --conf RECIPE`, with the reference image's conventions (guest kernel
// type GuestKernelType(machine) in DeployDir). It returns the package path.
func PackBundle(ctx context.Context, o BundleOptions) (*bundle.PackResult, error) {
	if o.Machine == "" {
		o.Machine = "qemux86-64"
	}
	if o.Format == "" {
		o.Format = bundle.FormatDeb
	}
	if o.RecipeName == "" {
		o.RecipeName = o.Name + "_" + o.Version + ".bb"
	}
	d, err := bbconf.Load(o.Machine, o.Name, bbconf.Source{Name: o.RecipeName, Text: o.Recipe})
	if err != nil {
		return nil, err
	}
	d.Set("MACHINE", o.Machine)
	d.Set("DEPLOY_DIR_IMAGE", o.DeployDir)
	d.Set("KERNEL_IMAGETYPE", GuestKernelType(o.Machine))
	d.Set("UNPACKDIR", o.UnpackDir)
	specs, env, err := specsFrom(d, o.Machine, o.DeployDir, guest.ListBundles)
	if err != nil {
		return nil, err
	}
	return bundle.Pack(ctx, specs, env, bundle.PackOptions{Name: o.Name, Version: o.Version, Format: o.Format,
		Output: o.Output, CacheDir: o.CacheDir, Epoch: time.Unix(0, 0).UTC(), Log: o.Log, Notice: o.Notice})
}
