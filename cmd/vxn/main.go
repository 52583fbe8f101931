// Command vxn runs OCI containers as Xen guests on Dom0; see pkg/vxncli.
// Called vdkr or vpdmn (links to it), it is the Docker-like or Podman-like
// front-end over the same code.
package main

import (
	"os"

	"github.com/vxn-dev/vxn/pkg/container"
	"github.com/vxn-dev/vxn/pkg/vxncli"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == container.MonitorArg {
		os.Exit(container.MonitorMain())
	}
	os.Exit(vxncli.Main(os.Args[1:]))
}
