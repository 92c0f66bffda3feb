package images

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// compressor compresses an export stream with the zstd tool when present
// (multi-threaded, checksummed) and with gzip from the standard library
// otherwise.
type compressor struct {
	w    io.WriteCloser
	cmd  *exec.Cmd
	errb *bytes.Buffer
	done bool
}

func newCompressor(w io.Writer) (*compressor, error) {
	if _, err := exec.LookPath("zstd"); err != nil {
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
		return &compressor{w: zw}, nil
	}
	cmd := exec.Command("zstd", "-q", "-3", "-T0", "--check", "-c")
	cmd.Stdout = w
	errb := &bytes.Buffer{}
	cmd.Stderr = errb
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("start zstd: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start zstd: %w", err)
	}
	return &compressor{w: in, cmd: cmd, errb: errb}, nil
}

func (c *compressor) Write(p []byte) (int, error) { return c.w.Write(p) }

// Close flushes the stream and waits for zstd.
func (c *compressor) Close() error {
	c.done = true
	err := c.w.Close()
	if c.cmd != nil {
		if werr := c.cmd.Wait(); werr != nil {
			return fmt.Errorf("zstd: %w: %s", werr, strings.TrimSpace(c.errb.String()))
		}
	}
	return err
}

// abort stops an unfinished compression (after an error).
func (c *compressor) abort() {
	if c.done {
		return
	}
	c.done = true
	if c.cmd != nil {
		c.cmd.Process.Kill()
		c.w.Close()
		c.cmd.Wait()
	}
}

// decompressor reads an export stream compressed with zstd or gzip.
type decompressor struct {
	r    io.Reader
	gz   *gzip.Reader
	cmd  *exec.Cmd
	out  io.ReadCloser
	errb *bytes.Buffer
	done bool
}

func newDecompressor(r io.Reader) (*decompressor, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}): // zstd
		if _, err := exec.LookPath("zstd"); err != nil {
			return nil, errors.New("import: archive is zstd-compressed and zstd is not installed (apt-get install zstd)")
		}
		cmd := exec.Command("zstd", "-q", "-d", "-c")
		cmd.Stdin = br
		errb := &bytes.Buffer{}
		cmd.Stderr = errb
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("import: start zstd: %w", err)
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("import: start zstd: %w", err)
		}
		return &decompressor{r: out, cmd: cmd, out: out, errb: errb}, nil
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}): // gzip
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("import: not an image archive: %w", err)
		}
		zr.Multistream(false)
		return &decompressor{r: zr, gz: zr}, nil
	}
	return nil, errors.New("import: not an image archive (neither zstd nor gzip data)")
}

func (d *decompressor) Read(p []byte) (int, error) { return d.r.Read(p) }

// finish reads to the end of the compressed stream, where its checksum is
// verified, and reports whether it was intact.
func (d *decompressor) finish() error {
	d.done = true
	if _, err := io.Copy(io.Discard, d.r); err != nil {
		d.abortCmd()
		return err
	}
	if d.cmd != nil {
		if err := d.cmd.Wait(); err != nil {
			return fmt.Errorf("zstd: %w: %s", err, strings.TrimSpace(d.errb.String()))
		}
	}
	return nil
}

// abort stops an unfinished decompression.
func (d *decompressor) abort() {
	if !d.done {
		d.done = true
		d.abortCmd()
	}
}

func (d *decompressor) abortCmd() {
	if d.cmd != nil {
		d.cmd.Process.Kill()
		d.out.Close()
		d.cmd.Wait()
	}
}
