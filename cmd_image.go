package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/ssh"

	"builds/app"
	"builds/images"
	"builds/runner"
)

// runImage runs `builds image <sub> [args]`. cfg is the loaded configuration.
func runImage(ctx context.Context, cfg *app.Config, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("image: want build, list, rm, export, import, import-cloud or check")
	}
	sub, args := args[0], args[1:]
	cat := &images.Catalog{Dir: cfg.Images.Dir, Aliases: cfg.Images.Aliases}
	fs := flag.NewFlagSet("image "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	arch := fs.String("arch", "", "architecture (default: the image's default, amd64)")
	switch sub {
	case "build":
		boot := fs.String("boot", images.BootSystemd, "default PID 1: systemd or ciinit")
		mirror := fs.String("mirror", "", `Debian mirror "URL [SECURITY-URL]" (default: [images] debian-mirror, else the host's apt sources)`)
		name, err := oneName(fs, args, sub)
		if err != nil {
			return err
		}
		return imageBuild(ctx, cfg, cat, name, *arch, *boot, *mirror, stderr)
	case "list":
		if pos, err := parseFlags(fs, args, false); err != nil {
			return err
		} else if len(pos) > 0 {
			return usagef("image list: unexpected argument %q", pos[0])
		}
		return imageList(cat, stdout)
	case "rm":
		name, err := oneName(fs, args, sub)
		if err != nil {
			return err
		}
		done, err := cat.Remove(name, *arch)
		for _, a := range done {
			fmt.Fprintf(stderr, "removed %s (%s)\n", name, a)
		}
		return err
	case "export":
		name, err := oneName(fs, args, sub)
		if err != nil {
			return err
		}
		if isTerminal(stdout) {
			return usagef("image export: redirect standard output to a file")
		}
		img, err := cat.Lookup(name, *arch)
		if err != nil {
			return err
		}
		if err := cat.Export(img, stdout); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "exported %s (%s)\n", img.Name, img.Arch)
		return nil
	case "import":
		replace := fs.Bool("replace", false, "replace an existing image of the same name and arch")
		if pos, err := parseFlags(fs, args, false); err != nil {
			return err
		} else if len(pos) > 0 {
			return usagef("image import: reads the archive from standard input; unexpected argument %q", pos[0])
		}
		if isTerminal(stdin) {
			return usagef("image import: redirect standard input from an archive file")
		}
		img, err := cat.Import(stdin, *replace)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "imported %s (%s), built %s\n", img.Name, img.Arch, img.Meta.Built.Format(time.DateTime))
		makeSnapshot(ctx, cfg, img, stderr)
		return nil
	case "import-cloud":
		family := fs.String("family", "", "package family: apt, apk, pacman, dnf, zypper or pkg (default: what the guest has)")
		firmware := fs.String("firmware", "", "bios or uefi (default: from the disk's partition table)")
		replace := fs.Bool("replace", false, "replace an existing image of the same name and arch")
		timeout := fs.Duration("timeout", runner.DefaultPrepareTimeout, "how long the preparing boot may take")
		pos, err := parseFlags(fs, args, false)
		if err != nil {
			return err
		}
		if len(pos) != 2 {
			return usagef("image import-cloud: want NAME FILE, e.g. ubuntu/noble noble-server-cloudimg-amd64.img")
		}
		opt := images.CloudOptions{Arch: *arch, Family: images.Family(*family), Firmware: *firmware, Replace: *replace}
		return imageImportCloud(ctx, cfg, cat, pos[0], pos[1], opt, *timeout, stderr)
	case "check":
		name, err := oneName(fs, args, sub)
		if err != nil {
			return err
		}
		img, err := cat.Lookup(name, *arch)
		if err != nil {
			return err
		}
		return imageCheck(ctx, cfg, img, stdout, stderr)
	}
	return usagef("image: unknown command %q (want build, list, rm, export, import, import-cloud or check)", sub)
}

// oneName parses flags and returns the single image name argument.
func oneName(fs *flag.FlagSet, args []string, sub string) (string, error) {
	pos, err := parseFlags(fs, args, false)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 {
		return "", usagef("image %s: want one image name, e.g. debian/bookworm", sub)
	}
	return pos[0], nil
}

// imageBuild builds an image with a progress display on a terminal and
// plain progress lines otherwise.
func imageBuild(ctx context.Context, cfg *app.Config, cat *images.Catalog, name, arch, boot, mirrorFlag string, stderr io.Writer) error {
	value := cfg.Images.DebianMirror
	if mirrorFlag != "" {
		value = mirrorFlag
	}
	mirror, err := images.ConfiguredMirror(value, "/")
	if err != nil {
		return err
	}
	canonical, err := cat.Resolve(name)
	if err != nil {
		return err
	}
	p := newProgress(stderr)
	fmt.Fprintf(stderr, "building %s from %s\n", canonical, mirror.Archive)
	b := &images.Builder{Catalog: cat, Mirror: mirror, ExtraCA: cfg.Images.ExtraCA, BootMode: boot, Progress: p.update}
	img, err := b.Build(ctx, name, arch)
	p.done()
	if err != nil {
		return err
	}
	size, _ := img.Size()
	fmt.Fprintf(stderr, "built %s (%s) in %s: kernel %s, %d packages, %s on disk\n  %s\n",
		img.Name, img.Arch, p.elapsed().Round(100*time.Millisecond), img.Meta.KernelVersion,
		len(img.Meta.Packages), app.HumanSize(size), filepath.Join(img.Dir, images.BuildLogFile))
	makeSnapshot(ctx, cfg, img, stderr)
	return nil
}

// imageImportCloud imports a distribution's cloud image: copied into the
// catalogue, booted once with a NoCloud seed that prepares it for jobs.
func imageImportCloud(ctx context.Context, cfg *app.Config, cat *images.Catalog, name, file string,
	opt images.CloudOptions, timeout time.Duration, stderr io.Writer) error {
	start := time.Now()
	fmt.Fprintf(stderr, "copying %s into the catalogue as %s\n", file, name)
	ci, err := cat.StartCloudImport(ctx, name, file, opt)
	if err != nil {
		return err
	}
	res, err := prepareCloud(ctx, cfg, ci, timeout, stderr)
	if err != nil {
		ci.Abort()
		return fmt.Errorf("import-cloud %s: %w (log: %s)", name, err, ci.FailedLog())
	}
	img, err := ci.Finish(res)
	if err != nil {
		return fmt.Errorf("import-cloud %s: %w", name, err)
	}
	size, _ := img.Size()
	control := "resumable from snapshots"
	if img.Meta.Control == "" {
		control = "no control channel: jobs always boot it"
	}
	fmt.Fprintf(stderr, "imported %s (%s) in %s: %s, family %s, %s firmware, kernel %s, %s on disk; %s\n  %s\n",
		img.Name, img.Arch, time.Since(start).Round(100*time.Millisecond), img.Meta.OS, img.Meta.Family,
		img.Meta.Firmware, img.Meta.KernelVersion, app.HumanSize(size), control, filepath.Join(img.Dir, images.BuildLogFile))
	makeSnapshot(ctx, cfg, img, stderr)
	return nil
}

// prepareCloud runs the preparing boot of a staged cloud image, its
// console going to the image's build log.
func prepareCloud(ctx context.Context, cfg *app.Config, ci *images.CloudImport, timeout time.Duration, stderr io.Writer) (*images.PrepareResult, error) {
	accel, warn := runner.ProbeAccel(ctx, cfg.Runner.Accel)
	if warn != "" {
		fmt.Fprintf(stderr, "warning: %s\n", warn)
	}
	policy, err := cfg.GuestPolicy()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(ci.Log)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	defer log.Close()
	work, err := os.MkdirTemp(ci.Dir, "prepare-")
	if err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(work)
	fmt.Fprintf(stderr, "preparing boot of %s (%s firmware, %s): cloud-init, then %s\n", ci.Name, ci.Firmware, accel,
		"images/recipes/cloud/prepare.sh")
	mem := cfg.Runner.Memory
	if mem < 1024 {
		mem = 1024
	}
	return runner.PrepareCloudImage(ctx, runner.PrepareConfig{
		VM: runner.VMConfig{Image: ci.PreparingImage(), CPUs: cfg.Runner.CPUs, MemoryMiB: mem, Accel: accel,
			CPUModel: cfg.Runner.CPUModel, WorkDir: work, Console: log, Network: policy},
		Seed: ci.Seed, Timeout: timeout,
	})
}

// makeSnapshot makes a new image's snapshot so that its first job resumes
// it ([runner] snapshots); a failure only means jobs boot until the
// server makes one.
func makeSnapshot(ctx context.Context, cfg *app.Config, img *images.Image, stderr io.Writer) {
	if !cfg.Runner.Snapshots || img.Meta.Control == "" {
		return
	}
	took, err := runner.MakeSnapshot(ctx, cfg, img, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintf(stderr, "warning: no snapshot of %s made (%v); jobs boot it until the server makes one\n", img.Name, err)
		return
	}
	fmt.Fprintf(stderr, "snapshot of %s (%s) made in %s: jobs resume it\n", img.Name, img.Arch, took.Round(100*time.Millisecond))
}

// imageList prints the catalogue.
func imageList(cat *images.Catalog, stdout io.Writer) error {
	imgs, err := cat.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tARCH\tSIZE\tBUILT\tKERNEL\tPACKAGES\tALIASES")
	for _, img := range imgs {
		size, err := img.Size()
		if err != nil {
			return err
		}
		built := "-"
		if !img.Meta.Built.IsZero() {
			built = img.Meta.Built.UTC().Format("2006-01-02 15:04")
		}
		aliases := strings.Join(cat.AliasesFor(img.Name), ",")
		if h, err := images.RecipeHash(img.Meta.Distro); err == nil && img.Meta.RecipeHash != "" && h != img.Meta.RecipeHash {
			aliases = strings.TrimPrefix(aliases+" (older recipe: rebuild)", " ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", img.Name, img.Arch, app.HumanSize(size), built,
			img.Meta.KernelVersion, len(img.Meta.Packages), aliases)
	}
	if len(imgs) == 0 {
		fmt.Fprintf(tw, "(no images in %s; try: builds image build debian/bookworm)\n", cat.Dir)
	}
	return tw.Flush()
}

// imageCheck boots the image, logs in as its user with a fresh key and runs
// the distro's sanity script plus a package install from the mirror.
func imageCheck(ctx context.Context, cfg *app.Config, img *images.Image, stdout, stderr io.Writer) error {
	accel, warn := runner.ProbeAccel(ctx, cfg.Runner.Accel)
	if warn != "" {
		fmt.Fprintf(stderr, "warning: %s\n", warn)
	}
	if err := os.MkdirAll(cfg.Runner.WorkDir, 0o700); err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	work, err := os.MkdirTemp(cfg.Runner.WorkDir, "check-")
	if err != nil {
		return fmt.Errorf("create work dir: %w", err)
	}
	defer os.RemoveAll(work)
	pub, signer, err := newKey()
	if err != nil {
		return err
	}
	policy, err := cfg.GuestPolicy()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "booting %s (%s) under %s, %d vCPU, %d MiB\n", img.Name, img.Arch, accel, cfg.Runner.CPUs, cfg.Runner.Memory)
	vm, err := runner.StartVM(ctx, runner.VMConfig{
		Image: img, CPUs: cfg.Runner.CPUs, MemoryMiB: cfg.Runner.Memory, Accel: accel,
		CPUModel: cfg.Runner.CPUModel, WorkDir: work, BootTimeout: cfg.Runner.BootTimeout,
		AuthorizedKey: pub, ClientSigner: signer, Network: policy,
	})
	if err != nil {
		return fmt.Errorf("check %s: %w", img.Name, err)
	}
	defer vm.Close()
	fmt.Fprintf(stdout, "boot to SSH: %.2fs\n", vm.BootDuration().Seconds())
	script, err := images.SanityScript(img.Meta.Distro)
	if err != nil {
		return err
	}
	if err := guestRun(vm, "bash -s", script, stdout); err != nil {
		return fmt.Errorf("check %s: sanity script: %w", img.Name, err)
	}
	if policy.Mode() == app.GuestNone {
		fmt.Fprintf(stdout, "package install skipped: [runner] guest-network = none\n")
		return finishCheck(vm, img, stdout)
	}
	start := time.Now()
	var apt bytes.Buffer
	if err := guestRun(vm, img.InstallCommand([]string{"hello"}), "", &apt); err != nil {
		return fmt.Errorf("check %s: install a package from the mirror: %w\n%s", img.Name, err, apt.String())
	}
	if err := guestRun(vm, "hello", "", stdout); err != nil {
		return fmt.Errorf("check %s: run the installed package: %w", img.Name, err)
	}
	fmt.Fprintf(stdout, "apt-get install hello: %.1fs\n", time.Since(start).Seconds())
	return finishCheck(vm, img, stdout)
}

// finishCheck stops the checked VM and reports the verdict.
func finishCheck(vm *runner.VM, img *images.Image, stdout io.Writer) error {
	if err := vm.Close(); err != nil {
		return fmt.Errorf("check %s: %w", img.Name, err)
	}
	fmt.Fprintf(stdout, "check passed: %s (%s)\n", img.Name, img.Arch)
	return nil
}

// guestRun runs cmd in the guest with optional stdin, indenting its output.
func guestRun(vm *runner.VM, cmd, stdin string, stdout io.Writer) error {
	s, err := vm.Client().NewSession()
	if err != nil {
		return fmt.Errorf("open session: %w", err)
	}
	defer s.Close()
	out := &indentWriter{w: stdout}
	s.Stdout, s.Stderr = out, out
	if stdin != "" {
		s.Stdin = strings.NewReader(stdin)
	}
	err = s.Run(cmd)
	out.flush()
	return err
}

// newKey makes a throw-away ed25519 key pair for one VM.
func newKey() (ssh.PublicKey, ssh.Signer, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	return sp, signer, nil
}

// indentWriter prefixes each line with two spaces.
type indentWriter struct {
	mu   sync.Mutex
	w    io.Writer
	line []byte
}

func (iw *indentWriter) Write(p []byte) (int, error) {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	for _, c := range p {
		iw.line = append(iw.line, c)
		if c == '\n' {
			fmt.Fprintf(iw.w, "  %s", iw.line)
			iw.line = iw.line[:0]
		}
	}
	return len(p), nil
}

func (iw *indentWriter) flush() {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	if len(iw.line) > 0 {
		fmt.Fprintf(iw.w, "  %s\n", iw.line)
		iw.line = iw.line[:0]
	}
}

// progress renders build progress: one rewritten status line on a
// terminal, one plain line per update otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	start time.Time
	mu    sync.Mutex
	last  string
	shown bool
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: isTerminal(w), start: time.Now()}
}

func (p *progress) update(ev images.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	line := fmt.Sprintf("[%5.1fs] %s: %s", ev.Elapsed.Seconds(), ev.Step, ev.Detail)
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	if len(line) > 100 {
		line = line[:97] + "..."
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
	p.shown = true
}

// done ends the status line on a terminal.
func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.shown {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

func (p *progress) elapsed() time.Duration { return time.Since(p.start) }

// isTerminal reports whether v is a character device (a terminal).
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
