// Package busyboximage builds a small runnable OCI image from a static
// busybox binary (Debian's busybox-static /usr/bin/busybox), so that a
// machine without network access has an image to run: vxn's image store
// and containerd (through a docker-archive for `ctr images import`) get it
// at image build time.
//
// The image has one layer: /bin/busybox, a symbolic link in /bin for each
// applet of Applets that the binary has, /usr/bin/env, /etc/passwd and
// /etc/group (root and nobody), /root, /tmp (1777) and the usual mount
// points, all owned by root. Its config runs "sh" with docker's default
// PATH. Every timestamp is testimage.Epoch, so the same binary and
// architecture always give the same image digest.
//
// The layer and image are assembled with pkg/oci/testimage's helpers
// (go-containerregistry underneath); the archive is go-containerregistry's
// docker-archive writer and the store is pkg/imagestore's Add.
package busyboximage

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/vxn-dev/vxn/pkg/imagestore"
	"github.com/vxn-dev/vxn/pkg/oci"
	"github.com/vxn-dev/vxn/pkg/oci/testimage"
)

// Ref is the name the image is meant to carry: Docker Hub's busybox, so
// that "busybox" (vxn run busybox, ctr's docker.io/library/busybox:latest)
// finds it without a registry.
const Ref = "docker.io/library/busybox:latest"

// Path is the environment's PATH, docker's default.
const Path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Applets are the applets linked as /bin/NAME -> busybox when the binary
// has them (Debian's busybox-static has all of them).
var Applets = []string{
	"[", "[[", "ash", "awk", "base64", "basename", "cat", "chgrp", "chmod", "chown",
	"clear", "cmp", "cp", "cut", "date", "dd", "df", "diff", "dirname", "dmesg",
	"du", "echo", "egrep", "env", "expr", "false", "fgrep", "find", "free", "grep",
	"groups", "gunzip", "gzip", "head", "hexdump", "hostname", "id", "ip", "ifconfig", "kill",
	"killall", "less", "ln", "ls", "md5sum", "mkdir", "mkfifo", "mktemp", "more", "mv",
	"nc", "netstat", "nproc", "nslookup", "od", "pidof", "ping", "printf", "ps", "pwd",
	"readlink", "realpath", "rm", "rmdir", "route", "sed", "seq", "sh", "sha1sum", "sha256sum",
	"sha512sum", "sleep", "sort", "stat", "stty", "sync", "tac", "tail", "tar", "tee",
	"test", "timeout", "top", "touch", "tr", "true", "tty", "uname", "uniq", "unzip",
	"uptime", "vi", "watch", "wc", "wget", "which", "whoami", "xargs", "yes", "zcat",
}

// Required are applets the binary must have for the image to be usable.
var Required = []string{"sh", "echo", "ls", "cat"}

// Passwd and Group are /etc/passwd and /etc/group.
const (
	Passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	Group  = "root:x:0:\nnogroup:x:65534:\n"
)

// maxBinary bounds the busybox file read into memory.
const maxBinary = 64 << 20

// machines maps the supported architectures (GOARCH names) to ELF.
var machines = map[string]struct {
	machine elf.Machine
	class   elf.Class
}{
	"amd64": {elf.EM_X86_64, elf.ELFCLASS64},
	"arm64": {elf.EM_AARCH64, elf.ELFCLASS64},
}

// Build returns the busybox image for linux/arch (amd64 or arm64) made from
// the static busybox binary at busyboxPath. The file must be a statically
// linked ELF executable for arch with busybox's applet table; the error
// names the file and what was expected.
func Build(busyboxPath, arch string) (v1.Image, error) {
	bin, applets, err := readBusybox(busyboxPath, arch)
	if err != nil {
		return nil, err
	}
	files := []testimage.File{
		{Name: "bin/"},
		{Name: "bin/busybox", Body: string(bin), Mode: 0o755},
	}
	for _, a := range applets {
		files = append(files, testimage.File{Name: "bin/" + a, Type: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	files = append(files,
		testimage.File{Name: "dev/"},
		testimage.File{Name: "etc/"},
		testimage.File{Name: "etc/group", Body: Group},
		testimage.File{Name: "etc/passwd", Body: Passwd},
		testimage.File{Name: "proc/", Mode: 0o555},
		testimage.File{Name: "root/", Mode: 0o700},
		testimage.File{Name: "sys/", Mode: 0o555},
		testimage.File{Name: "tmp/", Mode: 0o1777},
		testimage.File{Name: "usr/"},
		testimage.File{Name: "usr/bin/"},
		testimage.File{Name: "usr/bin/env", Type: tar.TypeSymlink, Linkname: "../../bin/busybox", Mode: 0o777},
		testimage.File{Name: "var/"},
	)
	layer, err := testimage.Layer(files)
	if err != nil {
		return nil, fmt.Errorf("busybox image from %s: %w", busyboxPath, err)
	}
	img, err := testimage.Image(arch, v1.Config{Cmd: []string{"sh"}, Env: []string{Path}}, layer)
	if err != nil {
		return nil, fmt.Errorf("busybox image from %s: %w", busyboxPath, err)
	}
	return img, nil
}

// readBusybox reads and checks the binary and returns it with the applets
// of Applets it has, sorted.
func readBusybox(p, arch string) ([]byte, []string, error) {
	want, ok := machines[arch]
	if !ok {
		return nil, nil, fmt.Errorf("busybox image: architecture %q: expected amd64 or arm64", arch)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, fmt.Errorf("busybox binary: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("busybox binary: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("busybox binary %s: not a regular file", p)
	}
	if fi.Size() > maxBinary {
		return nil, nil, fmt.Errorf("busybox binary %s: %d bytes, more than the %d expected of busybox", p, fi.Size(), maxBinary)
	}
	bin, err := io.ReadAll(io.LimitReader(f, maxBinary+1))
	if err != nil {
		return nil, nil, fmt.Errorf("busybox binary %s: %w", p, err)
	}
	ef, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		return nil, nil, fmt.Errorf("busybox binary %s: not an ELF executable (expected a static busybox such as Debian's busybox-static /bin/busybox): %w", p, err)
	}
	defer ef.Close()
	if ef.Machine != want.machine || ef.Class != want.class {
		return nil, nil, fmt.Errorf("busybox binary %s: built for %s (%s), expected %s for %s", p, ef.Machine, ef.Class, want.machine, arch)
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return nil, nil, fmt.Errorf("busybox binary %s: ELF type %s, expected an executable", p, ef.Type)
	}
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			return nil, nil, fmt.Errorf("busybox binary %s: dynamically linked, expected a static binary (the image has no C library; Debian's package is busybox-static)", p)
		}
	}
	have := appletTable(bin)
	if have == nil {
		return nil, nil, fmt.Errorf("busybox binary %s: no busybox applet table found: not a busybox binary?", p)
	}
	var missing []string
	for _, r := range Required {
		if !have[r] {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("busybox binary %s: lacks the applets %s, which the image needs (expected a busybox such as Debian's busybox-static)", p, strings.Join(missing, ", "))
	}
	var applets []string
	for _, a := range Applets {
		if have[a] {
			applets = append(applets, a)
		}
	}
	sort.Strings(applets)
	return bin, applets, nil
}

// appletName is a plausible busybox applet name.
var appletName = regexp.MustCompile(`^[a-z0-9\[][a-z0-9_.\[\]-]*$`)

// appletTable finds busybox's applet_names, a sorted run of NUL-terminated
// names in read-only data, as the longest strictly ascending run of
// applet-like strings. It returns nil when there is no run of at least 16.
func appletTable(bin []byte) map[string]bool {
	var best, cur []string
	flush := func() {
		if len(cur) > len(best) {
			best = cur
		}
		cur = nil
	}
	for _, tok := range bytes.Split(bin, []byte{0}) {
		s := string(tok)
		if !appletName.MatchString(s) || len(s) > 32 {
			flush()
			continue
		}
		if len(cur) > 0 && s <= cur[len(cur)-1] {
			flush()
		}
		cur = append(cur, s)
	}
	flush()
	if len(best) < 16 {
		return nil
	}
	out := make(map[string]bool, len(best))
	for _, s := range best {
		out[s] = true
	}
	return out
}

// WriteArchive writes img to path as a docker-archive (`docker save`
// format) tagged ref, which `ctr images import` (containerd normalises
// "busybox:latest" to docker.io/library/busybox:latest), `docker load` and
// vxn's docker-archive: transport read. The file is written under a
// temporary name in the same directory and renamed into place.
func WriteArchive(path string, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("docker archive %s: tag %q: %w", path, ref, err)
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-")
	if err != nil {
		return fmt.Errorf("docker archive: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tarball.Write(tag, img, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("docker archive %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("docker archive %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("docker archive %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("docker archive: %w", err)
	}
	return nil
}

// AddToStore puts img into vxn's image store at storeRoot (created if
// needed; on a build machine, the target root file system's /var/lib/vxn)
// under the registry name ref ("busybox" or Ref), so `vxn images` lists it
// and `vxn run busybox` uses it without pulling. With guestDisk set the
// image's read-only guest disk is built now instead of on the first run.
// Nothing stored names storeRoot: the directory can be copied into another
// root file system.
func AddToStore(ctx context.Context, storeRoot string, img v1.Image, ref string, guestDisk bool) (*imagestore.Image, error) {
	if storeRoot == "" {
		return nil, errors.New("busybox image: the image store directory is empty")
	}
	s, err := imagestore.Open(storeRoot)
	if err != nil {
		return nil, err
	}
	stored, err := s.Add(ctx, img, ref, oci.Options{})
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", storeRoot, err)
	}
	if guestDisk {
		if _, _, err := s.Disk(ctx, stored); err != nil {
			return nil, fmt.Errorf("image store %s: %w", storeRoot, err)
		}
	}
	return stored, nil
}
