package hostimage

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

func TestEngineConfig(t *testing.T) {
	var dj struct {
		Runtimes map[string]struct {
			Path string `json:"path"`
		} `json:"runtimes"`
		Bridge   string `json:"bridge"`
		IPTables *bool  `json:"iptables"`
	}
	if err := json.Unmarshal([]byte(engineFiles["etc/docker/daemon.json"]), &dj); err != nil {
		t.Fatalf("daemon.json: %v", err)
	}
	if dj.Runtimes["vxn"].Path != EngineRuntimeBinary || dj.Bridge != "none" || dj.IPTables == nil || *dj.IPTables {
		t.Errorf("daemon.json: runtimes %v bridge %q iptables %v", dj.Runtimes, dj.Bridge, dj.IPTables)
	}
	for _, f := range []string{"etc/containerd/config.toml", "etc/containers/containers.conf.d/vxn.conf"} {
		if !strings.Contains(engineFiles[f], `"`+EngineRuntimeBinary+`"`) {
			t.Errorf("%s does not name %s", f, EngineRuntimeBinary)
		}
	}
	if !strings.Contains(engineFiles["etc/containers/containers.conf.d/vxn.conf"], `netns = "none"`) {
		t.Error("containers.conf drop-in: Podman's default netns must be none")
	}
}

// TestScriptSyntax checks the Dom0 shell scripts with sh -n.
func TestScriptSyntax(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh: %v", err)
	}
	for name, s := range map[string]string{"network": dom0Network, "udhcpc.script": udhcpcScript, "engines": fmt.Sprintf(enginesScript, ShippedImagesDir),
		"initramfs init": initramfsInit, "rcS": rcS, "rcK": rcK,
		"block": fmt.Sprintf(blockScript, "usr/lib/xen-4.17"), "xendomains-check": fmt.Sprintf(autostartCheck, "usr/lib/xen-4.17", AutostartStatusFile),
		"xendomains-boot": fmt.Sprintf(xendomainsWrap, "usr/lib/xen-4.17")} {
		cmd := exec.Command(sh, "-n")
		cmd.Stdin = strings.NewReader(s)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: sh -n: %v\n%s", name, err, out)
		}
	}
}
