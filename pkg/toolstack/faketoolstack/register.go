package faketoolstack

import (
	"sync"

	"github.com/vxn-dev/vxn/pkg/toolstack"
)

// Name is the toolstack name this package registers (toolstack.Register)
// when it is linked in: $VXN_TOOLSTACK=fake selects it.
const Name = "fake"

var (
	sharedOnce sync.Once
	shared     *Fake
)

// Shared returns the process's one Fake of the registered toolstack: 4 GiB
// of memory, guests running Init(ScriptProgram). Each process has its own.
func Shared() *Fake {
	sharedOnce.Do(func() {
		shared = &Fake{TotalMemoryMB: 4096, Guest: Init(ScriptProgram)}
	})
	return shared
}

func init() {
	toolstack.Register(Name, func() toolstack.Toolstack { return Shared() })
}
