// Package testutil holds helpers shared by the tests of several packages.
package testutil

import (
	"os"
	"path/filepath"
	"testing"
)

// RepoRoot returns the repository root: the nearest directory above the
// test's working directory that holds go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			t.Fatal("go.mod not found above the test directory")
		}
		d = p
	}
}

// SharedDir returns the project's reference folder ../shared beside the
// repository (spec, docs, corpus), or skips the test with the reason when
// it is absent.
func SharedDir(t testing.TB) string {
	t.Helper()
	shared := filepath.Join(RepoRoot(t), "..", "shared")
	if _, err := os.Stat(shared); err != nil {
		t.Skipf("shared reference folder not found beside the repository: %v", err)
	}
	return shared
}
