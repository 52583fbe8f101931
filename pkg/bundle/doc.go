// Package bundle builds, verifies, merges and distributes Xen guest bundles:
// the package-based front-end of meta-virtualization (xen-guest-bundle.bbclass
// and merge_installed_xen_bundles).
//
// A bundle is a directory PayloadRoot/<bundle>/ holding images/ (root disks,
// kernels, ramdisks), configs/<guest>.cfg and two manifests: manifest.json
// (versioned schema, a sha256 and size for every file, see Manifest) and
// upstream's line manifest `guest:rootfs:kernel:autostart`.
//
//   - Pack runs the same resolution as `xenbundle install` (plan.Make), applies
//     the plan into a staging tree, lays the payload out and packages it as a
//     .deb or .ipk with nfpm (github.com/goreleaser/nfpm/v2, the packager
//     behind GoReleaser: pure Go, well kept, reproducible given a fixed
//     mtime), or leaves it as a directory. No .rpm: nfpm's rpm backend
//     depends on go.digitalxero.dev/rpm, which the module proxy refuses.
//   - Find and Verify locate installed bundles in a Dom0 root filesystem
//     (directory or ext4 image) and check every file against manifest.json;
//     Specs turns them into guest specs pointing into the payload, so Merge
//     deploys them with plan.Make and Apply: the same code as the
//     variable-driven path, hence the same tree for the same guests.
//   - Resolve and CheckKernels detect conflicts (same guest in two sources,
//     same domain name, different kernels under one file name) and apply an
//     explicit Winner.
//   - Push and Pull move a bundle (directory or package file) through any OCI
//     registry as an artifact, with go-containerregistry.
//
// Payload and package database after a merge: upstream deletes the payload
// and leaves the package registered, so `dpkg -V`/`opkg` report a package
// whose files are all missing, and an upgrade reinstalls a payload nobody
// merges. Merge also removes the payload by default (it duplicates every
// image), but then deregisters the bundle package from the dpkg or opkg
// database it finds in the root filesystem (status stanza and info files),
// so the image contents and package metadata agree: the guests are owned by
// no package, like variable-driven guests. With KeepPayload both stay and
// merge is idempotent. An rpm database cannot be edited safely without rpm;
// Merge reports that and leaves it alone.
package bundle
