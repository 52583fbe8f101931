package ext4

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// needTools skips the test when e2fsprogs is missing.
func needTools(t testing.TB) {
	t.Helper()
	for _, tool := range []string{"e2fsck", "debugfs", "stdbuf"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not installed (Debian package e2fsprogs/coreutils): %v", tool, err)
		}
	}
}

// fsck fails the test unless `e2fsck -fn` is clean: exit 0 and no
// problem messages (e2fsck -n exits 0 after some, e.g. bad checksums).
func fsck(t testing.TB, img string) {
	t.Helper()
	fsckClean(t, img)
}

// debugfsR runs one read-only debugfs request and returns its output.
func debugfsR(t testing.TB, img, req string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", req, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", req, err, out)
	}
	return string(out)
}

type tarEnt struct {
	hdr  tar.Header
	data []byte
}

func mkTar(t testing.TB, ents []tarEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if len(e.data) > 0 {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var capValue = string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

func sampleTar(t testing.TB) []byte {
	long := strings.Repeat("x/", 40) + "target"
	big := bytes.Repeat([]byte("0123456789abcdef"), 300000/16)
	big = append(big, make([]byte, 1<<20)...) // a zero tail (sparse in the image file)
	big = append(big, 'E')
	return mkTar(t, []tarEnt{
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "etc/late/file", Mode: 0o640, Uid: 7, Gid: 8}, data: []byte("parent comes later\n")},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755}},
		{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "etc/late/", Mode: 0o750, Uid: 1000, Gid: 1001}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "etc/hostname", Mode: 0o644, Uid: 1234, Gid: 5678}, data: []byte("guest\n")},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "bin/ping", Mode: 0o4755, PAXRecords: map[string]string{
			"SCHILY.xattr.security.capability": capValue,
			"SCHILY.xattr.user.note":           "hello",
		}}, data: []byte("#!/bin/sh\n")},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "bin/ping2", Linkname: "bin/ping"}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/sh", Linkname: "busybox"}},
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/long", Linkname: long}},
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
		{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/sda1", Mode: 0o660, Gid: 6, Devmajor: 8, Devminor: 1}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "run/fifo", Mode: 0o600}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "empty", Mode: 0o600}},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "data/big.bin", Mode: 0o644}, data: big},
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "with space/a file", Mode: 0o644}, data: []byte("spaced")},
	})
}

func TestFromTarMetadata(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "root.img")
	if err := FromTar(context.Background(), bytes.NewReader(sampleTar(t)), img, Options{Label: "rootfs"}); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temporary files left behind: %v", ents)
	}
	im, err := OpenImage(img)
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		mode     fs.FileMode
		uid, gid int
		size     int64
	}
	for p, w := range map[string]want{
		"/etc/hostname":  {0o644, 1234, 5678, 6},
		"/etc/late":      {fs.ModeDir | 0o750, 1000, 1001, 4096},
		"/etc/late/file": {0o640, 7, 8, 19},
		"/bin/ping":      {fs.ModeSetuid | 0o755, 0, 0, 10},
		"/bin/sh":        {fs.ModeSymlink | 0o777, 0, 0, 7},
		"/dev/null":      {fs.ModeDevice | fs.ModeCharDevice | 0o666, 0, 0, 0},
		"/dev/sda1":      {fs.ModeDevice | 0o660, 0, 6, 0},
		"/run/fifo":      {fs.ModeNamedPipe | 0o600, 0, 0, 0},
		"/empty":         {0o600, 0, 0, 0},
	} {
		fi, err := im.Stat(p)
		if err != nil {
			t.Errorf("stat %s: %v", p, err)
			continue
		}
		if fi.Mode() != w.mode || fi.UID != w.uid || fi.GID != w.gid || fi.Size() != w.size {
			t.Errorf("%s: got mode %v uid %d gid %d size %d, want %v %d %d %d", p, fi.Mode(), fi.UID, fi.GID, fi.Size(), w.mode, w.uid, w.gid, w.size)
		}
	}
	a, _ := im.Stat("/bin/ping")
	b, _ := im.Stat("/bin/ping2")
	if a == nil || b == nil || a.Inode != b.Inode || a.Links != 2 {
		t.Errorf("hard link: ping %+v ping2 %+v, want same inode with 2 links", a, b)
	}
	if out := debugfsR(t, img, "stat /dev/null"); !strings.Contains(out, "Device major/minor number: 01:03") {
		t.Errorf("/dev/null device numbers:\n%s", out)
	}
	if out := debugfsR(t, img, "stat /dev/sda1"); !strings.Contains(out, "Device major/minor number: 08:01") {
		t.Errorf("/dev/sda1 device numbers:\n%s", out)
	}
	if out := debugfsR(t, img, "cat /bin/long"); !strings.Contains(out, strings.Repeat("x/", 40)+"target") {
		t.Errorf("long symlink target missing:\n%s", out)
	}
	if out := debugfsR(t, img, "stat /bin/sh"); !strings.Contains(out, `Fast link dest: "busybox"`) {
		t.Errorf("symlink target:\n%s", out)
	}
	out := debugfsR(t, img, "ea_get -x /bin/ping security.capability")
	if !strings.Contains(out, "01 00 00 02 00 20 00 00") {
		t.Errorf("security.capability:\n%s", out)
	}
	if out := debugfsR(t, img, "ea_get /bin/ping user.note"); !strings.Contains(out, "hello") {
		t.Errorf("user.note:\n%s", out)
	}
	got, err := im.ReadFile("/with space/a file")
	if err != nil || string(got) != "spaced" {
		t.Errorf("ReadFile: %q %v", got, err)
	}
	// rdump the tree and compare the big file byte for byte.
	rd := filepath.Join(dir, "rdump")
	os.Mkdir(rd, 0o755)
	debugfsR(t, img, "rdump /data "+rd)
	bigGot, err := os.ReadFile(filepath.Join(rd, "data", "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	bigWant := bytes.Repeat([]byte("0123456789abcdef"), 300000/16)
	bigWant = append(append(bigWant, make([]byte, 1<<20)...), 'E')
	if !bytes.Equal(bigGot, bigWant) {
		t.Errorf("big.bin differs after rdump (%d vs %d bytes)", len(bigGot), len(bigWant))
	}
	names, err := im.ReadDir("/bin")
	if err != nil || strings.Join(names, ",") != "long,ping,ping2,sh" {
		t.Errorf("ReadDir /bin = %v, %v", names, err)
	}
	if out := debugfsR(t, img, "stats"); !strings.Contains(out, "Filesystem volume name:   rootfs") || strings.Contains(out, "read-only") ||
		!strings.Contains(out, "has_journal") || !strings.Contains(out, "metadata_csum") || !strings.Contains(out, "dir_index") {
		t.Errorf("superblock:\n%s", out)
	}
}

func sha(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

func TestReproducibleTar(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	tb := sampleTar(t)
	var sums []string
	for i := 0; i < 2; i++ {
		img := filepath.Join(dir, fmt.Sprintf("%d.img", i))
		if err := FromTar(context.Background(), bytes.NewReader(tb), img, Options{}); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, sha(t, img))
	}
	if sums[0] != sums[1] {
		t.Errorf("two runs differ: %s vs %s", sums[0], sums[1])
	}
}

// genTree writes n files spread over directories, plus links and a FIFO.
func genTree(t testing.TB, root string, n, fileSize int) {
	t.Helper()
	buf := make([]byte, fileSize)
	for i := 0; i < n; i++ {
		d := filepath.Join(root, fmt.Sprintf("d%03d", i%200), fmt.Sprintf("s%d", i%7))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for j := range buf {
			buf[j] = byte(i*31 + j)
		}
		sz := fileSize
		if fileSize > 0 {
			sz = (i * 7919) % fileSize
		}
		mode := os.FileMode(0o644)
		if i%10 == 0 {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("file-%d.dat", i)), buf[:sz], mode); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("d000/s0/file-0.dat", filepath.Join(root, "link"))
	os.Symlink("/"+strings.Repeat("long/", 20), filepath.Join(root, "longlink"))
	os.Link(filepath.Join(root, "d000", "s0", "file-0.dat"), filepath.Join(root, "hard"))
	syscall.Mkfifo(filepath.Join(root, "fifo"), 0o600)
}

func TestFromDirEpochReproducible(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	genTree(t, src, 300, 5000)
	if err := exec.Command("setfattr", "-n", "user.vxn", "-v", "yes", filepath.Join(src, "link")).Run(); err != nil {
		t.Logf("setfattr not available or unsupported; xattr from directory not covered here: %v", err)
	}
	epoch := time.Unix(1600000000, 0)
	build := func(name string, opt Options) string {
		img := filepath.Join(dir, name)
		if err := FromDir(context.Background(), src, img, opt); err != nil {
			t.Fatal(err)
		}
		fsck(t, img)
		return sha(t, img)
	}
	a := build("a.img", Options{Epoch: &epoch})
	noEpoch1 := build("n1.img", Options{})
	// Change every mtime and atime (all newer than the epoch).
	now := time.Now()
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if d.Type()&fs.ModeSymlink == 0 {
			os.Chtimes(p, now.Add(time.Hour), now.Add(2*time.Hour))
		}
		return nil
	})
	b := build("b.img", Options{Epoch: &epoch})
	noEpoch2 := build("n2.img", Options{})
	if a != b {
		t.Errorf("with Epoch, images differ after touching the source: %s vs %s", a, b)
	}
	if noEpoch1 == noEpoch2 {
		t.Errorf("without Epoch, changed mtimes did not change the image")
	}
	out := debugfsR(t, filepath.Join(dir, "a.img"), "stat /d000/s0/file-0.dat")
	if !strings.Contains(out, "mtime: 0x5f5e1000") || !strings.Contains(out, "Links: 2") {
		t.Errorf("clamped mtime / hard link count not found:\n%s", out)
	}
	if out := debugfsR(t, filepath.Join(dir, "a.img"), "stats"); !strings.Contains(out, "Filesystem created:       Sun Sep 13 12:26:40 2020") {
		t.Errorf("superblock time is not the epoch:\n%s", out)
	}
}

func TestSizes(t *testing.T) {
	needTools(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	genTree(t, src, 400, 64<<10)
	est, err := EstimateDir(src)
	if err != nil {
		t.Fatal(err)
	}
	auto := filepath.Join(dir, "auto.img")
	if err := FromDir(context.Background(), src, auto, Options{}); err != nil {
		t.Fatal(err)
	}
	fsck(t, auto)
	st, _ := os.Stat(auto)
	t.Logf("estimate %d bytes, auto image %d bytes", est, st.Size())
	if st.Size() < est || st.Size() > est+est/5+20<<20 || st.Size()%(1<<20) != 0 {
		t.Errorf("auto size %d not within [estimate %d, estimate+20%%+20MiB] or not whole MiB", st.Size(), est)
	}

	small := filepath.Join(dir, "small.img")
	err = FromDir(context.Background(), src, small, Options{SizeBytes: 4 << 20})
	var tse *TooSmallError
	if !errors.Is(err, ErrTooSmall) || !errors.As(err, &tse) {
		t.Fatalf("want ErrTooSmall, got %v", err)
	}
	if tse.Given != 4<<20 || tse.Need <= tse.Given || !strings.Contains(err.Error(), fmt.Sprint(tse.Need)) {
		t.Errorf("bad TooSmallError %+v: %v", tse, err)
	}
	if _, err := os.Stat(small); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed build left %s: %v", small, err)
	}
	// The size it asked for is enough.
	if err := FromDir(context.Background(), src, small, Options{SizeBytes: tse.Need}); err != nil {
		t.Fatalf("with the needed size %d: %v", tse.Need, err)
	}
	fsck(t, small)

	big := filepath.Join(dir, "big.img")
	if err := FromDir(context.Background(), src, big, Options{SizeBytes: 1<<30 + 12345}); err != nil {
		t.Fatal(err)
	}
	fsck(t, big)
	st, _ = os.Stat(big)
	alloc := st.Sys().(*syscall.Stat_t).Blocks * 512
	if st.Size() != 1<<30+12345 || alloc > 64<<20 {
		t.Errorf("1 GiB image: size %d, allocated %d (want exact size and sparse)", st.Size(), alloc)
	}
	out := debugfsR(t, big, "stats")
	if !strings.Contains(out, "Inode count:              65664") {
		t.Errorf("1 GiB image should have one inode per 16 KiB:\n%s", out)
	}
}

func TestTwentyThousandFiles(t *testing.T) {
	needTools(t)
	if testing.Short() {
		t.Skip("skipping 20k-file tree in -short mode")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	genTree(t, src, 20000, 0)
	// One flat directory with 5000 entries as well.
	flat := filepath.Join(src, "flat")
	os.Mkdir(flat, 0o755)
	for i := 0; i < 5000; i++ {
		os.WriteFile(filepath.Join(flat, fmt.Sprintf("entry-with-a-longer-name-%05d", i)), nil, 0o644)
	}
	img := filepath.Join(dir, "many.img")
	if err := FromDir(context.Background(), src, img, Options{}); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	im, _ := OpenImage(img)
	names, err := im.ReadDir("/flat")
	if err != nil || len(names) != 5000 {
		t.Errorf("ReadDir /flat: %d names, %v", len(names), err)
	}
}

func dirE(name string, mode int64) tarEnt {
	return tarEnt{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

func tarHdrReg(name string, mode int64) tar.Header {
	return tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}
}

func TestOddTar(t *testing.T) {
	needTools(t)
	reg := func(name, data string) tarEnt {
		return tarEnt{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, data: []byte(data)}
	}
	sym := func(name, target string) tarEnt {
		return tarEnt{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target}}
	}
	hard := func(name, target string) tarEnt {
		return tarEnt{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
	}
	for _, tc := range []struct {
		name    string
		ents    []tarEnt
		wantErr string            // "" = must succeed
		want    map[string]string // path -> content ("<dir>" for a directory) after success
	}{
		{"symlinked parent", []tarEnt{sym("a", "/etc"), reg("a/b", "x")}, "", map[string]string{"/etc/b": "x"}},
		{"duplicate empty file", []tarEnt{reg("f", ""), reg("f", "")}, "", map[string]string{"/f": ""}},
		{"duplicate file with data", []tarEnt{reg("f", "one"), reg("f", "two")}, "", map[string]string{"/f": "two"}},
		{"duplicate dir", []tarEnt{dirE("d", 0o755), reg("d/x", "1"), dirE("d", 0o700)}, "", map[string]string{"/d/x": "1"}},
		{"hardlink keeps the replaced data", []tarEnt{reg("f", "old"), hard("h", "f"), reg("f", "new")}, "", map[string]string{"/f": "new", "/h": "old"}},
		{"rewrite through a symlinked dir", []tarEnt{dirE("usr/lib", 0o755), reg("usr/lib/libc.so", "v1"), sym("lib", "usr/lib"), reg("lib/libc.so", "v2")}, "",
			map[string]string{"/usr/lib/libc.so": "v2"}},
		{"hardlink to missing", []tarEnt{hard("l", "nope")}, "file not found", nil},
		{"hardlink to dir", []tarEnt{dirE("d", 0o755), hard("l", "d")}, "is a directory", nil},
		{"hardlink to itself", []tarEnt{reg("f", "x"), hard("f", "f")}, "", map[string]string{"/f": "x"}},
		{"hardlink to root", []tarEnt{hard("l", "./")}, "root directory", nil},
		{"file over dir", []tarEnt{dirE("d", 0o755), reg("d/inner", "gone"), reg("d", "x")}, "", map[string]string{"/d": "x"}},
		{"dir over file", []tarEnt{reg("d", "x"), dirE("d", 0o755), reg("d/y", "y")}, "", map[string]string{"/d/y": "y"}},
		{"name too long", []tarEnt{reg(strings.Repeat("n", 256), "x")}, "longer than ext4's limit of 255", nil},
		{"dot entry", []tarEnt{dirE("./", 0o755), reg("./x", "1")}, "", map[string]string{"/x": "1"}},
		{"file as root", []tarEnt{reg(".", "x")}, "cannot replace the root directory", nil},
		{"dotdot", []tarEnt{reg("../../escape", "x")}, "", map[string]string{"/escape": "x"}},
		{"symlink target too long", []tarEnt{sym("s", strings.Repeat("t", 5000))}, "longer than", nil},
		{"parent is a file", []tarEnt{reg("f", "x"), reg("f/g", "y")}, "is not a directory", nil},
		{"symlink loop", []tarEnt{sym("a", "b"), sym("b", "a"), reg("a/f", "x")}, "too many levels", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			img := filepath.Join(dir, "o.img")
			err := FromTar(context.Background(), bytes.NewReader(mkTar(t, tc.ents)), img, Options{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				fsck(t, img)
				for p, want := range tc.want {
					got := debugfsR(t, img, "cat "+p)
					got = strings.TrimPrefix(got, "debugfs 1.47.0 (5-Feb-2023)\n")
					if i := strings.Index(got, "\n"); strings.HasPrefix(got, "debugfs ") && i >= 0 {
						got = got[i+1:]
					}
					if got != want {
						t.Errorf("%s: got %q, want %q", p, got, want)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("files left after failure: %v", ents)
			}
		})
	}
	// Truncated streams: inside a header or inside file data. (A stream cut
	// in the padding after the last file's data, or without the end-of-archive
	// blocks, is accepted like GNU tar does.)
	full := sampleTar(t)
	for _, n := range []int{10, 512, 520, len(full) / 2} {
		err := FromTar(context.Background(), bytes.NewReader(full[:n]), filepath.Join(t.TempDir(), "t.img"), Options{})
		if err == nil {
			t.Errorf("truncated at %d: no error", n)
		}
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	err := FromTar(ctx, bytes.NewReader(sampleTar(t)), filepath.Join(dir, "c.img"), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("want context.Canceled, got %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("files left after cancel: %v", ents)
	}
}

// FuzzFromTar feeds random tar streams to FromTar: each must give a clean
// error or an image that e2fsck -fn accepts. The seeds cover every entry
// kind, xattrs and ACLs, hard links, duplicates, symlinked parents, sparse
// data and long names; files are capped at 1 MiB to keep each run cheap.
func FuzzFromTar(f *testing.F) {
	reg := func(name, data string) tarEnt {
		return tarEnt{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644}, data: []byte(data)}
	}
	f.Add(mkTar(f, []tarEnt{reg("a", "x")}))
	f.Add(mkTar(f, []tarEnt{
		{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "s", Linkname: "d"}},
		{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "d/h", Linkname: "s"}},
		{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "d/c", Devmajor: 5, Devminor: 1}},
		{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "d/b", Devmajor: 300, Devminor: 70000}},
		{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "d/f", Mode: 0o1777}},
	}))
	f.Add(mkTar(f, []tarEnt{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "x/", PAXRecords: map[string]string{
		"SCHILY.xattr.user.a":                  "b",
		"SCHILY.xattr.user.big":                strings.Repeat("v", 2000),
		"SCHILY.xattr.system.posix_acl_access": string([]byte{2, 0, 0, 0, 1, 0, 7, 0, 255, 255, 255, 255, 4, 0, 5, 0, 255, 255, 255, 255, 32, 0, 0, 0, 255, 255, 255, 255}),
		"SCHILY.xattr.security.capability":     capValue,
	}}}}))
	f.Add(mkTar(f, []tarEnt{reg("f", "one"), reg("f", strings.Repeat("two", 3000)), {hdr: tar.Header{Typeflag: tar.TypeLink, Name: "g", Linkname: "f"}}, reg("f", "three"), dirE("f", 0o755), reg("f/x", "")}))
	f.Add(mkTar(f, []tarEnt{{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "l", Linkname: "/a/b/../c"}}, reg("l/deep/file", "through a symlink"), reg(strings.Repeat("n", 255), "")}))
	sparse := make([]byte, 64<<10)
	sparse[0], sparse[40000], sparse[len(sparse)-1] = 1, 2, 3
	f.Add(mkTar(f, []tarEnt{reg("sparse", string(sparse)), reg("zeros", string(make([]byte, 20000)))}))
	var many []tarEnt
	for i := 0; i < 200; i++ {
		many = append(many, reg(fmt.Sprintf("dir/entry-with-a-long-name-%04d", i), ""))
	}
	f.Add(mkTar(f, many))
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0}, 1024))
	dir := f.TempDir()
	maxFileSize = 1 << 20
	defer func() { maxFileSize = 0 }()
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		img := filepath.Join(dir, "f.img")
		err := FromTar(context.Background(), bytes.NewReader(data), img, Options{SizeBytes: 0})
		if err == nil {
			if _, lerr := exec.LookPath("e2fsck"); lerr == nil {
				fsck(t, img)
			}
			os.Remove(img)
		}
	})
}

func TestMissingTool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := OpenImage("/nonexistent.img")
	if err == nil || !strings.Contains(err.Error(), "e2fsprogs") {
		t.Errorf("want an error naming e2fsprogs, got %v", err)
	}
}
