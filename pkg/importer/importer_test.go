package importer

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
	"github.com/vxn-dev/vxn/pkg/sparse"
	"github.com/vxn-dev/vxn/pkg/tarsafe"
)

func TestRegistryLookup(t *testing.T) {
	bin := t.TempDir()
	writeScript(t, filepath.Join(bin, ExternalPrefix+"fake"), "#!/bin/sh\nexit 0\n")
	// Not executable: must not be offered.
	os.WriteFile(filepath.Join(bin, ExternalPrefix+"noexec"), []byte("x"), 0o644)
	r := NewRegistry(WithSearchPath(bin))
	want := "ext4 fake qcow2 raw rootfs_dir rootfs_tar"
	if got := strings.Join(r.Types(), " "); got != want {
		t.Errorf("Types() = %s, want %s", got, want)
	}
	tests := []struct {
		typ     string
		wantErr string
	}{
		{"rootfs_dir", ""},
		{"rootfs_tar", ""},
		{"qcow2", ""},
		{"ext4", ""},
		{"raw", ""},
		{"fake", ""},
		{"noexec", "valid types: ext4, fake, qcow2, raw, rootfs_dir, rootfs_tar"},
		{"nope", `unknown import type "nope"; valid types: ext4, fake, qcow2, raw, rootfs_dir, rootfs_tar`},
		{"../../bin/sh", "invalid import type"},
		{"", "invalid import type"},
	}
	for _, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			h, err := r.Lookup(tc.typ)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.Type() != tc.typ {
				t.Errorf("Type() = %s", h.Type())
			}
		})
	}
	var ute *UnknownTypeError
	if _, err := r.Lookup("nope"); !errors.As(err, &ute) || ute.Type != "nope" {
		t.Errorf("unknown type error is %T, want *UnknownTypeError", err)
	}
	// Register overrides and adds.
	r.Register(External("custom", "/nonexistent/prog", nil))
	if h, err := r.Lookup("custom"); err != nil || h.Type() != "custom" {
		t.Errorf("registered handler not found: %v", err)
	}
}

func TestCheckTools(t *testing.T) {
	tests := []struct {
		name    string
		tools   []Tool
		wantErr []string
		notIn   []string
	}{
		{"none", nil, nil, nil},
		{"present", []Tool{{"sh", "dash"}, {"/bin/sh", "dash"}}, nil, nil},
		{"missing", []Tool{{"sh", "dash"}, {"no-such-tool-xyz", "xyz-utils"}, {"no-such-tool-abc", ""}, {"/nonexistent/qemu-img", "qemu-utils"}},
			[]string{"no-such-tool-xyz (Debian package xyz-utils)", "no-such-tool-abc (no Debian package declared)",
				"/nonexistent/qemu-img (Debian package qemu-utils)", "apt-get install xyz-utils qemu-utils"},
			[]string{"sh (Debian package dash)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckTools(tc.tools)
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var mt *MissingToolsError
			if !errors.As(err, &mt) {
				t.Fatalf("err = %v, want *MissingToolsError", err)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			for _, w := range tc.notIn {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q names present tool %q", err, w)
				}
			}
		})
	}
}

func writeScript(t *testing.T, p, body string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
}

func TestExternal(t *testing.T) {
	needTool(t, "sh")
	bin := t.TempDir()
	writeScript(t, filepath.Join(bin, ExternalPrefix+"fake"),
		"#!/bin/sh\necho \"args=$# src=$1 size=$3 guest=$XENBUNDLE_GUEST type=$XENBUNDLE_IMPORT_TYPE epoch=$SOURCE_DATE_EPOCH\" > \"$2\"\necho progress\n")
	writeScript(t, filepath.Join(bin, ExternalPrefix+"fail"), "#!/bin/sh\necho boom >&2\nexit 3\n")
	writeScript(t, filepath.Join(bin, ExternalPrefix+"lazy"), "#!/bin/sh\nexit 0\n")
	writeScript(t, filepath.Join(bin, ExternalPrefix+"slow"), "#!/bin/sh\nexec sleep 60\n")
	src := filepath.Join(t.TempDir(), "src.bin")
	os.WriteFile(src, []byte("source"), 0o644)
	r := NewRegistry(WithSearchPath(bin), WithDepends("needy", []Tool{{"no-such-tool-xyz", "xyz-utils"}}))
	writeScript(t, filepath.Join(bin, ExternalPrefix+"needy"), "#!/bin/sh\ntouch \"$2\"\n")
	epoch := time.Unix(1700000000, 0)

	tests := []struct {
		typ      string
		source   string
		timeout  time.Duration
		wantErr  []string
		wantBody string
	}{
		{typ: "fake", source: src, wantBody: "args=3 src=" + src + " size=64 guest=g1 type=fake epoch=1700000000\n"},
		{typ: "fail", source: src, wantErr: []string{"exit status 3", "boom", `guest "g1"`}},
		{typ: "lazy", source: src, wantErr: []string{"did not create the output"}},
		{typ: "needy", source: src, wantErr: []string{"no-such-tool-xyz (Debian package xyz-utils)"}},
		{typ: "fake", source: filepath.Join(bin, "missing"), wantErr: []string{"does not exist"}},
		{typ: "slow", source: src, timeout: 200 * time.Millisecond, wantErr: []string{"context deadline exceeded"}},
	}
	for _, tc := range tests {
		t.Run(tc.typ, func(t *testing.T) {
			h, err := r.Lookup(tc.typ)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "out", "g1.img")
			req := Request{Guest: "g1", Type: tc.typ, Source: tc.source, Output: out, SizeMB: 64, Epoch: &epoch}
			ctx := context.Background()
			if tc.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
				defer cancel()
			}
			err = h.Import(ctx, req)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
					t.Errorf("failed import left %d files", len(ents))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.wantBody {
				t.Errorf("output %q, want %q", b, tc.wantBody)
			}
		})
	}
	if h, _ := r.Lookup("needy"); len(h.Tools()) != 1 {
		t.Errorf("declared tools not returned: %v", h.Tools())
	}
}

// makeRootfsDir builds a small rootfs tree with a symlink, hardlink, fifo and
// (as root) a foreign owner.
func makeRootfsDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "etc", "home/user", "var"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "bin/busybox"), bytes.Repeat([]byte{0x7f, 'E', 'L', 'F'}, 50000), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("guest\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "home/user/notes"), []byte("mine"), 0o600)
	must(t, os.Symlink("/bin/busybox", filepath.Join(dir, "bin/sh")))
	must(t, os.Symlink("../run", filepath.Join(dir, "var/run")))
	must(t, os.Link(filepath.Join(dir, "bin/busybox"), filepath.Join(dir, "bin/ls")))
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	if os.Geteuid() == 0 {
		must(t, os.Lchown(filepath.Join(dir, "home/user/notes"), 1000, 1000))
	}
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// rootfsEntries is the tar twin of makeRootfsDir plus the unsafe cases.
func rootfsEntries() []tent {
	return []tent{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "./bin/busybox", body: strings.Repeat("\x7fELF", 50000), mode: 0o755},
		{name: "./bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox"},
		{name: "./bin/ls", typ: tar.TypeLink, link: "./bin/busybox"},
		{name: "./dev/null", typ: tar.TypeChar, major: 1, minor: 3, mode: 0o666},
		{name: "./fifo", typ: tar.TypeFifo, mode: 0o644},
		{name: "./home/user/notes", body: "mine", mode: 0o600, uid: 1000, gid: 1000, xattrs: map[string]string{"user.note": "kept"}},
		{name: "../../escape", body: "confined"},
		{name: "./evil", typ: tar.TypeSymlink, link: "/etc"},
		{name: "./evil/pwned", body: "inside"},
		{name: "./hl", typ: tar.TypeLink, link: "../../escape"},
	}
}

// checkImage verifies an ext4 image with e2fsck and debugfs.
func checkImage(t *testing.T, img string, wantSize int64, wantNames []string, stats map[string]string) {
	t.Helper()
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if wantSize > 0 && fi.Size() != wantSize {
		t.Errorf("image size %d, want %d", fi.Size(), wantSize)
	}
	e2fsck(t, img)
	ls := debugfs(t, img, "ls -l /")
	for _, n := range wantNames {
		if !strings.Contains(ls, " "+n+"\n") && !strings.Contains(ls, " "+n+" ") {
			t.Errorf("debugfs ls -l / lacks %q:\n%s", n, ls)
		}
	}
	for p, want := range stats {
		st := debugfs(t, img, "stat "+p)
		for _, w := range strings.Split(want, "|") {
			if !strings.Contains(st, w) {
				t.Errorf("debugfs stat %s lacks %q:\n%s", p, w, st)
			}
		}
	}
}

func TestRootfsDir(t *testing.T) {
	src := makeRootfsDir(t)
	r := NewRegistry()
	h, err := r.Lookup(TypeRootfsDir)
	must(t, err)
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o644)
	tests := []struct {
		name     string
		source   string
		sizeMB   int
		wantErr  string
		wantSize int64
	}{
		{name: "auto size", source: src, wantSize: DefaultSizeMB * MiB},
		{name: "explicit size", source: src, sizeMB: 40, wantSize: 40 * MiB},
		{name: "too small", source: src, sizeMB: 1, wantErr: `guest "g": XEN_GUEST_IMAGE_SIZE[g] = 1 MB is too small`},
		{name: "not a dir", source: file, wantErr: "is not a directory"},
		{name: "missing", source: filepath.Join(src, "nope"), wantErr: "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "g.img")
			req := Request{Guest: "g", Type: TypeRootfsDir, Source: tc.source, Output: out, SizeMB: tc.sizeMB}
			_, eerr := h.Estimate(context.Background(), req)
			err := h.Import(context.Background(), req)
			if tc.wantErr != "" {
				if eerr == nil || !strings.Contains(eerr.Error(), tc.wantErr) {
					t.Errorf("Estimate err = %v, want containing %q", eerr, tc.wantErr)
				}
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("Import err = %v, want containing %q", err, tc.wantErr)
				}
				if _, serr := os.Stat(out); serr == nil {
					t.Error("failed import left an output")
				}
				return
			}
			must(t, eerr)
			must(t, err)
			stats := map[string]string{"/bin/ls": "Links: 2", "/fifo": "Type: FIFO", "/bin/sh": "Fast link dest: \"/bin/busybox\""}
			if os.Geteuid() == 0 {
				stats["/home/user/notes"] = "User:  1000|Group:  1000"
			}
			checkImage(t, out, tc.wantSize, []string{"bin", "etc", "home", "fifo", "var"}, stats)
		})
	}
}

func TestRootfsTar(t *testing.T) {
	plain := mkTar(t, rootfsEntries())
	r := NewRegistry()
	h, err := r.Lookup(TypeRootfsTar)
	must(t, err)
	for _, c := range allCompressions {
		t.Run(string(c), func(t *testing.T) {
			dir := t.TempDir()
			src := filepath.Join(dir, "rootfs.bin") // name says nothing: detection is by magic
			must(t, os.WriteFile(src, compress(t, c, plain), 0o644))
			out := filepath.Join(dir, "out", "g.img")
			epoch := time.Unix(1700000000, 0)
			req := Request{Guest: "g", Type: TypeRootfsTar, Source: src, Output: out, SizeMB: 32, Epoch: &epoch}
			must(t, h.Check(req))
			n, err := h.Estimate(context.Background(), req)
			must(t, err)
			if n < 200000 {
				t.Errorf("estimate %d bytes is less than the content", n)
			}
			must(t, h.Import(context.Background(), req))
			checkImage(t, out, 32*MiB, []string{"bin", "dev", "escape", "etc", "evil", "fifo", "hl", "home"}, map[string]string{
				"/bin/ls":          "Links: 2",
				"/escape":          "Links: 2",
				"/etc/pwned":       "Type: regular",
				"/dev/null":        "Type: character special|Device major/minor number: 01:03",
				"/fifo":            "Type: FIFO",
				"/evil":            "Type: symlink|Fast link dest: \"/etc\"",
				"/home/user/notes": "User:  1000|Group:  1000|Mode:  0600|user.note (4) = \"kept\"",
			})
		})
	}
}

func TestRootfsTarErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, b, 0o644))
		return p
	}
	good := write("good.tar.gz", compress(t, Gzip, mkTar(t, rootfsEntries())))
	big := write("big.tar", mkTar(t, []tent{{name: "big", body: strings.Repeat("b", 2*MiB)}}))
	unsafe := write("loop.tar", mkTar(t, []tent{{name: "a", typ: tar.TypeSymlink, link: "a"}, {name: "a/x", body: "y"}}))
	corrupt := write("corrupt.tar.gz", compress(t, Gzip, mkTar(t, rootfsEntries()))[:300])
	notTar := write("image.qcow2", append([]byte("QFI\xfb\x00\x00\x00\x03"), make([]byte, 1000)...))
	tests := []struct {
		name    string
		source  string
		sizeMB  int
		wantErr string
	}{
		{"too small", good, 1, "XEN_GUEST_IMAGE_SIZE[g] = 1 MB is too small: the content of " + good},
		{"file data over size", big, 1, "XEN_GUEST_IMAGE_SIZE[g] = 1 MB is too small: the content of " + big + " (file data alone is larger than 1 MB)"},
		{"symlink loop", unsafe, 0, "too many levels of symbolic links"},
		{"corrupt gzip", corrupt, 0, "gzip data is truncated"},
		{"not a tar", notTar, 0, "looks like a qcow2 image"},
		{"directory", dir, 0, "is not a regular file"},
	}
	h, _ := NewRegistry().Lookup(TypeRootfsTar)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "g.img")
			req := Request{Guest: "g", Type: TypeRootfsTar, Source: tc.source, Output: out, SizeMB: tc.sizeMB}
			_, err := h.Estimate(context.Background(), req)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Estimate err = %v, want containing %q", err, tc.wantErr)
			}
			if err := h.Import(context.Background(), req); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Import err = %v, want containing %q", err, tc.wantErr)
			}
			if _, serr := os.Stat(out); serr == nil {
				t.Error("failed import left an output")
			}
		})
	}
}

// writeQcow2 writes a minimal qcow2 v3 image (64 KiB clusters) of size bytes
// whose clusters in data hold the given bytes.
func writeQcow2(t *testing.T, p string, size int64, data map[int64][]byte) {
	t.Helper()
	const cl = 1 << 16
	be := binary.BigEndian
	img := make([]byte, 4*cl)
	copy(img, "QFI\xfb")
	be.PutUint32(img[4:], 3)
	be.PutUint32(img[20:], 16)
	be.PutUint64(img[24:], uint64(size))
	be.PutUint32(img[36:], 1)          // l1_size
	be.PutUint64(img[40:], 1*cl)       // l1_table_offset
	be.PutUint64(img[48:], 2*cl)       // refcount_table_offset
	be.PutUint32(img[56:], 1)          // refcount_table_clusters
	be.PutUint32(img[96:], 4)          // refcount_order
	be.PutUint32(img[100:], 104)       // header_length
	be.PutUint64(img[cl:], 3*cl|1<<63) // L1[0] → L2 at cluster 3
	next := int64(4)
	for idx, b := range data {
		be.PutUint64(img[3*cl+8*idx:], uint64(next*cl)|1<<63)
		c := make([]byte, cl)
		copy(c, b)
		img = append(img, c...)
		next++
	}
	must(t, os.WriteFile(p, img, 0o644))
}

func TestImageHandlers(t *testing.T) {
	dir := t.TempDir()
	qc := filepath.Join(dir, "disk.qcow2")
	writeQcow2(t, qc, 8*MiB, map[int64][]byte{0: []byte("first cluster"), 100: []byte("cluster 100")})
	raw := filepath.Join(dir, "disk.raw")
	f, _ := os.Create(raw)
	f.Truncate(6 * MiB)
	f.WriteAt([]byte("raw data"), 3*MiB)
	f.Close()
	ext := filepath.Join(dir, "fs.ext4")
	rd, _ := NewRegistry().Lookup(TypeRootfsDir)
	must(t, rd.Import(context.Background(), Request{Guest: "src", Type: TypeRootfsDir, Source: makeRootfsDir(t), Output: ext, SizeMB: 16}))
	truncatedExt := filepath.Join(dir, "trunc.ext4")
	b, _ := os.ReadFile(ext)
	os.WriteFile(truncatedExt, b[:2*MiB], 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)

	tests := []struct {
		name     string
		typ      string
		source   string
		sizeMB   int
		wantErr  string
		wantSize int64
		probe    map[int64]string // offset → expected bytes in output
		ext4     bool
	}{
		{name: "qcow2", typ: TypeQcow2, source: qc, wantSize: 8 * MiB, probe: map[int64]string{0: "first cluster", 100 << 16: "cluster 100"}},
		{name: "qcow2 extended", typ: TypeQcow2, source: qc, sizeMB: 20, wantSize: 20 * MiB, probe: map[int64]string{100 << 16: "cluster 100"}},
		{name: "qcow2 too small", typ: TypeQcow2, source: qc, sizeMB: 4, wantErr: "XEN_GUEST_IMAGE_SIZE[g] = 4 MB is too small: the qcow2 image's virtual size (8388608 bytes) needs at least 8 MB"},
		{name: "qcow2 not qcow2", typ: TypeQcow2, source: raw, wantErr: "qcow2"},
		{name: "raw", typ: TypeRaw, source: raw, wantSize: 6 * MiB, probe: map[int64]string{3 * MiB: "raw data"}},
		{name: "raw extended", typ: TypeRaw, source: raw, sizeMB: 10, wantSize: 10 * MiB, probe: map[int64]string{3 * MiB: "raw data"}},
		{name: "raw too small", typ: TypeRaw, source: raw, sizeMB: 5, wantErr: "needs at least 6 MB"},
		{name: "raw empty", typ: TypeRaw, source: empty, wantErr: "is empty"},
		{name: "raw dir", typ: TypeRaw, source: dir, wantErr: "not a regular file"},
		{name: "ext4", typ: TypeExt4, source: ext, wantSize: 16 * MiB, ext4: true},
		{name: "ext4 extended", typ: TypeExt4, source: ext, sizeMB: 32, wantSize: 32 * MiB, ext4: true},
		{name: "ext4 not ext4", typ: TypeExt4, source: qc, wantErr: "not an ext4 image: superblock magic at byte 1080"},
		{name: "ext4 truncated", typ: TypeExt4, source: truncatedExt, wantErr: "ext4 image is truncated"},
	}
	r := NewRegistry()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := r.Lookup(tc.typ)
			must(t, err)
			out := filepath.Join(t.TempDir(), "g.img")
			req := Request{Guest: "g", Type: tc.typ, Source: tc.source, Output: out, SizeMB: tc.sizeMB}
			err = h.Import(context.Background(), req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
					t.Errorf("failed import left %d files", len(ents))
				}
				return
			}
			must(t, err)
			fi, err := os.Stat(out)
			must(t, err)
			if fi.Size() != tc.wantSize {
				t.Errorf("size %d, want %d", fi.Size(), tc.wantSize)
			}
			if a, _ := sparse.Allocated(out); a > 2*MiB+int64(len(b)) {
				t.Errorf("output allocates %d bytes: not sparse", a)
			}
			f, _ := os.Open(out)
			defer f.Close()
			for off, want := range tc.probe {
				got := make([]byte, len(want))
				f.ReadAt(got, off)
				if string(got) != want {
					t.Errorf("at %d: %q, want %q", off, got, want)
				}
			}
			if tc.ext4 {
				e2fsck(t, out)
			}
		})
	}
}

func TestMinimumSizeMatchesWriter(t *testing.T) {
	// The minimum we accept must be enough for the ext4 writer, and not
	// wildly more than it needs.
	for _, files := range []int{10, 3000} {
		var ents []tent
		for i := range files {
			ents = append(ents, tent{name: "d" + string(rune('a'+i%7)) + "/f" + strings.Repeat("x", i%40) + "_" + strconv.Itoa(i), body: strings.Repeat("z", 100+i*37%9000)})
		}
		src := filepath.Join(t.TempDir(), "t.tar")
		must(t, os.WriteFile(src, mkTar(t, ents), 0o644))
		h, _ := NewRegistry().Lookup(TypeRootfsTar)
		n, err := h.Estimate(context.Background(), Request{Guest: "g", Type: TypeRootfsTar, Source: src})
		must(t, err)
		min := MinimumMB(n)
		out := filepath.Join(t.TempDir(), "g.img")
		err = h.Import(context.Background(), Request{Guest: "g", Type: TypeRootfsTar, Source: src, Output: out, SizeMB: min})
		if err != nil {
			t.Fatalf("%d files: import at MinimumMB %d failed: %v", files, min, err)
		}
		e2fsck(t, out)
		// The writer's real need, from its size error at 8 KiB.
		f, _ := os.Open(src)
		sr := tarsafe.Sanitize(context.Background(), f, tarsafe.Options{})
		err = ext4FromTar(context.Background(), sr, out+"2", ext4.Options{SizeBytes: 8192})
		sr.Close()
		f.Close()
		var ts *ext4.TooSmallError
		if !errors.As(err, &ts) {
			t.Fatalf("writer at 8 KiB: %v, want *ext4.TooSmallError", err)
		}
		if int64(min)*MiB < ts.Need {
			t.Errorf("%d files: MinimumMB %d < writer need %d bytes", files, min, ts.Need)
		}
		t.Logf("%d files: estimate %d bytes, writer needs %d bytes, MinimumMB %d (%.2fx), AutoSizeMB %d",
			files, n, ts.Need, min, float64(int64(min)*MiB)/float64(ts.Need), AutoSizeMB(n))
	}
}
