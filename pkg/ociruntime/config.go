package ociruntime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Limits bound what a config.json may ask of a guest.
type Limits struct {
	// DefaultMemoryMB is the guest memory without linux.resources.memory.limit.
	DefaultMemoryMB int
	// MinMemoryMB and MaxMemoryMB bound a memory limit (a guest needs room
	// for its kernel; the host has only so much).
	MinMemoryMB, MaxMemoryMB int
	// DefaultVCPUs is the vcpu count without a cpu quota; MaxVCPUs bounds it.
	DefaultVCPUs, MaxVCPUs int
}

// Copy is one bind mount copied into the guest disk at create: a read-only
// snapshot of Source (a host file or directory) at Dest in the container.
type Copy struct {
	// Source is the host path, Dest the absolute path in the container.
	Source, Dest string
}

// GuestSpec is what a bundle's config.json asks for, mapped onto a guest.
type GuestSpec struct {
	// Args, Env, Cwd and User are the process; User is "uid:gid".
	Args, Env []string
	Cwd, User string
	// TTY is process.terminal.
	TTY bool
	// Hostname is the container's host name ("" = the runtime's default).
	Hostname string
	// RootFS is the absolute path of root.path; ReadOnly is root.readonly.
	RootFS   string
	ReadOnly bool
	// MemoryMB and VCPUs size the guest.
	MemoryMB, VCPUs int
	// Copies are the bind mounts copied into the guest disk.
	Copies []Copy
	// Annotations are the config's annotations.
	Annotations map[string]string
	// Warnings say what of the config a VM cannot honour, one line each
	// (the runtime logs them once per create).
	Warnings []string
}

// guestMounts are the destinations where the guest's init mounts its own
// file systems of the kind an engine asks for (proc, sysfs, devpts, tmpfs,
// mqueue, cgroup): asking for them again is not an error and needs no
// warning.
var guestMounts = map[string]bool{
	"/proc": true, "/dev": true, "/dev/pts": true, "/dev/shm": true, "/dev/mqueue": true,
	"/sys": true, "/sys/fs/cgroup": true, "/run": true, "/tmp": true,
}

// kernelFSTypes are the mount types the guest kernel provides itself.
var kernelFSTypes = map[string]bool{
	"proc": true, "sysfs": true, "devpts": true, "tmpfs": true, "mqueue": true,
	"cgroup": true, "cgroup2": true, "devtmpfs": true, "shm": true,
}

// hostOnlyPrefixes are host paths whose bind mounts make no sense in a guest
// (its own /dev, /proc and /sys are the guest kernel's).
var hostOnlyPrefixes = []string{"/dev", "/proc", "/sys"}

// LoadSpec reads and parses <bundle>/config.json.
func LoadSpec(bundle string) (*specs.Spec, error) {
	p := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	return ParseSpec(p, b)
}

// ParseSpec parses a config.json; name is used in errors. Any 1.x ociVersion
// is accepted (containerd 1.6 writes 1.0.x specs).
func ParseSpec(name string, b []byte) (*specs.Spec, error) {
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: not a valid runtime spec: %w", name, err)
	}
	if !strings.HasPrefix(s.Version, "1.") {
		return nil, fmt.Errorf("%s: ociVersion %q: expected a 1.x runtime spec", name, s.Version)
	}
	return &s, nil
}

// MapSpec maps a parsed config.json onto a guest. bundle is the bundle
// directory (root.path is relative to it). It checks what the runtime cannot
// work without and lists what it cannot honour in GuestSpec.Warnings.
func MapSpec(s *specs.Spec, bundle string, lim Limits) (*GuestSpec, error) {
	if err := checkProcess(s.Process); err != nil {
		return nil, err
	}
	if s.Root == nil || s.Root.Path == "" {
		return nil, errors.New("config.json: no root.path: expected the bundle's root file system")
	}
	root := s.Root.Path
	if !filepath.IsAbs(root) {
		root = filepath.Join(bundle, root)
	}
	p := s.Process
	g := &GuestSpec{
		Args: p.Args, Env: p.Env, Cwd: p.Cwd, TTY: p.Terminal,
		User:     strconv.FormatUint(uint64(p.User.UID), 10) + ":" + strconv.FormatUint(uint64(p.User.GID), 10),
		Hostname: s.Hostname, RootFS: filepath.Clean(root), ReadOnly: s.Root.Readonly,
		MemoryMB: lim.DefaultMemoryMB, VCPUs: lim.DefaultVCPUs, Annotations: s.Annotations,
	}
	ignored := ignoredProcess(p, s.Hooks)
	if l := s.Linux; l != nil {
		ignored = append(ignored, ignoredLinux(l)...)
		if l.Resources != nil {
			ignored = append(ignored, g.mapResources(l.Resources, lim)...)
		}
	}
	skipped, err := g.mapMounts(s.Mounts, bundle)
	if err != nil {
		return nil, err
	}
	if len(skipped) > 0 {
		ignored = append(ignored, "mounts "+strings.Join(skipped, ", "))
	}
	if len(g.Copies) > 0 {
		var ds []string
		for _, c := range g.Copies {
			ds = append(ds, c.Dest)
		}
		g.Warnings = append(g.Warnings, "bind mounts are copied into the guest disk at create (read-only snapshot, changes are not shared): "+strings.Join(ds, ", "))
	}
	if g.ReadOnly {
		g.Warnings = append(g.Warnings, "root.readonly: the guest writes to a throw-away layer; the bundle's rootfs is never modified")
	}
	if len(ignored) > 0 {
		sort.Strings(ignored)
		g.Warnings = append(g.Warnings, "not applicable to a VM, ignored: "+strings.Join(ignored, "; "))
	}
	return g, nil
}

// checkProcess checks what the runtime cannot work without: the command,
// an absolute working directory, well-formed env and args.
func checkProcess(p *specs.Process) error {
	if p == nil {
		return errors.New("config.json: no process: expected process.args")
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return errors.New("config.json: process.args is empty: expected the command to run")
	}
	if p.Cwd == "" || !path.IsAbs(p.Cwd) {
		return fmt.Errorf("config.json: process.cwd %q: expected an absolute path", p.Cwd)
	}
	for i, e := range p.Env {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") || strings.ContainsRune(e, 0) {
			return fmt.Errorf("config.json: process.env[%d] %q: expected KEY=VALUE", i, e)
		}
	}
	for i, a := range p.Args {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("config.json: process.args[%d] contains a NUL byte", i)
		}
	}
	return nil
}

// ignoredProcess lists the process settings and hooks a VM does not honour.
func ignoredProcess(p *specs.Process, h *specs.Hooks) []string {
	var ignored []string
	ignore := func(what string) { ignored = append(ignored, what) }
	var extra []string
	for _, g := range p.User.AdditionalGids {
		if g != p.User.GID {
			extra = append(extra, strconv.FormatUint(uint64(g), 10))
		}
	}
	if len(extra) > 0 {
		ignore("process.user.additionalGids (" + strings.Join(extra, ",") + ")")
	}
	if p.User.Umask != nil && *p.User.Umask != 0o022 {
		ignore(fmt.Sprintf("process.user.umask (%04o)", *p.User.Umask))
	}
	for _, x := range []struct {
		set  bool
		what string
	}{
		{p.Capabilities != nil, "process.capabilities"},
		{len(p.Rlimits) > 0, "process.rlimits"},
		{p.NoNewPrivileges, "process.noNewPrivileges"},
		{p.ApparmorProfile != "", "process.apparmorProfile"},
		{p.SelinuxLabel != "", "process.selinuxLabel"},
		{p.OOMScoreAdj != nil, "process.oomScoreAdj"},
		{p.Scheduler != nil || p.IOPriority != nil || p.ExecCPUAffinity != nil, "process scheduling (scheduler, ioPriority, execCPUAffinity)"},
	} {
		if x.set {
			ignore(x.what)
		}
	}
	if h != nil {
		var hs []string
		for _, x := range []struct {
			name string
			n    int
		}{{"prestart", len(h.Prestart)}, {"createRuntime", len(h.CreateRuntime)}, {"createContainer", len(h.CreateContainer)},
			{"startContainer", len(h.StartContainer)}, {"poststart", len(h.Poststart)}, {"poststop", len(h.Poststop)}} {
			if x.n > 0 {
				hs = append(hs, x.name)
			}
		}
		if len(hs) > 0 {
			ignore("hooks (" + strings.Join(hs, ",") + ")")
		}
	}
	return ignored
}

// ignoredLinux lists the linux settings (other than resources) a VM does
// not honour.
func ignoredLinux(l *specs.Linux) []string {
	var ignored []string
	var ns []string
	for _, n := range l.Namespaces {
		ns = append(ns, string(n.Type))
	}
	if len(ns) > 0 {
		ignored = append(ignored, "linux.namespaces ("+strings.Join(ns, ",")+": the VM is the isolation)")
	}
	for _, x := range []struct {
		set  bool
		what string
	}{
		{len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0, "linux.uidMappings/gidMappings"},
		{l.Seccomp != nil, "linux.seccomp"},
		{len(l.Sysctl) > 0, "linux.sysctl"},
		{len(l.Devices) > 0, "linux.devices"},
		{len(l.MaskedPaths) > 0 || len(l.ReadonlyPaths) > 0, "linux.maskedPaths/readonlyPaths"},
		{l.MountLabel != "", "linux.mountLabel"},
		{l.IntelRdt != nil, "linux.intelRdt"},
	} {
		if x.set {
			ignored = append(ignored, x.what)
		}
	}
	return ignored
}

// mapResources sizes the guest from the memory limit and the CPU quota
// and returns the cgroup settings it cannot honour.
func (g *GuestSpec) mapResources(r *specs.LinuxResources, lim Limits) []string {
	var cg []string
	if r.Memory != nil {
		if r.Memory.Limit != nil && *r.Memory.Limit > 0 {
			mb64 := (uint64(*r.Memory.Limit) + (1 << 20) - 1) >> 20
			mb := 1 << 30
			if mb64 < 1<<30 {
				mb = int(mb64)
			}
			switch {
			case lim.MinMemoryMB > 0 && mb < lim.MinMemoryMB:
				g.Warnings = append(g.Warnings, fmt.Sprintf("linux.resources.memory.limit %d MB is below the guest minimum; the guest gets %d MB", mb, lim.MinMemoryMB))
				mb = lim.MinMemoryMB
			case lim.MaxMemoryMB > 0 && mb > lim.MaxMemoryMB:
				g.Warnings = append(g.Warnings, fmt.Sprintf("linux.resources.memory.limit %d MB is above the guest maximum; the guest gets %d MB", mb, lim.MaxMemoryMB))
				mb = lim.MaxMemoryMB
			}
			g.MemoryMB = mb
		}
		if r.Memory.Reservation != nil || r.Memory.Swap != nil || r.Memory.Kernel != nil || r.Memory.Swappiness != nil {
			cg = append(cg, "memory (reservation, swap, kernel, swappiness)")
		}
	}
	if c := r.CPU; c != nil {
		if c.Quota != nil && *c.Quota > 0 {
			period := uint64(100000)
			if c.Period != nil && *c.Period > 0 {
				period = *c.Period
			}
			q := uint64(*c.Quota)
			n64 := q / period
			if q%period != 0 {
				n64++
			}
			n := 1
			if n64 > 1<<16 {
				n = 1 << 16
			} else if n64 > 1 {
				n = int(n64)
			}
			if lim.MaxVCPUs > 0 && n > lim.MaxVCPUs {
				g.Warnings = append(g.Warnings, fmt.Sprintf("linux.resources.cpu quota asks for %d CPUs; the guest gets %d vcpus", n, lim.MaxVCPUs))
				n = lim.MaxVCPUs
			}
			g.VCPUs = n
		}
		if c.Shares != nil || c.Cpus != "" || c.Mems != "" || c.RealtimeRuntime != nil || c.RealtimePeriod != nil || c.Idle != nil || c.Burst != nil {
			cg = append(cg, "cpu (shares, cpuset, realtime, idle, burst)")
		}
	}
	for _, x := range []struct {
		set  bool
		what string
	}{
		{r.Pids != nil, "pids"}, {r.BlockIO != nil, "blockIO"}, {len(r.HugepageLimits) > 0, "hugepageLimits"},
		{r.Network != nil, "network"}, {len(r.Rdma) > 0 || len(r.Unified) > 0, "rdma/unified"},
	} {
		if x.set {
			cg = append(cg, x.what)
		}
	}
	if len(cg) > 0 {
		return []string{"cgroup resources " + strings.Join(cg, ", ")}
	}
	return nil
}

// mapMounts turns bind mounts into copies into the guest disk and returns
// the mounts it skips (the guest mounts its own kernel file systems).
func (g *GuestSpec) mapMounts(mounts []specs.Mount, bundle string) ([]string, error) {
	var skipped []string
	for i, m := range mounts {
		dest := m.Destination
		if !path.IsAbs(dest) {
			return nil, fmt.Errorf("config.json: mounts[%d].destination %q: expected an absolute path", i, dest)
		}
		dest = path.Clean(dest)
		bind := m.Type == "bind" || hasOption(m.Options, "bind") || hasOption(m.Options, "rbind")
		switch {
		case bind:
			if dest == "/" {
				return nil, fmt.Errorf("config.json: mounts[%d]: a bind mount over / is not supported", i)
			}
			src := m.Source
			if !filepath.IsAbs(src) {
				src = filepath.Join(bundle, src)
			}
			src = filepath.Clean(src)
			if hostOnly(src) || hostOnly(dest) {
				// The guest's /dev, /proc and /sys are its kernel's.
				skipped = append(skipped, dest+" (bind of "+src+")")
				continue
			}
			g.Copies = append(g.Copies, Copy{Source: src, Dest: dest})
		case kernelFSTypes[m.Type]:
			if !guestMounts[dest] && !strings.HasPrefix(dest, "/dev/") && !strings.HasPrefix(dest, "/sys/") && !strings.HasPrefix(dest, "/proc/") {
				skipped = append(skipped, dest+" ("+m.Type+")")
			}
		default:
			skipped = append(skipped, dest+" ("+m.Type+")")
		}
	}
	return skipped, nil
}

func hasOption(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

func hostOnly(p string) bool {
	for _, pre := range hostOnlyPrefixes {
		if p == pre || strings.HasPrefix(p, pre+"/") {
			return true
		}
	}
	return false
}
