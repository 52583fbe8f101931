package xenbundle

import (
	"fmt"

	"github.com/vxn-dev/vxn/pkg/bbconf"
)

// varsAdapter lets guest.FromVars read a bbconf store and say where each
// value was set.
type varsAdapter struct{ d *bbconf.Data }

func (a varsAdapter) Get(name string) (string, bool, error) { return a.d.Get(name) }

func (a varsAdapter) GetFlag(name, flag string) (string, bool, error) {
	return a.d.GetFlag(name, flag)
}

// Where implements guest.Originer: the last place name (or name[flag])
// was set, as "file:line" ("--set" for command-line values).
func (a varsAdapter) Where(name, flag string) string {
	var pos []bbconf.Position
	if flag == "" {
		pos = a.d.Origin(name)
	} else {
		pos = a.d.FlagOrigin(name, flag)
	}
	if len(pos) == 0 {
		return ""
	}
	p := pos[len(pos)-1]
	if p.Line == 0 {
		return "command line"
	}
	return fmt.Sprintf("%s:%d", p.File, p.Line)
}
