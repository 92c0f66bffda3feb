package images

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
)

// File names inside an image directory. Kernel, initrd and disk names are
// also recorded in image.json; the others are fixed.
const (
	HostKeyFile     = "ssh_host_ed25519_key.pub" // the guest's only host key
	ClientKeyFile   = "id_ed25519"               // key baked into build's authorized_keys
	BuildLogFile    = "build.log"                // output of the build that made the image
	StockKernelFile = "vmlinuz"                  // bzImage, booted through firmware
	StockInitrdFile = "initrd-stock.img"         // initramfs-tools initrd (udev), fallback
)

// Boot modes: which PID 1 the kernel command line selects.
const (
	BootSystemd = "systemd" // trimmed systemd: a normal Debian for jobs
	BootCIInit  = "ciinit"  // tiny shell init, ~1.5 s faster, no services
)

// Metadata is image.json: what the runner needs to boot and use an image.
// Kernel, Initrd and Disk are file names relative to the image directory.
type Metadata struct {
	Name          string    `json:"name"`    // canonical, e.g. debian/bookworm
	Arch          string    `json:"arch"`    // e.g. amd64
	Distro        string    `json:"distro"`  // e.g. debian
	Release       string    `json:"release"` // e.g. bookworm
	Kernel        string    `json:"kernel"`  // vmlinux (PVH ELF) or vmlinuz
	KernelVersion string    `json:"kernel_version"`
	Initrd        string    `json:"initrd"`
	Disk          string    `json:"disk"`         // qcow2 base, never written
	Cmdline       string    `json:"cmdline"`      // kernel command line
	ReadyMarker   string    `json:"ready_marker"` // console line printed once sshd listens
	User          string    `json:"user"`
	Home          string    `json:"home"`
	Packages      []string  `json:"packages"` // "name version"
	Built         time.Time `json:"built"`
	Digest        string    `json:"digest"` // "sha256:<hex>" of Disk
	RecipeHash    string    `json:"recipe_hash"`
	BootMode      string    `json:"boot_mode"` // BootSystemd or BootCIInit
	// Control names the guest's resume control channel (a virtio-serial
	// port, ControlPort), "" if it has none: then jobs never resume it
	// from a snapshot, they always boot.
	Control string `json:"control,omitempty"`
	// Family is the package manager family ("" = FamilyApt).
	Family Family `json:"family,omitempty"`
	// Firmware is how an image without a kernel of its own boots:
	// FirmwareBIOS (SeaBIOS) or FirmwareUEFI (OVMF) start the disk's own
	// bootloader; "" means direct kernel boot (Kernel is required).
	Firmware string `json:"firmware,omitempty"`
	// OS is the guest's os-release PRETTY_NAME (imported cloud images).
	OS string `json:"os,omitempty"`
}

// Firmware boots of images that bring their own bootloader (imported
// cloud images).
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// Validate checks that the metadata names files inside the image directory
// and has what booting needs.
func (m *Metadata) Validate() error {
	if _, _, err := SplitName(m.Name); err != nil {
		return err
	}
	if err := CheckArch(m.Arch); err != nil {
		return err
	}
	for _, f := range []struct{ key, val string }{
		{"kernel", m.Kernel}, {"initrd", m.Initrd}, {"disk", m.Disk},
	} {
		if f.val == "" && f.key != "initrd" && !(f.key == "kernel" && m.Firmware != "") {
			return fmt.Errorf("metadata: %s is empty", f.key)
		}
		if f.val != "" && !safeFileName(f.val) {
			return fmt.Errorf("metadata: %s %q is not a plain file name", f.key, f.val)
		}
	}
	if m.Firmware != "" && m.Firmware != FirmwareBIOS && m.Firmware != FirmwareUEFI {
		return fmt.Errorf("metadata: firmware %q: want %s or %s", m.Firmware, FirmwareBIOS, FirmwareUEFI)
	}
	if m.Family != "" {
		if _, err := ParseFamily(string(m.Family)); err != nil {
			return fmt.Errorf("metadata: %w", err)
		}
	}
	if m.ReadyMarker == "" {
		return errors.New("metadata: ready_marker is empty")
	}
	if m.User == "" {
		return errors.New("metadata: user is empty")
	}
	return nil
}

// ReadMetadata reads and validates an image.json file.
func ReadMetadata(path string) (*Metadata, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read metadata: %w", err)
	}
	var m Metadata
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Base(path), err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return &m, nil
}

// WriteMetadata writes m as indented JSON.
func WriteMetadata(path string, m *Metadata) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode metadata: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	return nil
}

// Image is one built image of one architecture.
type Image struct {
	Name string // canonical "distro/release"
	Arch string
	Dir  string // <images>/<distro>/<release>/<arch>
	Meta Metadata
}

// Disk returns the path of the read-only base disk.
func (img *Image) Disk() string { return filepath.Join(img.Dir, img.Meta.Disk) }

// Kernel returns the path of the kernel for direct boot, "" for an image
// booted through firmware.
func (img *Image) Kernel() string {
	if img.Meta.Kernel == "" {
		return ""
	}
	return filepath.Join(img.Dir, img.Meta.Kernel)
}

// Initrd returns the path of the initrd, or "" when the image has none.
func (img *Image) Initrd() string {
	if img.Meta.Initrd == "" {
		return ""
	}
	return filepath.Join(img.Dir, img.Meta.Initrd)
}

// ClientKeyPath returns the private key whose public half is baked into the
// guest user's authorized_keys. Runners should prefer a per-job key.
func (img *Image) ClientKeyPath() string { return filepath.Join(img.Dir, ClientKeyFile) }

// HostKey returns the guest's SSH host key, for pinning.
func (img *Image) HostKey() (ssh.PublicKey, error) {
	b, err := os.ReadFile(filepath.Join(img.Dir, HostKeyFile))
	if err != nil {
		return nil, fmt.Errorf("read host key: %w", err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("parse host key of %s: %w", img.Name, err)
	}
	return k, nil
}

// Size returns the bytes the image's files occupy on disk (allocated blocks,
// so sparse files count what they really use).
func (img *Image) Size() (int64, error) {
	var total int64
	dir, err := filepath.EvalSymlinks(img.Dir)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", img.Name, err)
	}
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		total += allocated(fi)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", img.Name, err)
	}
	return total, nil
}

// safeFileName reports whether s is a plain file name (no directories, no
// dot files).
func safeFileName(s string) bool {
	return fileNameRe.MatchString(s)
}
