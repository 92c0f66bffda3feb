package runner

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"builds/images"
	"builds/images/imagestest"
)

func TestProbeSector(t *testing.T) {
	b := probeSector()
	if len(b) != 512 || b[510] != 0x55 || b[511] != 0xAA {
		t.Fatalf("not a boot sector: len %d, signature % x", len(b), b[510:])
	}
	if !bytes.Contains(b, []byte{0xE6, 0xF4}) {
		t.Fatal("probe does not write the isa-debug-exit port")
	}
}

func TestProbeAccelForced(t *testing.T) {
	tests := []struct {
		name, mode, want string
		warn             bool
	}{
		{name: "tcg", mode: "tcg", want: "tcg"},
		{name: "unknown", mode: "hvf", want: "tcg", warn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, warn := ProbeAccel(context.Background(), tt.mode)
			if got != tt.want || (warn != "") != tt.warn {
				t.Fatalf("ProbeAccel(%q) = %q, %q", tt.mode, got, warn)
			}
		})
	}
}

func TestQemuArgs(t *testing.T) {
	img := &images.Image{Name: "debian/bookworm", Arch: "amd64", Dir: "/img"}
	tests := []struct {
		name    string
		cfg     VMConfig
		keyFile string
		want    []string // consecutive pairs that must appear
		absent  []string
	}{
		{name: "tcg default cpu", cfg: VMConfig{Image: img, CPUs: 2, MemoryMiB: 1024, Accel: "tcg"},
			want: []string{"-cpu qemu64", "-smp 2", "-m 1024", "-accel tcg"}, absent: []string{"-fw_cfg"}},
		{name: "tcg cpu model", cfg: VMConfig{Image: img, CPUs: 1, MemoryMiB: 512, Accel: "tcg", CPUModel: "max"},
			want: []string{"-cpu max"}},
		{name: "kvm uses host cpu", cfg: VMConfig{Image: img, CPUs: 1, MemoryMiB: 512, Accel: "kvm", CPUModel: "qemu64"},
			want: []string{"-cpu host", "-accel kvm"}},
		{name: "per-job key", cfg: VMConfig{Image: img, CPUs: 1, MemoryMiB: 512, Accel: "tcg"}, keyFile: "/w/k",
			want: []string{"-fw_cfg name=opt/ci/authorized_keys,file=/w/k"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := qemuArgs(tt.cfg, kernelBoot{Kernel: "/img/vmlinux", Cmdline: "quiet"}, vmFiles{overlay: "/w/disk.qcow2", qmp: "/w/qmp.sock", key: tt.keyFile, netFD: 3})
			joined := " " + strings.Join(args, " ") + " "
			for _, w := range tt.want {
				if !strings.Contains(joined, " "+w+" ") {
					t.Errorf("missing %q in %s", w, joined)
				}
			}
			for _, a := range tt.absent {
				if slices.Contains(args, a) {
					t.Errorf("unexpected %q in %s", a, joined)
				}
			}
			// the guest network is ours (runner/guestnet), on fd 3: no
			// slirp, no port on the host
			if !strings.Contains(joined, " -netdev dgram,id=n0,local.type=fd,local.str=3 ") {
				t.Errorf("guest network not on fd 3: %s", joined)
			}
			if strings.Contains(joined, "user,") || strings.Contains(joined, "hostfwd") {
				t.Errorf("slirp networking in %s", joined)
			}
		})
	}
}

func TestConsole(t *testing.T) {
	var copyBuf bytes.Buffer
	c := newConsole("CI-SSH-READY", &copyBuf)
	c.Write([]byte("[    0.1] booting\r\nsystemd start"))
	c.Write([]byte("ed\r\nCI-SSH-"))
	select {
	case <-c.ready:
		t.Fatal("ready before the marker line completed")
	default:
	}
	c.Write([]byte("READY\n"))
	select {
	case <-c.ready:
	default:
		t.Fatal("marker not seen")
	}
	c.Write([]byte("[    4.2] Kernel panic - not syncing: VFS\n"))
	select {
	case <-c.panicked:
	default:
		t.Fatal("panic not seen")
	}
	if got := c.PanicMessage(); got != "Kernel panic - not syncing: VFS" {
		t.Fatalf("panic message %q", got)
	}
	if !strings.Contains(c.Tail(), "systemd started\nCI-SSH-READY") {
		t.Fatalf("tail = %q", c.Tail())
	}
	if copyBuf.Len() == 0 {
		t.Fatal("console not copied")
	}
	for i := 0; i < 100; i++ {
		c.Write([]byte("line\n"))
	}
	if n := strings.Count(c.Tail(), "\n") + 1; n != consoleTailLines {
		t.Fatalf("tail has %d lines, want %d", n, consoleTailLines)
	}
}

// Console lines reach the setup log as text: a terminal reading the raw
// log (hut builds submit --follow) must not act on the guest's escape
// sequences.
func TestConsoleControlSequences(t *testing.T) {
	var copyBuf bytes.Buffer
	c := newConsole("CI-SSH-READY", &copyBuf)
	c.Write([]byte("\x1b[!p\x1b]104\x07\x1b[?7hCI-SSH-READY\r\n"))
	select {
	case <-c.ready:
	default:
		t.Fatal("marker behind escape sequences not seen")
	}
	c.Write([]byte("[\x1b[0;32m  OK  \x1b[0m] Started \x1b]8;;file://x\x1b\\ssh\x1b]8;;\x1b\\.\n"))
	c.Write([]byte("\x1bc\x1b(B\x1b7reset\x1b8 \xc2\x9b31mc1\xc2\x9d0;t\xc2\x9c \x9b \x00\x08\x7fbell\x07\n"))
	c.Write([]byte("progress 10%\rprogress 100%\r\n"))
	c.Write([]byte("tab\there \xc4\x9b \xff\xfe ok \x1b\n"))
	c.Write([]byte("\x1b]0;an unterminated title\n"))
	want := "CI-SSH-READY\n" +
		"[  OK  ] Started ssh.\n" +
		"reset c1 \ufffd bell\n" +
		"progress 100%\n" +
		"tab\there \u011b \ufffd\ufffd ok \n" +
		"\n"
	if got := copyBuf.String(); got != want {
		t.Fatalf("copied %q\nwant   %q", got, want)
	}
	// a long line without end is cut and cleaned too
	copyBuf.Reset()
	c.Write([]byte(strings.Repeat("\x1b[1mx", 1200)))
	if got := copyBuf.String(); strings.ContainsAny(got, "\x1b") || !strings.HasPrefix(got, "xxx") {
		t.Fatalf("long line copied as %q", got[:40])
	}
}

func TestCheckConfig(t *testing.T) {
	img := &images.Image{Name: "debian/bookworm"}
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  VMConfig
		want string
	}{
		{name: "no image", cfg: VMConfig{}, want: "no image"},
		{name: "cpus", cfg: VMConfig{Image: img, MemoryMiB: 512, Accel: "tcg", WorkDir: dir}, want: "cpus"},
		{name: "auto accel", cfg: VMConfig{Image: img, CPUs: 1, MemoryMiB: 512, Accel: "auto", WorkDir: dir}, want: "ProbeAccel"},
		{name: "no workdir", cfg: VMConfig{Image: img, CPUs: 1, MemoryMiB: 512, Accel: "tcg", WorkDir: dir + "/x"}, want: "work dir"},
		{name: "ok", cfg: VMConfig{Image: img, CPUs: 1, MemoryMiB: 512, Accel: "tcg", WorkDir: dir}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkConfig(&tt.cfg)
			if tt.want == "" {
				if err != nil || tt.cfg.BootTimeout != defaultBootTimeout {
					t.Fatalf("err %v, timeout %s", err, tt.cfg.BootTimeout)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// jobKey makes a per-job key pair.
func jobKey(tb testing.TB) (ssh.PublicKey, ssh.Signer) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	return sp, signer
}

// run runs one command over the VM's connection.
func run(tb testing.TB, vm *VM, cmd string) string {
	tb.Helper()
	s, err := vm.Client().NewSession()
	if err != nil {
		tb.Fatalf("session: %v", err)
	}
	defer s.Close()
	out, err := s.CombinedOutput(cmd)
	if err != nil {
		tb.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return strings.TrimSpace(string(out))
}

func TestVMBootSSHClose(t *testing.T) {
	img := imagestest.Bookworm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pub, signer := jobKey(t)
	var console bytes.Buffer
	work := t.TempDir()
	vm, err := StartVM(ctx, VMConfig{
		Image: img, CPUs: 2, MemoryMiB: 1024, Accel: "tcg", WorkDir: work,
		Console: &syncWriter{w: &console}, BootTimeout: 90 * time.Second,
		AuthorizedKey: pub, ClientSigner: signer,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot to SSH: %s", vm.BootDuration().Round(10*time.Millisecond))
	pid := vm.cmd.Process.Pid
	if got := run(t, vm, "echo hello; id -un; sudo -n id -u; git --version >/dev/null && echo git"); got != "hello\nbuild\n0\ngit" {
		t.Fatalf("guest output %q", got)
	}
	// the per-job key replaces the one baked into the image
	baked, err := loadSigner(img.ClientKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	hk, _ := img.HostKey()
	_, err = vm.dialSSH(ctx, &ssh.ClientConfig{User: "build",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(baked)}, HostKeyCallback: ssh.FixedHostKey(hk)}, 10*time.Second)
	if err == nil {
		t.Error("baked key still accepted although a per-job key was given")
	}
	if err := vm.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("qemu pid %d still exists after Close (kill: %v)", pid, err)
	}
	if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("qemu process group %d still has members after Close", pid)
	}
	if _, err := os.Stat(filepath.Join(work, "disk.qcow2")); !os.IsNotExist(err) {
		t.Fatalf("overlay left behind: %v", err)
	}
	if !strings.Contains(console.String(), img.Meta.ReadyMarker) {
		t.Fatalf("console copy lacks the ready marker:\n%s", console.String())
	}
	if err := vm.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestVMBootFailureReportsConsole(t *testing.T) {
	img := imagestest.Bookworm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// PID 1 exits at once: the kernel panics, panic=-1 and -no-reboot end
	// QEMU, and the error carries the console
	bad := *img
	bad.Meta.Cmdline = img.Meta.Cmdline + " init=/bin/false"
	_, err := StartVM(ctx, VMConfig{Image: &bad, CPUs: 1, MemoryMiB: 512, Accel: "tcg", WorkDir: t.TempDir(), BootTimeout: 90 * time.Second})
	if err == nil {
		t.Fatal("boot with a missing root device succeeded")
	}
	if !strings.Contains(err.Error(), "console:") || !strings.Contains(err.Error(), "Kernel panic") {
		t.Fatalf("error lacks the console tail: %v", err)
	}
	t.Logf("error (expected): %.300s", err)
}

func TestProbeAccelAuto(t *testing.T) {
	imagestest.RequireVM(t)
	start := time.Now()
	accel, warn := ProbeAccel(context.Background(), "auto")
	t.Logf("auto -> %s in %s (warning: %q)", accel, time.Since(start).Round(time.Millisecond), warn)
	if accel != "kvm" && accel != "tcg" {
		t.Fatalf("accel %q", accel)
	}
	if accel == "tcg" && warn == "" {
		t.Fatal("fell back to tcg without a warning")
	}
	if _, err := runProbe(context.Background(), "tcg"); err != nil {
		t.Fatalf("the probe guest fails under TCG: %v", err)
	}
}

// benchBoot boots and closes b.N VMs with spec and reports s/boot.
func benchBoot(b *testing.B, stock bool) {
	img := imagestest.Bookworm(b)
	pub, signer := jobKey(b)
	spec := kernelBoot{}
	if stock {
		spec = stockBoot(img)
	}
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		vm, err := startVM(ctx, VMConfig{Image: img, CPUs: 2, MemoryMiB: 1024, Accel: "tcg",
			WorkDir: b.TempDir(), BootTimeout: 120 * time.Second, AuthorizedKey: pub, ClientSigner: signer}, spec)
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		total += vm.BootDuration()
		b.Logf("boot %d: %s", i+1, vm.BootDuration().Round(10*time.Millisecond))
		b.StopTimer()
		vm.Close()
		cancel()
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/boot")
}

// stockBoot is builds.sr.ht's path as far as it applies without a
// bootloader disk: SeaBIOS loads the bzImage, initramfs-tools' udev
// initrd finds the root disk.
func stockBoot(img *images.Image) kernelBoot {
	return kernelBoot{
		Kernel:  filepath.Join(img.Dir, images.StockKernelFile),
		Initrd:  filepath.Join(img.Dir, images.StockInitrdFile),
		Cmdline: "root=/dev/vda rw console=ttyS0 quiet panic=-1",
	}
}

// BenchmarkBootToSSH: the default image boot (trimmed systemd, PVH vmlinux,
// tiny initrd), QEMU start to SSH connected, 2 vCPUs under TCG.
func BenchmarkBootToSSH(b *testing.B) { benchBoot(b, false) }

// BenchmarkBootStockStyle: the same root filesystem booted the way
// builds.sr.ht boots Debian, minus the bootloader: bzImage through SeaBIOS,
// initramfs-tools (udev) initrd.
func BenchmarkBootStockStyle(b *testing.B) { benchBoot(b, true) }

// syncWriter serialises writes to a buffer (the console copy is written
// from QEMU's output goroutine).
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// TestVMSaveResume saves a booted guest's state and resumes it twice:
// each resumed guest is its own (key, clock, entropy, machine id) and the
// saved boot's key no longer works.
func TestVMSaveResume(t *testing.T) {
	img := imagestest.Bookworm(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pub, signer := jobKey(t)
	work, state := t.TempDir(), t.TempDir()
	vm, err := StartVM(ctx, VMConfig{Image: img, CPUs: 1, MemoryMiB: 1024, Accel: "tcg", WorkDir: work,
		BootTimeout: 90 * time.Second, AuthorizedKey: pub, ClientSigner: signer, ForSnapshot: true})
	if err != nil {
		t.Fatal(err)
	}
	mem := filepath.Join(state, "mem")
	disk, err := vm.SaveState(ctx, mem, false)
	if err != nil {
		vm.Close()
		t.Fatal(err)
	}
	vm.Close()
	saved := filepath.Join(state, "disk.qcow2")
	if err := os.Rename(disk, saved); err != nil {
		t.Fatal(err)
	}
	type identity struct{ machine, random, bootID string }
	var ids []identity
	for i := 0; i < 2; i++ {
		pub2, signer2 := jobKey(t)
		start := time.Now()
		rvm, err := StartVM(ctx, VMConfig{Image: img, CPUs: 1, MemoryMiB: 1024, Accel: "tcg", WorkDir: t.TempDir(),
			AuthorizedKey: pub2, ClientSigner: signer2, Resume: &Resume{Mem: mem, Disk: saved}})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("resume %d to SSH: %s (%s)", i+1, time.Since(start).Round(10*time.Millisecond), rvm.ResumePhases())
		out := run(t, rvm, "date +%s; cat /etc/machine-id; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; cat /proc/sys/kernel/random/boot_id")
		f := strings.Split(out, "\n")
		if len(f) != 4 {
			t.Fatalf("guest output %q", out)
		}
		if sec, _ := strconv.ParseInt(f[0], 10, 64); time.Since(time.Unix(sec, 0)).Abs() > 30*time.Second {
			t.Errorf("resumed guest's clock is %s", time.Unix(sec, 0))
		}
		ids = append(ids, identity{f[1], f[2], f[3]})
		hk, _ := img.HostKey()
		if _, err := rvm.dialSSH(ctx, &ssh.ClientConfig{User: "build", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: ssh.FixedHostKey(hk)}, 10*time.Second); err == nil {
			t.Error("the saved boot's key still logs in to a resumed guest")
		}
		rvm.Close()
	}
	if ids[0].machine == ids[1].machine || ids[0].random == ids[1].random {
		t.Errorf("two resumed guests share an identity: %+v", ids)
	}
	t.Logf("boot_id (kept by every resume of one state): %s / %s", ids[0].bootID, ids[1].bootID)
}

// Images that bring their own bootloader boot through firmware: SeaBIOS
// (QEMU's default) or OVMF, never -kernel.
func TestImageBootFirmware(t *testing.T) {
	for _, tt := range []struct {
		name, firmware string
		want, absent   []string
		err            string
	}{
		{name: "kernel", want: []string{"-kernel /img/vmlinux", "-initrd /img/initrd.img"}, absent: []string{"-bios"}},
		{name: "bios", firmware: images.FirmwareBIOS, absent: []string{"-kernel", "-initrd", "-append", "-bios"}},
		{name: "uefi", firmware: images.FirmwareUEFI, want: []string{"-bios /usr/share/ovmf/OVMF.fd"}, absent: []string{"-kernel"}},
		{name: "unknown", firmware: "coreboot", err: `unknown firmware "coreboot"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			img := &images.Image{Name: "x/y", Arch: "amd64", Dir: "/img", Meta: images.Metadata{Firmware: tt.firmware, Disk: "d.qcow2"}}
			if tt.firmware == "" {
				img.Meta.Kernel, img.Meta.Initrd, img.Meta.Cmdline = "vmlinux", "initrd.img", "quiet"
			}
			spec, err := imageBoot(img)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if tt.firmware == images.FirmwareUEFI && err != nil {
				if _, serr := os.Stat("/usr/share/ovmf/OVMF.fd"); serr != nil && strings.Contains(err.Error(), "install the ovmf package") {
					t.Skip("ovmf is not installed (make deps)")
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			args := qemuArgs(VMConfig{Image: img, CPUs: 1, MemoryMiB: 512, Accel: "tcg"}, spec, vmFiles{overlay: "/w/disk.qcow2", qmp: "/w/qmp.sock", netFD: 3})
			joined := " " + strings.Join(args, " ") + " "
			for _, w := range tt.want {
				if !strings.Contains(joined, " "+w+" ") {
					t.Errorf("missing %q in %s", w, joined)
				}
			}
			for _, a := range tt.absent {
				if slices.Contains(args, a) {
					t.Errorf("unexpected %q in %s", a, joined)
				}
			}
		})
	}
}

// A kernel whose IO-APIC timer check failed (a loaded TCG host) gets a
// second boot, as a boot timeout does; any other panic fails at once.
func TestWaitReadyTimerCheckPanic(t *testing.T) {
	for _, tt := range []struct {
		line  string
		retry bool
	}{
		{line: "[    0.000000] Kernel panic - not syncing: IO-APIC + timer doesn't work!  Boot with apic=debug and send a report.\n", retry: true},
		{line: "[    4.2] Kernel panic - not syncing: VFS: Unable to mount root fs\n", retry: false},
	} {
		vm := &VM{cfg: VMConfig{Image: &images.Image{Name: "x/y"}, BootTimeout: time.Minute},
			console: newConsole("CI-SSH-READY", nil), exited: make(chan struct{})}
		vm.console.Write([]byte(tt.line))
		// QEMU exits after the panic (panic=-1, -no-reboot), not before
		// waitReady saw it
		time.AfterFunc(50*time.Millisecond, func() { close(vm.exited) })
		err := vm.waitReady(context.Background())
		if err == nil || !strings.Contains(err.Error(), "Kernel panic") || errors.Is(err, errBootTimeout) != tt.retry {
			t.Errorf("%q: err = %v; retried: %v, want %v", tt.line, err, errors.Is(err, errBootTimeout), tt.retry)
		}
	}
}
