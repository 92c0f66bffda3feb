package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"golang.org/x/crypto/ssh"

	"builds/app"
	"builds/images"
	"builds/runner/guestnet"
)

// Deadlines of the VM layer.
const (
	defaultBootTimeout = 60 * time.Second // TCG; images.md §3.3 suggests 60 s (20 s with KVM)
	sshAttempts        = 5                // dials after the ready marker
	qmpTimeout         = 2 * time.Second  // per QMP command
	quitGrace          = 3 * time.Second  // QMP quit -> exit
	termGrace          = 3 * time.Second  // SIGTERM -> exit
	killGrace          = 5 * time.Second  // SIGKILL -> reaped
)

// errBootTimeout marks a boot that did not reach the ready marker in time;
// StartVM retries those once (rare slow kernel phases under TCG).
var errBootTimeout = errors.New("boot timed out")

// timerCheckPanic is the panic of a kernel whose IO-APIC timer check ran
// out of time: under TCG on a loaded host the emulated timer ticks late.
// Distributions' cloud images mostly boot without no_timer_check
// (Fedora's pass it), and the command line is theirs, so StartVM treats
// this panic as a boot timeout and boots once more.
const timerCheckPanic = "IO-APIC + timer doesn't work"

// VMConfig describes one VM.
type VMConfig struct {
	Image     *images.Image
	CPUs      int
	MemoryMiB int
	Accel     string // "kvm" or "tcg", resolved by ProbeAccel
	CPUModel  string // TCG CPU model, default qemu64; KVM always uses host
	WorkDir   string // per-VM directory, created by the caller
	// Console receives a copy of the serial console (may be nil). It is
	// written from QEMU's output path: a slow writer stalls the guest.
	Console       io.Writer
	BootTimeout   time.Duration
	AuthorizedKey ssh.PublicKey // per-job key passed through fw_cfg (replaces the image's)
	ClientSigner  ssh.Signer    // signs in as the image's user; nil = the image's baked key
	// Network is what the guest may reach (nil = app.GuestInternet with
	// no host services). The control SSH connection never listens on
	// the host: the runner dials the guest through its own stack.
	Network *app.GuestPolicy
	// NetRefused hears of each connection the policy refused (may be nil).
	NetRefused func(proto string, r *app.GuestRefusal)
	// Resume starts the guest from a saved state instead of booting it
	// (vm_resume.go); nil boots. The image must have a control channel.
	Resume *Resume
	// ForSnapshot makes a boot wait until the guest's control channel
	// listens too, so that its state can be saved and resumed (SaveState).
	ForSnapshot bool
}

// vmState is the lifecycle of a VM; transitions only go forward.
type vmState int

const (
	vmBooting vmState = iota
	vmRunning
	vmClosed
)

// VM is a running guest with an open SSH connection.
type VM struct {
	cfg     VMConfig
	phases  []string // a resume's steps and their durations (ResumePhases)
	cmd     *exec.Cmd
	pgid    int
	net     *guestnet.Network
	overlay string
	keyFile string
	qmpPath string
	ctlPath string // resume control channel socket, "" if the image has none
	qmpDir  string // temp dir for the sockets when WorkDir is too long for them
	keep    bool   // cleanup leaves the overlay: it became a saved state's disk
	console *console
	stderr  *capWriter
	exited  chan struct{}
	waitErr error
	mon     *qmp.SocketMonitor
	client  *ssh.Client
	started time.Time
	bootDur time.Duration

	mu    sync.Mutex
	state vmState
}

// StartVM boots a guest from cfg.Image on a fresh qcow2 overlay in
// cfg.WorkDir and returns once SSH works. Readiness comes from the image's
// marker on the serial console, then SSH is dialled a few times with the
// host key pinned. A kernel panic or QEMU exit fails with the console tail;
// a boot that times out is retried once.
func StartVM(ctx context.Context, cfg VMConfig) (*VM, error) {
	return startVM(ctx, cfg, kernelBoot{})
}

// startVM is StartVM with an explicit kernel/initrd/cmdline (zero = the
// image's own); benchmarks use it to boot the stock way.
func startVM(ctx context.Context, cfg VMConfig, spec kernelBoot) (*VM, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	if spec.Kernel == "" && spec.Firmware == "" {
		extra := spec.Extra
		var err error
		if spec, err = imageBoot(cfg.Image); err != nil {
			return nil, fmt.Errorf("start vm: %w", err)
		}
		spec.Extra = extra
	}
	hostKey, err := cfg.Image.HostKey()
	if err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	signer := cfg.ClientSigner
	if signer == nil {
		if signer, err = loadSigner(cfg.Image.ClientKeyPath()); err != nil {
			return nil, fmt.Errorf("start vm: %w", err)
		}
	}
	sshCfg := &ssh.ClientConfig{
		User:              cfg.Image.Meta.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   ssh.FixedHostKey(hostKey),
		HostKeyAlgorithms: []string{hostKey.Type()},
	}
	if cfg.Resume != nil {
		return resumeVM(ctx, cfg, spec, sshCfg)
	}
	for attempt := 1; ; attempt++ {
		vm, err := bootOnce(ctx, cfg, spec, sshCfg)
		if err == nil {
			return vm, nil
		}
		if !errors.Is(err, errBootTimeout) || attempt == 2 || ctx.Err() != nil {
			return nil, err
		}
		slog.Warn("vm boot timed out, retrying once", "image", cfg.Image.Name, "err", err)
	}
}

// checkConfig validates cfg and fills defaults.
func checkConfig(cfg *VMConfig) error {
	switch {
	case cfg.Image == nil:
		return errors.New("start vm: no image")
	case cfg.CPUs < 1:
		return fmt.Errorf("start vm: cpus %d < 1", cfg.CPUs)
	case cfg.MemoryMiB < 128:
		return fmt.Errorf("start vm: memory %d MiB < 128", cfg.MemoryMiB)
	case cfg.Accel != "kvm" && cfg.Accel != "tcg":
		return fmt.Errorf("start vm: accel %q: want kvm or tcg (resolve auto with ProbeAccel)", cfg.Accel)
	case cfg.AuthorizedKey != nil && cfg.ClientSigner == nil:
		return errors.New("start vm: a per-job AuthorizedKey needs its ClientSigner")
	case (cfg.Resume != nil || cfg.ForSnapshot) && cfg.Image.Meta.Control == "":
		return fmt.Errorf("start vm: image %s has no control channel: it cannot be saved or resumed", cfg.Image.Name)
	case cfg.Resume != nil && cfg.AuthorizedKey == nil:
		return errors.New("start vm: a resumed guest needs its own AuthorizedKey")
	}
	if fi, err := os.Stat(cfg.WorkDir); err != nil || !fi.IsDir() {
		return fmt.Errorf("start vm: work dir %q is not a directory", cfg.WorkDir)
	}
	if cfg.Network == nil {
		p, err := app.NewGuestPolicy(app.GuestInternet, nil)
		if err != nil {
			return fmt.Errorf("start vm: %w", err)
		}
		cfg.Network = p
	}
	if cfg.BootTimeout <= 0 {
		cfg.BootTimeout = defaultBootTimeout
	}
	return nil
}

// bootOnce makes one boot attempt. On error everything it started is gone.
func bootOnce(ctx context.Context, cfg VMConfig, spec kernelBoot, sshCfg *ssh.ClientConfig) (*VM, error) {
	vm := &VM{cfg: cfg, overlay: filepath.Join(cfg.WorkDir, "disk.qcow2")}
	os.Remove(vm.overlay)
	if err := createOverlay(ctx, cfg.Image.Disk(), vm.overlay); err != nil {
		return nil, fmt.Errorf("start vm: %w", err)
	}
	if err := vm.prepare(); err != nil {
		vm.cleanup()
		return nil, err
	}
	err := vm.launch(spec, "")
	if err == nil {
		err = vm.waitReady(ctx)
	}
	if err == nil && vm.cfg.ForSnapshot {
		err = vm.waitControl(ctx)
	}
	if err != nil {
		vm.stopQuietly()
		vm.cleanup()
		return nil, err
	}
	if err := vm.connect(ctx, sshCfg); err != nil {
		vm.Close()
		return nil, err
	}
	vm.mu.Lock()
	vm.state = vmRunning
	vm.mu.Unlock()
	return vm, nil
}

// prepare writes the per-job key and picks the socket paths.
func (vm *VM) prepare() error {
	if k := vm.cfg.AuthorizedKey; k != nil {
		vm.keyFile = filepath.Join(vm.cfg.WorkDir, "authorized_keys")
		if err := os.WriteFile(vm.keyFile, ssh.MarshalAuthorizedKey(k), 0o600); err != nil {
			return fmt.Errorf("start vm: write key: %w", err)
		}
	}
	dir := vm.cfg.WorkDir
	if len(filepath.Join(dir, "qmp.sock")) > 100 { // sun_path holds 108 bytes
		tmp, err := os.MkdirTemp("", "builds-qmp-")
		if err != nil {
			return fmt.Errorf("start vm: %w", err)
		}
		vm.qmpDir, dir = tmp, tmp
	}
	vm.qmpPath = filepath.Join(dir, "qmp.sock")
	if vm.cfg.Image.Meta.Control != "" {
		vm.ctlPath = filepath.Join(dir, "ctl.sock")
	}
	return nil
}

// launch starts QEMU in its own process group, attached to a new guest
// network, booting or (with incoming) resuming saved state. A boot
// returns an error if QEMU exits at once; a resume finds out when it
// connects to QMP.
func (vm *VM) launch(spec kernelBoot, incoming string) error {
	n, err := guestnet.New(guestnet.Config{Policy: vm.cfg.Network, Refused: vm.cfg.NetRefused})
	if err != nil {
		return fmt.Errorf("start vm: %w", err)
	}
	vm.net = n
	os.Remove(vm.qmpPath)
	if vm.ctlPath != "" {
		os.Remove(vm.ctlPath)
	}
	vm.console = newConsole(vm.cfg.Image.Meta.ReadyMarker, vm.cfg.Console)
	vm.stderr = &capWriter{max: 16 << 10}
	vm.exited = make(chan struct{})
	// the network socket is QEMU's fd 3 (the first of ExtraFiles)
	vm.cmd = exec.Command(qemuBinary, qemuArgs(vm.cfg, spec, vmFiles{
		overlay: vm.overlay, qmp: vm.qmpPath, key: vm.keyFile, ctl: vm.ctlPath, netFD: 3, incoming: incoming})...)
	vm.cmd.Stdout = vm.console
	vm.cmd.Stderr = vm.stderr
	vm.cmd.ExtraFiles = []*os.File{n.QEMUFile()}
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	vm.started = time.Now()
	err = vm.cmd.Start()
	n.QEMUFile().Close() // QEMU holds its own copy now
	if err != nil {
		return fmt.Errorf("start %s: %w", qemuBinary, err)
	}
	vm.pgid = vm.cmd.Process.Pid
	go func() {
		vm.waitErr = vm.cmd.Wait()
		close(vm.exited)
	}()
	if incoming != "" {
		return nil
	}
	// QEMU validates its arguments before the guest runs.
	select {
	case <-vm.exited:
		return fmt.Errorf("qemu exited at start (%v): %s", vm.waitErr, vm.stderr.String())
	case <-time.After(150 * time.Millisecond):
		return nil
	}
}

// exitedNow reports whether QEMU has exited (or never started).
func (vm *VM) exitedNow() bool {
	if vm.exited == nil {
		return true
	}
	select {
	case <-vm.exited:
		return true
	default:
		return false
	}
}

// stopQuietly ends a QEMU that failed to boot (no QMP yet) and reaps it.
func (vm *VM) stopQuietly() {
	if vm.cmd == nil || vm.cmd.Process == nil || vm.exited == nil {
		return
	}
	if !vm.exitedNow() {
		syscall.Kill(-vm.pgid, syscall.SIGKILL)
		<-vm.exited
	}
	syscall.Kill(-vm.pgid, syscall.SIGKILL)
}

// waitReady waits for the ready marker, a kernel panic, QEMU's exit, the
// boot timeout or ctx, whichever comes first.
func (vm *VM) waitReady(ctx context.Context) error {
	timer := time.NewTimer(vm.cfg.BootTimeout)
	defer timer.Stop()
	select {
	case <-vm.console.ready:
		return nil
	case <-vm.console.panicked:
		select { // panic=-1 + -no-reboot: QEMU exits; let the rest arrive
		case <-vm.exited:
		case <-time.After(2 * time.Second):
		}
		msg := vm.console.PanicMessage()
		if strings.Contains(msg, timerCheckPanic) {
			return fmt.Errorf("boot %s: %s: %w; console:\n%s", vm.cfg.Image.Name, msg, errBootTimeout, vm.console.Tail())
		}
		return fmt.Errorf("boot %s: %s; console:\n%s", vm.cfg.Image.Name, msg, vm.console.Tail())
	case <-vm.exited:
		return fmt.Errorf("boot %s: qemu exited (%v): %s; console:\n%s", vm.cfg.Image.Name, vm.waitErr, vm.stderr.String(), vm.console.Tail())
	case <-timer.C:
		return fmt.Errorf("boot %s: no %q on the console after %s: %w; console:\n%s",
			vm.cfg.Image.Name, vm.cfg.Image.Meta.ReadyMarker, vm.cfg.BootTimeout, errBootTimeout, vm.console.Tail())
	case <-ctx.Done():
		return fmt.Errorf("boot %s: %w", vm.cfg.Image.Name, ctx.Err())
	}
}

// connect opens QMP and the SSH connection the VM keeps for its lifetime.
func (vm *VM) connect(ctx context.Context, sshCfg *ssh.ClientConfig) error {
	if vm.mon == nil {
		mon, err := qmp.NewSocketMonitor("unix", vm.qmpPath, qmpTimeout)
		if err == nil {
			if err = mon.Connect(); err != nil {
				mon.Disconnect()
			}
		}
		if err != nil {
			return fmt.Errorf("connect qmp: %w", err)
		}
		vm.mon = mon
	}
	var last error
	for i := 0; i < sshAttempts; i++ {
		if i > 0 {
			select {
			case <-time.After(300 * time.Millisecond):
			case <-vm.exited:
				return fmt.Errorf("ssh: qemu exited (%v); console:\n%s", vm.waitErr, vm.console.Tail())
			case <-ctx.Done():
				return fmt.Errorf("ssh: %w", ctx.Err())
			}
		}
		c, err := vm.dialSSH(ctx, sshCfg, time.Duration(2+2*i)*time.Second)
		if err == nil {
			vm.client = c
			vm.bootDur = time.Since(vm.started)
			return nil
		}
		last = err
	}
	return fmt.Errorf("ssh to %s after the ready marker: %w; console:\n%s", vm.cfg.Image.Name, last, vm.console.Tail())
}

// dialSSH dials the guest's SSH port through the VM's network and
// handshakes, with a deadline covering both.
func (vm *VM) dialSSH(ctx context.Context, cfg *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := vm.net.DialGuest(ctx, 22)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	addr := net.JoinHostPort(app.GuestAddr.String(), "22")
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// Client returns the VM's SSH connection; open one session per command.
func (vm *VM) Client() *ssh.Client { return vm.client }

// BootDuration is the time from QEMU's start to a working SSH connection.
func (vm *VM) BootDuration() time.Duration { return vm.bootDur }

// Done is closed when QEMU has exited (for whatever reason).
func (vm *VM) Done() <-chan struct{} { return vm.exited }

// ConsoleTail returns the last lines of the serial console.
func (vm *VM) ConsoleTail() string { return vm.console.Tail() }

// Close stops the VM: QMP quit, then SIGTERM to QEMU's process group, then
// SIGKILL, each with a deadline. It always reaps QEMU and removes the
// overlay. Closing twice is harmless.
func (vm *VM) Close() error {
	vm.mu.Lock()
	if vm.state == vmClosed {
		vm.mu.Unlock()
		return nil
	}
	vm.state = vmClosed
	vm.mu.Unlock()
	if vm.client != nil {
		vm.client.Close()
	}
	var err error
	if vm.cmd != nil && vm.cmd.Process != nil {
		err = vm.stop()
	}
	vm.cleanup()
	return err
}

// stop ends QEMU and waits until it is reaped.
func (vm *VM) stop() error {
	if vm.mon != nil {
		res := make(chan error, 1)
		go func() {
			_, err := vm.mon.Run([]byte(`{"execute":"quit"}`))
			res <- err
		}()
		select {
		case <-res:
		case <-vm.exited:
		case <-time.After(qmpTimeout):
		}
	}
	for _, step := range []struct {
		sig   syscall.Signal
		grace time.Duration
	}{{0, quitGrace}, {syscall.SIGTERM, termGrace}, {syscall.SIGKILL, killGrace}} {
		if step.sig != 0 {
			syscall.Kill(-vm.pgid, step.sig)
		}
		select {
		case <-vm.exited:
			if vm.mon != nil {
				vm.mon.Disconnect()
			}
			syscall.Kill(-vm.pgid, syscall.SIGKILL) // anything left in the group
			return nil
		case <-time.After(step.grace):
		}
	}
	return fmt.Errorf("stop vm: qemu (pid %d) survived SIGKILL for %s", vm.pgid, killGrace)
}

// cleanup removes the files the VM created in its work directory.
func (vm *VM) cleanup() {
	if !vm.keep {
		os.Remove(vm.overlay)
	}
	if vm.ctlPath != "" {
		os.Remove(vm.ctlPath)
	}
	if vm.keyFile != "" {
		os.Remove(vm.keyFile)
	}
	if vm.qmpPath != "" {
		os.Remove(vm.qmpPath)
	}
	if vm.qmpDir != "" {
		os.RemoveAll(vm.qmpDir)
	}
	if vm.net != nil {
		vm.net.Close()
	}
}

// loadSigner reads an unencrypted private key file.
func loadSigner(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read client key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse client key %s: %w", path, err)
	}
	return s, nil
}
