package ext4

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Image edits an existing ext4 image file without mounting it and without
// root, by driving `debugfs -w` from e2fsprogs. All operations of one call
// (or of one Batch) run in a single debugfs process from a script; debugfs
// exits 0 on most failures, so its output is read back command by command
// and every unexpected message becomes an error naming the command.
//
// Paths are absolute inside the image ("etc/x" means "/etc/x"); they may
// contain spaces but not double quotes, newlines or NUL bytes, which the
// debugfs command parser cannot carry. Image is not safe for concurrent use
// and must not be used while something else has the image open for writing.
type Image struct {
	path string
	// Epoch, when set, is used for the times of every inode the Image
	// creates or changes (passed to debugfs as E2FSPROGS_FAKE_TIME), which
	// makes edits reproducible. nil uses the current time.
	Epoch *time.Time
}

// toolError names the Debian package providing a missing tool.
func lookTool(name, pkg string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("ext4: %s not found in PATH (install the Debian package %s): %w", name, pkg, err)
	}
	return p, nil
}

// OpenImage checks that path is an ext2/3/4 image and that debugfs is
// installed, and returns an Image for it.
func OpenImage(path string) (*Image, error) {
	if _, err := lookTool("debugfs", "e2fsprogs"); err != nil {
		return nil, err
	}
	if _, err := lookTool("stdbuf", "coreutils"); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ext4: %w", err)
	}
	defer f.Close()
	var magic [2]byte
	if _, err := f.ReadAt(magic[:], 1024+56); err != nil {
		return nil, fmt.Errorf("ext4: %s: reading superblock: %w", path, err)
	}
	if magic != [2]byte{0x53, 0xef} {
		return nil, fmt.Errorf("ext4: %s: no ext2/3/4 superblock magic at offset 1080 (found %#x)", path, magic)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("ext4: %w", err)
	}
	return &Image{path: abs}, nil
}

// FileInfo describes a file inside an image. It implements fs.FileInfo.
type FileInfo struct {
	name  string
	mode  fs.FileMode
	size  int64
	mtime time.Time
	Inode uint32 // inode number
	UID   int
	GID   int
	Links int
}

// Name returns the base name.
func (fi *FileInfo) Name() string { return fi.name }

// Size returns the size in bytes.
func (fi *FileInfo) Size() int64 { return fi.size }

// Mode returns the type and permission bits.
func (fi *FileInfo) Mode() fs.FileMode { return fi.mode }

// ModTime returns the modification time.
func (fi *FileInfo) ModTime() time.Time { return fi.mtime }

// IsDir reports whether the file is a directory.
func (fi *FileInfo) IsDir() bool { return fi.mode.IsDir() }

// Sys returns fi itself.
func (fi *FileInfo) Sys() any { return fi }

// Batch collects operations to run in one debugfs process; see Image.Batch.
type Batch struct {
	im    *Image
	cmds  []*dcmd
	err   error
	pre   []string        // paths whose existence MkdirAll needs to know
	made  map[string]bool // directories made earlier in this batch
	after []func(exists map[string]bool)
	n     int
	// inserts are commands added after the existence pre-pass.
	inserts []insert
}

// dcmd is one debugfs command and how to judge its output.
type dcmd struct {
	line  string
	allow []string // output substrings that are not errors
	skip  bool     // dropped before the run (a mkdir of an existing directory)
	out   []string // output lines, filled in after the run
	check func(out []string) error
}

// Batch runs fn, which queues operations on b, and then runs all of them
// in one debugfs process. Operations run in order; a failing one does not
// stop the later ones (debugfs has no transactions), and all failures are
// returned joined.
func (im *Image) Batch(fn func(b *Batch)) error {
	b := &Batch{im: im, made: map[string]bool{}}
	fn(b)
	return b.run()
}

// clean makes p an absolute, clean image path and rejects what debugfs
// cannot parse.
func clean(p string) (string, error) {
	if strings.ContainsAny(p, "\"\n\r\x00") {
		return "", fmt.Errorf("ext4: path %q contains a double quote, newline or NUL, which debugfs cannot handle", p)
	}
	return path.Clean("/" + p), nil
}

func q(s string) string { return `"` + s + `"` }

func (b *Batch) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

func (b *Batch) add(line string, allow ...string) *dcmd {
	c := &dcmd{line: line, allow: allow}
	b.cmds = append(b.cmds, c)
	return c
}

// setAttrs queues sif commands for mode, owner and (with Epoch) times.
func (b *Batch) setAttrs(p string, typ uint32, mode os.FileMode, uid, gid int) {
	if typ != 0 {
		b.add(fmt.Sprintf("sif %s mode 0%o", q(p), typ|unixPerm(mode)))
	}
	if uid >= 0 {
		b.add(fmt.Sprintf("sif %s uid %d", q(p), uid))
	}
	if gid >= 0 {
		b.add(fmt.Sprintf("sif %s gid %d", q(p), gid))
	}
}

// unixPerm converts Go mode bits to the st_mode permission bits.
func unixPerm(m os.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

// MkdirAll creates directory p and any missing parents. Directories it
// creates get mode (parents 0755) and owner root; existing ones are left
// alone.
func (b *Batch) MkdirAll(p string, mode os.FileMode) {
	p, err := clean(p)
	if err != nil {
		b.fail(err)
		return
	}
	if p == "/" {
		return
	}
	parts := strings.Split(p[1:], "/")
	cur := ""
	for i, part := range parts {
		cur += "/" + part
		if b.made[cur] {
			continue
		}
		b.made[cur] = true
		b.pre = append(b.pre, cur)
		dir := cur
		m := os.FileMode(0o755)
		if i == len(parts)-1 {
			m = mode
		}
		b.add("mkdir "+q(dir), "Ext2 directory already exists")
		// Only directories that did not exist before get mode and owner.
		idx := len(b.cmds)
		b.after = append(b.after, func(exists map[string]bool) {
			if exists[dir] {
				// debugfs's mkdir of an existing name leaks a new,
				// unconnected directory inode: never issue it.
				b.cmds[idx-1].skip = true
			} else {
				b.cmds[idx-1].allow = nil
				b.insertAt(idx, fmt.Sprintf("sif %s mode 0%o", q(dir), 0o40000|unixPerm(m)))
			}
		})
	}
}

// inserted commands, applied by run after the existence pre-pass.
func (b *Batch) insertAt(idx int, line string) {
	b.inserts = append(b.inserts, insert{idx, &dcmd{line: line}})
}

type insert struct {
	idx int
	c   *dcmd
}

// WriteFile copies the host file hostSrc to p (holes stay holes) with the
// given mode and owner. It writes a temporary name in p's directory first
// and then replaces p, so p is never seen half written.
func (b *Batch) WriteFile(p, hostSrc string, mode os.FileMode, uid, gid int) {
	p, err := clean(p)
	if err != nil {
		b.fail(err)
		return
	}
	if p == "/" {
		b.fail(errors.New("ext4: WriteFile: cannot write the root directory"))
		return
	}
	src, err := filepath.Abs(hostSrc)
	if err == nil {
		_, err = clean(src)
	}
	if err == nil {
		var st os.FileInfo
		st, err = os.Stat(src)
		if err == nil && !st.Mode().IsRegular() {
			err = fmt.Errorf("%s is not a regular file", src)
		}
	}
	if err != nil {
		b.fail(fmt.Errorf("ext4: WriteFile %s: %w", p, err))
		return
	}
	dir, base := path.Split(p)
	// The directory must exist (before the batch or made by it): otherwise
	// "cd" would fail and debugfs would write into the wrong directory.
	dirClean := path.Clean(dir)
	if dirClean != "/" && !b.made[dirClean] {
		b.pre = append(b.pre, dirClean)
		b.after = append(b.after, func(exists map[string]bool) {
			if !exists[dirClean] {
				b.fail(fmt.Errorf("ext4: WriteFile %s: directory %s does not exist in the image", p, dirClean))
			}
		})
	}
	b.n++
	tmpName := fmt.Sprintf(".vxn-tmp-%d-%d", os.Getpid(), b.n)
	tmp := path.Join(dir, tmpName)
	b.add("cd " + q(dir))
	b.add("rm "+q(tmp), "File not found by ext2_lookup")
	b.add(fmt.Sprintf("write %s %s", q(src), q(tmpName)), "Allocated inode:")
	b.setAttrs(tmp, 0o100000, mode, uid, gid)
	b.add("rm "+q(p), "File not found by ext2_lookup")
	b.add(fmt.Sprintf("ln %s %s", q(tmp), q(base)))
	b.add("unlink " + q(tmp))
	b.add("cd /")
}

// Symlink creates the symbolic link p pointing to target.
func (b *Batch) Symlink(target, p string) {
	p, err := clean(p)
	if err == nil && strings.ContainsAny(target, "\"\n\r\x00") {
		err = fmt.Errorf("ext4: symlink target %q contains a double quote, newline or NUL", target)
	}
	if err == nil && target == "" {
		err = errors.New("ext4: empty symlink target")
	}
	if err != nil {
		b.fail(err)
		return
	}
	b.add(fmt.Sprintf("symlink %s %s", q(p), q(target)))
}

// Remove removes the file, symlink or device node p (use RemoveDir for an
// empty directory). A missing p is an error.
func (b *Batch) Remove(p string) {
	p, err := clean(p)
	if err != nil {
		b.fail(err)
		return
	}
	b.add("rm " + q(p))
}

// RemoveDir removes the empty directory p.
func (b *Batch) RemoveDir(p string) {
	p, err := clean(p)
	if err != nil {
		b.fail(err)
		return
	}
	b.add("rmdir " + q(p))
}

// run executes the batch.
func (b *Batch) run() error {
	if b.err != nil {
		return b.err
	}
	if len(b.cmds) == 0 {
		return nil
	}
	if len(b.after) > 0 {
		exists, err := b.im.exists(b.pre)
		if err != nil {
			return err
		}
		for _, f := range b.after {
			f(exists)
		}
		if b.err != nil {
			return b.err
		}
		// Apply inserts from the back so indexes stay valid.
		sort.SliceStable(b.inserts, func(i, j int) bool { return b.inserts[i].idx > b.inserts[j].idx })
		for _, in := range b.inserts {
			b.cmds = append(b.cmds[:in.idx], append([]*dcmd{in.c}, b.cmds[in.idx:]...)...)
		}
		kept := b.cmds[:0]
		for _, c := range b.cmds {
			if !c.skip {
				kept = append(kept, c)
			}
		}
		b.cmds = kept
		if len(b.cmds) == 0 {
			return nil
		}
	}
	return b.im.exec(true, b.cmds)
}

// exists reports which of paths exist, using one read-only debugfs run.
func (im *Image) exists(paths []string) (map[string]bool, error) {
	cmds := make([]*dcmd, len(paths))
	for i, p := range paths {
		cmds[i] = &dcmd{line: "stat " + q(p), allow: []string{"File not found by ext2_lookup", ""}}
	}
	if err := im.exec(false, cmds); err != nil {
		return nil, err
	}
	m := map[string]bool{}
	for i, c := range cmds {
		// Only directories count: a file in the way makes mkdir fail.
		m[paths[i]] = len(c.out) > 0 && strings.HasPrefix(c.out[0], "Inode:") && strings.Contains(c.out[0], "Type: directory")
	}
	return m, nil
}

// exec runs cmds in one debugfs process and checks each command's output.
func (im *Image) exec(write bool, cmds []*dcmd) error {
	debugfs, err := lookTool("debugfs", "e2fsprogs")
	if err != nil {
		return err
	}
	stdbuf, err := lookTool("stdbuf", "coreutils")
	if err != nil {
		return err
	}
	var script strings.Builder
	for _, c := range cmds {
		script.WriteString(c.line)
		script.WriteByte('\n')
	}
	args := []string{"-o0", "-e0", debugfs}
	if write {
		args = append(args, "-w")
	}
	args = append(args, "-f", "-", im.path)
	cmd := exec.Command(stdbuf, args...)
	cmd.Stdin = strings.NewReader(script.String())
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Env = append(os.Environ(), "PAGER=__none__", "DEBUGFS_PAGER=__none__")
	if im.Epoch != nil {
		cmd.Env = append(cmd.Env, "E2FSPROGS_FAKE_TIME="+strconv.FormatInt(im.Epoch.Unix(), 10))
	}
	runErr := cmd.Run()
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	i := 0
	var pre []string
	// Lines before the first command echo: banner and open errors.
	for ; i < len(lines) && !strings.HasPrefix(lines[i], "debugfs: "); i++ {
		if !strings.HasPrefix(lines[i], "debugfs ") {
			pre = append(pre, lines[i])
		}
	}
	if len(pre) > 0 {
		return fmt.Errorf("ext4: debugfs %s: %s", im.path, strings.Join(pre, "; "))
	}
	var errs []error
	for _, c := range cmds {
		if i >= len(lines) || lines[i] != "debugfs: "+c.line {
			return fmt.Errorf("ext4: debugfs %s: output out of step at command %q (exit: %v): %q", im.path, c.line, runErr, strings.Join(lines[min(i, len(lines)):], "\n"))
		}
		i++
		for ; i < len(lines) && !strings.HasPrefix(lines[i], "debugfs: "); i++ {
			c.out = append(c.out, lines[i])
		}
		if c.check != nil {
			if err := c.check(c.out); err != nil {
				errs = append(errs, fmt.Errorf("ext4: debugfs %s: %s: %w", im.path, c.line, err))
			}
			continue
		}
		for _, l := range c.out {
			if strings.TrimSpace(l) != "" && !allowed(l, c.allow) {
				errs = append(errs, fmt.Errorf("ext4: debugfs %s: %s: %s", im.path, c.line, l))
				break
			}
		}
	}
	if runErr != nil {
		errs = append(errs, fmt.Errorf("ext4: debugfs %s: %w", im.path, runErr))
	}
	return errors.Join(errs...)
}

func allowed(line string, allow []string) bool {
	for _, a := range allow {
		if strings.Contains(line, a) {
			return true
		}
	}
	return false
}

// MkdirAll creates directory p and missing parents (see Batch.MkdirAll).
func (im *Image) MkdirAll(p string, mode os.FileMode) error {
	return im.Batch(func(b *Batch) { b.MkdirAll(p, mode) })
}

// WriteFile copies hostSrc into the image at p (see Batch.WriteFile).
func (im *Image) WriteFile(p, hostSrc string, mode os.FileMode, uid, gid int) error {
	return im.Batch(func(b *Batch) { b.WriteFile(p, hostSrc, mode, uid, gid) })
}

// Symlink creates the symbolic link p pointing to target.
func (im *Image) Symlink(target, p string) error {
	return im.Batch(func(b *Batch) { b.Symlink(target, p) })
}

// Remove removes the file or empty directory p. A missing p gives an error
// wrapping fs.ErrNotExist.
func (im *Image) Remove(p string) error {
	fi, err := im.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return im.Batch(func(b *Batch) { b.RemoveDir(p) })
	}
	return im.Batch(func(b *Batch) { b.Remove(p) })
}

// Stat returns information about p (not following a final symlink). A
// missing p gives an error wrapping fs.ErrNotExist.
func (im *Image) Stat(p string) (*FileInfo, error) {
	cp, err := clean(p)
	if err != nil {
		return nil, err
	}
	c := &dcmd{line: "stat " + q(cp)}
	c.check = func([]string) error { return nil }
	if err := im.exec(false, []*dcmd{c}); err != nil {
		return nil, err
	}
	return parseStat(cp, c.out)
}

// parseStat parses the output of debugfs "stat".
func parseStat(p string, out []string) (*FileInfo, error) {
	if len(out) == 0 || !strings.HasPrefix(out[0], "Inode:") {
		msg := strings.Join(out, "; ")
		if strings.Contains(msg, "File not found") {
			return nil, &fs.PathError{Op: "stat", Path: p, Err: fs.ErrNotExist}
		}
		return nil, fmt.Errorf("ext4: stat %s: %s", p, msg)
	}
	fi := &FileInfo{name: path.Base(p)}
	fields := map[string]string{}
	for _, l := range out {
		f := strings.Fields(l)
		for j := 0; j+1 < len(f); j++ {
			if strings.HasSuffix(f[j], ":") {
				k := strings.TrimSuffix(f[j], ":")
				if _, dup := fields[k]; !dup {
					fields[k] = f[j+1]
				}
			}
		}
	}
	ino, err1 := strconv.ParseUint(fields["Inode"], 10, 32)
	perm, err2 := strconv.ParseUint(fields["Mode"], 8, 32)
	uid, err3 := strconv.Atoi(fields["User"])
	gid, err4 := strconv.Atoi(fields["Group"])
	size, err5 := strconv.ParseInt(fields["Size"], 10, 64)
	links, err6 := strconv.Atoi(fields["Links"])
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		return nil, fmt.Errorf("ext4: stat %s: unexpected debugfs output %q: %w", p, out[0], err)
	}
	fi.Inode, fi.UID, fi.GID, fi.size, fi.Links = uint32(ino), uid, gid, size, links
	fi.mode = fs.FileMode(perm & 0o777)
	if perm&0o4000 != 0 {
		fi.mode |= fs.ModeSetuid
	}
	if perm&0o2000 != 0 {
		fi.mode |= fs.ModeSetgid
	}
	if perm&0o1000 != 0 {
		fi.mode |= fs.ModeSticky
	}
	switch fields["Type"] {
	case "directory":
		fi.mode |= fs.ModeDir
	case "symlink":
		fi.mode |= fs.ModeSymlink
	case "character":
		fi.mode |= fs.ModeDevice | fs.ModeCharDevice
	case "block":
		fi.mode |= fs.ModeDevice
	case "FIFO":
		fi.mode |= fs.ModeNamedPipe
	case "socket":
		fi.mode |= fs.ModeSocket
	case "regular":
	default:
		fi.mode |= fs.ModeIrregular
	}
	if v, ok := fields["mtime"]; ok {
		// "0x65a1b2c3:00000000"
		sec, _, _ := strings.Cut(strings.TrimPrefix(v, "0x"), ":")
		if s, err := strconv.ParseUint(sec, 16, 32); err == nil {
			fi.mtime = time.Unix(int64(int32(uint32(s))), 0)
		}
	}
	return fi, nil
}

// ReadFile returns the contents of the regular file p.
func (im *Image) ReadFile(p string) ([]byte, error) {
	cp, err := clean(p)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp("", "vxn-ext4-read-*")
	if err != nil {
		return nil, fmt.Errorf("ext4: %w", err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	if _, err := clean(tmp.Name()); err != nil {
		return nil, err
	}
	st := &dcmd{line: "stat " + q(cp), check: func([]string) error { return nil }}
	dump := &dcmd{line: fmt.Sprintf("dump %s %s", q(cp), q(tmp.Name()))}
	if err := im.exec(false, []*dcmd{st, dump}); err != nil {
		return nil, err
	}
	fi, err := parseStat(cp, st.out)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("ext4: ReadFile %s: not a regular file (%v)", cp, fi.Mode())
	}
	return os.ReadFile(tmp.Name())
}

// ReadDir returns the sorted names in directory p, without "." and "..".
func (im *Image) ReadDir(p string) ([]string, error) {
	cp, err := clean(p)
	if err != nil {
		return nil, err
	}
	st := &dcmd{line: "stat " + q(cp), check: func([]string) error { return nil }}
	ls := &dcmd{line: "ls -p " + q(cp), check: func([]string) error { return nil }}
	if err := im.exec(false, []*dcmd{st, ls}); err != nil {
		return nil, err
	}
	fi, err := parseStat(cp, st.out)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("ext4: ReadDir %s: not a directory", cp)
	}
	var names []string
	for _, l := range ls.out {
		if l == "" {
			continue
		}
		// "/ino/mode/uid/gid/name/size/"
		f := strings.Split(l, "/")
		if len(f) < 7 || f[0] != "" {
			return nil, fmt.Errorf("ext4: ReadDir %s: unexpected debugfs output %q", cp, l)
		}
		name := strings.Join(f[5:len(f)-2], "/")
		if name == "." || name == ".." || f[1] == "0" {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}
