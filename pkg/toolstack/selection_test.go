package toolstack

import (
	"strings"
	"testing"
)

func TestSelectionOpen(t *testing.T) {
	for _, s := range []Selection{{}, {Name: "xl", XL: "/usr/sbin/xl"}} {
		ts, err := s.Open()
		if x, ok := ts.(*XL); err != nil || !ok || x.XL != s.XL {
			t.Errorf("%+v.Open() = %#v, %v; want XL running %q", s, ts, err, s.XL)
		}
	}
	if _, err := (Selection{Name: "test-nosuch"}).Open(); err == nil || !strings.Contains(err.Error(), `"test-nosuch"`) || !strings.Contains(err.Error(), "known: xl") {
		t.Errorf("unknown toolstack: err = %v", err)
	}
	want := &XL{XL: "registered"}
	Register("test-registered", func() Toolstack { return want })
	if ts, err := (Selection{Name: "test-registered"}).Open(); err != nil || ts != want {
		t.Errorf("registered toolstack: %#v, %v", ts, err)
	}
}
