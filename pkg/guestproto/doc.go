// Package guestproto is the wire protocol between vxn on Dom0 and vxn-init,
// the PID 1 of a vxn guest, over the guest's console (hvc0 under Xen, a
// serial port under plain QEMU).
//
// # Why the console, and why this framing
//
// The console is the one channel every guest has with no extra device, no
// device model (Xen PV consoles beyond hvc0 and vchans need more toolstack
// parts) and no guest drivers beyond what the kernel has built in. It is
// also shared: the kernel prints there, a Go runtime panic lands there, and
// the bytes pass through tty layers, xenconsoled and ptys that may add
// carriage returns. Upstream vxn prints merged output between text markers
// after the container exits; one kernel message in the middle corrupts it.
//
// Every message is therefore one self-checking text line (a frame):
//
//	#vxn:TSSSSSSSSCCCCCCCC<base64 payload>\n
//
// "#vxn:" is the marker, T one type letter, S the 32-bit sequence number and
// C the CRC-32 (IEEE) of T, the big-endian sequence number and the payload,
// both as 8 lower-case hex digits, then the payload in standard padded
// base64. A trailing '\r' (added by a tty's ONLCR) is ignored. Frames are
// printable ASCII, so they survive any tty mode, terminal multiplexer
// (QEMU's Ctrl-A mux) or log file, and payloads are binary-safe.
//
// The reader works line by line and keeps only what follows the last marker
// in a line, so text printed before a frame on the same line (a kernel
// message without a newline) is skipped. Anything else that is not a valid
// frame (bad characters, wrong CRC, too long) is counted as garbage and
// dropped; the next line resynchronises. A line longer than MaxLine is
// discarded without being buffered, so memory stays bounded whatever
// arrives. A kernel message printed in the middle of a frame destroys that
// frame: the sequence numbers make the loss visible (Stats.Lost, and
// ErrOutputLost from Demux) instead of silently corrupting output. The
// guest side additionally makes such messages rare: the kernel runs with
// `quiet loglevel=0`, vxn-init turns console logging down with syslog(2),
// and Dom0 may point `console=` at a different device than vxn.console=.
//
// Payload data frames are at most ChunkSize bytes (3 KiB), so one lost
// frame loses at most that much; control frames may be up to MaxPayload.
//
// # Session
//
// Guest → Dom0: Ready once the init is up and modules are loaded, then
// Started when the entrypoint has been executed (timings as JSON), Stdout and
// Stderr data while the container runs (streamed, never merged), Log lines
// from the init, Fatal when the init itself fails, and finally Exit with the
// decimal exit status (0–255; death by signal n is 128+n).
//
// Dom0 → guest: Spec (the JSON job spec, sent after Ready; one larger
// than MaxPayload, up to MaxSpec, comes as SpecPart frames followed by a
// Spec frame with their count, length and CRC-32, see SpecReader), Stdin data,
// StdinClose (EOF), Signal (a decimal signal number to forward).
//
// The job spec travels over the console instead of the kernel command line
// or a file: the kernel command line of a Xen guest is visible in Dom0
// (`xl list -l`, `ps` of `xl create` when passed with -e / extra=, the xl
// config file) and inside the guest in /proc/cmdline, and a config disk is
// a file on Dom0 that must be created, protected and removed. Console input
// is not logged by xenconsoled, vxn-init disables echo before announcing
// Ready, and the spec lives only in the memory of vxn and vxn-init.
//
// A terminal (Spec.TTY, -t): vxn-init runs the entrypoint on a pty pair of
// the container's devpts, as its controlling terminal, and pumps the
// master's output as Stdout frames only (the terminal merges stderr and
// turns "\n" into "\r\n"); Stdin frames are written to the master
// unchanged, StdinClose becomes the terminal's EOF character (^D), and
// Window frames (rows, cols) set the terminal size. Exec sessions work the
// same way with ExecSpec.TTY (see exec.go).
//
// Exit status fallback: just before the Exit frame, vxn-init writes the
// decimal status to the xenstore key data/vxn-exit of its domain (under
// Xen only), for Dom0 to read when the Exit frame was lost.
package guestproto
