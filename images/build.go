package images

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Build layout constants.
const (
	// FSSize is the virtual size of the guest root filesystem. It costs
	// nothing in the sparse qcow2 and saves a resize step in the guest.
	FSSize = "20G"
	// ReadyMarker is printed on the serial console once sshd listens.
	ReadyMarker = "CI-SSH-READY"
	// ControlPort is the virtio-serial port of our images' resume control
	// channel (recipes/debian/customize.sh); ControlReady is printed on the
	// console once its agent listens.
	ControlPort  = "org.builds.ctl"
	ControlReady = "CI-CTL-READY"
	// minFreeBytes is refused below: a build needs the tree (~0.5 GB),
	// the raw fs (~0.5 GB) and the qcow2 (~0.5 GB) at once.
	minFreeBytes = 3 << 30
)

// Progress is one status update of a build.
type Progress struct {
	Step    string        // bootstrap, kernel, filesystem, disk, finish
	Detail  string        // e.g. the current mmdebstrap phase
	Elapsed time.Duration // since the build started
}

// Builder builds images into a Catalog from a Debian mirror.
type Builder struct {
	Catalog  *Catalog
	Mirror   Mirror
	ExtraCA  []string       // PEM certificate files baked into the guest's trust store
	BootMode string         // BootSystemd (default) or BootCIInit
	Progress func(Progress) // optional; called from the building goroutine
	Log      io.Writer      // optional copy of the build log
}

// build is the state of one running build.
type build struct {
	b       *Builder
	name    string // canonical
	distro  string
	release string
	arch    string
	start   time.Time
	staging string // the future image directory
	work    string // scratch inside staging, removed before install
	log     io.Writer
	logMu   sync.Mutex
	step    string
}

// Build bootstraps name (aliases allowed) for arch ("" = DefaultArch) and
// installs it atomically: a failed or interrupted build leaves any existing
// image untouched and its log in <release>/<arch>-build-failed.log.
func (b *Builder) Build(ctx context.Context, name, arch string) (*Image, error) {
	canonical, err := b.Catalog.Resolve(name)
	if err != nil {
		return nil, err
	}
	distro, release, _ := SplitName(canonical)
	if arch == "" {
		arch = DefaultArch
	}
	if err := b.preflight(distro, arch); err != nil {
		return nil, err
	}
	relDir, err := b.Catalog.releaseDir(canonical)
	if err != nil {
		return nil, err
	}
	lock, err := lockImage(relDir, arch)
	if err != nil {
		return nil, err
	}
	defer lock.unlock()
	if err := cleanStale(relDir, arch); err != nil {
		return nil, err
	}
	if err := checkFree(relDir); err != nil {
		return nil, err
	}
	staging, err := newStagingDir(relDir, arch)
	if err != nil {
		return nil, err
	}
	bd := &build{b: b, name: canonical, distro: distro, release: release, arch: arch,
		start: time.Now(), staging: staging, work: filepath.Join(staging, "work")}
	logf, err := os.Create(filepath.Join(staging, BuildLogFile))
	if err != nil {
		removeAllSafe(staging)
		return nil, fmt.Errorf("create build log: %w", err)
	}
	bd.log = logf
	if b.Log != nil {
		bd.log = io.MultiWriter(logf, b.Log)
	}
	err = bd.run(ctx)
	if err == nil {
		bd.progress("finish", "installing")
		bd.logf("build finished in %s", time.Since(bd.start).Round(100*time.Millisecond))
		logf.Close()
		if err = install(relDir, arch, staging); err == nil {
			os.Remove(filepath.Join(relDir, arch+"-build-failed.log"))
			return b.Catalog.Lookup(canonical, arch)
		}
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("build %s: interrupted: %w", canonical, ctx.Err())
	}
	bd.logf("FAILED: %v", err)
	logf.Close()
	failed := filepath.Join(relDir, arch+"-build-failed.log")
	if b, rerr := os.ReadFile(filepath.Join(staging, BuildLogFile)); rerr == nil {
		os.WriteFile(failed, b, 0o644)
		err = fmt.Errorf("%w (log: %s)", err, failed)
	}
	if rerr := removeAllSafe(staging); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return nil, err
}

// preflight checks what the build needs from the host before touching disk.
func (b *Builder) preflight(distro, arch string) error {
	if _, err := Packages(distro); err != nil {
		return fmt.Errorf("cannot build %s images: %w", distro, err)
	}
	if err := CheckArch(arch); err != nil {
		return err
	}
	if arch != "amd64" || runtime.GOARCH != "amd64" {
		return fmt.Errorf("cannot build arch %q on this %s host: only amd64 images on amd64 hosts", arch, runtime.GOARCH)
	}
	if os.Geteuid() != 0 {
		return errors.New("image build needs root: mmdebstrap installs packages into a chroot")
	}
	var missing []string
	for tool, pkg := range map[string]string{
		"mmdebstrap": "mmdebstrap", "mkfs.ext4": "e2fsprogs", "qemu-img": "qemu-utils",
		"lz4": "lz4", "zstd": "zstd", "chroot": "coreutils",
	} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("image build needs %s", strings.Join(missing, ", "))
	}
	if b.Mirror.Archive == "" {
		return errors.New("image build: no Debian mirror configured")
	}
	switch b.BootMode {
	case "", BootSystemd, BootCIInit:
	default:
		return fmt.Errorf("unknown boot mode %q (want %s or %s)", b.BootMode, BootSystemd, BootCIInit)
	}
	for _, f := range b.ExtraCA {
		if err := checkCertFile(f); err != nil {
			return err
		}
	}
	return nil
}

// run performs the build inside the staging directory.
func (bd *build) run(ctx context.Context) error {
	bd.logf("building %s (%s) from %s, recipe %s", bd.name, bd.arch, bd.b.Mirror.Archive, mustRecipeHash(bd.distro))
	if err := os.MkdirAll(bd.work, 0o755); err != nil {
		return fmt.Errorf("create work directory: %w", err)
	}
	pub, err := writeClientKey(bd.staging)
	if err != nil {
		return err
	}
	root := filepath.Join(bd.work, "root")
	if err := bd.bootstrap(ctx, root, pub); err != nil {
		return err
	}
	meta, err := bd.extract(ctx, root)
	if err != nil {
		return err
	}
	if err := bd.makeDisk(ctx, root, meta); err != nil {
		return err
	}
	if err := removeAllSafe(bd.work); err != nil {
		return err
	}
	if err := meta.Validate(); err != nil {
		return fmt.Errorf("build produced invalid metadata: %w", err)
	}
	if err := WriteMetadata(filepath.Join(bd.staging, MetadataFile), meta); err != nil {
		return err
	}
	return nil
}

// extract copies kernel, initrds and the host key out of the tree and fills
// in the metadata that depends on them.
func (bd *build) extract(ctx context.Context, root string) (*Metadata, error) {
	bd.progress("kernel", "extracting kernel and initrd")
	ents, err := os.ReadDir(filepath.Join(root, "lib/modules"))
	if err != nil || len(ents) == 0 {
		return nil, fmt.Errorf("extract kernel: no kernel installed in the tree")
	}
	kver := ents[len(ents)-1].Name()
	copies := []struct{ from, to string }{
		{"boot/vmlinuz-" + kver, StockKernelFile},
		{"boot/initrd.tiny", "initrd.img"},
		{"boot/initrd.img-" + kver, StockInitrdFile},
		{"etc/ssh/ssh_host_ed25519_key.pub", HostKeyFile},
	}
	for _, c := range copies {
		if err := copyFile(filepath.Join(root, c.from), filepath.Join(bd.staging, c.to), 0o644); err != nil {
			return nil, fmt.Errorf("extract %s: %w", c.from, err)
		}
	}
	kernel := StockKernelFile
	ok, err := extractVMLinux(ctx, filepath.Join(bd.staging, StockKernelFile), filepath.Join(bd.staging, "vmlinux"))
	if err != nil {
		return nil, err
	}
	if ok {
		kernel = "vmlinux"
		bd.logf("kernel %s: PVH vmlinux extracted", kver)
	} else {
		bd.logf("kernel %s: no PVH entry, booting the bzImage", kver)
	}
	pkgs, err := installedPackages(filepath.Join(root, "var/lib/dpkg/status"))
	if err != nil {
		return nil, err
	}
	mode := bd.b.BootMode
	if mode == "" {
		mode = BootSystemd
	}
	cmdline := "root=/dev/vda rw console=ttyS0 quiet tsc=reliable panic=-1"
	if mode == BootCIInit {
		cmdline += " init=/usr/local/sbin/ci-init"
	}
	hash, _ := RecipeHash(bd.distro)
	return &Metadata{
		Name: bd.name, Arch: bd.arch, Distro: bd.distro, Release: bd.release,
		Kernel: kernel, KernelVersion: kver, Initrd: "initrd.img", Disk: "rootfs.qcow2",
		Cmdline: cmdline, ReadyMarker: ReadyMarker, User: "build", Home: "/home/build", Control: ControlPort,
		Packages: pkgs, Built: time.Now().UTC().Truncate(time.Second),
		RecipeHash: hash, BootMode: mode,
	}, nil
}

// makeDisk turns the tree into the qcow2 base disk without loop devices:
// mkfs.ext4 -d populates the filesystem from the directory.
func (bd *build) makeDisk(ctx context.Context, root string, meta *Metadata) error {
	raw := filepath.Join(bd.work, "rootfs.raw")
	bd.progress("filesystem", "mkfs.ext4 -d ("+FSSize+" sparse)")
	// The raw file is new and sparse, so all zeros: mark the inode tables
	// as zeroed instead of leaving them to the kernel's ext4lazyinit
	// thread, which would otherwise zero them on every boot (each VM gets
	// a fresh overlay), competing with the boot for CPU and growing the
	// overlay.
	os.Remove(raw)
	if err := bd.cmd(ctx, "mkfs.ext4", "-q", "-F", "-L", "root",
		"-E", "root_owner=0:0,assume_storage_prezeroed=1,lazy_itable_init=0,lazy_journal_init=0",
		"-d", root, raw, FSSize); err != nil {
		return fmt.Errorf("make filesystem: %w", err)
	}
	if err := removeAllSafe(root); err != nil {
		return err
	}
	bd.progress("disk", "converting to qcow2")
	disk := filepath.Join(bd.staging, meta.Disk)
	if err := bd.cmd(ctx, "qemu-img", "convert", "-O", "qcow2", raw, disk); err != nil {
		return fmt.Errorf("convert disk: %w", err)
	}
	os.Remove(raw)
	// jobs never write the base: each gets an overlay
	if err := os.Chmod(disk, 0o444); err != nil {
		return fmt.Errorf("convert disk: %w", err)
	}
	bd.progress("disk", "checksum")
	sum, err := fileSHA256(disk)
	if err != nil {
		return err
	}
	meta.Digest = "sha256:" + sum
	return nil
}

// logf writes a timestamped line to the build log.
func (bd *build) logf(format string, args ...any) {
	bd.logMu.Lock()
	defer bd.logMu.Unlock()
	fmt.Fprintf(bd.log, "[%7.1fs] %s\n", time.Since(bd.start).Seconds(), fmt.Sprintf(format, args...))
}

// progress records a step in the log and reports it.
func (bd *build) progress(step, detail string) {
	if step != bd.step {
		bd.logf("== %s", step)
		bd.step = step
	}
	if bd.b.Progress != nil {
		bd.b.Progress(Progress{Step: step, Detail: detail, Elapsed: time.Since(bd.start)})
	}
}

// writeClientKey creates the image's client key pair and returns the path of
// the public half (baked into the guest).
func writeClientKey(dir string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate client key: %w", err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "builds image key")
	if err != nil {
		return "", fmt.Errorf("encode client key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ClientKeyFile), pem.EncodeToMemory(blk), 0o600); err != nil {
		return "", fmt.Errorf("write client key: %w", err)
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("encode client key: %w", err)
	}
	p := filepath.Join(dir, ClientKeyFile+".pub")
	if err := os.WriteFile(p, ssh.MarshalAuthorizedKey(spub), 0o644); err != nil {
		return "", fmt.Errorf("write client key: %w", err)
	}
	return p, nil
}

// copyFile copies a regular file (following symlinks in the source).
func copyFile(from, to string, mode os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// fileSHA256 returns the hex SHA-256 of a file.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("checksum: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("checksum %s: %w", filepath.Base(path), err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// mustRecipeHash is RecipeHash for logging ("?" when the distro has none).
func mustRecipeHash(distro string) string {
	h, err := RecipeHash(distro)
	if err != nil {
		return "?"
	}
	return h
}
