package runner

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"builds/app"
	"builds/images/imagestest"
)

// Benchmarks report custom metrics; run them with `make bench` (one
// iteration each). The VM ones need BUILDS_VM_TESTS=1 like the VM suite.

// BenchmarkVMJobLatency measures, on the test image: submit → first byte
// of task output, the runner's boot → SSH ready inside that job, and next
// to it a plain StartVM of the same image to SSH ready.
func BenchmarkVMJobLatency(b *testing.B) {
	h, img := newVMHarness(b, func(c *app.Config) { c.Runner.Slots = 1 })
	ready := regexp.MustCompile(`Guest ready after ([0-9.]+)s`)
	var firstByte, boot time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		job := h.submit("image: debian/bookworm\ntasks:\n  - hello: echo first-byte\n")
		h.waitFor("first task output", func() bool {
			return strings.Contains(h.log(job.ID, "hello"), "\nfirst-byte")
		})
		firstByte += time.Since(start)
		h.wait(job.ID)
		m := ready.FindStringSubmatch(h.log(job.ID, ""))
		if m == nil {
			b.Fatalf("no boot time in the setup log:\n%s", h.log(job.ID, ""))
		}
		s, _ := strconv.ParseFloat(m[1], 64)
		boot += time.Duration(s * float64(time.Second))
	}
	b.StopTimer()
	pub, signer := jobKey(b)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	vm, err := StartVM(ctx, VMConfig{Image: img, CPUs: h.cfg.Runner.CPUs, MemoryMiB: h.cfg.Runner.Memory,
		Accel: h.cfg.Runner.Accel, CPUModel: h.cfg.Runner.CPUModel, WorkDir: b.TempDir(),
		BootTimeout: h.cfg.Runner.BootTimeout, AuthorizedKey: pub, ClientSigner: signer})
	if err != nil {
		b.Fatal(err)
	}
	plain := vm.BootDuration()
	vm.Close()
	n := float64(b.N)
	b.ReportMetric(firstByte.Seconds()/n, "submit-to-first-byte-s")
	b.ReportMetric(boot.Seconds()/n, "job-boot-to-ssh-s")
	b.ReportMetric(plain.Seconds(), "plain-startvm-to-ssh-s")
}

// BenchmarkLogThroughput pushes 200 MB of task output through the runner's
// log path (masking, file, LogHub) on the in-process test guest and
// compares it with a plain session running `cat` of the same file.
func BenchmarkLogThroughput(b *testing.B) {
	for _, masked := range []bool{false, true} {
		name := "Plain"
		if masked {
			name = "Masked"
		}
		b.Run(name, func(b *testing.B) {
			h := newHarness(b, func(c *app.Config) { c.Limits.LogSize = 1 << 30 })
			benchLogThroughput(b, h, "debian/stable", masked)
		})
	}
}

// BenchmarkVMLogThroughput is the same through a QEMU guest.
func BenchmarkVMLogThroughput(b *testing.B) {
	h, _ := newVMHarness(b, func(c *app.Config) { c.Limits.LogSize = 1 << 30 })
	benchLogThroughput(b, h, "debian/bookworm", false)
}

func benchLogThroughput(b *testing.B, h *harness, image string, masked bool) {
	const size = 200 << 20
	oauth := ""
	if masked {
		oauth = "oauth: builds.sr.ht/JOBS:RO\n"
	}
	var logDur, catDur time.Duration
	for i := 0; i < b.N; i++ {
		job := h.submit(fmt.Sprintf(`image: %s
shell: true
%stasks:
  - gen: yes 'a line of build output 0123456789 abcdefghijklmnopqrstuvwxyz' | head -c %d > big.txt && sync
  - print: |
      set +x
      cat big.txt
`, image, oauth, size))
		path := h.svc.LogPath(job.ID, "print")
		var start time.Time
		h.waitFor("print task", func() bool {
			if _, err := os.Stat(path); err == nil && start.IsZero() {
				start = time.Now()
			}
			return !start.IsZero()
		})
		for !stepsOver(h, job.ID) {
			time.Sleep(time.Millisecond)
		}
		logDur += time.Since(start)
		if n := app.LogSize(path); n < size {
			b.Fatalf("task log has %d bytes, want >= %d\n%s", n, size, h.log(job.ID, ""))
		}
		r := h.pool.job(job.ID)
		s, err := r.guest.Client().NewSession()
		if err != nil {
			b.Fatal(err)
		}
		out, _ := s.StdoutPipe()
		t0 := time.Now()
		if err := s.Start("cat big.txt"); err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, out)
		s.Wait()
		catDur += time.Since(t0)
		if n != size {
			b.Fatalf("ssh cat read %d bytes", n)
		}
		h.pool.stopRun(job.ID)
		h.wait(job.ID)
	}
	mb := float64(size) * float64(b.N) / 1e6
	b.ReportMetric(mb/logDur.Seconds(), "log-MB/s")
	b.ReportMetric(mb/catDur.Seconds(), "sshcat-MB/s")
}

// transferServer serves the guest-network benchmark on 127.0.0.1: a
// connection sends one byte, 'd' to download size bytes, 'u' to upload
// until EOF, 'q' for a one-byte answer; each transfer's host-side time
// goes to the channel.
func transferServer(b *testing.B, size int) (netip.AddrPort, chan time.Duration) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	times := make(chan time.Duration, 16)
	go func() {
		chunk := make([]byte, 256<<10)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				cmd := make([]byte, 1)
				if _, err := io.ReadFull(c, cmd); err != nil {
					return
				}
				start := time.Now()
				switch cmd[0] {
				case 'd':
					for left := size; left > 0; left -= len(chunk) {
						if _, err := c.Write(chunk[:min(left, len(chunk))]); err != nil {
							return
						}
					}
					times <- time.Since(start)
				case 'u':
					if n, _ := io.Copy(io.Discard, c); n >= int64(size) {
						times <- time.Since(start)
					}
				case 'q':
					c.Write([]byte("k"))
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), times
}

// BenchmarkVMGuestNetwork compares, inside one guest, the runner's own
// network (guestnet, eth0) with QEMU's slirp user networking (the old
// path, on a second NIC): download and upload throughput to a host
// service, and the time of a TCP connect and one-byte exchange.
func BenchmarkVMGuestNetwork(b *testing.B) {
	const size = 64 << 20
	img := imagestest.Bookworm(b)
	addr, times := transferServer(b, size)
	pub, signer := jobKey(b)
	policy, err := app.NewGuestPolicy(app.GuestInternet, []netip.AddrPort{addr})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	vm, err := startVM(ctx, VMConfig{Image: img, CPUs: 2, MemoryMiB: 1024, Accel: "tcg", WorkDir: b.TempDir(),
		BootTimeout: 2 * time.Minute, AuthorizedKey: pub, ClientSigner: signer, Network: policy},
		kernelBoot{Extra: []string{"-netdev", "user,id=n1,net=10.0.3.0/24",
			"-device", "virtio-net-pci,netdev=n1,mac=52:54:00:12:34:57"}})
	if err != nil {
		b.Fatal(err)
	}
	defer vm.Close()
	run(b, vm, "sudo ip link set eth1 up && sudo ip addr add 10.0.3.15/24 dev eth1")
	paths := []struct{ name, host string }{{"guestnet", "10.0.2.2"}, {"slirp", "10.0.3.2"}}
	for _, p := range paths {
		tcp := fmt.Sprintf("/dev/tcp/%s/%d", p.host, addr.Port())
		var down, up time.Duration
		for i := 0; i < b.N; i++ {
			run(b, vm, fmt.Sprintf("exec 3<>%s; printf d >&3; cat <&3 >/dev/null", tcp))
			down += <-times
			run(b, vm, fmt.Sprintf("exec 3<>%s; printf u >&3; head -c %d /dev/zero >&3; exec 3>&-", tcp, size))
			up += <-times
		}
		out := run(b, vm, fmt.Sprintf(`s=$(date +%%s%%N); for i in $(seq 50); do exec 3<>%s; printf q >&3; read -n1 x <&3; exec 3<&-; done; echo $(( ($(date +%%s%%N) - s) / 50000 ))`, tcp))
		us, _ := strconv.Atoi(strings.TrimSpace(out))
		n := float64(b.N)
		b.ReportMetric(float64(size)*n/down.Seconds()/1e6, p.name+"-down-MB/s")
		b.ReportMetric(float64(size)*n/up.Seconds()/1e6, p.name+"-up-MB/s")
		b.ReportMetric(float64(us)/1000, p.name+"-connect-ms")
	}
}

// BenchmarkVMJobStart measures submit → first byte of task output for a
// job that boots its guest and for one that resumes its image's snapshot,
// and, in the same run, a stock-style boot (bzImage through SeaBIOS,
// initramfs-tools) to SSH, the way builds.sr.ht starts a guest.
func BenchmarkVMJobStart(b *testing.B) {
	h, img := newVMHarness(b, func(c *app.Config) { c.Runner.Slots = 1 })
	booter := h.pool.booter.(*QEMUBooter)
	firstByte := func() time.Duration {
		start := time.Now()
		job := h.submit("image: debian/bookworm\ntasks:\n  - hello: echo first-byte\n")
		h.waitFor("first task output", func() bool {
			return strings.Contains(h.log(job.ID, "hello"), "\nfirst-byte")
		})
		d := time.Since(start)
		h.wait(job.ID)
		return d
	}
	var cold, resumed time.Duration
	for i := 0; i < b.N; i++ {
		cold += firstByte()
	}
	booter.UseSnapshots(context.Background(), b.TempDir(), 0)
	firstByte() // boots and has the snapshot made
	shape := shapeOf(img, VMConfig{CPUs: h.cfg.Runner.CPUs, MemoryMiB: h.cfg.Runner.Memory, CPUModel: h.cfg.Runner.CPUModel, Accel: h.cfg.Runner.Accel}, booter.qemu())
	h.waitFor("the snapshot", func() bool { _, _, ok := booter.snaps.find(shape); return ok })
	_, meta, _ := booter.snaps.find(shape)
	for i := 0; i < b.N; i++ {
		resumed += firstByte()
	}
	// with a warm guest waiting for each job, as when jobs do not come
	// all at once
	booter.warm.max = 1
	b.Cleanup(func() { booter.Close() })
	waitWarm := func() {
		h.waitFor("a warm guest", func() bool {
			booter.warm.mu.Lock()
			defer booter.warm.mu.Unlock()
			return len(booter.warm.guests) > 0
		})
	}
	firstByte() // fills the pool
	var warm time.Duration
	for i := 0; i < b.N; i++ {
		waitWarm()
		warm += firstByte()
	}
	b.StopTimer()
	pub, signer := jobKey(b)
	var stock time.Duration
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		vm, err := startVM(ctx, VMConfig{Image: img, CPUs: h.cfg.Runner.CPUs, MemoryMiB: h.cfg.Runner.Memory, Accel: h.cfg.Runner.Accel,
			WorkDir: b.TempDir(), BootTimeout: 2 * time.Minute, AuthorizedKey: pub, ClientSigner: signer}, stockBoot(img))
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		stock += vm.BootDuration()
		vm.Close()
		cancel()
	}
	n := float64(b.N)
	b.ReportMetric(cold.Seconds()/n, "boot-first-byte-s")
	b.ReportMetric(resumed.Seconds()/n, "snapshot-first-byte-s")
	b.ReportMetric(warm.Seconds()/n, "warm-first-byte-s")
	b.ReportMetric(warm.Seconds()/stock.Seconds(), "warm/stock")
	b.ReportMetric(stock.Seconds()/n, "stock-boot-to-ssh-s")
	b.ReportMetric(resumed.Seconds()/stock.Seconds(), "snapshot/stock")
	b.ReportMetric(float64(meta.MemSize)/(1<<20), "snapshot-mem-MiB")
	b.ReportMetric(float64(meta.DiskSize)/(1<<20), "snapshot-disk-MiB")
}

// BenchmarkVMLayers measures a job with `packages: [build-essential]` (in
// the image already, as on builds.sr.ht, so the first run's install finds
// nothing to do) and one with packages the image lacks, end
// to end from submit, on the first run (install, layer saved) against the
// second (layer hit: a warm guest of the layer, as with the default
// [runner] warm-guests = 1, and the layer resumed by the job itself);
// then the size of each layer and the resume of the first layer once the
// cache holds several.
func BenchmarkVMLayers(b *testing.B) {
	h, img := newVMHarness(b, func(c *app.Config) { c.Runner.Slots = 1 })
	booter := h.pool.booter.(*QEMUBooter)
	booter.UseSnapshots(context.Background(), b.TempDir(), 0)
	layers := NewLayerStore(b.TempDir(), time.Hour, 100<<30, nil)
	booter.UseLayers(layers)
	shape := shapeOf(img, VMConfig{CPUs: h.cfg.Runner.CPUs, MemoryMiB: h.cfg.Runner.Memory, CPUModel: h.cfg.Runner.CPUModel, Accel: h.cfg.Runner.Accel}, booter.qemu())
	resumedIn := regexp.MustCompile(`Resumed \S+ with its packages from a layer in ([0-9.]+)s`)
	run := func(pkgs string) (time.Duration, float64) {
		start := time.Now()
		job := h.submit("image: debian/bookworm\npackages: [" + pkgs + "]\ntasks:\n  - t: echo done\n")
		got := h.wait(job.ID)
		d := time.Since(start)
		logs := h.log(job.ID, "")
		if got.Status != app.JobSuccess {
			b.Fatalf("status %s\n%s", got.Status, logs)
		}
		var restore float64
		if m := resumedIn.FindStringSubmatch(logs); m != nil {
			restore, _ = strconv.ParseFloat(m[1], 64)
		}
		return d, restore
	}
	waitLayers := func(n int) {
		h.waitFor(fmt.Sprintf("%d layers", n), func() bool { l, _ := layers.List(); return len(l) >= n })
	}
	run("") // makes the base snapshot
	h.waitFor("the snapshot", func() bool { _, _, ok := booter.snaps.find(shape); return ok })
	// with [runner] warm-guests = 1, the default: the layer a job saved
	// is resumed ahead for the next job asking for it
	booter.warm.max = 1
	b.Cleanup(func() { booter.Close() })
	waitWarm := func(key string) {
		h.waitFor("a warm guest of the layer", func() bool {
			booter.warm.mu.Lock()
			defer booter.warm.mu.Unlock()
			return len(booter.warm.guests) > 0 && booter.warm.guests[0].layer == key
		})
	}
	sets := []struct{ name, pkgs string }{{"build-essential", "build-essential"}, {"cmake-libssl", "cmake, libssl-dev"}}
	for i, s := range sets {
		var first, warm, cold time.Duration
		var restore float64
		key := layerKey(shape, &layerRecipe{Packages: strings.Split(strings.ReplaceAll(s.pkgs, " ", ""), ",")})
		for j := 0; j < b.N; j++ {
			if j > 0 {
				layers.Remove(key)
			}
			d, _ := run(s.pkgs)
			first += d
			waitLayers(i + 1)
			waitWarm(key)
			d, _ = run(s.pkgs)
			warm += d
			waitWarm(key) // made again for the next job
			if g := booter.warm.take(shape, key); g != nil {
				booter.warm.shut(g) // the next resumes the layer itself
			}
			d, r := run(s.pkgs)
			cold += d
			restore += r
		}
		n := float64(b.N)
		b.ReportMetric(first.Seconds()/n, s.name+"-first-s")
		b.ReportMetric(warm.Seconds()/n, s.name+"-layer-warm-s")
		b.ReportMetric(cold.Seconds()/n, s.name+"-layer-s")
		b.ReportMetric(first.Seconds()/warm.Seconds(), s.name+"-first/warm-layer")
		b.ReportMetric(first.Seconds()/cold.Seconds(), s.name+"-first/layer")
		b.ReportMetric(restore/n, s.name+"-restore-s")
	}
	list, _ := layers.List()
	for _, l := range list {
		name := strings.Join(l.Recipe.Packages, "+")
		b.ReportMetric(float64(l.MemSize)/(1<<20), name+"-mem-MiB")
		b.ReportMetric(float64(l.DiskSize)/(1<<20), name+"-disk-MiB")
	}
	// the cache grows: more layers, then the first one resumed again
	for _, extra := range []string{"hello", "jq", "zstd"} {
		run(extra)
	}
	waitLayers(len(sets) + 3)
	_, r := run(sets[0].pkgs)
	b.ReportMetric(r, "build-essential-restore-5-layers-s")
}
