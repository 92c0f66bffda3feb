package images

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Importing a distribution's official cloud image (builds image
// import-cloud): the file is converted into a qcow2 in a staging
// directory next to the live image, grown to FSSize, and booted once
// through firmware with a NoCloud seed (cloudseed.go) by the runner
// (runner.PrepareCloudImage). That boot's console says what the guest
// is; Finish records it in image.json and installs the image, so jobs
// boot the prepared disk and never run cloud-init again.

// CloudImport is one import in progress. Its files live in Dir until
// Finish installs them or Abort removes them.
type CloudImport struct {
	Name     string // canonical "distro/release"
	Arch     string
	Family   Family // as given, or guessed from the disk's os-release
	Firmware string // FirmwareBIOS or FirmwareUEFI
	Dir      string // staging directory, the future image directory
	Seed     string // the NoCloud seed volume (removed by Finish)
	Log      string // the preparing boot's console goes here (BuildLogFile)
	Source   string // the file as the operator named it
	Format   string // qcow2 or raw
	// OSRelease is the disk's os-release, when the family was guessed
	// from it (GuessFamily).
	OSRelease string

	cat    *Catalog
	relDir string
	lock   *lockFile
	start  time.Time
}

// CloudOptions are import-cloud's choices.
type CloudOptions struct {
	Arch     string // "" = DefaultArch
	Family   Family // "" = guessed from the disk's os-release
	Firmware string // "" = from the disk's partition table
	Replace  bool   // replace an image of the same name and arch
}

// Limits of what import-cloud accepts.
const (
	maxCloudVirtual = 2 << 40 // 2 TiB of virtual disk
	cloudDisk       = "disk.qcow2"
	cloudSeed       = "seed.iso"
)

// StartCloudImport checks file, converts it into a new staging directory
// and writes the seed. The image's lock is held until Finish or Abort.
func (c *Catalog) StartCloudImport(ctx context.Context, name, file string, opt CloudOptions) (*CloudImport, error) {
	canonical, err := c.Resolve(name)
	if err != nil {
		return nil, err
	}
	if canonical != name {
		return nil, fmt.Errorf("%s is an alias of %s: import the image as %s", name, canonical, canonical)
	}
	arch := opt.Arch
	if arch == "" {
		arch = DefaultArch
	}
	if err := CheckArch(arch); err != nil {
		return nil, err
	}
	if arch != DefaultArch {
		return nil, fmt.Errorf("arch %s: cloud images boot under qemu-system-x86_64 only (amd64)", arch)
	}
	if opt.Family != "" {
		if _, err := ParseFamily(string(opt.Family)); err != nil {
			return nil, err
		}
	}
	switch opt.Firmware {
	case "", FirmwareBIOS, FirmwareUEFI:
	default:
		return nil, fmt.Errorf("firmware %q: want %s or %s", opt.Firmware, FirmwareBIOS, FirmwareUEFI)
	}
	format, err := InspectCloudFile(ctx, file)
	if err != nil {
		return nil, err
	}
	relDir, err := c.releaseDir(canonical)
	if err != nil {
		return nil, err
	}
	if !opt.Replace {
		if _, err := os.Stat(filepath.Join(relDir, arch, MetadataFile)); err == nil {
			return nil, fmt.Errorf("image %s (%s) exists: remove it first or give --replace", canonical, arch)
		}
	}
	lock, err := lockImage(relDir, arch)
	if err != nil {
		return nil, err
	}
	ci := &CloudImport{Name: canonical, Arch: arch, Family: opt.Family, Source: file, Format: format,
		cat: c, relDir: relDir, lock: lock, start: time.Now()}
	if err := ci.stage(ctx, file, opt.Firmware); err != nil {
		ci.Abort()
		return nil, err
	}
	return ci, nil
}

// stage fills the staging directory: disk, keys, seed.
func (ci *CloudImport) stage(ctx context.Context, file, firmware string) error {
	if err := cleanStale(ci.relDir, ci.Arch); err != nil {
		return err
	}
	if err := checkFree(ci.relDir); err != nil {
		return err
	}
	dir, err := newStagingDir(ci.relDir, ci.Arch)
	if err != nil {
		return err
	}
	ci.Dir, ci.Seed, ci.Log = dir, filepath.Join(dir, cloudSeed), filepath.Join(dir, BuildLogFile)
	disk := filepath.Join(dir, cloudDisk)
	if err := qemuImg(ctx, "convert", "-f", ci.Format, "-O", "qcow2", file, disk); err != nil {
		return fmt.Errorf("copy %s into the catalogue: %w", file, err)
	}
	// the guest's cloud-init grows the root partition to the disk
	if err := growDisk(ctx, disk); err != nil {
		return err
	}
	if firmware == "" {
		if firmware, err = detectFirmware(ctx, disk); err != nil {
			return err
		}
	}
	ci.Firmware = firmware
	// the os-release names the family (and the OS for image.json); with
	// --family given, an unreadable one does not matter
	f, osr, err := GuessFamily(ctx, disk)
	switch {
	case err != nil && ci.Family == "":
		return fmt.Errorf("cloud image %s: cannot tell its package family: %v; give --family (%s)", file, err, familyNames())
	case err == nil && ci.Family == "":
		ci.Family = f
	}
	ci.OSRelease = osr
	_, hostKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate host key: %w", err)
	}
	hostPub, err := ssh.NewPublicKey(hostKey.Public())
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, HostKeyFile), ssh.MarshalAuthorizedKey(hostPub), 0o644); err != nil {
		return fmt.Errorf("write host key: %w", err)
	}
	pubPath, err := writeClientKey(dir)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(pubPath)
	if err != nil {
		return fmt.Errorf("read client key: %w", err)
	}
	clientPub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return fmt.Errorf("parse client key: %w", err)
	}
	id := make([]byte, 8)
	rand.Read(id)
	return WriteSeed(ci.Seed, SeedConfig{InstanceID: "builds-" + hex.EncodeToString(id), Family: ci.Family,
		HostKey: hostKey, ClientKey: clientPub})
}

// PreparingImage is the image the preparing boot starts: the staged disk
// (written in place, no overlay), booted through firmware, with the host
// key and client key staged, ready when the guest is prepared.
func (ci *CloudImport) PreparingImage() *Image {
	return &Image{Name: ci.Name, Arch: ci.Arch, Dir: ci.Dir, Meta: Metadata{
		Name: ci.Name, Arch: ci.Arch, Disk: cloudDisk, Firmware: ci.Firmware, Family: ci.Family,
		ReadyMarker: PreparedMarker, User: "build", Home: "/home/build",
	}}
}

// Console lines of the preparing boot (recipes/cloud/prepare.sh).
const (
	PreparedMarker = "CI-PREPARED"
	PrepareFailed  = "CI-PREPARE-FAILED"
	osReleaseLine  = "CI-OS-RELEASE "
)

// PrepareResult is what the preparing boot's console said.
type PrepareResult struct {
	Family    Family
	Control   bool   // the control channel agent is installed
	Kernel    string // uname -r of the preparing boot
	OSRelease string // the guest's /etc/os-release
}

// ParsePrepareConsole reads the verdict of a preparing boot off its
// console lines.
func ParsePrepareConsole(lines []string) (*PrepareResult, error) {
	res := &PrepareResult{}
	var prepared bool
	for _, l := range lines {
		if i := strings.Index(l, PrepareFailed); i >= 0 {
			return nil, fmt.Errorf("preparing the image failed in the guest: %s", strings.TrimSpace(l[i+len(PrepareFailed):]))
		}
		if i := strings.Index(l, osReleaseLine); i >= 0 {
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(l[i+len(osReleaseLine):]))
			if err == nil {
				res.OSRelease = string(b)
			}
		}
		i := strings.Index(l, PreparedMarker+" ")
		if i < 0 {
			continue
		}
		prepared = true
		for _, kv := range strings.Fields(l[i+len(PreparedMarker):]) {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "family":
				f, err := ParseFamily(v)
				if err != nil {
					return nil, fmt.Errorf("preparing boot: %w", err)
				}
				res.Family = f
			case "control":
				res.Control = v == "yes"
			case "kernel":
				if len(v) <= 100 {
					res.Kernel = v
				}
			}
		}
	}
	if !prepared || res.Family == "" {
		return nil, errors.New("the preparing boot ended without " + PreparedMarker + " on the console (is cloud-init installed and does it read a NoCloud seed?)")
	}
	return res, nil
}

// Finish records the preparing boot's result in image.json and installs
// the image; the lock is released either way, and on error the staging
// directory is gone.
func (ci *CloudImport) Finish(res *PrepareResult) (*Image, error) {
	defer ci.unlock()
	img, err := ci.finish(res)
	if err != nil {
		ci.fail(err)
		return nil, err
	}
	return img, nil
}

func (ci *CloudImport) finish(res *PrepareResult) (*Image, error) {
	if ci.Family != "" && res.Family != ci.Family {
		return nil, fmt.Errorf("the guest prepared itself as family %s, but --family %s was given", res.Family, ci.Family)
	}
	os.Remove(ci.Seed)
	disk := filepath.Join(ci.Dir, cloudDisk)
	sum, err := fileSHA256(disk)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(disk, 0o444); err != nil {
		return nil, fmt.Errorf("base disk: %w", err)
	}
	distro, release, _ := SplitName(ci.Name)
	meta := &Metadata{
		Name: ci.Name, Arch: ci.Arch, Distro: distro, Release: release, Disk: cloudDisk,
		ReadyMarker: ReadyMarker, User: "build", Home: "/home/build", Built: time.Now().UTC(),
		Digest: "sha256:" + sum, BootMode: BootSystemd, Family: res.Family, Firmware: ci.Firmware,
		KernelVersion: res.Kernel, OS: osReleaseValue(cmp.Or(res.OSRelease, ci.OSRelease), "PRETTY_NAME"),
	}
	if res.Control {
		meta.Control = ControlPort
	}
	if err := meta.Validate(); err != nil {
		return nil, err
	}
	if err := WriteMetadata(filepath.Join(ci.Dir, MetadataFile), meta); err != nil {
		return nil, err
	}
	if err := install(ci.relDir, ci.Arch, ci.Dir); err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(ci.relDir, ci.Arch+"-build-failed.log"))
	return ci.cat.Lookup(ci.Name, ci.Arch)
}

// Abort gives up: the staging directory goes, the preparing boot's log is
// kept as <release>/<arch>-build-failed.log, the lock is released.
func (ci *CloudImport) Abort() {
	ci.fail(nil)
	ci.unlock()
}

// fail keeps the log and removes the staging directory.
func (ci *CloudImport) fail(err error) {
	if ci.Dir == "" {
		return
	}
	if f, ferr := os.OpenFile(ci.Log, os.O_APPEND|os.O_WRONLY, 0); ferr == nil && err != nil {
		fmt.Fprintf(f, "FAILED: %v\n", err)
		f.Close()
	}
	if b, rerr := os.ReadFile(ci.Log); rerr == nil {
		os.WriteFile(filepath.Join(ci.relDir, ci.Arch+"-build-failed.log"), b, 0o644)
	}
	removeAllSafe(ci.Dir)
	ci.Dir = ""
}

func (ci *CloudImport) unlock() {
	if ci.lock != nil {
		ci.lock.unlock()
		os.Remove(filepath.Join(ci.relDir, "."+ci.Arch+".lock"))
		ci.lock = nil
	}
}

// FailedLog is where an import that failed left its log.
func (ci *CloudImport) FailedLog() string {
	return filepath.Join(ci.relDir, ci.Arch+"-build-failed.log")
}

// osReleaseValue returns one key of os-release text ("" if absent).
func osReleaseValue(text, key string) string {
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k == key {
			v = strings.Trim(v, `"'`)
			if len(v) > 100 {
				v = v[:100]
			}
			return v
		}
	}
	return ""
}
