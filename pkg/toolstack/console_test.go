package toolstack

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestXLConsoleIsATerminal checks that `xl console` gets a raw terminal as
// stdin and stdout: xenconsole forwards stdin to the guest only when it is
// a tty (with pipes the guest never received vxn's job on real Xen). The
// fake xl reports whether its stdin is a terminal and echoes one line back.
func TestXLConsoleIsATerminal(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh for the fake xl: %v", err)
	}
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	fake := filepath.Join(t.TempDir(), "xl")
	script := "#!" + sh + "\nif [ -t 0 ] && [ -t 1 ]; then echo tty; else echo notty; fi\nread -r l\necho \"got $l\"\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	x := &XL{XL: fake}
	con, err := x.Console(context.Background(), 7)
	if err != nil {
		t.Fatal(err)
	}
	defer con.Close()
	done := make(chan []string, 1)
	go func() {
		var lines []string
		sc := bufio.NewScanner(con)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if len(lines) == 1 {
				con.Write([]byte("#vxn:Sframe\n"))
			}
			if len(lines) == 2 {
				break
			}
		}
		done <- lines
	}()
	select {
	case lines := <-done:
		want := []string{"tty", "got #vxn:Sframe"}
		if strings.Join(lines, "|") != strings.Join(want, "|") {
			t.Errorf("console lines %q, want %q (raw: no CR, no echo)", lines, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no answer from the fake xl console")
	}
	if err := con.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}
