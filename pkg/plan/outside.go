package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vxn-dev/vxn/pkg/guest"
)

// outsideFile checks a guest file given by setting (XEN_GUEST_KERNEL,
// XEN_GUEST_RAMDISK, XEN_GUEST_ROOTFS) and resolved to file: one outside
// DEPLOY_DIR_IMAGE, UNPACKDIR and opts.TrustedDirs (after symlinks) is
// copied into the Dom0 tree as it is, so it gets a warning naming the
// guest, the setting and the file; one of those that others may not read
// (mode without o+r: /etc/shadow, a private key) is refused unless
// opts.AllowPrivateFiles.
func outsideFile(s *guest.Spec, env Env, opts Options, setting, file string) (warning string, err error) {
	if file == "" {
		return "", nil
	}
	real, err := filepath.EvalSymlinks(file)
	if err != nil {
		real = file
	}
	for _, d := range append([]string{env.DeployDir, env.UnpackDir}, opts.TrustedDirs...) {
		if d != "" && within(real, d) {
			return "", nil
		}
	}
	shown := file
	if real != file {
		shown = file + " (" + real + ")"
	}
	st, err := os.Stat(real)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o004 == 0 && !opts.AllowPrivateFiles {
		return "", &guest.Error{Guest: s.Name, Setting: setting, Origin: s.Origin[setting],
			Msg: fmt.Sprintf("%s is outside DEPLOY_DIR_IMAGE and UNPACKDIR and not readable by others (mode %04o): refusing to copy a private file into the Dom0 tree (give --allow-private-files if it is meant)", shown, st.Mode().Perm())}
	}
	where := ""
	if o := s.Origin[setting]; o != "" && o != "default" {
		where = o + ": "
	}
	return fmt.Sprintf("%sguest %q: %s[%s] = %s is outside DEPLOY_DIR_IMAGE (%s) and UNPACKDIR (%s); it is copied into the Dom0 tree as it is",
		where, s.Name, setting, s.Name, shown, orUnset(env.DeployDir), orUnset(env.UnpackDir)), nil
}

// within reports whether path (symlinks resolved) is dir or below it (dir's
// symlinks resolved too).
func within(path, dir string) bool {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	dir, _ = filepath.Abs(dir)
	path, _ = filepath.Abs(path)
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func orUnset(s string) string {
	if s == "" {
		return "not set"
	}
	return s
}
