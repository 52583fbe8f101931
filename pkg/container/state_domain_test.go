package container

import "testing"

func TestDomainNameUnique(t *testing.T) {
	hex64 := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for id, want := range map[string]string{
		hex64:          "vxn-0123456789ab",
		"c1":           "vxn-c1",
		"web-server-1": "vxn-web-server-1",
	} {
		if got := DomainName(id); got != want {
			t.Errorf("DomainName(%q) = %q, want %q", id, got, want)
		}
	}
	seen := map[string]string{}
	for _, id := range []string{"web-server-1", "web-server-2", "a+b", "a_b", "x" + hex64, "y" + hex64,
		"0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"} {
		d := DomainName(id)
		if other, ok := seen[d]; ok {
			t.Errorf("ids %q and %q share the domain name %q", id, other, d)
		}
		seen[d] = id
		if len(d) > 4+40 {
			t.Errorf("DomainName(%q) = %q: too long", id, d)
		}
	}
}
