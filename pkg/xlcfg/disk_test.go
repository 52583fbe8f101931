package xlcfg

import (
	"strings"
	"testing"
)

func TestParseDisk(t *testing.T) {
	type want struct {
		target, format, vdev string
		rw, cdrom, keyed     bool
		backendType, script  string
		prefixes             string
	}
	tests := []struct {
		spec string
		want want
	}{
		{"file:/x.img,xvda,w", want{target: "/x.img", format: "raw", vdev: "xvda", rw: true, prefixes: "file"}},
		{"phy:/dev/loop7,xvda,w", want{target: "/dev/loop7", format: "raw", vdev: "xvda", rw: true, prefixes: "phy"}},
		{"/path,raw,xvda,rw", want{target: "/path", format: "raw", vdev: "xvda", rw: true}},
		{"/path,qcow2,xvdb,ro", want{target: "/path", format: "qcow2", vdev: "xvdb"}},
		{"format=raw, vdev=xvda, access=rw, target=/x", want{target: "/x", format: "raw", vdev: "xvda", rw: true, keyed: true}},
		{"vdev=xvda, target=/a,b=c:d", want{target: "/a,b=c:d", format: "raw", vdev: "xvda", rw: true, keyed: true}},
		{"target=/x,", want{}}, // no vdev: error, see TestParseDiskErrors
		{"/dev/HostVG/XenGuest2,,hda,,backendtype=phy", want{target: "/dev/HostVG/XenGuest2", format: "raw", vdev: "hda", rw: true, backendType: "phy"}},
		{"/root/boot.iso,,hdc,,devtype=cdrom", want{target: "/root/boot.iso", format: "raw", vdev: "hdc", cdrom: true}},
		{"format=raw,vdev=hdd,access=ro,devtype=cdrom", want{format: "empty", vdev: "hdd", cdrom: true}},
		{",,hdc:cdrom,r", want{format: "empty", vdev: "hdc", cdrom: true}},
		{"tap:aio:/img,xvda,w", want{target: "/img", format: "raw", vdev: "xvda", rw: true, prefixes: "tap aio"}},
		{"qcow2:/img,xvda,w", want{target: "/img", format: "qcow2", vdev: "xvda", rw: true, prefixes: "qcow2"}},
		{"drbd:res0,xvda,w", want{target: "res0", format: "raw", vdev: "xvda", rw: true, script: "block-drbd", prefixes: "drbd"}},
		{"  /x , raw , xvda , rw", want{target: "/x ", format: "", vdev: "", rw: true}}, // error: "raw " is not a format
		{"format=raw,vdev=hdb,access=rw,backendtype=qdisk,target=rbd:pool/image:mon_host=a\\:6321\\;b\\:6322",
			want{target: `rbd:pool/image:mon_host=a\:6321\;b\:6322`, format: "raw", vdev: "hdb", rw: true, backendType: "qdisk", keyed: true}},
		{"/x,raw,xvda,rw,discard,trusted", want{target: "/x", format: "raw", vdev: "xvda", rw: true}},
		{"cdrom,vdev=hdc", want{format: "empty", vdev: "hdc", cdrom: true}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			d, err := ParseDisk(tt.spec)
			if tt.want == (want{}) || (tt.want.vdev == "" && tt.want.format == "") {
				if err == nil {
					t.Fatalf("ParseDisk succeeded: %+v", d)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDisk: %v", err)
			}
			got := want{d.Target, d.Format, d.Vdev, d.ReadWrite, d.CDROM, d.TargetKeyed, d.BackendType, d.Script, strings.Join(d.Prefixes, " ")}
			if got != tt.want {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseDiskErrors(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"/x.img,xvda,w", "unknown value for format"},
		{"target=/x", "no vdev specified"},
		{"format=raw,vdev=xvda", "no target specified"},
		{"/x,raw,xvda,rw,extra", "too many positional parameters"},
		{"/x,raw,xvda,rwx", "unknown value for access"},
		{"foo=bar,/x,raw,xvda", "unknown parameter"},
		{"abc:/x,raw,xvda", "unknown deprecated disk prefix"},
		{"/x,raw,xvda,=x", "bad disk syntax"},
		{"format=raw,format=qcow2,vdev=xvda,target=/x", "format respecified"},
		{"vdev=xvda,vdev=xvdb,target=/x", "vdev respecified"},
		{"devtype=floppy,vdev=xvda,target=/x", "unknown value for type"},
		{"backendtype=nbd,vdev=xvda,target=/x", "unknown value for backendtype"},
		{"/x,raw,xvda:floppy", "unknown deprecated type"},
		{"", "no vdev specified"},
		{"a\x00b", "NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			_, err := ParseDisk(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestWithTarget(t *testing.T) {
	tests := []struct{ spec, target, want string }{
		{"file:/x.img,xvda,w", "/var/lib/xen/images/y.img", "file:/var/lib/xen/images/y.img,xvda,w"},
		{"/x,raw,xvda,rw", "/y", "/y,raw,xvda,rw"},
		{"  /x,raw,xvda,rw", "/y", "  /y,raw,xvda,rw"},
		{"format=raw, vdev=xvda, access=rw, target=/x", "/new/path", "format=raw, vdev=xvda, access=rw, target=/new/path"},
		{"format=raw,vdev=xvda,target=/x,", "/y", "format=raw,vdev=xvda,target=/y,"},
		{"format=raw,vdev=hdb,target=rbd:pool/a\\:1", `rbd:pool/b\:2`, `format=raw,vdev=hdb,target=rbd:pool/b\:2`},
		{"/x,raw,xvda,rw", "/a,b", ",raw,xvda,rw,target=/a,b"},
		{"phy:/dev/x,xvda,w", "/dev/a=b", "phy:,xvda,w,target=/dev/a=b"},
		{"/x,raw,xvda,rw", "cdrom", ",raw,xvda,rw,target=cdrom"},
	}
	for _, tt := range tests {
		t.Run(tt.spec+"->"+tt.target, func(t *testing.T) {
			d, err := ParseDisk(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			got, err := d.WithTarget(tt.target)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("WithTarget = %q, want %q", got, tt.want)
			}
			nd, err := ParseDisk(got)
			if err != nil || nd.Target != tt.target {
				t.Fatalf("re-parse: %+v %v", nd, err)
			}
		})
	}
	d, _ := ParseDisk("format=raw,vdev=hdd,devtype=cdrom")
	if _, err := d.WithTarget("/x"); err == nil {
		t.Errorf("WithTarget on a target-less spec succeeded")
	}
	d, _ = ParseDisk("/x,raw,xvda,rw")
	if _, err := d.WithTarget("a\nb"); err == nil {
		t.Errorf("WithTarget with newline succeeded")
	}
}

func TestKeyedSpec(t *testing.T) {
	for _, spec := range []string{"phy:/dev/loop7,xvda,w", "/p,qcow2,hdc:cdrom,r", "/x,raw,xvda,rw,discard,untrusted,backendtype=qdisk"} {
		d, err := ParseDisk(spec)
		if err != nil {
			t.Fatal(err)
		}
		k := d.KeyedSpec()
		nd, err := ParseDisk(k)
		if err != nil {
			t.Fatalf("%s -> %s: %v", spec, k, err)
		}
		d.Prefixes = nil // deprecated prefixes have no keyed equivalent
		if !d.sameExceptTarget(nd) || nd.Target != d.Target {
			t.Errorf("%s -> %s: %+v != %+v", spec, k, d, nd)
		}
	}
}

func TestValidate(t *testing.T) {
	bad := []struct {
		name string
		err  error
	}{
		{"disk comma positional", ValidateDiskTarget("/a,b", false)},
		{"disk eq positional", ValidateDiskTarget("/a=b", false)},
		{"disk quote", ValidateDiskTarget(`/a"b`, true)},
		{"disk bracket", ValidateDiskTarget("/a]b", true)},
		{"disk newline", ValidateDiskTarget("/a\nb", true)},
		{"disk empty", ValidateDiskTarget("", true)},
		{"disk keyword", ValidateDiskTarget("cdrom", false)},
		{"disk blank start", ValidateDiskTarget(" /x", false)},
		{"spec bad", ValidateDiskSpec("/x,xvda,w")},
		{"spec quote", ValidateDiskSpec("'/x',raw,xvda,w")},
		{"vif quote", ValidateVifSpec(`bridge="br0"`)},
		{"vif unknown", ValidateVifSpec("bridge=br0,colour=red")},
		{"vif no eq", ValidateVifSpec("bridge")},
		{"vif newline", ValidateVifSpec("bridge=br0\n")},
		{"value nul", ValidateValue("a\x00")},
		{"value cr", ValidateValue("a\r")},
		{"name empty", ValidateName("")},
	}
	for _, b := range bad {
		if b.err == nil {
			t.Errorf("%s: validation passed, want an error", b.name)
		}
	}
	good := []struct {
		name string
		err  error
	}{
		{"disk keyed comma", ValidateDiskTarget("/a,b", true)},
		{"disk positional", ValidateDiskTarget("/var/lib/xen/images/a.ext4", false)},
		{"rbd", ValidateDiskTarget(`rbd:pool/image:mon_host=a\:6321`, true)},
		{"spec", ValidateDiskSpec("file:/var/lib/xen/images/a.ext4,xvda,rw")},
		{"vif", ValidateVifSpec("bridge=xenbr0")},
		{"vif empty", ValidateVifSpec("")},
		{"vif many", ValidateVifSpec("mac=00:16:3e:00:00:01, bridge=br0,ip=10.0.0.2 10.0.0.3,model=e1000,rate=10Mb/s,trusted")},
	}
	for _, g := range good {
		if g.err != nil {
			t.Errorf("%s: %v", g.name, g.err)
		}
	}
}

func FuzzParseDisk(f *testing.F) {
	for _, s := range []string{
		"file:/x.img,xvda,w", "phy:/dev/loop7,xvda,w", "/path,raw,xvda,rw",
		"format=raw, vdev=xvda, access=rw, target=/x", ",,hdc:cdrom,r",
		"format=raw,vdev=hdb,access=rw,backendtype=qdisk,target=rbd:pool/image:mon_host=a\\:6321",
		"tap:aio:/img,xvda,w", "abc:,x", " a\n,b", "foo=b,", "\n", "target=x\ny,vdev=z",
		"colo-port=12,vdev=x,target=y", "cdrom,vdev=hdc",
	} {
		f.Add(s, "/new/target")
	}
	f.Fuzz(func(t *testing.T, spec, target string) {
		d, err := ParseDisk(spec)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if d.Spec != spec {
			t.Fatalf("Spec not kept")
		}
		if d.HasTarget && d.targetStart >= 0 && spec[d.targetStart:d.targetEnd] != d.Target {
			t.Fatalf("target span %d:%d = %q, Target %q", d.targetStart, d.targetEnd, spec[d.targetStart:d.targetEnd], d.Target)
		}
		if d.HasTarget {
			ns, err := d.WithTarget(target)
			if err == nil {
				nd, err := ParseDisk(ns)
				if err != nil || nd.Target != target || !d.sameExceptTarget(nd) {
					t.Fatalf("WithTarget(%q) = %q re-parses to %+v, %v", target, ns, nd, err)
				}
			}
		}
	})
}
