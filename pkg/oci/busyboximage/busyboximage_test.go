package busyboximage

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/vxn-dev/vxn/pkg/disk/ext4"
	"github.com/vxn-dev/vxn/pkg/imagestore"
	"github.com/vxn-dev/vxn/pkg/oci"
	"github.com/vxn-dev/vxn/pkg/oci/testimage"
)

// hostBusybox is the build machine's static busybox.
const hostBusybox = "/bin/busybox"

// needBusybox returns /bin/busybox and its architecture, or skips the test
// when the machine has no static busybox.
func needBusybox(t *testing.T) (string, string) {
	t.Helper()
	f, err := elf.Open(hostBusybox)
	if err != nil {
		t.Skipf("no static busybox to build from (apt-get install busybox-static): %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Skipf("%s is dynamically linked (apt-get install busybox-static)", hostBusybox)
		}
	}
	for arch, m := range machines {
		if m.machine == f.Machine {
			return hostBusybox, arch
		}
	}
	t.Skipf("%s is for %s, not amd64 or arm64", hostBusybox, f.Machine)
	return "", ""
}

// entry is a tar entry of the image's layer.
type entry struct {
	hdr  *tar.Header
	body []byte
}

// layerEntries reads the image's only layer.
func layerEntries(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	if mt, _ := layers[0].MediaType(); mt != types.OCILayer {
		t.Errorf("layer media type %s, want %s", mt, types.OCILayer)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimSuffix(h.Name, "/")
		if _, dup := out[n]; dup {
			t.Errorf("%s: twice in the layer", n)
		}
		out[n] = entry{h, b}
	}
	return out
}

func TestBuild(t *testing.T) {
	bb, arch := needBusybox(t)
	img, err := Build(bb, arch)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != arch {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, arch)
	}
	if strings.Join(cf.Config.Cmd, " ") != "sh" || len(cf.Config.Entrypoint) != 0 {
		t.Errorf("Entrypoint %q Cmd %q, want none and [sh]", cf.Config.Entrypoint, cf.Config.Cmd)
	}
	if strings.Join(cf.Config.Env, " ") != "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" {
		t.Errorf("Env %q", cf.Config.Env)
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}

	want, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	ents := layerEntries(t, img)
	for n, e := range ents {
		if e.hdr.Uid != 0 || e.hdr.Gid != 0 || !e.hdr.ModTime.Equal(testimage.Epoch) {
			t.Errorf("%s: owner %d:%d time %s, want root and %s", n, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime, testimage.Epoch)
		}
	}
	file := func(n string, mode int64, body string) {
		t.Helper()
		e, ok := ents[n]
		switch {
		case !ok:
			t.Errorf("%s: missing", n)
		case e.hdr.Typeflag != tar.TypeReg || e.hdr.Mode != mode || string(e.body) != body:
			t.Errorf("%s: type %c mode %#o, %d bytes; want a file, %#o, %d bytes", n, e.hdr.Typeflag, e.hdr.Mode, len(e.body), mode, len(body))
		}
	}
	dir := func(n string, mode int64) {
		t.Helper()
		if e, ok := ents[n]; !ok || e.hdr.Typeflag != tar.TypeDir || e.hdr.Mode != mode {
			t.Errorf("%s: %+v, want a directory of mode %#o", n, e.hdr, mode)
		}
	}
	link := func(n, target string) {
		t.Helper()
		if e, ok := ents[n]; !ok || e.hdr.Typeflag != tar.TypeSymlink || e.hdr.Linkname != target {
			t.Errorf("%s: %+v, want a symlink to %s", n, e.hdr, target)
		}
	}
	file("bin/busybox", 0o755, string(want))
	file("etc/passwd", 0o644, Passwd)
	file("etc/group", 0o644, Group)
	if !strings.HasPrefix(Passwd, "root:x:0:0:root:/root:/bin/sh\n") || !strings.Contains(Passwd, "\nnobody:x:65534:65534:") {
		t.Errorf("passwd %q lacks root or nobody", Passwd)
	}
	dir("tmp", 0o1777)
	dir("root", 0o700)
	for _, d := range []string{"bin", "etc", "dev", "usr", "usr/bin", "var"} {
		dir(d, 0o755)
	}
	link("usr/bin/env", "../../bin/busybox")
	// The applets the brief asks for, all in Debian's busybox-static.
	for _, a := range strings.Fields("sh echo id cat ls env sleep true false uname hostname date head tail grep sed wc ps kill mkdir rm cp mv test [ printf pwd seq dd free tty vi") {
		link("bin/"+a, "busybox")
	}
	// Links exist only for applets the binary has.
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("%s --list: %v", bb, err)
	}
	have := map[string]bool{}
	for _, a := range strings.Fields(string(out)) {
		have[a] = true
	}
	links := 0
	for n, e := range ents {
		if strings.HasPrefix(n, "bin/") && e.hdr.Typeflag == tar.TypeSymlink {
			links++
			if !have[strings.TrimPrefix(n, "bin/")] {
				t.Errorf("%s: busybox has no such applet", n)
			}
		}
	}
	if links < 50 {
		t.Errorf("%d applet links, want the common ones", links)
	}
}

func TestAppletTable(t *testing.T) {
	bb, _ := needBusybox(t)
	bin, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatalf("%s --list: %v", bb, err)
	}
	list := strings.Fields(string(out))
	got := appletTable(bin)
	if len(got) != len(list) {
		t.Errorf("applet table: %d names, busybox --list: %d", len(got), len(list))
	}
	for _, a := range list {
		if !got[a] {
			t.Errorf("applet %s of busybox --list not found in the table", a)
		}
	}
}

// renameApplet returns a copy of busybox's bytes with the applet from in
// its applet table renamed to (keeping the table sorted), or skips.
func renameApplet(t *testing.T, bin []byte, from, to string) []byte {
	t.Helper()
	start := bytes.Index(bin, []byte("\x00[\x00[[\x00"))
	if start < 0 {
		t.Skip("busybox's applet table does not start with [ and [[")
	}
	i := bytes.Index(bin[start:], []byte("\x00"+from+"\x00"))
	if i < 0 || len(from) != len(to) {
		t.Fatalf("applet %s not in the table", from)
	}
	out := bytes.Clone(bin)
	copy(out[start+i+1:], to)
	return out
}

func TestMissingApplets(t *testing.T) {
	bb, arch := needBusybox(t)
	bin, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// Without "yes" (now "yep", between xzcat and zcat): no /bin/yes.
	noYes := filepath.Join(dir, "no-yes")
	os.WriteFile(noYes, renameApplet(t, bin, "yes", "yep"), 0o755)
	img, err := Build(noYes, arch)
	if err != nil {
		t.Fatal(err)
	}
	ents := layerEntries(t, img)
	if _, ok := ents["bin/yes"]; ok {
		t.Error("bin/yes linked for a busybox without yes")
	}
	if _, ok := ents["bin/yep"]; ok {
		t.Error("bin/yep linked: not in Applets")
	}
	if e, ok := ents["bin/sh"]; !ok || e.hdr.Linkname != "busybox" {
		t.Error("bin/sh missing")
	}
	// Without "cat" (now "cas", between cal and chgrp): an error.
	noCat := filepath.Join(dir, "no-cat")
	os.WriteFile(noCat, renameApplet(t, bin, "cat", "cas"), 0o755)
	if _, err := Build(noCat, arch); err == nil || !strings.Contains(err.Error(), "lacks the applets cat") || !strings.Contains(err.Error(), noCat) {
		t.Errorf("busybox without cat: %v", err)
	}
}

func TestReproducible(t *testing.T) {
	bb, arch := needBusybox(t)
	var digests []v1.Hash
	for range 2 {
		img, err := Build(bb, arch)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d)
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds: %s and %s", digests[0], digests[1])
	}
	// A different binary gives a different image.
	other := filepath.Join(t.TempDir(), "busybox")
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, append(b, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	img, err := Build(other, arch)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d == digests[0] {
		t.Errorf("a different binary gives the same digest %s", d)
	}
}

func TestBuildErrors(t *testing.T) {
	bb, arch := needBusybox(t)
	dir := t.TempDir()
	text := filepath.Join(dir, "text")
	os.WriteFile(text, []byte("#!/bin/sh\necho not busybox\n"), 0o755)
	// A static ELF for the right machine without busybox's applet table:
	// busybox with the table overwritten.
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("\x00sh\x00"))
	if i < 0 {
		t.Fatal("no sh applet name in busybox")
	}
	notable := bytes.Clone(b)
	for j := i - 4096; j < i+4096; j++ {
		if notable[j] == 0 {
			notable[j] = 'X'
		}
	}
	nt := filepath.Join(dir, "notable")
	os.WriteFile(nt, notable, 0o755)
	otherArch := "arm64"
	if arch == "arm64" {
		otherArch = "amd64"
	}
	tests := []struct {
		path, arch string
		want       []string
	}{
		{bb, "mips", []string{`"mips"`, "expected amd64 or arm64"}},
		{filepath.Join(dir, "missing"), arch, []string{"missing", "no such file"}},
		{dir, arch, []string{dir, "not a regular file"}},
		{text, arch, []string{text, "not an ELF executable", "busybox-static"}},
		{bb, otherArch, []string{bb, "expected", otherArch}},
		{nt, arch, []string{nt, "applet"}},
	}
	// A dynamically linked ELF of the machine, when there is one.
	if exe, err := exec.LookPath("ls"); err == nil {
		if f, err := elf.Open(exe); err == nil {
			dyn := false
			for _, p := range f.Progs {
				dyn = dyn || p.Type == elf.PT_INTERP
			}
			if dyn && f.Machine == machines[arch].machine {
				tests = append(tests, struct {
					path, arch string
					want       []string
				}{exe, arch, []string{exe, "dynamically linked"}})
			}
			f.Close()
		}
	}
	for _, tt := range tests {
		_, err := Build(tt.path, tt.arch)
		if err == nil {
			t.Errorf("Build(%s, %s) succeeded", tt.path, tt.arch)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Build(%s, %s): error %q does not mention %q", tt.path, tt.arch, err, w)
			}
		}
	}
}

func TestWriteArchive(t *testing.T) {
	bb, arch := needBusybox(t)
	img, err := Build(bb, arch)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "busybox.tar")
	os.WriteFile(path, []byte("an older file, replaced"), 0o600)
	if err := WriteArchive(path, img, Ref); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d files in the directory, want only the archive", len(ents))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("archive: %v, %v; want mode 0644", fi, err)
	}
	tag, err := name.NewTag(Ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatalf("reading the archive back with tag %s: %v", tag, err)
	}
	// docker-archive manifests are docker's, so compare the config (image
	// ID) and the layer blobs.
	for _, f := range []func(v1.Image) (v1.Hash, error){
		func(i v1.Image) (v1.Hash, error) { return i.ConfigName() },
		func(i v1.Image) (v1.Hash, error) {
			ls, err := i.Layers()
			if err != nil || len(ls) != 1 {
				return v1.Hash{}, errors.Join(err, errors.New("not one layer"))
			}
			return ls[0].Digest()
		},
	} {
		w, err1 := f(img)
		g, err2 := f(got)
		if err1 != nil || err2 != nil || w != g {
			t.Errorf("archive: %s (%v), want %s (%v)", g, err2, w, err1)
		}
	}
	// The manifest.json ctr and docker read: one image with the tag.
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	mf, err := tarball.LoadManifest(opener)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(mf)
	if len(mf) != 1 || len(mf[0].RepoTags) != 1 || mf[0].RepoTags[0] != Ref || len(mf[0].Layers) != 1 {
		t.Errorf("manifest.json %s: want one image tagged %s with one layer", b, Ref)
	}
	// vxn's docker-archive: transport reads it too.
	r, err := oci.ParseReference("docker-archive:" + path)
	if err != nil {
		t.Fatal(err)
	}
	plat := v1.Platform{OS: "linux", Architecture: arch}
	if _, err := oci.Fetch(context.Background(), r, oci.Options{Platform: &plat}); err != nil {
		t.Errorf("vxn's docker-archive transport: %v", err)
	}

	if err := WriteArchive(path, img, "Not A Tag"); err == nil || !strings.Contains(err.Error(), "Not A Tag") {
		t.Errorf("bad tag: %v", err)
	}
	if err := WriteArchive(filepath.Join(dir, "no/such/dir/x.tar"), img, Ref); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}

// failTransport fails every registry request: nothing may be pulled.
type failTransport struct{}

func (failTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, errors.New("test: no registry access (" + r.URL.Host + ")")
}

func TestAddToStore(t *testing.T) {
	bb, arch := needBusybox(t)
	ctx := context.Background()
	img, err := Build(bb, arch)
	if err != nil {
		t.Fatal(err)
	}
	build := filepath.Join(t.TempDir(), "staging", "var", "lib", "vxn")
	stored, err := AddToStore(ctx, build, img, "busybox", true)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if stored.Digest != want.String() {
		t.Errorf("stored digest %s, want %s", stored.Digest, want)
	}

	// Nothing stored names the build directory.
	err = filepath.WalkDir(build, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err == nil && bytes.Contains(b, []byte(filepath.Dir(build))) {
			t.Errorf("%s holds the build path %s", p, filepath.Dir(build))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}

	// Copied into another root (as the root file system image is), the
	// store lists and resolves the image and has its disk.
	dom0 := filepath.Join(t.TempDir(), "var", "lib", "vxn")
	if err := os.MkdirAll(filepath.Dir(dom0), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(dom0, os.DirFS(build)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Dir(build)); err != nil {
		t.Fatal(err)
	}
	s, err := imagestore.Open(dom0)
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || strings.Join(imgs[0].Names, " ") != "index.docker.io/library/busybox:latest" {
		t.Fatalf("List: %d images (%v), want busybox only", len(imgs), imgs)
	}
	// `vxn run busybox` resolves the short name to the stored one and
	// finds it without a pull.
	r, err := oci.ParseReference("busybox")
	if err != nil || r.String() != imgs[0].Names[0] {
		t.Errorf(`oci.ParseReference("busybox") = %s, %v; want the stored name`, r.String(), err)
	}
	for _, ref := range []string{"busybox", "busybox:latest", Ref, "docker.io/busybox"} {
		got, pulled, err := s.Ensure(ctx, ref, oci.Options{Transport: failTransport{}})
		if err != nil || pulled || got.Digest != want.String() {
			t.Errorf("Ensure(%q): pulled=%v, %v", ref, pulled, err)
			continue
		}
		if strings.Join(got.Config.Config.Cmd, " ") != "sh" {
			t.Errorf("Ensure(%q): Cmd %q", ref, got.Config.Config.Cmd)
		}
	}
	got, err := s.Lookup("busybox")
	if err != nil {
		t.Fatal(err)
	}
	disk, hit, err := s.Disk(ctx, got)
	if err != nil || !hit {
		t.Fatalf("Disk: hit=%v %v; want the disk built by AddToStore", hit, err)
	}
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Logf("debugfs not installed: the disk's content is not checked")
		return
	}
	im, err := ext4.OpenImage(disk)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := im.Stat("bin/busybox"); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("disk: bin/busybox: %v, %v", fi, err)
	}
	if fi, err := im.Stat("tmp"); err != nil || fi.Mode()&fs.ModeSticky == 0 {
		t.Errorf("disk: tmp: %v, %v; want the sticky bit", fi, err)
	}
}

func TestAddToStoreErrors(t *testing.T) {
	bb, arch := needBusybox(t)
	img, err := Build(bb, arch)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := AddToStore(ctx, "", img, Ref, false); err == nil {
		t.Error("an empty store directory was accepted")
	}
	root := t.TempDir()
	for _, ref := range []string{"oci-layout:/tmp/x", "busybox@sha256:" + strings.Repeat("0", 64)} {
		if _, err := AddToStore(ctx, root, img, ref, false); err == nil || !strings.Contains(err.Error(), ref) {
			t.Errorf("AddToStore(%q): %v, want an error naming it", ref, err)
		}
	}
}
