package ociruntime_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestConformanceLargeEnv: env and args beyond 64 KiB (one console frame)
// made `create` and `start` return 0 and the container stay running
// forever, with nothing logged; several MB now run, as with runc.
func TestConformanceLargeEnv(t *testing.T) {
	e := newEnv(t)
	var env []string
	for i := 0; i < 3000; i++ { // 3 MB
		env = append(env, fmt.Sprintf("BIG%04d=%s", i, strings.Repeat("v", 1000)))
	}
	big := strings.Repeat("a", 100<<10)
	c := e.create("large-env", func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, env...) }, "echo", "hi", big)
	if err := e.r.Start(e.ctx, c.id); err != nil {
		t.Fatalf("start: %v\n%s", err, e.logText())
	}
	stdout, _ := c.output()
	select {
	case out := <-stdout:
		if out != "hi "+big+"\n" {
			t.Errorf("stdout is %d bytes %.20q, want hi and the 100 KiB argument", len(out), out)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("no output within 60 s: the job did not start; status %s; log:\n%s", e.status(c.id), e.logText())
	}
	if code := e.wait(c.pid); code != 0 {
		t.Errorf("exit status %d", code)
	}
}
