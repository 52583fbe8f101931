package guest

import (
	"reflect"
	"strings"
	"testing"
)

// TestLongNameMessage: a 300-character name was refused with a message
// about characters; the cause is the length limit.
func TestLongNameMessage(t *testing.T) {
	long := strings.Repeat("a", 300)
	_, err := ParseEntries(long, "local.conf:3")
	if err == nil || !strings.Contains(err.Error(), "is 300 characters long; at most 200") || strings.Contains(err.Error(), "letters, digits") {
		t.Errorf("ParseEntries: %v", err)
	}
	s := New(Entry{Name: "ok"})
	s.DomainName = long
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "is 300 characters long") {
		t.Errorf("Validate domain name: %v", err)
	}
	if _, err := ParseEntries("bad/name", ""); err == nil || !strings.Contains(err.Error(), "letters, digits") {
		t.Errorf("bad characters: %v", err)
	}
}

// TestC1ControlsRefused: YAML "extra" with U+0085 (NEL) or U+2028 (line
// separator) went into the xl config; they are refused like C0 controls.
func TestC1ControlsRefused(t *testing.T) {
	m, err := ParseManifest("g.yaml", []byte("apiVersion: xenbundle/v1\nguests:\n  - name: g\n    extra: \"root=/dev/xvda\\u2028evil=1\"\n  - name: h\n    extra: \"a\\x85b\"\n  - name: i\n    extra: \"a\\u009fb\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := m.Specs("g.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), "control character") || !strings.Contains(err.Error(), "XEN_GUEST_EXTRA") || !strings.Contains(err.Error(), "g.yaml") {
			t.Errorf("guest %s extra %q: %v", s.Name, s.Extra, err)
		}
	}
}

// TestSplitDisks: blanks after commas split one xl disk spec into several.
func TestSplitDisks(t *testing.T) {
	for in, want := range map[string][]string{
		"phy:/dev/sdb,xvdb,w":                        {"phy:/dev/sdb,xvdb,w"},
		"phy:/dev/sdb, xvdb, w":                      {"phy:/dev/sdb,xvdb,w"},
		"phy:/dev/sdb ,xvdb ,w file:/a.img,xvdc,r":   {"phy:/dev/sdb,xvdb,w", "file:/a.img,xvdc,r"},
		" phy:/dev/sdb,  xvdb,w\tfile:/a.img, xvdc ": {"phy:/dev/sdb,xvdb,w", "file:/a.img,xvdc"},
		"": nil,
	} {
		if got := SplitDisks(in); !reflect.DeepEqual(got, want) {
			t.Errorf("SplitDisks(%q) = %q, want %q", in, got, want)
		}
	}
}
