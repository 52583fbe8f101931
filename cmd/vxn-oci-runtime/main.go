// Command vxn-oci-runtime is an OCI runtime (runc's command line) that runs
// each container as a Xen guest; see pkg/ociruntime.
package main

import (
	"os"

	"github.com/vxn-dev/vxn/pkg/container"
	"github.com/vxn-dev/vxn/pkg/ociruntime"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == container.MonitorArg {
		os.Exit(container.MonitorMain())
	}
	os.Exit(ociruntime.Main(os.Args[1:], ociruntime.ContainerEngine{}))
}
