package ociruntime

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var testLimits = Limits{DefaultMemoryMB: 128, MinMemoryMB: 96, MaxMemoryMB: 1024, DefaultVCPUs: 1, MaxVCPUs: 4}

// minimalSpec is what `ctr run` writes, cut down.
func minimalSpec() *specs.Spec {
	return &specs.Spec{
		Version:  "1.0.2-dev",
		Process:  &specs.Process{Args: []string{"sh", "-c", "echo 'a  b' $X"}, Env: []string{"PATH=/bin", "X=1=2"}, Cwd: "/work", User: specs.User{UID: 1000, GID: 100}},
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "box",
	}
}

func TestMapSpecProcess(t *testing.T) {
	pl, err := MapSpec(minimalSpec(), "/b", testLimits)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pl.Args, "|") != "sh|-c|echo 'a  b' $X" {
		t.Errorf("args not verbatim: %q", pl.Args)
	}
	if strings.Join(pl.Env, "|") != "PATH=/bin|X=1=2" || pl.Cwd != "/work" || pl.User != "1000:100" || pl.Hostname != "box" {
		t.Errorf("process mapped wrongly: %+v", pl)
	}
	if pl.RootFS != filepath.Join("/b", "rootfs") || pl.MemoryMB != 128 || pl.VCPUs != 1 {
		t.Errorf("root/size mapped wrongly: %+v", pl)
	}
	if len(pl.Warnings) != 0 {
		t.Errorf("unexpected warnings %q", pl.Warnings)
	}
}

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }
func u32(v uint32) *uint32 { return &v }

func TestMapSpecResources(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mem, quota  *int64
		period      *uint64
		wantMem     int
		wantVCPU    int
		wantWarning string
	}{
		{"none", nil, nil, nil, 128, 1, ""},
		{"memory 256M", i64(256 << 20), nil, nil, 256, 1, ""},
		{"memory rounded up", i64(200<<20 + 1), nil, nil, 201, 1, ""},
		{"memory below floor", i64(16 << 20), nil, nil, 96, 1, "below the guest minimum"},
		{"memory above max", i64(8 << 30), nil, nil, 1024, 1, "above the guest maximum"},
		{"quota 1.5 cpus", nil, i64(150000), u64(100000), 128, 2, ""},
		{"quota default period", nil, i64(300000), nil, 128, 3, ""},
		{"quota above max", nil, i64(1600000), u64(100000), 128, 4, "the guest gets 4 vcpus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := minimalSpec()
			s.Linux = &specs.Linux{Resources: &specs.LinuxResources{}}
			if tc.mem != nil {
				s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: tc.mem}
			}
			if tc.quota != nil {
				s.Linux.Resources.CPU = &specs.LinuxCPU{Quota: tc.quota, Period: tc.period}
			}
			pl, err := MapSpec(s, "/b", testLimits)
			if err != nil {
				t.Fatal(err)
			}
			if pl.MemoryMB != tc.wantMem || pl.VCPUs != tc.wantVCPU {
				t.Errorf("got %d MB %d vcpus, want %d MB %d vcpus", pl.MemoryMB, pl.VCPUs, tc.wantMem, tc.wantVCPU)
			}
			w := strings.Join(pl.Warnings, "\n")
			if (tc.wantWarning == "") != (w == "") || !strings.Contains(w, tc.wantWarning) {
				t.Errorf("warnings %q, want %q", w, tc.wantWarning)
			}
		})
	}
}

func TestMapSpecMountsAndUnsupported(t *testing.T) {
	s := minimalSpec()
	s.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts"},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup"},
		{Destination: "/etc/hosts", Type: "bind", Source: "/var/lib/x/hosts", Options: []string{"rbind", "ro"}},
		{Destination: "/data", Source: "/srv/data", Options: []string{"bind"}},
		{Destination: "/rel", Type: "bind", Source: "relsrc"},
		{Destination: "/dev/shm", Type: "bind", Source: "/var/lib/x/shm"},
		{Destination: "/dev/kmsg", Type: "bind", Source: "/dev/kmsg"},
		{Destination: "/scratch", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/nfs", Type: "nfs", Source: "server:/x"},
	}
	s.Root.Readonly = true
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}}
	s.Process.User.AdditionalGids = []uint32{100, 10}
	s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/true"}}}
	s.Linux = &specs.Linux{
		Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "network", Path: "/proc/1/ns/net"}},
		Seccomp:    &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_ERRNO"},
		Resources:  &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(100)}},
	}
	pl, err := MapSpec(s, "/b", testLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := []Copy{{"/var/lib/x/hosts", "/etc/hosts"}, {"/srv/data", "/data"}, {"/b/relsrc", "/rel"}}
	if len(pl.Copies) != len(want) {
		t.Fatalf("copies %v, want %v", pl.Copies, want)
	}
	for i := range want {
		if pl.Copies[i] != want[i] {
			t.Errorf("copy %d = %v, want %v", i, pl.Copies[i], want[i])
		}
	}
	if !pl.ReadOnly {
		t.Error("root.readonly lost")
	}
	w := strings.Join(pl.Warnings, "\n")
	for _, s := range []string{"/etc/hosts, /data, /rel", "root.readonly", "namespaces (pid,network", "linux.seccomp",
		"process.capabilities", "additionalGids (10)", "hooks (prestart)", "cgroup resources pids",
		"/dev/shm (bind of /var/lib/x/shm)", "/dev/kmsg (bind of /dev/kmsg)", "/scratch (tmpfs)", "/nfs (nfs)"} {
		if !strings.Contains(w, s) {
			t.Errorf("warnings lack %q:\n%s", s, w)
		}
	}
	// One line for everything ignored: reported once, not per item.
	if n := strings.Count(w, "not applicable to a VM"); n != 1 {
		t.Errorf("%d 'not applicable' lines, want 1:\n%s", n, w)
	}
	for _, quiet := range []string{"/proc", "/dev/pts", "/sys/fs/cgroup"} {
		if strings.Contains(w, quiet+" (") {
			t.Errorf("guest-provided mount %s reported:\n%s", quiet, w)
		}
	}
}

func TestMapSpecErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(s *specs.Spec)
		want string
	}{
		{"no process", func(s *specs.Spec) { s.Process = nil }, "no process"},
		{"empty args", func(s *specs.Spec) { s.Process.Args = nil }, "process.args is empty"},
		{"relative cwd", func(s *specs.Spec) { s.Process.Cwd = "work" }, "process.cwd"},
		{"bad env", func(s *specs.Spec) { s.Process.Env = []string{"NOVALUE"} }, "process.env[0]"},
		{"no root", func(s *specs.Spec) { s.Root = nil }, "root.path"},
		{"relative mount", func(s *specs.Spec) { s.Mounts = []specs.Mount{{Destination: "x", Type: "bind", Source: "/a"}} }, "mounts[0].destination"},
		{"bind over root", func(s *specs.Spec) { s.Mounts = []specs.Mount{{Destination: "/", Type: "bind", Source: "/a"}} }, "over /"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := minimalSpec()
			tc.edit(s)
			_, err := MapSpec(s, "/b", testLimits)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseSpecVersions(t *testing.T) {
	for v, ok := range map[string]bool{"1.0.0": true, "1.0.2-dev": true, "1.2.0": true, "1.3.0": true, "0.6.0": false, "2.0.0": false, "": false} {
		b, _ := json.Marshal(map[string]any{"ociVersion": v})
		_, err := ParseSpec("config.json", b)
		if (err == nil) != ok {
			t.Errorf("ociVersion %q: err %v, want ok=%v", v, err, ok)
		}
	}
	if _, err := ParseSpec("config.json", []byte("{")); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("bad JSON: %v", err)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"9": 9, "KILL": 9, "SIGKILL": 9, "sigterm": 15, "term": 15, "SIGUSR1": 10, "HUP": 1, "SIGRTMIN": 34, "RTMIN+2": 36, "SIGRTMAX": 64, "WINCH": 28} {
		got, err := ParseSignal(in)
		if err != nil || int(got) != want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "65", "-1", "SIGFOO", "RTMIN+40", "RTMINx"} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) accepted", bad)
		}
	}
}

// FuzzMapSpec feeds arbitrary config.json bytes through the mapping: it
// must never panic, and a successful plan must be runnable.
func FuzzMapSpec(f *testing.F) {
	b, _ := json.Marshal(minimalSpec())
	f.Add(b)
	f.Add([]byte(`{"ociVersion":"1.0.0","process":{"args":["a"],"cwd":"/"},"root":{"path":"/r"},"mounts":[{"destination":"/x","type":"bind","source":"y"}],"linux":{"resources":{"memory":{"limit":-5},"cpu":{"quota":-1,"period":0}}}}`))
	f.Add([]byte(`{"ociVersion":"1.1","process":{"args":["a"],"cwd":"/","env":["A=b"],"user":{"uid":4294967295,"gid":0,"umask":18}},"root":{"path":"r","readonly":true},"linux":{"resources":{"cpu":{"quota":9223372036854775807,"period":1}}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSpec("config.json", data)
		if err != nil {
			return
		}
		pl, err := MapSpec(s, "/bundle", testLimits)
		if err != nil {
			return
		}
		if len(pl.Args) == 0 || pl.Args[0] == "" || !strings.HasPrefix(pl.Cwd, "/") || !filepath.IsAbs(pl.RootFS) {
			t.Fatalf("unrunnable plan accepted: %+v", pl)
		}
		if pl.MemoryMB < testLimits.MinMemoryMB && pl.MemoryMB != testLimits.DefaultMemoryMB || pl.MemoryMB > testLimits.MaxMemoryMB {
			t.Fatalf("memory %d out of bounds", pl.MemoryMB)
		}
		if pl.VCPUs < 1 || pl.VCPUs > testLimits.MaxVCPUs {
			t.Fatalf("vcpus %d out of bounds", pl.VCPUs)
		}
		for _, c := range pl.Copies {
			if !strings.HasPrefix(c.Dest, "/") || c.Dest == "/" || hostOnly(c.Source) {
				t.Fatalf("bad copy %+v", c)
			}
		}
	})
}

// FuzzParseProcess: exec's process.json parser never panics and rejects
// what cannot run.
func FuzzParseProcess(f *testing.F) {
	f.Add([]byte(`{"args":["sh","-c","exit 3"],"env":["A=1"],"cwd":"/","user":{"uid":0,"gid":0},"terminal":false}`))
	f.Add([]byte(`{"args":[""]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseProcess("process.json", data)
		if err != nil {
			return
		}
		if len(r.Args) == 0 || r.Args[0] == "" {
			t.Fatalf("empty args accepted: %+v", r)
		}
	})
}
