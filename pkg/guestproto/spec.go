package guestproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"net/netip"
	"strings"
)

// MaxSpec is the largest encoded job spec: environment and arguments of
// several megabytes work, as with runc (whose limit is the kernel's,
// about a quarter of the stack limit, 2 MiB by default, per execve).
const MaxSpec = 32 << 20

// Spec is the job vxn-init runs: everything Dom0 decided about the
// container. It is sent as one TypeSpec frame after the guest's Ready.
type Spec struct {
	// Args is the entrypoint's argv, executed verbatim (no shell). Args[0]
	// without a slash is looked up in the PATH of Env inside the container.
	Args []string `json:"args"`
	// Env is the environment as KEY=VALUE; PATH, HOME and HOSTNAME get
	// docker's defaults when missing.
	Env []string `json:"env,omitempty"`
	// Cwd is the working directory inside the container ("" = "/"); it is
	// created when missing, as docker does.
	Cwd string `json:"cwd,omitempty"`
	// User is docker's -u: "", "name", "uid", "name:group", "uid:gid".
	// Names are resolved through the container's /etc/passwd and /etc/group.
	User string `json:"user,omitempty"`
	// Hostname is set with sethostname(2) when non-empty.
	Hostname string `json:"hostname,omitempty"`
	// ResolvConf, when non-empty, is written to /etc/resolv.conf.
	ResolvConf string `json:"resolv_conf,omitempty"`
	// Net configures the guest's network interface (the vif of
	// --network bridge); nil leaves only the loopback.
	Net *Net `json:"net,omitempty"`
	// TTY runs the entrypoint on a terminal: output comes as Stdout frames
	// only (see the package doc).
	TTY bool `json:"tty,omitempty"`
	// Stdin keeps the container's stdin open and fed by Stdin frames;
	// otherwise it is /dev/null.
	Stdin bool `json:"stdin,omitempty"`

	// RootDev is the read-only image disk, a name under /dev ("xvda" under
	// Xen, "vda" under QEMU virtio). Default "xvda".
	RootDev string `json:"root_dev,omitempty"`
	// RootFSType is its file system type. Default "ext4".
	RootFSType string `json:"root_fstype,omitempty"`
	// ScratchDev, when set, is an ext4 disk holding the writable layer;
	// otherwise the writable layer is a tmpfs.
	ScratchDev string `json:"scratch_dev,omitempty"`
	// TmpfsSize is the tmpfs size= option ("" = kernel default, half of RAM).
	TmpfsSize string `json:"tmpfs_size,omitempty"`
}

// Net is a static IPv4 configuration of one guest interface, applied by
// vxn-init before the entrypoint starts.
type Net struct {
	// Interface is the interface name; default "eth0" (the first vif).
	Interface string `json:"interface,omitempty"`
	// Address is the interface's address with its prefix length
	// ("10.0.2.15/24").
	Address string `json:"address"`
	// Gateway, when set, becomes the default route.
	Gateway string `json:"gateway,omitempty"`
	// DNS are name servers; when set and ResolvConf is empty, vxn-init
	// writes them to /etc/resolv.conf.
	DNS []string `json:"dns,omitempty"`
}

// Validate checks the addresses (IPv4 only).
func (n *Net) Validate() error {
	if len(n.Interface) > 15 || strings.ContainsAny(n.Interface, "/ \x00") {
		return fmt.Errorf("job spec: net.interface %q: want an interface name of at most 15 characters", n.Interface)
	}
	p, err := netip.ParsePrefix(n.Address)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("job spec: net.address %q: want an IPv4 address with prefix length, like 10.0.2.15/24", n.Address)
	}
	if n.Gateway != "" {
		g, err := netip.ParseAddr(n.Gateway)
		if err != nil || !g.Is4() {
			return fmt.Errorf("job spec: net.gateway %q: want an IPv4 address", n.Gateway)
		}
	}
	for i, d := range n.DNS {
		if a, err := netip.ParseAddr(d); err != nil || a.Zone() != "" {
			return fmt.Errorf("job spec: net.dns[%d] %q: want an IP address", i, d)
		}
	}
	return nil
}

// Validate checks what vxn-init cannot work without.
func (s *Spec) Validate() error {
	if len(s.Args) == 0 || s.Args[0] == "" {
		return fmt.Errorf("job spec: empty argv (no entrypoint and no command)")
	}
	if s.Net != nil {
		if err := s.Net.Validate(); err != nil {
			return err
		}
	}
	for i, e := range s.Env {
		if e == "" || e[0] == '=' || !containsByte(e, '=') {
			return fmt.Errorf("job spec: env[%d] %q is not KEY=VALUE", i, e)
		}
	}
	return nil
}

func containsByte(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}

// Marshal encodes the spec for SendSpec: JSON of at most MaxSpec bytes.
func (s *Spec) Marshal() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxSpec {
		return nil, fmt.Errorf("job spec is %d bytes encoded (%d environment variables, %d arguments), more than the limit of %d bytes: pass large data in a file or on a volume instead of the environment or the command line", len(b), len(s.Env), len(s.Args), MaxSpec)
	}
	return b, nil
}

// marshalPayload encodes v as JSON for one control frame, refusing what
// does not fit in MaxPayload.
func marshalPayload(what string, v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("%s is %d bytes encoded, the limit is %d (too much environment?)", what, len(b), MaxPayload)
	}
	return b, nil
}

// ParseSpec decodes and validates a TypeSpec payload.
func ParseSpec(b []byte) (*Spec, error) {
	var s Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("job spec: %w", err)
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// SendSpec validates and sends the spec: one TypeSpec frame when its JSON
// fits in MaxPayload; otherwise the JSON in TypeSpecPart frames of
// MaxPayload bytes, then a TypeSpec frame holding a SpecParts summary
// (count, length, CRC-32) that lets the receiver check it got them all.
// Use a SpecReader to receive.
func (w *Writer) SendSpec(s *Spec) error {
	b, err := s.Marshal()
	if err != nil {
		return err
	}
	if len(b) <= MaxPayload {
		return w.WriteFrame(TypeSpec, b)
	}
	sum := SpecParts{Bytes: len(b), CRC32: crc32.ChecksumIEEE(b)}
	for p := b; len(p) > 0; {
		n := min(len(p), MaxPayload)
		if err := w.WriteFrame(TypeSpecPart, p[:n]); err != nil {
			return err
		}
		sum.Parts++
		p = p[n:]
	}
	j, err := json.Marshal(struct {
		Parts SpecParts `json:"spec_parts"`
	}{sum})
	if err != nil {
		return err
	}
	return w.WriteFrame(TypeSpec, j)
}

// SpecParts ends a job spec sent in TypeSpecPart frames: the TypeSpec
// frame's payload is {"spec_parts": {...}}.
type SpecParts struct {
	Parts int    `json:"parts"`
	Bytes int    `json:"bytes"`
	CRC32 uint32 `json:"crc32"`
}

// SpecReader reassembles a job spec from the frames SendSpec writes. Its
// memory is bounded by MaxSpec.
type SpecReader struct {
	buf   []byte
	parts int
	over  bool
}

// Frame takes a TypeSpecPart or TypeSpec frame (others are ignored). On a
// TypeSpec frame it returns the spec, or an error saying what is wrong
// (parts missing, too large, invalid), and starts over.
func (r *SpecReader) Frame(f Frame) (*Spec, error) {
	switch f.Type {
	case TypeSpecPart:
		if len(r.buf)+len(f.Payload) > MaxSpec {
			r.over = true
			return nil, nil
		}
		r.buf = append(r.buf, f.Payload...)
		r.parts++
		return nil, nil
	case TypeSpec:
	default:
		return nil, nil
	}
	buf, parts, over := r.buf, r.parts, r.over
	*r = SpecReader{}
	if !bytes.Contains(f.Payload[:min(len(f.Payload), 32)], []byte(`"spec_parts"`)) {
		if parts > 0 {
			return nil, fmt.Errorf("job spec: %d spec part frames (%d bytes) came before a complete spec", parts, len(buf))
		}
		return ParseSpec(f.Payload)
	}
	var sum struct {
		Parts *SpecParts `json:"spec_parts"`
	}
	if err := json.Unmarshal(f.Payload, &sum); err != nil || sum.Parts == nil {
		return nil, fmt.Errorf("job spec: bad spec_parts summary: %v", err)
	}
	switch {
	case over || sum.Parts.Bytes > MaxSpec:
		return nil, fmt.Errorf("job spec: %d bytes, more than the limit of %d", max(sum.Parts.Bytes, len(buf)), MaxSpec)
	case parts != sum.Parts.Parts || len(buf) != sum.Parts.Bytes:
		return nil, fmt.Errorf("job spec: received %d parts (%d bytes) of %d (%d bytes): frames were lost on the console", parts, len(buf), sum.Parts.Parts, sum.Parts.Bytes)
	case crc32.ChecksumIEEE(buf) != sum.Parts.CRC32:
		return nil, errors.New("job spec: the parts' checksum does not match: the console corrupted them")
	}
	return ParseSpec(buf)
}

// ReadyInfo is the payload of TypeReady.
type ReadyInfo struct {
	Version int `json:"version"` // protocol version, 1
	// UptimeMS is the guest's uptime (CLOCK_BOOTTIME) when init was ready.
	UptimeMS int64 `json:"uptime_ms"`
	// InitMS is the time spent in vxn-init so far (mounts, modules).
	InitMS int64 `json:"init_ms"`
	// Kernel is the kernel release (uname -r).
	Kernel string `json:"kernel,omitempty"`
}

// StartedInfo is the payload of TypeStarted.
type StartedInfo struct {
	// UptimeMS is the guest uptime when the entrypoint was started.
	UptimeMS int64 `json:"uptime_ms"`
	// InitMS is the time from vxn-init's start to the entrypoint's exec,
	// not counting the wait for the spec.
	InitMS int64 `json:"init_ms"`
	// Pid is the entrypoint's pid in the guest.
	Pid int `json:"pid"`
}
