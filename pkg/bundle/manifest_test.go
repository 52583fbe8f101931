package bundle_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/vxn-dev/vxn/pkg/bundle"
)

const sum1 = "ccc361f40fab041651429d3f7caa6f2e8cf76364af09d03a3d4cd9a6c34a9484"
const sum2 = "d1fd05ef37923989878ab2755f9dce5afe52b301da754c7ad08b6215ea70652e"

func sampleManifest() *bundle.Manifest {
	return &bundle.Manifest{SchemaVersion: 1, Bundle: "my-guests", Version: "1.0", Guests: []bundle.Guest{
		{Name: "win", DomainName: "win", Type: "hvm", KernelMode: "none", Memory: 2048, VCPUs: 2, DiskDevice: "hda", ConfigFrom: "custom",
			Files: []bundle.File{{Role: "config", Path: "configs/win.cfg", SHA256: sum2, Size: 10}, {Role: "rootfs", Path: "images/win.img", SHA256: sum1, Size: 1 << 30}}},
		{Name: "alpine", DomainName: "alpine", Autostart: true, External: true, Type: "pv", KernelMode: "shared", Memory: 256, VCPUs: 1, DiskDevice: "xvda", ConfigFrom: "generated",
			Notice: bundle.RedistributionNotice,
			Files: []bundle.File{{Role: "rootfs", Path: "images/alpine.img", SHA256: sum1, Size: 128 << 20}, {Role: "kernel", Path: "images/bzImage", SHA256: sum2, Size: 9},
				{Role: "config", Path: "configs/alpine.cfg", SHA256: sum2, Size: 200}}},
	}}
}

func TestManifestRoundTrip(t *testing.T) {
	m := sampleManifest()
	data, err := m.Marshal()
	must(t, err)
	got, err := bundle.ParseManifest("manifest.json", data)
	must(t, err)
	// Marshal sorts guests by name and files by role.
	want := sampleManifest()
	want.Guests[0], want.Guests[1] = want.Guests[1], want.Guests[0]
	want.Guests[1].Files[0], want.Guests[1].Files[1] = want.Guests[1].Files[1], want.Guests[1].Files[0]
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("round trip (-want +got):\n%s", d)
	}
	again, err := got.Marshal()
	must(t, err)
	if string(again) != string(data) {
		t.Errorf("Marshal is not canonical")
	}
	if line := string(got.LineManifest()); line != "alpine:alpine.img:bzImage:autostart\nwin:win.img::\n" {
		t.Errorf("line manifest %q", line)
	}
	if p := got.Paths(); strings.Join(p, " ") != "configs/alpine.cfg configs/win.cfg images/alpine.img images/bzImage images/win.img" {
		t.Errorf("Paths: %v", p)
	}
}

func TestParseManifestErrors(t *testing.T) {
	good, err := sampleManifest().Marshal()
	must(t, err)
	edit := func(old, new string) string {
		if !strings.Contains(string(good), old) {
			t.Fatalf("sample lacks %q", old)
		}
		return strings.Replace(string(good), old, new, 1)
	}
	cases := []struct{ name, in, want string }{
		{"empty", "", "manifest.json: empty file"},
		{"not json", "schemaVersion: 1\n", "manifest.json:1:1: invalid JSON"},
		{"no version", `{"bundle": "x"}`, "schemaVersion is missing"},
		{"newer", `{"schemaVersion": 2, "somethingNew": true}`, "schemaVersion 2 is newer than this xenbundle understands (1)"},
		{"zero", `{"schemaVersion": 0}`, "schemaVersion 0 is invalid"},
		{"unknown field", edit(`"bundle":`, `"color": "red", "bundle":`), `unknown field "color"`},
		{"wrong type", edit(`"memory": 256`, `"memory": "256"`), "manifest.json:13:22: field guests.memory: expected int"},
		{"trailing data", string(good) + "{}", "manifest.json:67:1: invalid JSON: invalid character '{' after top-level value"},
		{"bad bundle name", edit(`"bundle": "my-guests"`, `"bundle": "My Guests"`), `bundle "My Guests": invalid bundle name`},
		{"bad version", edit(`"version": "1.0"`, `"version": "v1"`), `version "v1": invalid`},
		{"escape", edit(`"images/alpine.img"`, `"images/../../etc/passwd"`), `invalid path`},
		{"absolute", edit(`"images/bzImage"`, `"/boot/bzImage"`), `must be under images/`},
		{"config name", edit(`"configs/alpine.cfg"`, `"configs/other.cfg"`), `the config must be configs/alpine.cfg`},
		{"bad digest", edit(`"`+sum1+`"`, `"abc"`), `is not 64 lower-case hex digits`},
		{"upper digest", edit(`"`+sum1+`"`, `"`+strings.ToUpper(sum1)+`"`), `is not 64 lower-case hex digits`},
		{"no rootfs", edit(`"role": "rootfs"`, `"role": "ramdisk"`), `no rootfs file`},
		{"unknown role", edit(`"role": "rootfs"`, `"role": "firmware"`), `unknown role "firmware"`},
		{"kernel none pv", edit(`"kernelMode": "none"`, `"kernelMode": "none", "notice": ""`), ""},
		{"arm guest type", edit(`"type": "pv"`, `"type": ""`), ""},
		{"bad type", edit(`"type": "pv"`, `"type": "xen"`), `type "xen"`},
		{"kernel mode", edit(`"kernelMode": "shared"`, `"kernelMode": "vendor"`), `kernelMode "vendor"`},
		{"duplicate guest", edit(`"name": "win"`, `"name": "alpine"`), `listed twice`},
		{"duplicate domain", edit(`"domainName": "win"`, `"domainName": "alpine"`), `domainName "alpine" is also used by guest "alpine"`},
		{"memory", edit(`"memory": 256`, `"memory": 1`), `memory 1 MB out of range`},
		{"negative size", edit(`"size": 9`, `"size": -9`), `negative size -9`},
		{"no guests", `{"schemaVersion": 1, "bundle": "aa", "version": "1", "guests": []}`, `no guests`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := bundle.ParseManifest("manifest.json", []byte(c.in))
			if c.want == "" {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want it to contain %q", err, c.want)
			}
			var me *bundle.ManifestError
			if err != nil && !errors.As(err, &me) {
				t.Errorf("error is %T, not *ManifestError", err)
			}
		})
	}
	if _, err := bundle.ParseManifest("big.json", make([]byte, bundle.MaxManifestSize+1)); err == nil || !strings.Contains(err.Error(), "more than the") {
		t.Errorf("oversized manifest: %v", err)
	}
}

// FuzzParseManifest: any input is rejected with an error or parses into a
// manifest that validates and survives a canonical round trip.
func FuzzParseManifest(f *testing.F) {
	good, _ := sampleManifest().Marshal()
	f.Add(good)
	f.Add([]byte(`{"schemaVersion": 1}`))
	f.Add([]byte(`{"schemaVersion": 99}`))
	f.Add([]byte(`{"schemaVersion": 1, "bundle": "aa", "version": "1", "guests": [{"name": "g"}]}`))
	f.Add([]byte(`[1, 2`))
	f.Add([]byte("{\"schemaVersion\":1,\n\"guests\":[{\"files\":[{\"path\":\"../x\"}]}]}"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := bundle.ParseManifest("fuzz.json", data)
		if err != nil {
			if m != nil {
				t.Fatal("manifest and error both returned")
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("parsed manifest does not validate: %v", err)
		}
		for _, p := range m.Paths() {
			if strings.Contains(p, "..") || strings.HasPrefix(p, "/") {
				t.Fatalf("unsafe path accepted: %q", p)
			}
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		m2, err := bundle.ParseManifest("again.json", out)
		if err != nil {
			t.Fatalf("re-parse of marshalled manifest: %v\n%s", err, out)
		}
		out2, _ := m2.Marshal()
		if string(out) != string(out2) {
			t.Fatalf("not canonical:\n%s\n%s", out, out2)
		}
	})
}
