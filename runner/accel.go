package runner

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// probeTimeout bounds the KVM probe guest. A healthy KVM runs it in well
// under 0.5 s; TCG needs ~0.35 s (images.md §6).
const probeTimeout = 3 * time.Second

// probeLoops is how often the probe guest spins before it exits. It makes a
// KVM that opens but does not run guests (seen on the development hosts:
// /dev/kvm works, a 50 M-iteration loop never finishes) fail the probe.
const probeLoops = 50_000_000

// ProbeAccel resolves the configured accelerator mode to "kvm" or "tcg".
// "kvm" and "tcg" are taken as given (a warning notes a forced KVM that
// cannot be opened); "auto" boots a tiny boot-sector guest under KVM and
// uses KVM only if it finishes in time, because opening /dev/kvm is not
// proof that guests run. Cache the verdict: the probe costs up to 3 s.
func ProbeAccel(ctx context.Context, mode string) (accel string, warning string) {
	switch mode {
	case "tcg":
		return "tcg", ""
	case "kvm":
		if err := openKVM(); err != nil {
			return "kvm", fmt.Sprintf("accel forced to kvm, but %v", err)
		}
		return "kvm", ""
	case "auto", "":
	default:
		return "tcg", fmt.Sprintf("unknown accel %q, using tcg", mode)
	}
	if err := openKVM(); err != nil {
		return "tcg", fmt.Sprintf("KVM unavailable (%v); using TCG, guests run 5-20x slower", err)
	}
	if _, err := runProbe(ctx, "kvm"); err != nil {
		return "tcg", fmt.Sprintf("KVM present but a test guest failed (%v); using TCG, guests run 5-20x slower", err)
	}
	return "kvm", ""
}

// openKVM checks that /dev/kvm can be opened read-write.
func openKVM() error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("cannot open /dev/kvm: %w", err)
	}
	return f.Close()
}

// probeSector is a 512-byte boot sector: spin probeLoops times, write 0 to
// the isa-debug-exit port (QEMU then exits with status 1), halt.
func probeSector() []byte {
	b := make([]byte, 512)
	code := []byte{0x66, 0xB9} // mov ecx, imm32
	code = binary.LittleEndian.AppendUint32(code, probeLoops)
	code = append(code,
		0x66, 0x49, // dec ecx
		0x75, 0xFC, // jnz back to dec
		0xB0, 0x00, // mov al, 0
		0xE6, 0xF4, // out 0xf4, al
		0xF4,       // hlt
		0xEB, 0xFD, // jmp to hlt
	)
	copy(b, code)
	b[510], b[511] = 0x55, 0xAA
	return b
}

// runProbe boots the probe sector under accel and returns how long it took.
func runProbe(ctx context.Context, accel string) (time.Duration, error) {
	dir, err := os.MkdirTemp("", "builds-accel-")
	if err != nil {
		return 0, fmt.Errorf("probe accel: %w", err)
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "probe.img")
	if err := os.WriteFile(img, probeSector(), 0o644); err != nil {
		return 0, fmt.Errorf("probe accel: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.Command(qemuBinary, "-accel", accel, "-machine", "pc", "-nodefaults",
		"-no-user-config", "-display", "none", "-m", "16", "-no-reboot",
		"-drive", "file="+img+",format=raw,if=ide",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=0x04")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start %s: %w", qemuBinary, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return 0, fmt.Errorf("guest did not finish within %s", probeTimeout)
	}
	d := time.Since(start)
	var ee *exec.ExitError
	// isa-debug-exit: status = (value << 1) | 1 = 1
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return d, nil
	}
	if err == nil {
		return 0, errors.New("guest exited without reaching the exit port")
	}
	return 0, fmt.Errorf("guest failed: %w", err)
}
