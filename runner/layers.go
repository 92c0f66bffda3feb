package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"builds/app"
)

// Package layers: after a job installed its repositories and packages,
// its guest is saved as a layer keyed by (VM shape with the image's
// digest, repositories, sorted packages); a later job with the same key
// resumes the layer and skips the install. The setup steps install
// repositories and packages first, before the job's tasks, environment,
// secrets, token or sources reach the guest, so a layer holds nothing of
// the job that made it but what it installed (and the resume gives every
// job its own key, clock, entropy and machine id, as for snapshots).
// Layers expire after [runner] layer-max-age, the least recently used go
// when the layers take more than [runner] layer-cache-size, and a layer
// whose image or base snapshot is gone goes with it.
//
// On disk, <dir>/<key>/ holds meta.json, mem and disk.qcow2, an overlay
// of its base (the image's disk or the base snapshot's).

// layerFormat changes when what a layer holds changes.
const layerFormat = 1

// layerRecipe is what a job installs before anything of its own.
type layerRecipe struct {
	Repositories []app.Repository `json:"repositories"`
	Packages     []string         `json:"packages"` // sorted
}

// recipeOf returns what m installs, nil when it installs nothing.
func recipeOf(m *app.Manifest) *layerRecipe {
	if len(m.Packages) == 0 && len(m.Repositories) == 0 {
		return nil
	}
	pkgs := append([]string(nil), m.Packages...)
	sort.Strings(pkgs)
	return &layerRecipe{Repositories: m.Repositories, Packages: pkgs}
}

// layerKey names the layer of recipe on a VM of shape.
func layerKey(shape vmShape, recipe *layerRecipe) string {
	b, _ := json.Marshal(struct {
		Shape  vmShape      `json:"shape"`
		Recipe *layerRecipe `json:"recipe"`
		Format int          `json:"format"`
	}{shape, recipe, layerFormat})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// LayerInfo is layer metadata (meta.json), also what `builds layer list`
// and /admin show.
type LayerInfo struct {
	Key      string      `json:"key"`
	Shape    vmShape     `json:"shape"`
	Recipe   layerRecipe `json:"recipe"`
	Backing  string      `json:"backing"` // the disk file the layer's disk is an overlay of
	Created  time.Time   `json:"created"`
	LastUsed time.Time   `json:"last_used"`
	Size     int64       `json:"size"` // mem + disk
	MemSize  int64       `json:"mem_size"`
	DiskSize int64       `json:"disk_size"`
	JobID    int64       `json:"job_id"` // the job that made it
}

// Image returns the layer's image name.
func (l *LayerInfo) Image() string { return l.Shape.Image }

// LayerStore is one runner's package layers (also what `builds layer`
// lists, removes and prunes).
type LayerStore struct {
	dir     string
	maxAge  time.Duration
	maxSize int64
	log     *slog.Logger

	mu    sync.Mutex
	inUse map[string]int // layers jobs are resuming right now
}

// NewLayerStore opens the layers in dir with the configured limits.
func NewLayerStore(dir string, maxAge time.Duration, maxSize int64, log *slog.Logger) *LayerStore {
	if log == nil {
		log = slog.Default()
	}
	return &LayerStore{dir: dir, maxAge: maxAge, maxSize: maxSize, log: log, inUse: map[string]int{}}
}

// find returns the usable layer of key, marked in use (call release). An
// expired layer, or one whose base is gone, is removed.
func (ls *LayerStore) find(key string) (*Resume, *LayerInfo, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	info, err := ls.read(key)
	if err != nil {
		return nil, nil, false
	}
	dir := filepath.Join(ls.dir, key)
	r := &Resume{Mem: filepath.Join(dir, "mem"), Disk: filepath.Join(dir, "disk.qcow2")}
	switch {
	case ls.maxAge > 0 && time.Since(info.Created) > ls.maxAge:
		ls.removeLocked(key, "it is older than [runner] layer-max-age")
		return nil, nil, false
	case fileSize(r.Mem) != info.MemSize || fileSize(r.Disk) != info.DiskSize:
		ls.removeLocked(key, "its files are truncated or changed")
		return nil, nil, false
	case fileSize(info.Backing) < 0:
		ls.removeLocked(key, "the disk it was made on is gone")
		return nil, nil, false
	}
	ls.inUse[key]++
	info.LastUsed = time.Now().UTC().Truncate(time.Second)
	ls.write(info)
	return r, info, true
}

// release ends a use that find started.
func (ls *LayerStore) release(key string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if ls.inUse[key]--; ls.inUse[key] <= 0 {
		delete(ls.inUse, key)
	}
}

func (ls *LayerStore) read(key string) (*LayerInfo, error) {
	b, err := os.ReadFile(filepath.Join(ls.dir, key, "meta.json"))
	if err != nil {
		return nil, err
	}
	var info LayerInfo
	if err := json.Unmarshal(b, &info); err != nil || info.Key != key {
		return nil, fmt.Errorf("layer %s: bad metadata", key)
	}
	return &info, nil
}

func (ls *LayerStore) write(info *LayerInfo) error {
	b, _ := json.MarshalIndent(info, "", "  ")
	tmp := filepath.Join(ls.dir, info.Key, "meta.json.tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(ls.dir, info.Key, "meta.json"))
}

// add installs a layer from the state file mem and the frozen disk disk
// (both are moved into the store), then keeps the store within its size.
func (ls *LayerStore) add(info *LayerInfo, mem, disk string) error {
	if err := os.MkdirAll(ls.dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(ls.dir, ".add-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Rename(mem, filepath.Join(tmp, "mem")); err != nil {
		return err
	}
	if err := os.Rename(disk, filepath.Join(tmp, "disk.qcow2")); err != nil {
		return err
	}
	info.MemSize, info.DiskSize = fileSize(filepath.Join(tmp, "mem")), fileSize(filepath.Join(tmp, "disk.qcow2"))
	info.Size = info.MemSize + info.DiskSize
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "meta.json"), append(b, '\n'), 0o600); err != nil {
		return err
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if err := os.Rename(tmp, filepath.Join(ls.dir, info.Key)); err != nil {
		if _, rerr := ls.read(info.Key); rerr == nil {
			return nil // another job made the same layer meanwhile
		}
		return err
	}
	ls.evictLocked()
	return nil
}

// List returns every layer, most recently used first.
func (ls *LayerStore) List() ([]*LayerInfo, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.listLocked()
}

func (ls *LayerStore) listLocked() ([]*LayerInfo, error) {
	ents, err := os.ReadDir(ls.dir)
	if os.IsNotExist(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []*LayerInfo
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if info, err := ls.read(e.Name()); err == nil {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

// Remove deletes the layers whose key starts with prefix (at least four
// characters), unless in use, and returns what it removed.
func (ls *LayerStore) Remove(prefix string) ([]string, error) {
	if len(prefix) < 4 {
		return nil, fmt.Errorf("layer key %q: give at least 4 characters", prefix)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	all, err := ls.listLocked()
	if err != nil {
		return nil, err
	}
	var gone []string
	for _, l := range all {
		if strings.HasPrefix(l.Key, prefix) {
			if ls.inUse[l.Key] > 0 {
				return gone, fmt.Errorf("layer %s is in use by a starting job", l.Key)
			}
			ls.removeLocked(l.Key, "removed on request")
			gone = append(gone, l.Key)
		}
	}
	if len(gone) == 0 {
		return nil, fmt.Errorf("no layer %s*", prefix)
	}
	return gone, nil
}

// Prune removes expired layers, those whose base is gone and, oldest use
// first, what exceeds the size limit; it returns how many it removed.
func (ls *LayerStore) Prune() (int, error) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	all, err := ls.listLocked()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range all {
		if ls.inUse[l.Key] > 0 {
			continue
		}
		switch {
		case ls.maxAge > 0 && time.Since(l.Created) > ls.maxAge:
			ls.removeLocked(l.Key, "it is older than [runner] layer-max-age")
			n++
		case fileSize(l.Backing) < 0:
			ls.removeLocked(l.Key, "the disk it was made on is gone")
			n++
		}
	}
	return n + ls.evictLocked(), nil
}

// evictLocked removes the least recently used layers not in use until
// the layers take at most maxSize.
func (ls *LayerStore) evictLocked() int {
	if ls.maxSize <= 0 {
		return 0
	}
	all, err := ls.listLocked()
	if err != nil {
		return 0
	}
	var total int64
	for _, l := range all {
		total += l.Size
	}
	n := 0
	for i := len(all) - 1; i >= 0 && total > ls.maxSize; i-- {
		if ls.inUse[all[i].Key] > 0 {
			continue
		}
		ls.removeLocked(all[i].Key, "the layer cache is over [runner] layer-cache-size")
		total -= all[i].Size
		n++
	}
	return n
}

func (ls *LayerStore) removeLocked(key, why string) {
	ls.log.Info("removing package layer", "layer", key, "reason", why)
	os.RemoveAll(filepath.Join(ls.dir, key))
}
