package toolstack

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const xlList = `Name                                        ID   Mem VCPUs	State	Time(s)
Domain-0                                     0   512     2     r-----      12.3
vxn-0123456789ab                             3   128     1     -b----       0.5
odd name                                    14    64     1     --p---       0.0
`

const xlInfo = `host                   : dom0
release                : 6.1.0-55-amd64
xen_major              : 4
xen_version            : 4.17.7
nr_cpus                : 2
total_memory           : 1023
free_memory            : 498
xen_commandline        : console=com1 dom0_mem=512M
`

func TestParseList(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []Domain
		err      string
	}{
		{name: "typical", in: xlList, want: []Domain{
			{Name: "Domain-0", ID: 0, MemoryMB: 512, VCPUs: 2, State: "r-----"},
			{Name: "vxn-0123456789ab", ID: 3, MemoryMB: 128, VCPUs: 1, State: "-b----"},
			{Name: "odd name", ID: 14, MemoryMB: 64, VCPUs: 1, State: "--p---"},
		}},
		{name: "header only", in: "Name ID Mem VCPUs State Time(s)\n", want: nil},
		{name: "crlf", in: strings.ReplaceAll(xlList, "\n", "\r\n"), want: []Domain{
			{Name: "Domain-0", ID: 0, MemoryMB: 512, VCPUs: 2, State: "r-----"},
			{Name: "vxn-0123456789ab", ID: 3, MemoryMB: 128, VCPUs: 1, State: "-b----"},
			{Name: "odd name", ID: 14, MemoryMB: 64, VCPUs: 1, State: "--p---"},
		}},
		{name: "empty", in: "", err: "empty"},
		{name: "no header", in: "Domain-0 0 512 2 r----- 1.0\n", err: "line 1: expected the header"},
		{name: "short line", in: "Name ID\nDomain-0 0 512\n", err: "line 2: expected 6 columns"},
		{name: "bad number", in: "Name ID\nx y 512 2 r----- 1.0\n", err: "line 2: expected numbers"},
		{name: "negative", in: "Name ID\nx -1 512 2 r----- 1.0\n", err: "line 2: expected numbers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseList([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("-want +got:\n%s", d)
			}
		})
	}
}

func TestParseInfo(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Info
		err      string
	}{
		{name: "typical", in: xlInfo, want: Info{TotalMemoryMB: 1023, FreeMemoryMB: 498, XenVersion: "4.17.7", NrCPUs: 2}},
		{name: "minimal", in: "total_memory:10\nfree_memory : 0\n", want: Info{TotalMemoryMB: 10}},
		{name: "no free", in: "total_memory : 10\n", err: "no free_memory line"},
		{name: "bad free", in: "total_memory : 10\nfree_memory : lots\n", err: `line 2: free_memory: expected a non-negative number, got "lots"`},
		{name: "empty", in: "", err: "no total_memory line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseInfo([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("-want +got:\n%s", d)
			}
		})
	}
}

func TestParseDomID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{{"3\n", 3, true}, {" 0 ", 0, true}, {"", 0, false}, {"-1", 0, false}, {"x", 0, false}} {
		got, err := ParseDomID([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseDomID(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParseXL(f *testing.F) {
	for _, s := range []string{xlList, xlInfo, "3\n", "", "Name\n\x00 1 2 3 4 5\n", "free_memory: 99999999999999999999999\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if doms, err := ParseList([]byte(s)); err == nil {
			for _, d := range doms {
				if d.ID < 0 || d.MemoryMB < 0 || d.VCPUs < 0 {
					t.Fatalf("negative field accepted: %+v", d)
				}
			}
		}
		if info, err := ParseInfo([]byte(s)); err == nil && (info.FreeMemoryMB < 0 || info.TotalMemoryMB < 0) {
			t.Fatalf("negative memory accepted: %+v", info)
		}
		if id, err := ParseDomID([]byte(s)); err == nil && id < 0 {
			t.Fatalf("negative id accepted: %d", id)
		}
	})
}
