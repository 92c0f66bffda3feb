package runner

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"builds/app"
	"builds/images"
)

// Snapshots: per image and VM shape (arch, vCPUs, memory, CPU model,
// accelerator, QEMU version), one guest is booted until it is ready and
// its state saved (vm_resume.go); every job then resumes a copy of it on
// an overlay of its own instead of booting. A snapshot is made in the
// background (the job that asked for it boots as before), remade when it
// no longer matches, and discarded with a warning when it fails to
// resume.
//
// On disk, <dir>/<key>/ holds meta.json, mem (the state) and disk.qcow2
// (the disk it belongs to, an overlay of the image's disk).

// snapshotFormat changes whenever what a state holds or how a VM is
// started changes (devices, the control protocol): older ones are stale.
const snapshotFormat = 1

// vmShape is everything a saved state depends on.
type vmShape struct {
	Image    string `json:"image"`
	Arch     string `json:"arch"`
	Digest   string `json:"digest"` // of the image's disk
	CPUs     int    `json:"cpus"`
	Memory   int    `json:"memory_mib"`
	CPUModel string `json:"cpu_model"`
	Accel    string `json:"accel"`
	QEMU     string `json:"qemu"` // qemu-system-x86_64 --version
	Format   int    `json:"format"`
}

// key names the shape: a short hash of all of it.
func (s vmShape) key() string {
	b, _ := json.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// snapshotMeta is meta.json.
type snapshotMeta struct {
	Key      string    `json:"key"`
	Shape    vmShape   `json:"shape"`
	Created  time.Time `json:"created"`
	MemSize  int64     `json:"mem_size"`
	DiskSize int64     `json:"disk_size"`
	// BootSeconds is how long the boot it saved took.
	BootSeconds float64 `json:"boot_seconds"`
}

// snapshotStore is the snapshots of one runner.
type snapshotStore struct {
	dir string
	log *slog.Logger
	// busy serialises snapshot making: one extra boot at a time competes
	// with jobs for the host's CPUs.
	busy chan struct{}

	mu     sync.Mutex
	making map[string]bool
}

func newSnapshotStore(dir string, log *slog.Logger) *snapshotStore {
	return &snapshotStore{dir: dir, log: log, busy: make(chan struct{}, 1), making: map[string]bool{}}
}

// find returns the ready snapshot of shape, if any.
func (st *snapshotStore) find(shape vmShape) (*Resume, *snapshotMeta, bool) {
	dir := filepath.Join(st.dir, shape.key())
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, nil, false
	}
	var m snapshotMeta
	if err := json.Unmarshal(b, &m); err != nil || m.Shape != shape {
		st.discard(shape.key(), "its metadata is unreadable or does not match")
		return nil, nil, false
	}
	r := &Resume{Mem: filepath.Join(dir, "mem"), Disk: filepath.Join(dir, "disk.qcow2")}
	if fileSize(r.Mem) != m.MemSize || fileSize(r.Disk) != m.DiskSize {
		st.discard(shape.key(), "its files are truncated or changed")
		return nil, nil, false
	}
	return r, &m, true
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// discard removes a snapshot, saying why.
func (st *snapshotStore) discard(key, why string) {
	dir := filepath.Join(st.dir, key)
	if _, err := os.Stat(dir); err != nil {
		return
	}
	st.log.Warn("discarding VM snapshot", "snapshot", key, "reason", why)
	os.RemoveAll(dir)
}

// ensure makes shape's snapshot in the background unless it exists or
// is being made. cfg is the VM to boot (its WorkDir and keys are the
// maker's own).
func (st *snapshotStore) ensure(ctx context.Context, shape vmShape, cfg VMConfig) {
	key := shape.key()
	st.mu.Lock()
	if st.making[key] {
		st.mu.Unlock()
		return
	}
	st.making[key] = true
	st.mu.Unlock()
	go func() {
		defer func() {
			st.mu.Lock()
			delete(st.making, key)
			st.mu.Unlock()
		}()
		if _, _, ok := st.find(shape); ok {
			return
		}
		select {
		case st.busy <- struct{}{}:
		case <-ctx.Done():
			return
		}
		defer func() { <-st.busy }()
		start := time.Now()
		if err := st.make(ctx, shape, cfg); err != nil {
			if ctx.Err() == nil {
				st.log.Warn("VM snapshot not made; jobs boot instead", "image", shape.Image, "err", err)
			}
			return
		}
		st.log.Info("VM snapshot made", "image", shape.Image, "arch", shape.Arch, "snapshot", key, "took", time.Since(start).Round(time.Millisecond))
	}()
}

// make boots a guest, saves its state and installs it as shape's
// snapshot, replacing older snapshots of the same image and arch.
func (st *snapshotStore) make(ctx context.Context, shape vmShape, cfg VMConfig) error {
	if err := os.MkdirAll(st.dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(st.dir, ".make-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	work := filepath.Join(tmp, "work")
	if err := os.Mkdir(work, 0o700); err != nil {
		return err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return err
	}
	cfg.WorkDir, cfg.ForSnapshot, cfg.Resume, cfg.Console = work, true, nil, nil
	cfg.AuthorizedKey, cfg.ClientSigner = signer.PublicKey(), signer
	vm, err := StartVM(ctx, cfg)
	if err != nil {
		return err
	}
	boot := vm.BootDuration()
	disk, err := vm.SaveState(ctx, filepath.Join(tmp, "mem"), false)
	vm.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(disk, filepath.Join(tmp, "disk.qcow2")); err != nil {
		return err
	}
	os.RemoveAll(work)
	m := snapshotMeta{Key: shape.key(), Shape: shape, Created: time.Now().UTC().Truncate(time.Second),
		MemSize: fileSize(filepath.Join(tmp, "mem")), DiskSize: fileSize(filepath.Join(tmp, "disk.qcow2")),
		BootSeconds: boot.Seconds()}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), append(b, '\n'), 0o600); err != nil {
		return err
	}
	final := filepath.Join(st.dir, m.Key)
	if err := os.Rename(tmp, final); err != nil {
		if _, ok := st.findKey(m.Key); ok {
			return nil // another process made it meanwhile
		}
		return err
	}
	st.pruneStale(shape)
	return nil
}

// list returns the metadata of every snapshot.
func (st *snapshotStore) list() ([]*snapshotMeta, error) {
	ents, err := os.ReadDir(st.dir)
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []*snapshotMeta
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(st.dir, e.Name(), "meta.json"))
		var m snapshotMeta
		if err == nil && json.Unmarshal(b, &m) == nil {
			out = append(out, &m)
		}
	}
	return out, nil
}

// findKey reports whether a snapshot directory with meta.json exists.
func (st *snapshotStore) findKey(key string) (string, bool) {
	dir := filepath.Join(st.dir, key)
	_, err := os.Stat(filepath.Join(dir, "meta.json"))
	return dir, err == nil
}

// pruneStale removes the snapshots of shape's image and arch that no
// longer match (the image was rebuilt, QEMU upgraded, settings changed),
// and leftovers of interrupted makes.
func (st *snapshotStore) pruneStale(shape vmShape) {
	ents, _ := os.ReadDir(st.dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".make-") {
			continue // maybe being made right now by another process
		}
		if e.Name() == shape.key() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(st.dir, e.Name(), "meta.json"))
		var m snapshotMeta
		if err != nil || json.Unmarshal(b, &m) != nil || m.Shape.Image == shape.Image && m.Shape.Arch == shape.Arch {
			st.discard(e.Name(), "a newer snapshot of the same image replaces it")
		}
	}
}

// qemuVersion is the first line of `qemu-system-x86_64 --version`: a
// state saved by one QEMU does not load in another.
func qemuVersion() (string, error) {
	out, err := exec.Command(qemuBinary, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", qemuBinary, err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	if line == "" {
		return "", errors.New("qemu printed no version")
	}
	return strings.TrimSpace(line), nil
}

// shapeOf is the shape of a VM of img started with cfg.
func shapeOf(img *images.Image, cfg VMConfig, qemu string) vmShape {
	return vmShape{Image: img.Name, Arch: img.Arch, Digest: img.Meta.Digest, CPUs: cfg.CPUs, Memory: cfg.MemoryMiB,
		CPUModel: cfg.CPUModel, Accel: cfg.Accel, QEMU: qemu, Format: snapshotFormat}
}

// MakeSnapshot makes img's snapshot now for the VM shape cfg describes
// ([runner] cpus, memory, cpu-model, accel), in <cache-dir>/snapshots, as
// `builds image build` and `import` do so that the first job resumes.
func MakeSnapshot(ctx context.Context, cfg *app.Config, img *images.Image, log *slog.Logger) (time.Duration, error) {
	if img.Meta.Control == "" {
		return 0, fmt.Errorf("image %s has no control channel: jobs boot it", img.Name)
	}
	accel, _ := ProbeAccel(ctx, cfg.Runner.Accel)
	q, err := qemuVersion()
	if err != nil {
		return 0, err
	}
	policy, err := cfg.GuestPolicy()
	if err != nil {
		return 0, err
	}
	vc := VMConfig{Image: img, CPUs: cfg.Runner.CPUs, MemoryMiB: cfg.Runner.Memory, Accel: accel, CPUModel: cfg.Runner.CPUModel,
		BootTimeout: cfg.Runner.BootTimeout, Network: policy}
	st := newSnapshotStore(filepath.Join(cfg.Runner.CacheDir, "snapshots"), log)
	start := time.Now()
	if err := st.make(ctx, shapeOf(img, vc, q), vc); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
