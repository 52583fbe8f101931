package writer

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDirHashMatchesDebugfs compares dirHash with debugfs's dx_hash (the
// e2fsprogs implementation) for names of every length class.
func TestDirHashMatchesDebugfs(t *testing.T) {
	for _, tool := range []string{"debugfs", "mkfs.ext4"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s not installed (Debian package e2fsprogs): %v", tool, err)
		}
	}
	img := filepath.Join(t.TempDir(), "h.img")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v\n%s", err, out)
	}
	seedUUID := "7a2bf627-4aee-e1f3-fdca-39b715a15000"
	raw := strings.ReplaceAll(seedUUID, "-", "")
	var sb [16]byte
	for i := range sb {
		fmt.Sscanf(raw[2*i:2*i+2], "%02x", &sb[i])
	}
	var seed [4]uint32
	for i := range seed {
		seed[i] = le.Uint32(sb[4*i:])
	}
	names := []string{"a", "abc", "hello-wörld", "file-00042.dat", strings.Repeat("x", 31), strings.Repeat("y", 32),
		strings.Repeat("z", 33), strings.Repeat("ü", 100), strings.Repeat("n", 255), "\xff\x80-high-bytes"}
	re := regexp.MustCompile(`Hash of .* is (0x[0-9a-f]+)`)
	for _, s := range []struct {
		arg  string
		seed [4]uint32
	}{{"", [4]uint32{}}, {"-s " + seedUUID, seed}} {
		for _, n := range names {
			out, err := exec.Command("debugfs", "-R", fmt.Sprintf("dx_hash -h half_md4 %s %s", s.arg, n), img).CombinedOutput()
			if err != nil {
				t.Fatalf("debugfs: %v\n%s", err, out)
			}
			m := re.FindStringSubmatch(string(out))
			if m == nil {
				t.Fatalf("unexpected debugfs output: %s", out)
			}
			var want uint32
			fmt.Sscanf(m[1], "0x%x", &want)
			if got := dirHash([]byte(n), s.seed); got != want&^1 {
				t.Errorf("dirHash(%.20q, seed %v) = %#x, debugfs says %#x", n, s.seed, got, want)
			}
		}
	}
}

// TestXattrHash checks the entry hash on a known value: the name "a" and
// an empty value hash to the byte itself.
func TestXattrHash(t *testing.T) {
	if h := xattrEntryHash([]byte("a"), nil); h != 'a' {
		t.Errorf("hash of \"a\" = %#x", h)
	}
	if h := xattrEntryHash([]byte("ab"), nil); h != 'a'<<5^'b' {
		t.Errorf("hash of \"ab\" = %#x", h)
	}
	if xattrBlockHash([]uint32{1, 0, 2}) != 0 {
		t.Error("a zero entry hash must make the block hash zero")
	}
}

func TestACLConversion(t *testing.T) {
	// user::rw-, user:1000:r--, group::r--, mask::r--, other::---
	in := []byte{2, 0, 0, 0,
		1, 0, 6, 0, 0xff, 0xff, 0xff, 0xff,
		2, 0, 4, 0, 0xe8, 3, 0, 0,
		4, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
		0x10, 0, 4, 0, 0xff, 0xff, 0xff, 0xff,
		0x20, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}
	got, err := aclToDisk(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 0, 0, 0, 1, 0, 6, 0, 2, 0, 4, 0, 0xe8, 3, 0, 0, 4, 0, 4, 0, 0x10, 0, 4, 0, 0x20, 0, 0, 0}
	if string(got) != string(want) {
		t.Errorf("got % x\nwant % x", got, want)
	}
	for _, bad := range [][]byte{nil, {2, 0, 0}, {1, 0, 0, 0}, append([]byte{2, 0, 0, 0}, 0x40, 0, 0, 0, 0, 0, 0, 0), append([]byte{2, 0, 0, 0}, 1, 0, 9, 0, 0, 0, 0, 0)} {
		if _, err := aclToDisk(bad); err == nil {
			t.Errorf("aclToDisk(% x) accepted", bad)
		}
	}
}

func TestBackupGroups(t *testing.T) {
	var got []uint64
	for g := uint64(0); g < 130; g++ {
		if hasBackup(g) {
			got = append(got, g)
		}
	}
	if fmt.Sprint(got) != "[0 1 3 5 7 9 25 27 49 81 125]" {
		t.Errorf("backup groups %v", got)
	}
	for _, g := range []uint64{0, 1, 2, 8, 26, 124} {
		n := nextBackup(g)
		if !hasBackup(n) || n <= g {
			t.Errorf("nextBackup(%d) = %d", g, n)
		}
		for k := g + 1; k < n; k++ {
			if hasBackup(k) {
				t.Errorf("nextBackup(%d) = %d skips %d", g, n, k)
			}
		}
	}
}

func TestTimestampEncoding(t *testing.T) {
	for _, c := range []struct {
		ts        Timestamp
		lo, extra uint32
	}{
		{Timestamp{0, 0}, 0, 0},
		{Timestamp{1700000000, 5}, 1700000000, 5 << 2},
		{Timestamp{-1, 0}, 0xffffffff, 0},
		{Timestamp{1 << 31, 0}, 1 << 31, 1}, // 2038
		{Timestamp{1<<32 + 7, 999999999}, 7, 1 | 999999999<<2},
	} {
		lo, extra := c.ts.encode()
		if lo != c.lo || extra != c.extra {
			t.Errorf("%+v: got %#x %#x, want %#x %#x", c.ts, lo, extra, c.lo, c.extra)
		}
	}
}
