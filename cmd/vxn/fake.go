//go:build vxnfake

package main

// With -tags vxnfake the binary has the fake toolstack (VXN_TOOLSTACK=fake),
// for tests that drive the real command without Xen.
import _ "github.com/vxn-dev/vxn/pkg/toolstack/faketoolstack"
