// Command vctr is containerd's ctr with the vxn runtime preset; see pkg/vctr.
package main

import (
	"os"

	"github.com/vxn-dev/vxn/pkg/vctr"
)

func main() { os.Exit(vctr.Main(os.Args[1:])) }
