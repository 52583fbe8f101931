// Command xenbundle bundles Xen guests into a Dom0 root filesystem. See
// package github.com/vxn-dev/vxn/pkg/xenbundle.
package main

import (
	"os"

	"github.com/vxn-dev/vxn/pkg/xenbundle"
)

func main() { os.Exit(xenbundle.Main(os.Args[1:], os.Stdout, os.Stderr)) }
