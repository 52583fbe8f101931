package xlcfg

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// harnessC is a small C program linked against Xen's own libxlutil (from the
// libxen-dev package). "cfg FILE KEY..." parses FILE with xlu_cfg_readdata
// and prints each key's value; "disk SPEC" parses a disk spec with
// xlu_disk_parse. It prints ERR and exits 1 when xl rejects the input.
const harnessC = `
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxl.h>
#include <libxlutil.h>
#include <time.h>

static void show(XLU_Config *cfg, XLU_ConfigValue *v) {
    if (xlu_cfg_value_type(v) == XLU_STRING) {
        char *s; xlu_cfg_value_get_string(cfg, v, &s, 1);
        printf("S%zu:", strlen(s)); fwrite(s, 1, strlen(s), stdout);
    } else {
        XLU_ConfigList *l; xlu_cfg_value_get_list(cfg, v, &l, 1);
        printf("L[");
        for (int i = 0; ; i++) {
            XLU_ConfigValue *it = xlu_cfg_get_listitem2(l, i);
            if (!it) break;
            if (i) printf(",");
            show(cfg, it);
        }
        printf("]");
    }
}

int main(int argc, char **argv) {
    FILE *null = fopen("/dev/null", "w");
    XLU_Config *cfg = xlu_cfg_init(null, "h");
    if (argc >= 3 && !strcmp(argv[1], "disk")) {
        libxl_device_disk d; libxl_device_disk_init(&d);
        const char *specs[1] = { argv[2] };
        if (xlu_disk_parse(cfg, 1, specs, &d)) { printf("ERR\n"); return 1; }
        printf("target=%s|vdev=%s|format=%d|rw=%d|cdrom=%d\n",
               d.pdev_path ? d.pdev_path : "(null)", d.vdev ? d.vdev : "(null)",
               (int)d.format, d.readwrite, d.is_cdrom);
        return 0;
    }
    FILE *f = fopen(argv[2], "rb");
    static char buf[1 << 20]; size_t n = fread(buf, 1, sizeof buf, f);
    if (!strcmp(argv[1], "bench")) {
        long iters = atol(argv[3]);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < iters; i++) {
            XLU_Config *c = xlu_cfg_init(null, "h");
            if (xlu_cfg_readdata(c, buf, (int)n)) { printf("ERR\n"); return 1; }
            xlu_cfg_destroy(c);
        }
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("%lld\n", (long long)(b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
        return 0;
    }
    if (xlu_cfg_readdata(cfg, buf, (int)n)) { printf("ERR\n"); return 1; }
    printf("OK\n");
    for (int i = 3; i < argc; i++) {
        XLU_ConfigList *l; int nl;
        const char *s;
        printf("%s=", argv[i]);
        if (!xlu_cfg_get_string(cfg, argv[i], &s, 1)) {
            printf("S%zu:", strlen(s)); fwrite(s, 1, strlen(s), stdout);
        } else if (!xlu_cfg_get_list(cfg, argv[i], &l, &nl, 1)) {
            printf("L[");
            for (int j = 0; j < nl; j++) { if (j) printf(","); show(cfg, xlu_cfg_get_listitem2(l, j)); }
            printf("]");
        } else {
            printf("MISSING");
        }
        printf("\n");
    }
    return 0;
}
`

func buildHarness(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skipf("differential test against libxlutil skipped: gcc not found: %v", err)
	}
	for _, h := range []string{"/usr/include/libxlutil.h", "/usr/include/libxl.h"} {
		if _, err := os.Stat(h); err != nil {
			t.Skipf("differential test against libxlutil skipped: install libxen-dev: %v", err)
		}
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "h.c")
	bin := filepath.Join(dir, "h")
	if err := os.WriteFile(src, []byte(harnessC), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("gcc", "-std=gnu99", "-o", bin, src, "-lxlutil", "-lxenlight").CombinedOutput()
	if err != nil {
		t.Skipf("differential test against libxlutil skipped: cannot build harness: %v\n%s", err, out)
	}
	return bin
}

func showValue(b *strings.Builder, v Value) {
	if v.Kind == KindList {
		b.WriteString("L[")
		for i, it := range v.Items {
			if i > 0 {
				b.WriteByte(',')
			}
			showValue(b, it)
		}
		b.WriteString("]")
		return
	}
	fmt.Fprintf(b, "S%d:%s", len(v.Text), v.Text)
}

// xlView runs the harness on src and returns its output, or "ERR\n".
func xlView(t *testing.T, bin string, src []byte, keys []string) string {
	t.Helper()
	fn := filepath.Join(t.TempDir(), "in.cfg")
	if err := os.WriteFile(fn, src, 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(bin, append([]string{"cfg", fn}, keys...)...).Output()
	if len(out) == 0 {
		return "ERR\n" // xl died
	}
	return string(out)
}

func ourView(src []byte) (string, []string) {
	f, err := Parse("in.cfg", src)
	if err != nil {
		return "ERR\n", nil
	}
	var b strings.Builder
	b.WriteString("OK\n")
	for _, k := range f.Keys() {
		v, _ := f.Get(k)
		b.WriteString(k + "=")
		showValue(&b, v)
		b.WriteByte('\n')
	}
	return b.String(), f.Keys()
}

func diffOne(t *testing.T, bin, name string, src []byte) {
	t.Helper()
	ours, keys := ourView(src)
	theirs := xlView(t, bin, src, keys)
	if ours != theirs {
		t.Errorf("%s: xl and xlcfg disagree on %q\nxl:     %q\nxlcfg:  %q", name, src, theirs, ours)
	}
}

// TestDifferentialXL compares Parse with Xen's own libxlutil on the corpus,
// the golden inputs and outputs, and random token soup.
func TestDifferentialXL(t *testing.T) {
	bin := buildHarness(t)
	for _, fn := range corpusFiles(t) {
		src, _ := os.ReadFile(fn)
		diffOne(t, bin, fn, src)
	}
	goldens, _ := filepath.Glob(filepath.Join("testdata", "golden", "*.txtar"))
	for _, fn := range goldens {
		data, _ := os.ReadFile(fn)
		for _, part := range strings.Split(string(data), "\n-- ") {
			name, body, ok := strings.Cut(part, " --\n")
			if ok && strings.HasSuffix(name, ".cfg") {
				diffOne(t, bin, fn+":"+name, []byte(body))
			}
		}
	}
	pieces := []string{
		"a", "b1", "x.y", "_", "A", "=", "+=", "+", "-", ";", ",", "[", "]", " ", "\t", "\n", "\r",
		"#c\n", "#", "1", "0x1f", "9z", "'s'", "\"d\"", "'", "\"", "'a\\'b'", "\"\\n\"", "\"\\q\"",
		"\"\\x41\"", "(", ")", ":", ".", "é", "'\\\\'", "''",
	}
	rng := rand.New(rand.NewSource(1))
	n := 800
	if testing.Short() {
		n = 200
	}
	for i := 0; i < n; i++ {
		var b bytes.Buffer
		// Bias towards plausible statements.
		for j := rng.Intn(12); j >= 0; j-- {
			if rng.Intn(3) == 0 {
				b.WriteString(pieces[rng.Intn(len(pieces))])
				continue
			}
			b.WriteString([]string{"a", "b", "x.y"}[rng.Intn(3)])
			b.WriteString([]string{" = ", "=", " += "}[rng.Intn(3)])
			switch rng.Intn(4) {
			case 0:
				b.WriteString("'v'")
			case 1:
				b.WriteString("12")
			case 2:
				b.WriteString("[ 'p',\n 'q', ]")
			default:
				for k := rng.Intn(5); k >= 0; k-- {
					b.WriteString(pieces[rng.Intn(len(pieces))])
				}
			}
			b.WriteString([]string{"\n", ";", " # c\n", ""}[rng.Intn(4)])
		}
		diffOne(t, bin, fmt.Sprintf("random %d", i), b.Bytes())
	}
}

// TestDifferentialXLDisk compares ParseDisk with xlu_disk_parse.
func TestDifferentialXLDisk(t *testing.T) {
	bin := buildHarness(t)
	formats := map[string]int{"qcow": 1, "qcow2": 2, "vhd": 3, "raw": 4, "empty": 5, "qed": 6}
	specs := []string{
		"file:/x.img,xvda,w", "phy:/dev/loop7,xvda,w", "/path,raw,xvda,rw", "/path,qcow2,xvdb,ro",
		"format=raw, vdev=xvda, access=rw, target=/x", "vdev=xvda, target=/a,b=c:d",
		"/dev/HostVG/XenGuest2,,hda,,backendtype=phy", "/root/boot.iso,,hdc,,devtype=cdrom",
		"format=raw,vdev=hdd,access=ro,devtype=cdrom", ",,hdc:cdrom,r", "tap:aio:/img,xvda,w",
		"qcow2:/img,xvda,w", "drbd:res0,xvda,w", "  /x , raw , xvda , rw", "/x.img,xvda,w", "target=/x",
		"/x,raw,xvda,rw,extra", "foo=bar,/x,raw,xvda", "abc:/x,raw,xvda", "/x,raw,xvda,=",
		"format=raw,format=qcow2,vdev=xvda,target=/x", "cdrom,vdev=hdc", " a\n,raw,xvda", "abc:,x",
		"phy:,xvda,w,target=/dev/disk/by-id/a,b", ",raw,xvdb,rw,target=/images/b=1.img",
		"/x,raw,xvda,rw,discard,no-discard,direct-io-safe", "x,raw,xvda,rw,vdev=y", "a:b:c,raw,xvda",
		"format=raw,vdev=hdb,access=rw,backendtype=qdisk,target=rbd:pool/image:mon_host=a\\:6321\\;b",
		"/x,raw,xvda,rw,target=/y", ",raw,xvda,rw,target=/y", "/x,,xvda:disk", "iscsi:iqn.x,xvda,w",
		"aio:/x,xvda,w", "ioemu:/x,xvda,w", "tapdisk:/x,xvda,w", "tap2:/x,xvda,w", "vhd:/x,xvda,w",
		"/x,raw,xvda,rw,", "/x,raw,xvda,rw,,", "/x,raw,xvda", "/x,raw", "/x", "", ",", "=", "a=b",
		"/x,raw,xvda,ro,backend=dom1,script=block-x", "/x,raw,xvda,rw,colo,no-colo",
		"/x,raw,xvda,=", "/x,raw,xvda,=\t", "/x,raw,xvda,=x",
	}
	rng := rand.New(rand.NewSource(2))
	pieces := []string{"/x", "raw", "xvda", "rw", ",", ", ", "=", "vdev=", "target=", "format=", "phy:", "file:",
		"cdrom", ":cdrom", "access=", "ro", "qcow2", " ", "\t", "a:", "devtype=disk", "hdc", "w", "abc"}
	for i := 0; i < 400; i++ {
		var b strings.Builder
		for j := rng.Intn(8); j >= 0; j-- {
			b.WriteString(pieces[rng.Intn(len(pieces))])
		}
		specs = append(specs, b.String())
	}
	for _, spec := range specs {
		out, _ := exec.Command(bin, "disk", spec).Output()
		theirs := string(out)
		if theirs == "" {
			theirs = "ERR\n" // xl died ("flex scanner jammed")
		}
		ours := "ERR\n"
		if d, err := ParseDisk(spec); err == nil {
			target := d.Target
			if !d.HasTarget {
				target = "(null)"
			}
			rw, cd := 0, 0
			if d.ReadWrite {
				rw = 1
			}
			if d.CDROM {
				cd = 1
			}
			ours = fmt.Sprintf("target=%s|vdev=%s|format=%d|rw=%d|cdrom=%d\n", target, d.Vdev, formats[d.Format], rw, cd)
		}
		if ours != theirs {
			t.Errorf("disk spec %q: xl %q, xlcfg %q", spec, theirs, ours)
		}
	}
}

// BenchmarkParseVsXL parses the largest corpus file with Parse and, in the
// same run, with Xen's libxlutil (xlu_cfg_readdata, timed inside the C
// harness so process start-up is excluded), and reports the ratio.
func BenchmarkParseVsXL(b *testing.B) {
	bin := buildHarness(b)
	var biggest string
	var size int64
	for _, fn := range corpusFiles(b) {
		if st, err := os.Stat(fn); err == nil && st.Size() > size {
			biggest, size = fn, st.Size()
		}
	}
	src, err := os.ReadFile(biggest)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(src)))
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := Parse("b", src); err != nil {
			b.Fatal(err)
		}
	}
	ours := time.Since(start)
	b.StopTimer()
	out, err := exec.Command(bin, "bench", biggest, strconv.Itoa(b.N)).Output()
	if err != nil {
		b.Skipf("harness bench failed: %v", err)
	}
	xlNS, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil || xlNS <= 0 {
		b.Skipf("harness bench output %q: %v", out, err)
	}
	ratio := float64(ours.Nanoseconds()) / float64(xlNS)
	b.ReportMetric(float64(xlNS)/float64(b.N), "xl-ns/op")
	b.ReportMetric(ratio, "ours/xl")
	b.Logf("%s (%d bytes), N=%d: xlcfg %v, libxlutil %v, ratio xlcfg/xl = %.2f",
		filepath.Base(biggest), len(src), b.N, ours/time.Duration(b.N), time.Duration(xlNS)/time.Duration(b.N), ratio)
}
