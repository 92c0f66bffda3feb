// Package runner executes build jobs: it claims queued jobs from the
// service, boots a fresh VM per job, runs the manifest over SSH, streams
// the logs to the data dir and reports progress through *app.Service.
package runner

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"builds/app"
	"builds/images"
)

// Guest is a booted build environment reachable over one SSH connection.
// The runner opens a session per command on Client.
type Guest interface {
	// Client is the SSH connection to the guest, logged in as the build
	// user whose home is the session's working directory.
	Client() *ssh.Client
	// InstallCommand returns the shell command that installs packages.
	InstallCommand(pkgs []string) string
	// AddRepoCommand returns the shell command that adds a package
	// repository given as the manifest's "name: source" entry.
	AddRepoCommand(name, source string) (string, error)
	// Close tears the environment down and releases everything it holds.
	Close() error
}

// BootSpec says what to boot for a job.
type BootSpec struct {
	JobID int64
	Image string // as written in the manifest (aliases allowed)
	Arch  string // "" = the image's default
	// Console receives the guest's serial console (setup log).
	Console io.Writer
	// Logf writes a line to the job's setup log; booters use it for
	// "Booting image ..." and warnings such as an acceleration fallback.
	Logf func(format string, args ...any)
	// Install is what the job installs first (repositories, packages):
	// a booter with package layers resumes a guest that has it already
	// (the guest's FromLayer says so). Nil installs nothing.
	Install *app.Manifest
	// NoLayer keeps the job from using and making package layers.
	NoLayer bool
}

// Booter makes one Guest per job. Boot returns once the guest accepts SSH
// sessions, or fails when ctx ends.
type Booter interface {
	Boot(ctx context.Context, spec BootSpec) (Guest, error)
}

// QEMUBooter boots a fresh QEMU VM per job from the image catalogue, on a
// qcow2 overlay in [runner] work-dir, logged into with a per-job key.
type QEMUBooter struct {
	// Log receives the acceleration warning (default slog.Default()).
	Log *slog.Logger
	// Metrics counts job guests and times their start (nil: not measured).
	Metrics app.Metrics

	cfg     *app.Config
	catalog *images.Catalog
	network *app.GuestPolicy
	// snaps holds the saved guests jobs resume from (nil: always boot);
	// warm the guests resumed ahead of time (warm.go); layers the saved
	// guests with packages installed (layers.go; nil: none).
	snaps  *snapshotStore
	warm   *warmPool
	layers *LayerStore
	// bg bounds background work (snapshot making) to the booter's life.
	bg context.Context

	mode      string
	accelOnce sync.Once
	accel     string
	warning   string
	qemuOnce  sync.Once
	qemuVer   string
}

// NewQEMUBooter returns a booter. accel is "kvm", "tcg" or "auto"; with
// "auto" the first boot times a tiny KVM guest (ProbeAccel) and the
// verdict is kept. A fallback warning goes to the server log once and to
// every job's setup log. Guests get the network of [runner]
// guest-network and guest-allow.
func NewQEMUBooter(cfg *app.Config, catalog *images.Catalog, accel string) (*QEMUBooter, error) {
	policy, err := cfg.GuestPolicy()
	if err != nil {
		return nil, fmt.Errorf("guest network: %w", err)
	}
	return &QEMUBooter{Log: slog.Default(), cfg: cfg, catalog: catalog, network: policy, mode: accel, bg: context.Background()}, nil
}

// UseSnapshots makes jobs resume guests saved in dir instead of booting
// them (snapshot.go), with up to warm of them resumed ahead of time
// (warm.go); background work ends with ctx, and Close shuts the waiting
// guests down.
func (b *QEMUBooter) UseSnapshots(ctx context.Context, dir string, warm int) {
	b.snaps = newSnapshotStore(dir, b.Log)
	b.warm = &warmPool{max: warm, b: b, filling: map[string]bool{}}
	b.bg = ctx
}

// UseLayers makes jobs resume guests with their packages installed
// (layers.go), from ls; it needs snapshots on (UseSnapshots).
func (b *QEMUBooter) UseLayers(ls *LayerStore) { b.layers = ls }

var _ app.VMCache = (*QEMUBooter)(nil)

// VMCacheEntries implements app.VMCache: the snapshots and layers kept.
func (b *QEMUBooter) VMCacheEntries() ([]app.VMCacheEntry, error) {
	var out []app.VMCacheEntry
	if b.snaps != nil {
		ms, err := b.snaps.list()
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			out = append(out, app.VMCacheEntry{Kind: "snapshot", Key: m.Key, Image: m.Shape.Image, Arch: m.Shape.Arch,
				Created: m.Created, Size: m.MemSize + m.DiskSize})
		}
	}
	if b.layers != nil {
		ls, err := b.layers.List()
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			out = append(out, app.VMCacheEntry{Kind: "layer", Key: l.Key, Image: l.Shape.Image, Arch: l.Shape.Arch,
				Packages: l.Recipe.Packages, Created: l.Created, LastUsed: l.LastUsed, Size: l.Size})
		}
	}
	return out, nil
}

// Close shuts down the guests waiting for jobs.
func (b *QEMUBooter) Close() error {
	if b.warm != nil {
		b.warm.close()
	}
	return nil
}

// qemu returns QEMU's version line, once.
func (b *QEMUBooter) qemu() string {
	b.qemuOnce.Do(func() {
		v, err := qemuVersion()
		if err != nil {
			b.Log.Warn("no QEMU version; VM snapshots are off", "err", err)
		}
		b.qemuVer = v
	})
	return b.qemuVer
}

// Accel resolves (once) and returns the accelerator and its warning.
func (b *QEMUBooter) Accel(ctx context.Context) (accel, warning string) {
	b.accelOnce.Do(func() {
		b.accel, b.warning = ProbeAccel(ctx, b.mode)
		if b.warning != "" {
			b.Log.Warn("vm acceleration", "accel", b.accel, "warning", b.warning)
		}
	})
	return b.accel, b.warning
}

// Boot implements Booter.
func (b *QEMUBooter) Boot(ctx context.Context, spec BootSpec) (Guest, error) {
	img, err := b.catalog.Lookup(spec.Image, spec.Arch)
	if err != nil {
		arch := spec.Arch
		if arch == "" {
			arch = "default"
		}
		spec.Logf("Booting image %s (%s)", spec.Image, arch)
		return nil, err
	}
	accel, warning := b.Accel(ctx)
	if warning != "" {
		spec.Logf("Warning: %s", warning)
	}
	dir := filepath.Join(b.cfg.Runner.WorkDir, fmt.Sprintf("job-%d", spec.JobID))
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("vm work dir: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vm work dir: %w", err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("job key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("job key: %w", err)
	}
	spec.Logf("Booting image %s (%s)", spec.Image, img.Arch)
	cfg := VMConfig{
		Image:         img,
		CPUs:          b.cfg.Runner.CPUs,
		MemoryMiB:     b.cfg.Runner.Memory,
		Accel:         accel,
		CPUModel:      b.cfg.Runner.CPUModel,
		WorkDir:       dir,
		Console:       spec.Console,
		BootTimeout:   b.cfg.Runner.BootTimeout,
		AuthorizedKey: signer.PublicKey(),
		ClientSigner:  signer,
		Network:       b.network,
		NetRefused:    refusalLogger(spec.Logf),
	}
	shape := b.vmShape(img, cfg)
	g := &qemuGuest{img: img, dir: dir, stats: b.Metrics}
	mode := fmt.Sprintf("%s, %d CPU, %d MiB; guest network: %s", strings.ToUpper(accel), cfg.CPUs, cfg.MemoryMiB, b.network.Mode())
	if recipe := recipeOf(spec.Install); recipe != nil && !spec.NoLayer && b.layers != nil && shape != (vmShape{}) {
		g.layers, g.shape, g.recipe, g.layerKey = b.layers, shape, recipe, layerKey(shape, recipe)
		bare := cfg
		bare.Console, bare.NetRefused = nil, nil
		key := g.layerKey
		g.warmLayer = func() { b.warm.fill(shape, key, bare, b.layerSource(key)) }
		handover := time.Now()
		if w, info := b.takeWarmLayer(shape, key); w != nil {
			w.h.attach(spec.Console, cfg.NetRefused)
			os.RemoveAll(dir)
			g.vm, g.dir, g.base, g.fromLayer = w.vm, w.dir, w.base, info
			spec.Logf("Resumed %s with its packages from a layer in %.1fs (%s, waiting %s)", spec.Image, w.resumed.Seconds(), mode,
				time.Since(w.ready).Round(time.Second))
			g.started("warm", time.Since(handover))
			g.warmLayer()
			return g, nil
		}
		if vm, info, took := b.resumeLayer(ctx, spec, cfg, key); vm != nil {
			g.vm, g.fromLayer = vm, info
			spec.Logf("Resumed %s with its packages from a layer in %.1fs (%s)", spec.Image, took.Seconds(), mode)
			g.started("layer", took)
			g.warmLayer()
			return g, nil
		}
	}
	handover := time.Now()
	if w := b.resume(ctx, spec, cfg, shape, dir); w != nil {
		if w.dir != dir {
			os.RemoveAll(dir)
		}
		waited := ""
		if !w.ready.IsZero() {
			waited = fmt.Sprintf(", waiting %s", time.Since(w.ready).Round(time.Second))
		}
		spec.Logf("Resumed %s from snapshot in %.1fs (%s%s)", spec.Image, w.resumed.Seconds(), mode, waited)
		if b.Log != nil {
			b.Log.Debug("vm resumed", "image", spec.Image, "took", w.resumed, "phases", w.vm.ResumePhases())
		}
		g.vm, g.dir, g.base = w.vm, w.dir, w.base
		if w.ready.IsZero() {
			g.started("snapshot", w.resumed)
		} else {
			g.started("warm", time.Since(handover)) // resumed ahead: the job waits only for the handover
		}
		return g, nil
	} else if err := ctx.Err(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	spec.Logf("Waiting for guest to settle")
	vm, err := StartVM(ctx, cfg)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	spec.Logf("Guest ready after %.1fs (%s)", vm.BootDuration().Seconds(), mode)
	g.vm, g.base = vm, img.Disk()
	g.started("boot", vm.BootDuration())
	return g, nil
}

// resumeLayer starts the guest from the layer key, if there is a good
// one; a layer that fails to resume is removed.
func (b *QEMUBooter) resumeLayer(ctx context.Context, spec BootSpec, cfg VMConfig, key string) (*VM, *LayerInfo, time.Duration) {
	r, info, ok := b.layers.find(key)
	if !ok {
		return nil, nil, 0
	}
	defer b.layers.release(key) // QEMU holds the files once it started
	cfg.Resume = r
	start := time.Now()
	vm, err := StartVM(ctx, cfg)
	if err == nil {
		return vm, info, time.Since(start)
	}
	if errors.Is(err, errResume) && ctx.Err() == nil {
		spec.Logf("Warning: the package layer did not resume (%s); installing instead", firstLine(err.Error()))
		b.layers.mu.Lock()
		b.layers.removeLocked(key, err.Error())
		b.layers.mu.Unlock()
	}
	return nil, nil, 0
}

// takeWarmLayer hands over a warm guest resumed from the layer key, if
// one waits and the layer is still good (not expired, removed or changed
// meanwhile: then the guest is shut down).
func (b *QEMUBooter) takeWarmLayer(shape vmShape, key string) (*warmGuest, *LayerInfo) {
	w := b.warm.take(shape, key)
	if w == nil {
		return nil, nil
	}
	_, info, ok := b.layers.find(key)
	if !ok {
		b.warm.shut(w)
		return nil, nil
	}
	b.layers.release(key)
	return w, info
}

// layerSource is the layer key's saved state for a warm guest. Unlike a
// job's, a warm guest's start does not hold the layer: removing it
// meanwhile (builds layer rm, expiry, eviction) just fails that start, or
// the guest is shut down when a job would take it (takeWarmLayer).
func (b *QEMUBooter) layerSource(key string) resumeSource {
	return func() (*Resume, func(), error) {
		r, _, ok := b.layers.find(key)
		if !ok {
			return nil, nil, fmt.Errorf("layer %s is gone", key)
		}
		b.layers.release(key)
		return r, func() {}, nil
	}
}

// vmShape is what a saved guest for cfg must match; the zero shape (no
// snapshots, an image without a control channel) never does.
func (b *QEMUBooter) vmShape(img *images.Image, cfg VMConfig) vmShape {
	if b.snaps == nil || img.Meta.Control == "" {
		return vmShape{}
	}
	q := b.qemu()
	if q == "" {
		return vmShape{}
	}
	return shapeOf(img, cfg, q)
}

// resume starts the job's guest from its image's snapshot, if there is a
// good one: a warm guest if one waits (another is then prepared), else a
// guest resumed now in dir. Otherwise it has a snapshot made in the
// background and returns nil, and the job boots. A snapshot that fails
// to resume is discarded (and made again).
func (b *QEMUBooter) resume(ctx context.Context, spec BootSpec, cfg VMConfig, shape vmShape, dir string) *warmGuest {
	if shape == (vmShape{}) {
		return nil
	}
	bare := cfg
	bare.Console, bare.NetRefused = nil, nil
	r, _, ok := b.snaps.find(shape)
	if !ok {
		b.snaps.ensure(b.bg, shape, bare)
		return nil
	}
	if g := b.warm.take(shape, ""); g != nil {
		g.h.attach(spec.Console, cfg.NetRefused)
		b.warm.fill(shape, "", bare, fixedSource(r))
		return g
	}
	cfg.Resume = r
	start := time.Now()
	vm, err := StartVM(ctx, cfg)
	switch {
	case err == nil:
		b.warm.fill(shape, "", bare, fixedSource(r))
		return &warmGuest{shape: shape, vm: vm, img: cfg.Image, dir: dir, base: r.Disk, resumed: time.Since(start)}
	case errors.Is(err, errResume) && ctx.Err() == nil:
		spec.Logf("Warning: the snapshot of %s did not resume (%s); booting instead", spec.Image, firstLine(err.Error()))
		b.snaps.discard(shape.key(), err.Error())
		b.warm.drop(shape.key())
		b.snaps.ensure(b.bg, shape, bare)
	}
	return nil
}

// firstLine cuts a multi-line error (console tails) to its first line.
func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// loggedRefusals is how many refused guest connections a setup log shows;
// a script probing the host would otherwise flood it.
const loggedRefusals = 10

// refusalLogger tells the job's setup log which connections the guest
// network refused and why, so a build that fails to reach something says
// so instead of timing out silently.
func refusalLogger(logf func(string, ...any)) func(string, *app.GuestRefusal) {
	var mu sync.Mutex
	n := 0
	return func(proto string, r *app.GuestRefusal) {
		mu.Lock()
		defer mu.Unlock()
		switch n++; {
		case n <= loggedRefusals:
			logf("Guest network refused %s %s", proto, r)
		case n == loggedRefusals+1:
			logf("Guest network refused more connections; only the first %d are logged", loggedRefusals)
		}
	}
}

// qemuGuest is a Guest running in QEMU.
type qemuGuest struct {
	vm   *VM
	img  *images.Image
	dir  string
	base string // the disk the VM's overlay started on

	// package layers: where to save one, and what it holds
	layers    *LayerStore
	shape     vmShape
	recipe    *layerRecipe
	layerKey  string
	fromLayer *LayerInfo // the layer the guest was resumed from, if any
	warmLayer func()     // has a guest of the layer made ahead for the next job

	stats   app.Metrics // nil: not measured
	counted bool        // counted in stats' running VMs
}

// started measures a job guest ready after took and counts it running.
func (g *qemuGuest) started(how string, took time.Duration) {
	if g.stats != nil {
		g.stats.VMStarted(how, took)
		g.stats.VMRunning(1)
		g.counted = true
	}
}

// FromLayer returns the package layer the guest was resumed from (its
// repositories and packages are installed), nil if none.
func (g *qemuGuest) FromLayer() *LayerInfo { return g.fromLayer }

// SaveLayer saves the guest, once its repositories and packages are
// installed and nothing else of the job is in it, as the package layer of
// what it installed. The guest goes on running.
func (g *qemuGuest) SaveLayer(ctx context.Context, jobID int64) (*LayerInfo, error) {
	if g.layers == nil || g.fromLayer != nil {
		return nil, errors.New("no package layer to save")
	}
	mem := filepath.Join(g.dir, "layer.mem")
	disk, err := g.vm.SaveState(ctx, mem, true)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	info := &LayerInfo{Key: g.layerKey, Shape: g.shape, Recipe: *g.recipe, Backing: g.base, Created: now, LastUsed: now, JobID: jobID}
	if err := g.layers.add(info, mem, disk); err != nil {
		os.Remove(mem)
		return nil, err
	}
	if g.warmLayer != nil {
		g.warmLayer()
	}
	return info, nil
}

func (g *qemuGuest) Client() *ssh.Client                 { return g.vm.Client() }
func (g *qemuGuest) InstallCommand(pkgs []string) string { return g.img.InstallCommand(pkgs) }
func (g *qemuGuest) AddRepoCommand(name, source string) (string, error) {
	return g.img.AddRepoCommand(name, source)
}

// Close stops the VM (QMP quit, TERM, KILL; always reaped) and removes
// its work dir.
func (g *qemuGuest) Close() error {
	if g.counted {
		g.counted = false
		g.stats.VMRunning(-1)
	}
	err := g.vm.Close()
	if rerr := os.RemoveAll(g.dir); err == nil && rerr != nil {
		err = fmt.Errorf("remove vm work dir: %w", rerr)
	}
	return err
}

// errNoExitStatus is returned when a command ended without reporting an
// exit status: the connection or the guest went away.
var errNoExitStatus = errors.New("the guest closed the session without an exit status (connection lost?)")

// runCommand runs cmd in a new session on c and returns its exit status.
// stdin may be nil. err is set when the command did not run to completion:
// the session could not start, the connection broke, or ctx ended (then
// the session is killed and ctx's cause is returned).
func runCommand(ctx context.Context, c *ssh.Client, cmd string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if err := context.Cause(ctx); err != nil {
		return -1, err
	}
	s, err := c.NewSession()
	if err != nil {
		return -1, fmt.Errorf("open ssh session: %w", err)
	}
	defer s.Close()
	s.Stdin, s.Stdout, s.Stderr = stdin, stdout, stderr
	if err := s.Start(cmd); err != nil {
		return -1, fmt.Errorf("start command: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Signal(ssh.SIGKILL)
		s.Close()
		// Closing the channel ends Wait at once unless the transport is
		// wedged; the VM is about to be torn down either way.
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
		return -1, context.Cause(ctx)
	}
	var exit *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit):
		if exit.Signal() != "" {
			return 128 + signalNumber(exit.Signal()), nil
		}
		return exit.ExitStatus(), nil
	case errors.As(err, &missing):
		return -1, errNoExitStatus
	}
	return -1, fmt.Errorf("run command: %w", err)
}

// signalNumber maps the common SSH signal names to their Linux numbers so
// a killed command reports a shell-like status (128+n).
func signalNumber(name string) int {
	switch ssh.Signal(name) {
	case ssh.SIGHUP:
		return 1
	case ssh.SIGINT:
		return 2
	case ssh.SIGKILL:
		return 9
	case ssh.SIGSEGV:
		return 11
	case ssh.SIGPIPE:
		return 13
	case ssh.SIGTERM:
		return 15
	}
	return 0
}

// guestPath renders a user-given guest path for the remote shell: "~" and
// "~/..." refer to the build user's home, everything else is quoted as is
// (relative paths are relative to home, the session's working directory).
func guestPath(p string) string {
	switch {
	case p == "~":
		return `"$HOME"`
	case strings.HasPrefix(p, "~/"):
		return `"$HOME"/` + app.ShellQuote(strings.TrimLeft(p[2:], "/"))
	}
	return app.ShellQuote(p)
}
