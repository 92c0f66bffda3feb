package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"builds/app"
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
		h.pool.CancelJob(job.ID)
		h.wait(job.ID)
	}
	mb := float64(size) * float64(b.N) / 1e6
	b.ReportMetric(mb/logDur.Seconds(), "log-MB/s")
	b.ReportMetric(mb/catDur.Seconds(), "sshcat-MB/s")
}
