package ext4

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fsckClean fails unless `e2fsck -fn` exits 0 and prints nothing but its
// pass headers and the summary line.
func fsckClean(t testing.TB, img string) {
	t.Helper()
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case strings.HasPrefix(l, "e2fsck "), strings.HasPrefix(l, "Pass "), strings.Contains(l, "% non-contiguous), "):
		default:
			t.Fatalf("e2fsck -fn %s printed a problem line %q:\n%s", img, l, out)
		}
	}
}

// aclXattr encodes a POSIX ACL in the kernel's xattr format.
func aclXattr(ents ...[3]uint32) []byte {
	b := []byte{2, 0, 0, 0}
	for _, e := range ents {
		b = append(b, byte(e[0]), byte(e[0]>>8), byte(e[1]), byte(e[1]>>8), byte(e[2]), byte(e[2]>>8), byte(e[2]>>16), byte(e[2]>>24))
	}
	return b
}

const noID = 0xffffffff

// corpusOpts picks the parts of the corpus to build.
type corpusOpts struct {
	bigDir   int  // entries in big/ (0: none)
	hugeFile bool // a 5 GiB sparse file
}

// makeCorpus writes a tree with every file kind, odd names, deep paths,
// sparse files, xattrs and ACLs, owners and times with nanoseconds. Parts
// that need root (devices, owners, trusted.*) are left out without it.
func makeCorpus(t testing.TB, root string, o corpusOpts) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	isRoot := os.Geteuid() == 0
	must(os.MkdirAll(root, 0o755))
	w := func(p string, data []byte, mode os.FileMode) {
		t.Helper()
		must(os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755))
		must(os.WriteFile(filepath.Join(root, p), data, mode))
		must(os.Chmod(filepath.Join(root, p), mode))
	}
	// Names.
	w("unicode/héllo wörld ✓ 日本語.txt", []byte("unicode\n"), 0o644)
	w("unicode/"+strings.Repeat("é", 127)+"x", []byte("254+1 bytes"), 0o644)
	w("names/"+strings.Repeat("n", 255), []byte("255 bytes"), 0o644)
	w("names/with space and\ttab", nil, 0o600)
	deep := "deep"
	for i := 0; i < 40; i++ {
		deep += fmt.Sprintf("/level%02d", i)
	}
	w(deep+"/bottom", []byte("40 levels down"), 0o644)
	// Every kind.
	w("kinds/regular", bytes.Repeat([]byte("data"), 3000), 0o644)
	w("kinds/empty", nil, 0o644)
	must(os.MkdirAll(filepath.Join(root, "kinds/emptydir"), 0o700))
	must(os.Symlink("regular", filepath.Join(root, "kinds/fastlink")))
	must(os.Symlink("/"+strings.Repeat("slow/", 30)+"target", filepath.Join(root, "kinds/slowlink")))
	must(os.Symlink(strings.Repeat("x", 59), filepath.Join(root, "kinds/link59")))
	must(os.Symlink(strings.Repeat("y", 60), filepath.Join(root, "kinds/link60")))
	must(unix.Mkfifo(filepath.Join(root, "kinds/fifo"), 0o640))
	must(unix.Mknod(filepath.Join(root, "kinds/socket"), unix.S_IFSOCK|0o755, 0))
	if isRoot {
		must(unix.Mknod(filepath.Join(root, "kinds/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(unix.Mknod(filepath.Join(root, "kinds/sda1"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 1))))
		must(unix.Mknod(filepath.Join(root, "kinds/bigdev"), unix.S_IFCHR|0o600, int(unix.Mkdev(300, 70000))))
	}
	// Modes and owners.
	w("modes/setuid", []byte("#!/bin/sh\n"), 0o755|os.ModeSetuid)
	w("modes/setgid", []byte("#!/bin/sh\n"), 0o750|os.ModeSetgid)
	must(os.MkdirAll(filepath.Join(root, "modes/sticky"), 0o755))
	must(os.Chmod(filepath.Join(root, "modes/sticky"), 0o777|os.ModeSticky))
	if isRoot {
		w("modes/owned", []byte("x"), 0o640)
		must(os.Lchown(filepath.Join(root, "modes/owned"), 1000, 1001))
		must(os.Lchown(filepath.Join(root, "modes/sticky"), 70000, 70001))
		must(os.Lchown(filepath.Join(root, "kinds/fastlink"), 5, 6))
	}
	// Hard links across directories.
	w("links/a/original", []byte("linked content"), 0o644)
	must(os.MkdirAll(filepath.Join(root, "links/b/c"), 0o755))
	must(os.Link(filepath.Join(root, "links/a/original"), filepath.Join(root, "links/b/c/second")))
	must(os.Link(filepath.Join(root, "links/a/original"), filepath.Join(root, "links/third")))
	must(os.Link(filepath.Join(root, "kinds/fifo"), filepath.Join(root, "links/fifo-link")))
	// Sparse files: holes at the start, in the middle, at the end.
	sp := func(p string, size int64, at ...int64) {
		t.Helper()
		f, err := os.Create(filepath.Join(root, p))
		must(err)
		must(f.Truncate(size))
		for _, off := range at {
			_, err := f.WriteAt([]byte(fmt.Sprintf("data at %d", off)), off)
			must(err)
		}
		must(f.Close())
	}
	must(os.MkdirAll(filepath.Join(root, "sparse"), 0o755))
	sp("sparse/hole-start", 1<<20, 900<<10)
	sp("sparse/hole-middle", 1<<20, 0, 1<<20-10)
	sp("sparse/hole-end", 1<<20, 5)
	sp("sparse/all-hole", 3<<20)
	sp("sparse/many", 2<<20, 0, 8192, 3*4096, 40000, 100000, 300000, 600000, 1<<20, 1<<21-1)
	if o.hugeFile {
		sp("sparse/five-gib", 5<<30, 0, 4<<30+12345, 5<<30-100)
	}
	// Xattrs: inline, in a block, capabilities, ACLs.
	x := func(p, name string, v []byte) {
		t.Helper()
		if err := unix.Lsetxattr(filepath.Join(root, p), name, v, 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
				t.Logf("xattr %s on %s not supported here: %v", name, p, err)
				return
			}
			t.Fatalf("setxattr %s %s: %v", p, name, err)
		}
	}
	w("xattr/small", []byte("x"), 0o644)
	x("xattr/small", "user.note", []byte("hello"))
	w("xattr/block", []byte("x"), 0o644)
	x("xattr/block", "user.big", bytes.Repeat([]byte("B"), 1500))
	x("xattr/block", "user.small", []byte("s"))
	w("xattr/mixed", []byte("x"), 0o644)
	x("xattr/mixed", "user.a", []byte("inline-a"))
	x("xattr/mixed", "user.b", bytes.Repeat([]byte("b"), 3000))
	x("xattr/mixed", "user.c", bytes.Repeat([]byte("c"), 900))
	x("xattr/mixed", "user.empty", nil)
	w("xattr/cap", []byte("\x7fELF"), 0o755)
	x("xattr/cap", "security.capability", []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	if isRoot {
		x("xattr/small", "trusted.t", []byte("trusted value"))
	}
	must(os.MkdirAll(filepath.Join(root, "xattr/acldir"), 0o750))
	acl := aclXattr([3]uint32{aclUserObjTag, 7, noID}, [3]uint32{2, 5, 1000}, [3]uint32{4, 5, noID}, [3]uint32{8, 1, 2000}, [3]uint32{0x10, 5, noID}, [3]uint32{0x20, 0, noID})
	x("xattr/acldir", "system.posix_acl_access", acl)
	x("xattr/acldir", "system.posix_acl_default", acl)
	x("xattr/acldir", "user.dir", []byte("on a directory"))
	// Big directory.
	if o.bigDir > 0 {
		d := filepath.Join(root, "big")
		must(os.MkdirAll(d, 0o755))
		for i := 0; i < o.bigDir; i++ {
			f, err := os.Create(filepath.Join(d, fmt.Sprintf("entry-%06d-%s", i, strings.Repeat("q", i%40))))
			must(err)
			f.Close()
		}
	}
	// Times with nanoseconds, set last (bottom-up so directories keep theirs).
	var paths []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			paths = append(paths, p)
		}
		return nil
	})
	for i := len(paths) - 1; i >= 0; i-- {
		ts := []unix.Timespec{unix.NsecToTimespec(int64(1600000000+i)*1e9 + int64(i)*7919), unix.NsecToTimespec(int64(1650000000+i)*1e9 + 123456789)}
		must(unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

const aclUserObjTag = 1

// fileState is what read-back compares of one file.
type fileState struct {
	mode       os.FileMode
	uid, gid   uint32
	size       int64
	nlink      uint64
	mtime      int64 // nanoseconds
	rdev       uint64
	link       string
	sum        string
	xattrs     string
	holesKnown bool
}

// snapshot records every file under root (without lost+found at the top).
func snapshot(t testing.TB, root string, nsec bool) map[string]fileState {
	t.Helper()
	out := map[string]fileState{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "lost+found" {
			return filepath.SkipDir
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		fi, _ := d.Info()
		s := fileState{mode: fi.Mode(), uid: st.Uid, gid: st.Gid, nlink: uint64(st.Nlink), rdev: uint64(st.Rdev)}
		s.mtime = st.Mtim.Sec * 1e9
		if nsec {
			s.mtime += st.Mtim.Nsec
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			s.size = st.Size
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			s.sum = fmt.Sprintf("%x", h.Sum(nil))
		case unix.S_IFLNK:
			s.link, _ = os.Readlink(p)
		}
		if rel == "." {
			s.nlink = 0 // the image's root also holds lost+found
			s.mtime = 0
		}
		xs, err := readXattrs(p, make([]byte, 4096))
		if err != nil {
			return err
		}
		var keys []string
		for k := range xs {
			if k == "security.selinux" {
				continue
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s.xattrs += fmt.Sprintf("%s=%x;", k, xs[k])
		}
		out[rel] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareSnapshots(t testing.TB, what string, want, got map[string]fileState) {
	t.Helper()
	bad := 0
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: %q missing", what, p)
			bad++
		} else if g != w {
			t.Errorf("%s: %q differs:\n got %+v\nwant %+v", what, p, g, w)
			bad++
		}
		if bad > 10 {
			t.Fatalf("%s: too many differences", what)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected %q", what, p)
		}
	}
}

// mountRO loop-mounts img read-only and returns the mount point; it skips
// the test (printing why) when that is not possible here.
func mountRO(t testing.TB, img string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping read-back through a loop mount: not root")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "ro,loop", "-t", "ext4", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("skipping read-back: loop mount not available here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	return mnt
}

// TestCorpusFromDir builds the corpus (50,000 entries in one directory and
// a 5 GiB sparse file unless -short) with FromDir, checks it with e2fsck,
// the htree with debugfs, and reads it back through the kernel's ext4
// driver.
func TestCorpusFromDir(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	n := 50000
	if testing.Short() {
		n = 3000
	}
	makeCorpus(t, src, corpusOpts{bigDir: n, hugeFile: !testing.Short()})
	img := filepath.Join(dir, "corpus.img")
	t0 := time.Now()
	if err := FromDir(context.Background(), src, img, Options{Label: "corpus"}); err != nil {
		t.Fatal(err)
	}
	t.Logf("FromDir: %v", time.Since(t0))
	fsckClean(t, img)
	out := debugfsR(t, img, "htree /big")
	if !strings.Contains(out, "Root node dump:") || !strings.Contains(out, "Number of entries (count): ") || !strings.Contains(out, "entry-000042-") {
		t.Errorf("htree /big:\n%.2000s", out)
	}
	if st := debugfsR(t, img, "stat /big"); !strings.Contains(st, "Flags: 0x81000") {
		t.Errorf("/big is not an indexed extent directory:\n%.600s", st)
	}
	if st := debugfsR(t, img, "stat /xattr/mixed"); !strings.Contains(st, "File ACL: ") || strings.Contains(st, "File ACL: 0\n") {
		t.Errorf("/xattr/mixed has no xattr block:\n%.800s", st)
	}
	if st := debugfsR(t, img, "ea_list /xattr/acldir"); !strings.Contains(st, "system.posix_acl_access") {
		t.Errorf("ACL not seen by debugfs:\n%s", st)
	}
	if !testing.Short() {
		st := debugfsR(t, img, "stat /sparse/five-gib")
		if !strings.Contains(st, "Size: 5368709120") || !strings.Contains(st, "Blockcount: 24") {
			t.Errorf("5 GiB sparse file:\n%.1000s", st)
		}
	}
	want := snapshot(t, src, true)
	mnt := mountRO(t, img)
	compareSnapshots(t, "FromDir image", want, snapshot(t, mnt, true))

}

// TestDifferentialMkfs builds the corpus (with a 2,000-entry directory and
// no 5 GiB file: mkfs.ext4 -d takes minutes on those) with FromDir and with
// mkfs.ext4 -d, and compares what the kernel reads back from both.
func TestDifferentialMkfs(t *testing.T) {
	needTools(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skipf("skipping: mkfs.ext4 not installed (Debian package e2fsprogs): %v", err)
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeCorpus(t, src, corpusOpts{bigDir: 2000})
	img := filepath.Join(dir, "ours.img")
	if err := FromDir(context.Background(), src, img, Options{}); err != nil {
		t.Fatal(err)
	}
	fsckClean(t, img)
	ref := filepath.Join(dir, "mkfs.img")
	f, _ := os.Create(ref)
	f.Truncate(256 << 20)
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096", "-d", src, ref).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4 -d: %v\n%s", err, out)
	}
	mnt := mountRO(t, img)
	refMnt := mountRO(t, ref)
	// mkfs.ext4 -d does not keep nanoseconds everywhere: compare seconds.
	compareSnapshots(t, "ours vs mkfs.ext4 -d", snapshot(t, refMnt, false), snapshot(t, mnt, false))
}

// corpusTar writes the tree at root as a PAX tar with xattrs, hard links
// and device nodes, in walk order.
func corpusTar(t testing.TB, root string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		var st unix.Stat_t
		unix.Lstat(p, &st)
		target := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ = os.Readlink(p)
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil // tar has no sockets
		}
		hdr, err := tar.FileInfoHeader(fi, target)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = int(st.Uid), int(st.Gid), "", ""
		hdr.ModTime = time.Unix(st.Mtim.Sec, st.Mtim.Nsec)
		hdr.AccessTime = time.Unix(st.Atim.Sec, st.Atim.Nsec)
		hdr.ChangeTime = time.Time{}
		hdr.Format = tar.FormatPAX
		if !fi.IsDir() && st.Nlink > 1 {
			k := [2]uint64{uint64(st.Dev), uint64(st.Ino)}
			if first, ok := links[k]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[k] = hdr.Name
			}
		}
		xs, _ := readXattrs(p, make([]byte, 4096))
		for k, v := range xs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = string(v)
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, f)
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return buf.Bytes()
}

// TestCorpusFromTar streams the corpus (without sockets) through FromTar
// and reads it back; all-zero blocks must come out as holes.
func TestCorpusFromTar(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	makeCorpus(t, src, corpusOpts{bigDir: 2000})
	os.Remove(filepath.Join(src, "kinds/socket"))
	data := corpusTar(t, src)
	img := filepath.Join(dir, "tar.img")
	if err := FromTar(context.Background(), bytes.NewReader(data), img, Options{}); err != nil {
		t.Fatal(err)
	}
	fsckClean(t, img)
	// sparse/many has 10 non-zero blocks (one write spans two) in 9
	// extents, which need an extent block: 11 blocks of 8 sectors.
	if st := debugfsR(t, img, "stat /sparse/many"); !strings.Contains(st, "Blockcount: 88") || !strings.Contains(st, "(ETB0)") {
		t.Errorf("all-zero blocks of a tar entry did not become holes:\n%.1000s", st)
	}
	want := snapshot(t, src, true)
	compareSnapshots(t, "FromTar image", want, snapshot(t, mountRO(t, img), true))
}

// TestRepeatedTarName: the same name twice in one stream (tar -r appends)
// gives the last version, in a fixed-size image filled by the first one.
func TestRepeatedTarName(t *testing.T) {
	needTools(t)
	first := bytes.Repeat([]byte("first version "), 100000)
	ents := []tarEnt{
		{hdr: tarHdrReg("etc/conf", 0o644), data: first},
		{hdr: tarHdrReg("etc/other", 0o600), data: []byte("other")},
		{hdr: tarHdrReg("etc/conf", 0o640), data: []byte("second version")},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "etc/link", Linkname: "conf"}},
		{hdr: tarHdrReg("etc/link", 0o644), data: []byte("a file replaces the symlink")},
	}
	img := filepath.Join(t.TempDir(), "r.img")
	if err := FromTar(context.Background(), bytes.NewReader(mkTar(t, ents)), img, Options{}); err != nil {
		t.Fatal(err)
	}
	fsckClean(t, img)
	if out := debugfsR(t, img, "cat /etc/conf"); !strings.HasSuffix(out, "second version") {
		t.Errorf("etc/conf: %q", out)
	}
	if out := debugfsR(t, img, "stat /etc/conf"); !strings.Contains(out, "Mode:  0640") || !strings.Contains(out, "Links: 1") {
		t.Errorf("etc/conf metadata:\n%s", out)
	}
	if out := debugfsR(t, img, "cat /etc/link"); !strings.HasSuffix(out, "a file replaces the symlink") {
		t.Errorf("etc/link: %q", out)
	}
}

// TestFilledToTheLastBlock fills a fixed-size image exactly, then asks for
// one block more.
func TestFilledToTheLastBlock(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	const size = 12 << 20
	empty := filepath.Join(dir, "empty.img")
	if err := FromTar(context.Background(), bytes.NewReader(mkTar(t, nil)), empty, Options{SizeBytes: size}); err != nil {
		t.Fatal(err)
	}
	var free int64
	fmt.Sscanf(between(debugfsR(t, empty, "stats"), "Free blocks:", "\n"), "%d", &free)
	if free < 100 {
		t.Fatalf("empty 12 MiB image has %d free blocks", free)
	}
	fill := func(blocks int64) error {
		data := bytes.Repeat([]byte{0xa5}, int(blocks*blockSize))
		return FromTar(context.Background(), bytes.NewReader(mkTar(t, []tarEnt{{hdr: tarHdrReg("fill", 0o644), data: data}})),
			filepath.Join(dir, "full.img"), Options{SizeBytes: size})
	}
	if err := fill(free); err != nil {
		t.Fatalf("filling all %d free blocks: %v", free, err)
	}
	full := filepath.Join(dir, "full.img")
	fsckClean(t, full)
	if got := between(debugfsR(t, full, "stats"), "Free blocks:", "\n"); strings.TrimSpace(got) != "0" {
		t.Errorf("full image has %q free blocks", got)
	}
	if !strings.Contains(debugfsR(t, full, "stats"), "has_journal") {
		t.Error("full image lost its journal")
	}
	// One block more: the journal gives way (too tight for jbd2's minimum
	// of 1024 blocks, so none), and past that the size is too small.
	if err := fill(free + 1); err != nil {
		t.Fatalf("one block more: %v", err)
	}
	fsckClean(t, full)
	if strings.Contains(debugfsR(t, full, "stats"), "has_journal") {
		t.Error("image filled past the journal's room still has a journal")
	}
	err := fill(free + 1025)
	var ts *TooSmallError
	if !errors.As(err, &ts) || ts.Path != "fill" || ts.Need <= size || !strings.Contains(err.Error(), `"fill"`) {
		t.Errorf("1025 blocks more: %v", err)
	}
}

func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	if j := strings.Index(s, b); j >= 0 {
		s = s[:j]
	}
	return strings.TrimSpace(s)
}

// TestInodeLimit: Options.Inodes is honoured and exceeding it names the
// entry and the limit.
func TestInodeLimit(t *testing.T) {
	needTools(t)
	var ents []tarEnt
	for i := 0; i < 100; i++ {
		ents = append(ents, tarEnt{hdr: tarHdrReg(fmt.Sprintf("f%03d", i), 0o644)})
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "i.img")
	if err := FromTar(context.Background(), bytes.NewReader(mkTar(t, ents)), img, Options{Inodes: 4000, SizeBytes: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	fsckClean(t, img)
	if got := between(debugfsR(t, img, "stats"), "Inode count:", "\n"); got != "4000" {
		t.Errorf("inode count %s, want 4000", got)
	}
	err := FromTar(context.Background(), bytes.NewReader(mkTar(t, ents)), img, Options{Inodes: 50})
	if err == nil || !strings.Contains(err.Error(), "more than 50 inodes") || !strings.Contains(err.Error(), `"f039"`) {
		t.Errorf("inode limit error: %v", err)
	}
}

// TestPeakRSS100k builds a 100,000-file tree image in a child process and
// reports its peak RSS (VXN_BENCH=1; a measurement, not an assertion).
func TestPeakRSS100k(t *testing.T) {
	if os.Getenv("VXN_BENCH") != "1" {
		t.Skip("skipping measurement: set VXN_BENCH=1")
	}
	if os.Getenv("VXN_RSS_CHILD") != "" {
		var ents []tarEnt
		_ = ents
		pr, pw := io.Pipe()
		go func() {
			tw := tar.NewWriter(pw)
			buf := make([]byte, 3000)
			for i := 0; i < 100000; i++ {
				for j := range buf {
					buf[j] = byte(i + j)
				}
				tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("d%03d/file-%06d", i%300, i), Mode: 0o644, Size: int64(len(buf)), ModTime: time.Unix(1700000000, 0)})
				tw.Write(buf)
			}
			// One 2 GiB file: RSS must not follow file sizes.
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: 2 << 30, ModTime: time.Unix(1700000000, 0)})
			chunk := bytes.Repeat([]byte{1}, 1<<20)
			for i := 0; i < 2048; i++ {
				tw.Write(chunk)
			}
			tw.Close()
			pw.Close()
		}()
		img := os.Getenv("VXN_RSS_CHILD")
		if err := FromTar(context.Background(), pr, img, Options{}); err != nil {
			t.Fatal(err)
		}
		return
	}
	exe, _ := os.Executable()
	img := filepath.Join(t.TempDir(), "rss.img")
	cmd := exec.Command(exe, "-test.run", "^TestPeakRSS100k$")
	cmd.Env = append(os.Environ(), "VXN_RSS_CHILD="+img)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	d := time.Since(t0)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	fsckClean(t, img)
	fmt.Printf("BENCH 100,000 files of 3000 bytes + one 2 GiB file via FromTar: %v, peak RSS %d MiB\n", d.Round(time.Millisecond), ru.Maxrss>>10)
}
