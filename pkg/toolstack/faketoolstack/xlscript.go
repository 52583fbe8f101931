package faketoolstack

import (
	"os"
	"path/filepath"
	"strings"
)

// XLScript writes dir/xl, a shell script standing in for Xen's xl program
// (toolstack.XL) where a test must prove which program a process runs: it
// appends its arguments to dir/xl.log, one invocation a line, and fails as
// xl does on a host without Xen. It returns both paths.
func XLScript(dir string) (xl, log string, err error) {
	xl, log = filepath.Join(dir, "xl"), filepath.Join(dir, "xl.log")
	quoted := "'" + strings.ReplaceAll(log, "'", `'\''`) + "'"
	script := "#!/bin/sh\necho \"$*\" >>" + quoted + "\necho 'xl: not a Xen host (test script)' >&2\nexit 1\n"
	return xl, log, os.WriteFile(xl, []byte(script), 0o755)
}
