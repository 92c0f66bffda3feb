package runner

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"builds/app"
	"builds/images"
	"builds/runner/guestnet"
)

// qemuBinary is the system emulator for amd64 guests.
const qemuBinary = "qemu-system-x86_64"

// kernelBoot is how QEMU starts a guest: which kernel, initrd and command line
// QEMU loads directly (no bootloader), or with no kernel, the firmware
// that starts the disk's own bootloader.
type kernelBoot struct {
	Kernel   string // PVH vmlinux (entered directly) or bzImage (via firmware); "" = firmware boot
	Initrd   string // "" = none
	Cmdline  string
	Firmware string   // with no Kernel: a -bios file (OVMF); "" = SeaBIOS
	Extra    []string // more QEMU arguments (benchmarks add a second NIC)
}

// ovmfPaths are where Debian's ovmf package puts the UEFI firmware that
// QEMU loads with -bios (variables live in RAM: nothing persists).
var ovmfPaths = []string{"/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"}

// imageBoot returns how the image boots: its kernel, or its firmware.
func imageBoot(img *images.Image) (kernelBoot, error) {
	switch img.Meta.Firmware {
	case "":
		return kernelBoot{Kernel: img.Kernel(), Initrd: img.Initrd(), Cmdline: img.Meta.Cmdline}, nil
	case images.FirmwareBIOS:
		return kernelBoot{}, nil
	case images.FirmwareUEFI:
		for _, p := range ovmfPaths {
			if _, err := os.Stat(p); err == nil {
				return kernelBoot{Firmware: p}, nil
			}
		}
		return kernelBoot{}, fmt.Errorf("image %s boots through UEFI, but no OVMF firmware is installed (%s): install the ovmf package (make deps)",
			img.Name, strings.Join(ovmfPaths, ", "))
	}
	return kernelBoot{}, fmt.Errorf("image %s: unknown firmware %q", img.Name, img.Meta.Firmware)
}

// vmFiles are the paths and descriptors one VM's QEMU uses.
type vmFiles struct {
	overlay  string // the VM's own qcow2 overlay
	qmp      string // QMP socket
	key      string // per-job authorized_keys for fw_cfg ("" = none)
	ctl      string // resume control channel socket ("" = the image has none)
	netFD    int    // the guest network's socket, as QEMU's descriptor
	incoming string // saved state to resume from ("" = boot)
}

// qemuArgs returns QEMU's argument list for one VM (images.md §5): q35,
// no default devices, virtio disk/net/rng, the guest network on the
// datagram socket QEMU has as file descriptor netFD, serial console on
// stdout, QMP on a unix socket, the optional per-job key through fw_cfg,
// the resume control channel (virtio-serial) and, to resume, the state
// to load. A VM that saves its state and one that resumes it must be
// started with the same devices.
func qemuArgs(cfg VMConfig, spec kernelBoot, f vmFiles) []string {
	cpu := cfg.CPUModel
	if cpu == "" {
		cpu = "qemu64"
	}
	if cfg.Accel == "kvm" {
		cpu = "host" // a TCG model under KVM only hides host features
	}
	args := []string{
		"-name", "builds-vm",
		"-machine", "q35",
		"-accel", cfg.Accel,
		"-cpu", cpu,
		"-smp", strconv.Itoa(cfg.CPUs),
		"-m", strconv.Itoa(cfg.MemoryMiB),
		"-nodefaults", "-no-user-config", "-display", "none",
		// a guest reboot ends the VM instead of looping through boot again
		"-no-reboot",
		"-chardev", "stdio,id=ser0,signal=off",
		"-serial", "chardev:ser0",
		"-qmp", "unix:" + f.qmp + ",server=on,wait=off",
		// cache=unsafe: the overlay is thrown away with the VM
		"-drive", "id=root,if=none,file=" + f.overlay + ",format=qcow2,cache=unsafe,discard=unmap",
		"-device", "virtio-blk-pci,drive=root",
		"-device", "virtio-rng-pci",
	}
	switch {
	case spec.Kernel != "":
		args = append(args, "-kernel", spec.Kernel, "-append", spec.Cmdline)
		if spec.Initrd != "" {
			args = append(args, "-initrd", spec.Initrd)
		}
	case spec.Firmware != "":
		// the disk's own bootloader; SeaBIOS is QEMU's default
		args = append(args, "-bios", spec.Firmware)
	}
	args = append(args, guestnet.QEMUArgs(f.netFD)...)
	if f.key != "" {
		args = append(args, "-fw_cfg", "name=opt/ci/authorized_keys,file="+f.key)
	}
	if f.ctl != "" {
		args = append(args, "-device", "virtio-serial-pci,id=vser0",
			"-chardev", "socket,id=ctl,path="+f.ctl+",server=on,wait=off",
			"-device", "virtserialport,chardev=ctl,name="+cfg.Image.Meta.Control)
	}
	if f.incoming != "" {
		args = append(args, "-incoming", "exec:cat "+app.ShellQuote(f.incoming))
	}
	return append(args, spec.Extra...)
}

// createOverlay makes a qcow2 overlay backed by the read-only base (~10 ms).
func createOverlay(ctx context.Context, base, overlay string) error {
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2",
		"-F", "qcow2", "-b", base, overlay).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create overlay: %w: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// capWriter keeps the first max bytes written to it (QEMU's stderr).
type capWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (c *capWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := c.max - c.buf.Len(); room > 0 {
		if len(p) > room {
			c.buf.Write(p[:room])
		} else {
			c.buf.Write(p)
		}
	}
	return len(p), nil
}

func (c *capWriter) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimSpace(c.buf.String())
}

// console watches the serial console: it copies the stream to an optional
// writer, keeps the last lines for error reports and signals the readiness
// marker and kernel panics.
type console struct {
	marker string
	copyTo io.Writer

	mu       sync.Mutex
	partial  []byte
	lines    []string
	ready    chan struct{}
	panicked chan struct{}
	gotReady bool
	gotPanic bool
	panicMsg string // the "Kernel panic - ..." line
	// ctlReady is closed when the control channel's agent says it
	// listens (images.ControlReady).
	ctlReady chan struct{}
	gotCtl   bool
}

// consoleTailLines is how much of the console an error report carries.
const consoleTailLines = 30

func newConsole(marker string, copyTo io.Writer) *console {
	return &console{marker: marker, copyTo: copyTo, ready: make(chan struct{}), panicked: make(chan struct{}),
		ctlReady: make(chan struct{})}
}

func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.partial = eachLine(c.partial, p, func(l []byte) {
		c.line(cleanConsoleLine(l[:len(l)-1]))
	})
	if len(c.partial) > 4096 { // a line without end: keep it bounded
		c.line(cleanConsoleLine(c.partial))
		c.partial = c.partial[:0]
	}
	return len(p), nil
}

// line records one complete console line, cleaned, and copies it on
// (c.mu held).
func (c *console) line(l string) {
	if c.copyTo != nil {
		c.copyTo.Write([]byte(l + "\n"))
	}
	c.lines = append(c.lines, l)
	if len(c.lines) > consoleTailLines {
		c.lines = c.lines[len(c.lines)-consoleTailLines:]
	}
	if !c.gotReady && strings.Contains(l, c.marker) {
		c.gotReady = true
		close(c.ready)
	}
	if !c.gotCtl && strings.Contains(l, images.ControlReady) {
		c.gotCtl = true
		close(c.ctlReady)
	}
	if !c.gotPanic && strings.Contains(l, "Kernel panic") {
		c.gotPanic = true
		_, c.panicMsg, _ = strings.Cut(l, "] ")
		if c.panicMsg == "" {
			c.panicMsg = l
		}
		close(c.panicked)
	}
}

// eachLine appends p to the partial line pending and calls fn with each
// complete line (newline included); it returns the new partial line.
func eachLine(pending, p []byte, fn func(line []byte)) []byte {
	pending = append(pending, p...)
	for {
		i := bytes.IndexByte(pending, '\n')
		if i < 0 {
			return pending
		}
		fn(pending[:i+1])
		pending = pending[i+1:]
	}
}

// PanicMessage returns the kernel's panic line, if there was one.
func (c *console) PanicMessage() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.panicMsg
}

// Tail returns the last console lines.
func (c *console) Tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := strings.Join(c.lines, "\n")
	if len(c.partial) > 0 {
		out += "\n" + string(c.partial)
	}
	return out
}

// cleanConsoleLine returns a console line as text: what a terminal would
// show of it without acting on it. The guest's console carries escape
// sequences (colours, cursor moves, terminal resets such as
// `\e[!p\e]104\a`) that must not reach the terminal of whoever reads the
// raw setup log. Escape sequences (CSI, OSC, DCS and the like, and
// two-byte ones), C0 and C1 control characters go, bytes that are not
// UTF-8 become U+FFFD, a carriage return keeps what was written over the
// line after it, and tabs stay.
func cleanConsoleLine(l []byte) string {
	if i := bytes.LastIndexByte(bytes.TrimRight(l, "\r"), '\r'); i >= 0 {
		l = l[i+1:]
	}
	rs := []rune(string(l)) // invalid UTF-8 becomes U+FFFD
	out := make([]rune, 0, len(rs))
	isFinal := func(r rune) bool { return r >= 0x40 && r <= 0x7e }
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == 0x1b || r == 0x9b || r == 0x9d || r == 0x90:
			kind := r
			if r == 0x1b {
				if i+1 == len(rs) {
					continue
				}
				i++
				kind = rs[i]
			}
			switch kind {
			case '[', 0x9b: // CSI: parameters and intermediates, then a final byte
				for i+1 < len(rs) && !isFinal(rs[i+1]) && rs[i+1] >= 0x20 {
					i++
				}
				i++
			case ']', 'P', 'X', '^', '_', 0x9d, 0x90: // OSC, DCS, SOS, PM, APC: to BEL or ST
				for i+1 < len(rs) {
					i++
					if rs[i] == 0x07 || rs[i] == 0x9c {
						break
					}
					if rs[i] == 0x1b && i+1 < len(rs) && rs[i+1] == '\\' {
						i++
						break
					}
				}
			default: // two-byte sequences (ESC c, ESC 7, ESC ( B...)
				for i+1 < len(rs) && kind >= 0x20 && kind <= 0x2f {
					i++
					kind = rs[i]
				}
			}
		case r == '\t' || r >= 0x20 && r != 0x7f && (r < 0x80 || r > 0x9f):
			out = append(out, r)
		}
	}
	return string(out)
}
