package main

import (
	"strings"
	"testing"
)

// FuzzParseDB feeds arbitrary /etc/passwd and /etc/group contents (they
// come from the untrusted image) and kernel command lines: errors are fine,
// panics are not, and errors name the file and line.
func FuzzParseDB(f *testing.F) {
	f.Add(passwd, group)
	f.Add("a:b:c:d:e:f:g\n", "g::x:\n")
	f.Add("x:x:99999999999:0::/:\n", "::::::::\n")
	f.Add(strings.Repeat("a", 5000), "\x00:\xff:1:a,,b")
	f.Fuzz(func(t *testing.T, pw, gr string) {
		if _, err := parsePasswd(strings.NewReader(pw), "/etc/passwd"); err != nil && !strings.HasPrefix(err.Error(), "/etc/passwd:") && !strings.Contains(err.Error(), "token too long") {
			t.Fatalf("error without location: %v", err)
		}
		if _, err := parseGroup(strings.NewReader(gr), "/etc/group"); err != nil && !strings.HasPrefix(err.Error(), "/etc/group:") && !strings.Contains(err.Error(), "token too long") {
			t.Fatalf("error without location: %v", err)
		}
		parseCmdline(pw)
	})
}
