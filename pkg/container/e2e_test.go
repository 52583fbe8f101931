package container

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EScriptSyntax checks the generated script parses (sh -n) and quotes
// its parameters.
func TestE2EScriptSyntax(t *testing.T) {
	s := E2EScript("", "localhost:5000/t'est:1", "/etc/deleted")
	if !strings.Contains(s, `IMG='localhost:5000/t'\''est:1'`) {
		t.Errorf("image not quoted:\n%s", s[:200])
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh to check the syntax: %v", err)
	}
	p := filepath.Join(t.TempDir(), "e2e.sh")
	os.WriteFile(p, []byte(s), 0o755)
	if out, err := exec.Command(sh, "-n", p).CombinedOutput(); err != nil {
		t.Errorf("sh -n: %v\n%s", err, out)
	}
}
