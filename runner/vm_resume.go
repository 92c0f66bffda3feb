package runner

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"golang.org/x/crypto/ssh"

	"builds/app"
)

// Saved VM states (snapshots and package layers, snapshot.go) are QEMU
// migration streams written to a file, together with the disk the guest
// had then. A guest resumed from one is still a VM of its own: its own
// qcow2 overlay on top of that disk, its own QEMU, and, through the
// control channel (a virtio-serial port its image's agent listens on),
// its own SSH key, clock, entropy and machine id before anyone logs in.

// Resume is a saved state to start a guest from.
type Resume struct {
	Mem  string // QEMU's migration stream: memory and devices
	Disk string // the disk as it was, read-only: the new overlay's backing file
}

// Deadlines of saving and resuming.
const (
	incomingTimeout = 60 * time.Second // loading a state file
	controlTimeout  = 30 * time.Second // the guest agent answering (TCG)
	saveTimeout     = 2 * time.Minute  // writing a state file
)

// errResume marks a resume that failed because of the saved state (or
// the guest it holds) rather than the job: callers discard the state and
// boot instead.
var errResume = errors.New("resume from saved state failed")

// resumeVM starts a guest from cfg.Resume and returns once SSH works.
func resumeVM(ctx context.Context, cfg VMConfig, spec kernelBoot, sshCfg *ssh.ClientConfig) (*VM, error) {
	vm := &VM{cfg: cfg, overlay: filepath.Join(cfg.WorkDir, "disk.qcow2")}
	mark := time.Now()
	phase := func(name string) {
		now := time.Now()
		vm.phases = append(vm.phases, fmt.Sprintf("%s %dms", name, now.Sub(mark).Milliseconds()))
		mark = now
	}
	os.Remove(vm.overlay)
	if err := createOverlay(ctx, cfg.Resume.Disk, vm.overlay); err != nil {
		return nil, fmt.Errorf("%w: %v", errResume, err)
	}
	if err := vm.prepare(); err != nil {
		vm.cleanup()
		return nil, err
	}
	phase("overlay")
	err := vm.launch(spec, cfg.Resume.Mem)
	if err == nil {
		phase("qemu")
		err = vm.loadIncoming(ctx)
	}
	if err == nil {
		phase("load")
		err = vm.identify(ctx)
	}
	if err == nil {
		// not overlapped with identify: both wait on the guest's one
		// CPU, and together they took longer (1.55s against 1.35s, TCG)
		phase("agent")
		err = vm.connect(ctx, sshCfg)
		phase("ssh")
	}
	if err != nil {
		vm.stopQuietly()
		vm.cleanup()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("resume %s: %w", cfg.Image.Name, ctx.Err())
		}
		return nil, fmt.Errorf("%w: %v", errResume, err)
	}
	vm.mu.Lock()
	vm.state = vmRunning
	vm.mu.Unlock()
	return vm, nil
}

// ResumePhases says where a resume's time went ("overlay 12ms, qemu
// 80ms, load 300ms, agent 250ms, ssh 400ms"); "" for a booted guest.
func (vm *VM) ResumePhases() string { return strings.Join(vm.phases, ", ") }

// loadIncoming waits until QEMU has loaded the state file, then lets the
// guest run.
func (vm *VM) loadIncoming(ctx context.Context) error {
	deadline := time.Now().Add(incomingTimeout)
	for vm.mon == nil {
		mon, err := qmp.NewSocketMonitor("unix", vm.qmpPath, qmpTimeout)
		if err == nil {
			if err = mon.Connect(); err == nil {
				vm.mon = mon
				break
			}
			mon.Disconnect()
		}
		if err := vm.pause(ctx, deadline, 10*time.Millisecond); err != nil {
			return fmt.Errorf("connect qmp: %w", err)
		}
	}
	for {
		var st struct {
			Status string `json:"status"`
		}
		if err := vm.qmp(ctx, "query-status", nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "paused", "postmigrate":
			return vm.qmp(ctx, "cont", nil, nil)
		case "running":
			return nil
		case "inmigrate", "prelaunch":
		default:
			return fmt.Errorf("loading the saved state: QEMU is %s: %s", st.Status, vm.stderr.String())
		}
		if err := vm.pause(ctx, deadline, 20*time.Millisecond); err != nil {
			return fmt.Errorf("loading the saved state: %w", err)
		}
	}
}

// pause sleeps d, failing when QEMU exited, ctx ended or the deadline passed.
func (vm *VM) pause(ctx context.Context, deadline time.Time, d time.Duration) error {
	if time.Now().After(deadline) {
		return fmt.Errorf("no progress after %s", incomingTimeout)
	}
	select {
	case <-vm.exited:
		return fmt.Errorf("qemu exited (%v): %s", vm.waitErr, vm.stderr.String())
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// qmp runs one QMP command with optional arguments, decoding its return
// value into out (may be nil).
func (vm *VM) qmp(ctx context.Context, cmd string, args, out any) error {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	type result struct {
		raw []byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		raw, err := vm.mon.Run(b)
		res <- result{raw, err}
	}()
	var r result
	select {
	case r = <-res:
	case <-vm.exited:
		return fmt.Errorf("qmp %s: qemu exited (%v): %s", cmd, vm.waitErr, vm.stderr.String())
	case <-ctx.Done():
		return fmt.Errorf("qmp %s: %w", cmd, ctx.Err())
	}
	if r.err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, r.err)
	}
	if out == nil {
		return nil
	}
	var env struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(r.raw, &env); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	return json.Unmarshal(env.Return, out)
}

// waitControl waits for the control agent's ready line on the console
// (a boot whose state will be saved).
func (vm *VM) waitControl(ctx context.Context) error {
	select {
	case <-vm.console.ctlReady:
		return nil
	case <-vm.exited:
		return fmt.Errorf("boot %s: qemu exited (%v) before the control channel listened", vm.cfg.Image.Name, vm.waitErr)
	case <-time.After(controlTimeout):
		return fmt.Errorf("boot %s: the control channel did not start in %s; console:\n%s", vm.cfg.Image.Name, controlTimeout, vm.console.Tail())
	case <-ctx.Done():
		return ctx.Err()
	}
}

// identify gives a resumed guest its own identity over the control
// channel: its SSH key (the saved state's is dropped), the host's clock,
// fresh entropy for its CRNG and a machine id, and ends the saved boot's
// SSH sessions. It returns once the agent answered.
func (vm *VM) identify(ctx context.Context) error {
	deadline := time.Now().Add(controlTimeout)
	var conn net.Conn
	for {
		c, err := net.DialTimeout("unix", vm.ctlPath, time.Second)
		if err == nil {
			conn = c
			break
		}
		if err := vm.pause(ctx, deadline, 10*time.Millisecond); err != nil {
			return fmt.Errorf("control channel: %w", err)
		}
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	seed := make([]byte, 64)
	rand.Read(seed)
	id := make([]byte, 16)
	rand.Read(id)
	now := time.Now()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	var msg strings.Builder
	fmt.Fprintf(&msg, "key %s\n", b64(string(ssh.MarshalAuthorizedKey(vm.cfg.AuthorizedKey))))
	fmt.Fprintf(&msg, "time %s\n", b64(fmt.Sprintf("%d.%09d", now.Unix(), now.Nanosecond())))
	fmt.Fprintf(&msg, "seed %s\n", base64.StdEncoding.EncodeToString(seed))
	fmt.Fprintf(&msg, "id %s\n", b64(hex.EncodeToString(id)+"\n"))
	msg.WriteString("kill x\ndone x\n")
	if _, err := conn.Write([]byte(msg.String())); err != nil {
		return fmt.Errorf("control channel: %w", err)
	}
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "ok" {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("control channel: no answer from the guest: %w", err)
	}
	return errors.New("control channel: closed without an answer")
}

// SaveState stops the guest and writes its memory and device state to
// mem; it returns the disk the state belongs to. With keepRunning the
// disk is frozen first: the overlay so far becomes the state's read-only
// disk, the VM goes on writing to a new overlay on top of it, and the
// guest continues once the state is written. Without, the VM stays
// stopped and Close keeps its overlay, the state's disk.
func (vm *VM) SaveState(ctx context.Context, mem string, keepRunning bool) (disk string, err error) {
	ctx, cancel := context.WithTimeout(ctx, saveTimeout)
	defer cancel()
	if err := vm.qmp(ctx, "stop", nil, nil); err != nil {
		return "", err
	}
	disk = vm.overlay
	if keepRunning {
		next := fmt.Sprintf("%s.%d", strings.TrimSuffix(vm.overlay, ".qcow2"), time.Now().UnixNano()) + ".qcow2"
		// made here rather than by QEMU, which would print "Formatting
		// '<host path>'" on its stdout: the guest's console, the job's log
		if err := vm.createNextOverlay(ctx, next); err != nil {
			vm.qmp(context.WithoutCancel(ctx), "cont", nil, nil)
			return "", err
		}
		if err := vm.qmp(ctx, "blockdev-snapshot-sync", map[string]any{
			"device": "root", "snapshot-file": next, "format": "qcow2", "mode": "existing"}, nil); err != nil {
			os.Remove(next)
			vm.qmp(context.WithoutCancel(ctx), "cont", nil, nil)
			return "", err
		}
		vm.overlay = next
	} else {
		vm.keep = true
	}
	err = vm.migrateTo(ctx, mem)
	if keepRunning {
		if cerr := vm.qmp(context.WithoutCancel(ctx), "cont", nil, nil); err == nil {
			err = cerr
		}
	}
	if err != nil {
		os.Remove(mem)
		return "", err
	}
	return disk, nil
}

// createNextOverlay makes the overlay that takes over the guest's writes
// when its disk so far is frozen. The disk is open in QEMU, so its size
// comes from QEMU and qemu-img does not open it (-u).
func (vm *VM) createNextOverlay(ctx context.Context, next string) error {
	var blocks []struct {
		Device   string `json:"device"`
		Inserted *struct {
			Image struct {
				VirtualSize int64 `json:"virtual-size"`
			} `json:"image"`
		} `json:"inserted"`
	}
	if err := vm.qmp(ctx, "query-block", nil, &blocks); err != nil {
		return err
	}
	for _, b := range blocks {
		if b.Inserted != nil && b.Inserted.Image.VirtualSize > 0 && (b.Device == "root" || b.Device == "") {
			out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-u",
				"-b", vm.overlay, next, strconv.FormatInt(b.Inserted.Image.VirtualSize, 10)).CombinedOutput()
			if err != nil {
				return fmt.Errorf("create overlay: %w: %s", err, bytes.TrimSpace(out))
			}
			return nil
		}
	}
	return errors.New("save state: QEMU lists no root disk")
}

// migrateTo writes the stopped guest's state to path and waits for it.
func (vm *VM) migrateTo(ctx context.Context, path string) error {
	if err := vm.qmp(ctx, "migrate", map[string]any{"uri": "exec:cat > " + app.ShellQuote(path)}, nil); err != nil {
		return err
	}
	for {
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := vm.qmp(ctx, "query-migrate", nil, &st); err != nil {
			return err
		}
		switch st.Status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("save state: migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("save state: %w", ctx.Err())
		}
	}
}
