package vctr

import (
	"strings"
	"testing"
)

func TestRewrite(t *testing.T) {
	yes := func() bool { return true }
	no := func() bool { return false }
	for _, tc := range []struct {
		in, want string
		create   func() bool
		err      string
	}{
		{"run --rm docker.io/library/busybox:latest c1 echo hello", "run --runc-binary /rt --rm docker.io/library/busybox:latest c1 echo hello", yes, ""},
		{"-n k8s.io --address /run/c.sock run -t img c1", "-n k8s.io --address /run/c.sock run --runc-binary /rt -t img c1", yes, ""},
		{"--namespace=x run img c1", "--namespace=x run --runc-binary /rt img c1", yes, ""},
		{"run --runc-binary /other img c1", "run --runc-binary /other img c1", yes, ""},
		{"run --runtime io.containerd.kata.v2 img c1", "run --runtime io.containerd.kata.v2 img c1", yes, ""},
		{"run --runtime=io.containerd.runc.v2 img c1", "run --runc-binary /rt --runtime=io.containerd.runc.v2 img c1", yes, ""},
		{"run img c1 --runc-binary x", "run --runc-binary /rt img c1 --runc-binary x", yes, ""},
		{"container create img c1", "container create --runc-binary /rt img c1", yes, ""},
		{"c create img c1", "", no, "cannot select the runtime binary"},
		{"images ls", "images ls", no, ""},
		{"task kill -s SIGKILL c1", "task kill -s SIGKILL c1", no, ""},
		{"--debug", "--debug", no, ""},
		{"", "", no, ""},
	} {
		got, err := Rewrite(strings.Fields(tc.in), "/rt", tc.create)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("%q -> %q, %v; want %q", tc.in, strings.Join(got, " "), err, tc.want)
		}
	}
}
