package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"builds/images"
)

// DefaultPrepareTimeout bounds the preparing boot of an imported cloud
// image: cloud-init's first boot plus installing bash, git, sudo and a C
// compiler from the distribution's mirror, under TCG.
const DefaultPrepareTimeout = 20 * time.Minute

// PrepareConfig is one preparing boot of an imported cloud image.
type PrepareConfig struct {
	VM      VMConfig // Image is CloudImport.PreparingImage(); BootTimeout is unused
	Seed    string   // the NoCloud seed volume
	Timeout time.Duration
}

// PrepareCloudImage boots a staged cloud image once, in place (no
// overlay: the disk it writes is the image), with its NoCloud seed as a
// second disk, and waits until the guest powers itself off. It returns
// what the console said (images.ParsePrepareConsole); the whole console
// goes to cfg.VM.Console.
func PrepareCloudImage(ctx context.Context, cfg PrepareConfig) (*images.PrepareResult, error) {
	vc := cfg.VM
	if vc.Image == nil || vc.Image.Meta.Firmware == "" {
		return nil, errors.New("prepare: the image must boot through firmware")
	}
	if fi, err := os.Stat(cfg.Seed); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("prepare: seed %q: not a file", cfg.Seed)
	}
	vc.AuthorizedKey, vc.Resume, vc.ForSnapshot = nil, nil, false
	if err := checkConfig(&vc); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultPrepareTimeout
	}
	spec, err := imageBoot(vc.Image)
	if err != nil {
		return nil, err
	}
	spec.Extra = []string{
		"-drive", "id=seed,if=none,file=" + cfg.Seed + ",format=raw,readonly=on",
		"-device", "virtio-blk-pci,drive=seed",
	}
	lines := &consoleLines{}
	vc.Console = teeWriter(vc.Console, lines)
	vm := &VM{cfg: vc, overlay: vc.Image.Disk(), keep: true}
	if err := vm.prepare(); err != nil {
		vm.cleanup()
		return nil, err
	}
	if err := vm.launch(spec, ""); err != nil {
		vm.stopQuietly()
		vm.cleanup()
		return nil, err
	}
	defer vm.cleanup()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-vm.exited:
	case <-vm.console.panicked:
		vm.stopQuietly()
		return nil, fmt.Errorf("prepare %s: %s; console:\n%s", vc.Image.Name, vm.console.PanicMessage(), vm.console.Tail())
	case <-timer.C:
		vm.stopQuietly()
		return nil, fmt.Errorf("prepare %s: the guest did not power off within %s; console:\n%s", vc.Image.Name, timeout, vm.console.Tail())
	case <-ctx.Done():
		vm.stopQuietly()
		return nil, fmt.Errorf("prepare %s: %w", vc.Image.Name, ctx.Err())
	}
	res, err := images.ParsePrepareConsole(lines.get())
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w; console:\n%s", vc.Image.Name, err, vm.console.Tail())
	}
	return res, nil
}

// consoleLines keeps the console lines the preparing boot reports in
// (those with a CI- marker), bounded.
type consoleLines struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
}

func (c *consoleLines) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = eachLine(c.partial, p, func(l []byte) {
		if s := string(l); strings.Contains(s, "CI-") && len(c.lines) < 1000 && len(s) < 64<<10 {
			c.lines = append(c.lines, strings.TrimRight(s, "\r\n"))
		}
	})
	if len(c.partial) > 64<<10 {
		c.partial = c.partial[:0]
	}
	return len(p), nil
}

func (c *consoleLines) get() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// teeWriter writes to w (if any) and to extra.
func teeWriter(w, extra io.Writer) io.Writer {
	if w == nil {
		return extra
	}
	return io.MultiWriter(w, extra)
}
