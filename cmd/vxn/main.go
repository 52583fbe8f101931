// Command vxn runs OCI containers as Xen guests on Dom0; see pkg/vxncli.
package main

import (
	"os"

	"github.com/vxn-dev/vxn/pkg/vxncli"
)

func main() { os.Exit(vxncli.Main(os.Args[1:])) }
