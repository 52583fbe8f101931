// Package vctr is `vctr`: containerd's `ctr` with the vxn runtime preset.
// `vctr run …` runs `ctr run --runc-binary <vxn-oci-runtime> …`, so the
// stock runc shim (io.containerd.runc.v2) drives vxn-oci-runtime and every
// container is a Xen guest; every other verb passes through to ctr
// unchanged. cmd/vctr is a thin wrapper around Main.
//
// containerd 1.6's `ctr container create` has no --runc-binary flag (only
// `run` does), so `vctr container create` checks `ctr container create
// --help` and fails with an explanation when ctr cannot preset the runtime
// binary there, instead of silently creating a runc container.
package vctr

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultRuntime is where packages install vxn-oci-runtime.
const DefaultRuntime = "/usr/bin/vxn-oci-runtime"

// runcV2 is the runtime whose shim honours --runc-binary.
const runcV2 = "io.containerd.runc.v2"

// ctrGlobalValueFlags are ctr's global options that take a value.
var ctrGlobalValueFlags = map[string]bool{
	"address": true, "a": true, "timeout": true, "connect-timeout": true, "namespace": true, "n": true,
}

// Rewrite returns ctr's arguments for vctr's: --runc-binary runtime is
// added to `run` and to `container create` (when supports says that ctr's
// create has the flag). A --runc-binary or a --runtime other than
// io.containerd.runc.v2 given by the user is left alone.
func Rewrite(args []string, runtime string, createSupports func() bool) ([]string, error) {
	i := 0
	for i < len(args) {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			break
		}
		name := strings.TrimLeft(a, "-")
		if !strings.Contains(name, "=") && ctrGlobalValueFlags[name] {
			i++
		}
		i++
	}
	if i >= len(args) {
		return args, nil
	}
	insertAt := -1
	switch args[i] {
	case "run":
		insertAt = i + 1
	case "container", "containers", "c":
		if i+1 < len(args) && args[i+1] == "create" {
			if userChoseRuntime(args[i+2:]) {
				return args, nil
			}
			if createSupports != nil && !createSupports() {
				return nil, errors.New("this ctr's `container create` cannot select the runtime binary (containerd 1.6 has --runc-binary on `run` only): " +
					"use `vctr run` (optionally with -d), or `ctr container create` and then run its task with the runc shim's BinaryName set")
			}
			insertAt = i + 2
		}
	}
	if insertAt < 0 || userChoseRuntime(args[insertAt:]) {
		return args, nil
	}
	out := append([]string{}, args[:insertAt]...)
	out = append(out, "--runc-binary", runtime)
	return append(out, args[insertAt:]...), nil
}

// userChoseRuntime reports whether the verb's flags (up to the image
// argument) already name a runtime binary or a non-runc runtime.
func userChoseRuntime(args []string) bool {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" || !strings.HasPrefix(a, "-") {
			return false
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "runc-binary":
			return true
		case "runtime":
			if !hasVal && i+1 < len(args) {
				val = args[i+1]
			}
			if val != runcV2 {
				return true
			}
		}
	}
	return false
}

// FindRuntime returns the vxn-oci-runtime to preset: $VXN_OCI_RUNTIME,
// else DefaultRuntime, else one next to vctr's own executable, else from
// PATH.
func FindRuntime() (string, error) {
	if p := os.Getenv("VXN_OCI_RUNTIME"); p != "" {
		return p, nil
	}
	if _, err := os.Stat(DefaultRuntime); err == nil {
		return DefaultRuntime, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "vxn-oci-runtime")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("vxn-oci-runtime"); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("vxn-oci-runtime not found (looked at $VXN_OCI_RUNTIME, %s, next to vctr and in PATH)", DefaultRuntime)
}

// Main runs ctr (VCTR_CTR, default "ctr" from PATH) with the rewritten
// arguments in place of this process, so that its exit status and signals
// are ctr's own. It returns only on failure.
func Main(args []string) int {
	ctrName := os.Getenv("VCTR_CTR")
	if ctrName == "" {
		ctrName = "ctr"
	}
	ctr, err := exec.LookPath(ctrName)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vctr: containerd's ctr not found: %v\n", err)
		return 1
	}
	runtime, err := FindRuntime()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vctr: %v\n", err)
		return 1
	}
	probe := func() bool {
		out, _ := exec.Command(ctr, "container", "create", "--help").CombinedOutput()
		return strings.Contains(string(out), "runc-binary")
	}
	full, err := Rewrite(args, runtime, probe)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vctr: %v\n", err)
		return 1
	}
	err = syscall.Exec(ctr, append([]string{"ctr"}, full...), os.Environ())
	fmt.Fprintf(os.Stderr, "vctr: running %s: %v\n", ctr, err)
	return 1
}
