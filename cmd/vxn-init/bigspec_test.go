package main

import (
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vxn-dev/vxn/pkg/guestproto"
)

// TestConsoleLargeSpec: a job spec whose env and args exceed one frame
// (64 KiB) reaches the job over the console, in parts. Before, Dom0 could
// not send it and the guest waited for a spec forever.
func TestConsoleLargeSpec(t *testing.T) {
	for _, n := range []int{10, 70, 3 << 10} { // KiB
		spec := &guestproto.Spec{Args: []string{"echo", "hi"}}
		for i := 0; i < n; i++ {
			spec.Env = append(spec.Env, fmt.Sprintf("V%d=%s", i, strings.Repeat("e", 1000)))
		}
		g := newGuest(time.Now())
		g.w = guestproto.NewWriter(io.Discard)
		cr, cw := io.Pipe()
		go g.readConsole(cr)
		go func() {
			if err := guestproto.NewWriter(cw).SendSpec(spec); err != nil {
				cw.CloseWithError(err)
			}
		}()
		select {
		case got := <-g.specs:
			if !reflect.DeepEqual(got, spec) {
				t.Fatalf("%d KiB: the spec changed on the console", n)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d KiB: no spec after 10 s", n)
		}
		cw.Close()
	}
}
