package xenbundle

import (
	"github.com/vxn-dev/vxn/pkg/bbconf"
)

// varsAdapter lets guest.FromVars read a bbconf store and say where each
// value was set.
type varsAdapter struct{ d *bbconf.Data }

func (a varsAdapter) Get(name string) (string, bool, error) { return a.d.Get(name) }

func (a varsAdapter) GetFlag(name, flag string) (string, bool, error) {
	return a.d.GetFlag(name, flag)
}
