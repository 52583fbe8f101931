package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// freeMemory returns `xl info` free_memory in MB.
func freeMemory(t *testing.T) int {
	t.Helper()
	r := run(t, "xl info | grep free_memory")
	f := strings.Fields(strings.ReplaceAll(r.Output, ":", " "))
	if len(f) < 2 {
		t.Fatalf("xl info free_memory: %q", r.Output)
	}
	n, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		t.Fatalf("free_memory %q: %v", f[len(f)-1], err)
	}
	return n
}

// TestImportedGuests boots the guests whose disks were produced by the
// qcow2 and rootfs_tar import handlers, side by side.
func TestImportedGuests(t *testing.T) {
	v := vm(t)
	need(t, "xl")
	scale := time.Duration(v.Scale())
	guests := []string{qcow2Guest, tarGuest}
	if free, want := freeMemory(t), 256*len(guests); free < want {
		t.Skipf("xl info free_memory %d MB < %d MB needed for %d guests of 256 MB", free, want, len(guests))
	}
	for _, g := range guests {
		r := run(t, "xl create /etc/xen/"+g+".cfg")
		if r.Status != 0 {
			t.Fatalf("xl create %s: %d %s", g, r.Status, r.Output)
		}
	}
	for _, g := range guests {
		d := waitGuestLogin(t, g, 90*time.Second*scale)
		t.Logf("%s reached its login prompt %.1fs after the wait began", g, d.Seconds())
	}
	r := run(t, "cat /etc/xen/"+tarGuest+".cfg; ls -ls /var/lib/xen/images/")
	t.Logf("%s", r.Output)
	for _, g := range guests {
		if r := run(t, "xl destroy "+g); r.Status != 0 {
			t.Errorf("xl destroy %s: %s", g, r.Output)
		}
	}
}
