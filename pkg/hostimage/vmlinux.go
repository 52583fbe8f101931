package hostimage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/ulikunitz/xz"
)

// xzMagic starts an XZ stream; gzipMagic a gzip member.
var (
	xzMagic   = []byte{0xFD, '7', 'z', 'X', 'Z', 0x00}
	gzipMagic = []byte{0x1f, 0x8b, 0x08}
	elfMagic  = []byte{0x7f, 'E', 'L', 'F'}
)

// maxVmlinux bounds the decompressed kernel so a hostile image cannot fill
// the disk (Debian's amd64 vmlinux is about 66 MB).
const maxVmlinux = 512 << 20

// ExtractVmlinux finds the compressed payload inside a kernel image
// (bzImage or arm64 Image.gz-style vmlinuz) and writes the uncompressed
// ELF vmlinux to w, like the kernel tree's scripts/extract-vmlinux. xl
// create loads an ELF vmlinux about 4 s faster under TCG than a bzImage,
// because libxenguest otherwise decompresses XZ in dom0 user space.
// XZ and gzip payloads are supported; the result must start with the ELF
// magic, otherwise the next candidate offset is tried.
func ExtractVmlinux(img []byte, w io.Writer) (int64, error) {
	if bytes.HasPrefix(img, elfMagic) {
		n, err := w.Write(img)
		return int64(n), err
	}
	type cand struct {
		magic []byte
		open  func(io.Reader) (io.Reader, error)
	}
	cands := []cand{
		{xzMagic, func(r io.Reader) (io.Reader, error) {
			c := xz.ReaderConfig{SingleStream: true}
			return c.NewReader(r)
		}},
		{gzipMagic, func(r io.Reader) (io.Reader, error) {
			z, err := gzip.NewReader(r)
			if err != nil {
				return nil, err
			}
			z.Multistream(false)
			return z, nil
		}},
	}
	var lastErr error = errors.New("no XZ or gzip payload found")
	for _, c := range cands {
		for off := 0; off < len(img); {
			i := bytes.Index(img[off:], c.magic)
			if i < 0 {
				break
			}
			pos := off + i
			off = pos + 1
			zr, err := c.open(bytes.NewReader(img[pos:]))
			if err != nil {
				lastErr = fmt.Errorf("offset %d: %w", pos, err)
				continue
			}
			head := make([]byte, 4)
			if _, err := io.ReadFull(zr, head); err != nil || !bytes.Equal(head, elfMagic) {
				lastErr = fmt.Errorf("offset %d: payload is not an ELF file", pos)
				continue
			}
			bw := bufio.NewWriterSize(w, 1<<20)
			if _, err := bw.Write(head); err != nil {
				return 0, err
			}
			n, err := io.Copy(bw, io.LimitReader(zr, maxVmlinux))
			// ulikunitz/xz reports bytes after the stream (the bzImage
			// trailer) with an unexported error once the whole stream,
			// index and footer have been checked.
			if err != nil && err.Error() == "xz: unexpected data after stream" {
				err = nil
			}
			if err != nil {
				return 0, fmt.Errorf("offset %d: decompress: %w", pos, err)
			}
			if n+4 >= maxVmlinux {
				return 0, fmt.Errorf("offset %d: decompressed kernel exceeds %d bytes", pos, maxVmlinux)
			}
			return n + 4, bw.Flush()
		}
	}
	return 0, fmt.Errorf("extract vmlinux: %w", lastErr)
}

// ExtractVmlinuxFile is ExtractVmlinux from file src to file dst. Kernel
// XZ payloads use the x86/ARM BCJ filter, which ulikunitz/xz does not
// implement; when the pure-Go path fails, the host's `xz --single-stream`
// (xz-utils) decompresses from each XZ magic offset instead.
func ExtractVmlinuxFile(src, dst string) error {
	img, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	_, gerr := ExtractVmlinux(img, f)
	if gerr == nil {
		return f.Close()
	}
	for off := 0; off < len(img); {
		i := bytes.Index(img[off:], xzMagic)
		if i < 0 {
			break
		}
		pos := off + i
		off = pos + 1
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			break
		}
		f.Truncate(0)
		cmd := exec.Command("xz", "-dc", "--single-stream")
		cmd.Stdin = bytes.NewReader(img[pos:])
		cmd.Stdout = f
		if err := cmd.Run(); err != nil {
			gerr = fmt.Errorf("%v; xz at offset %d: %v", gerr, pos, err)
			continue
		}
		head := make([]byte, 4)
		if _, err := f.ReadAt(head, 0); err == nil && bytes.Equal(head, elfMagic) {
			return f.Close()
		}
	}
	f.Close()
	os.Remove(dst)
	return fmt.Errorf("%s: %w", src, gerr)
}
