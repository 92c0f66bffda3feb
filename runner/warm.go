package runner

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"builds/app"
	"builds/images"
)

// Warm guests: under TCG the first run of any guest code in a new QEMU
// process is slow (QEMU translates it anew), so even a resumed guest
// takes a second to answer its first SSH login. The booter therefore
// keeps a few guests resumed ahead of time from their image's snapshot,
// each with its own fresh key, clock, entropy and machine id, logged in
// once so their sshd and shell are warm, and hands one to the next job
// of that image: the job starts at once, on a VM nobody else has used.
// A warm guest waits at most warmMaxIdle; whatever it printed while it
// waited goes nowhere. Package layers (layers.go) get warm guests the
// same way: the layer a job saved or resumed is kept warm for the next
// job asking for the same packages, so that it too starts at once.

// warmMaxIdle is how long a warm guest waits for a job before it is shut
// down (its memory goes back to the host).
const warmMaxIdle = 15 * time.Minute

// handover lets a warm guest's console and network refusals reach the
// job that takes it.
type handover struct {
	mu      sync.Mutex
	console io.Writer
	refused func(string, *app.GuestRefusal)
}

func (h *handover) Write(p []byte) (int, error) {
	h.mu.Lock()
	w := h.console
	h.mu.Unlock()
	if w != nil {
		w.Write(p)
	}
	return len(p), nil
}

func (h *handover) refusal(proto string, r *app.GuestRefusal) {
	h.mu.Lock()
	f := h.refused
	h.mu.Unlock()
	if f != nil {
		f(proto, r)
	}
}

// attach points the guest's console and refusals at a job.
func (h *handover) attach(console io.Writer, refused func(string, *app.GuestRefusal)) {
	h.mu.Lock()
	h.console, h.refused = console, refused
	h.mu.Unlock()
}

// warmGuest is one guest waiting for a job.
type warmGuest struct {
	shape   vmShape
	layer   string // the package layer it was resumed from; "" = the snapshot
	vm      *VM
	img     *images.Image
	dir     string
	base    string // the disk the VM's overlay started on
	h       *handover
	ready   time.Time // since when it waits
	resumed time.Duration
	timer   *time.Timer
}

// warmPool holds the waiting guests of one booter, at most max of them.
type warmPool struct {
	max int
	b   *QEMUBooter

	mu      sync.Mutex
	guests  []*warmGuest
	filling map[string]bool
	closed  bool
	wg      sync.WaitGroup
}

// resumeSource yields the saved state a warm guest resumes from, and a
// function ending its use once QEMU started (and holds the files).
type resumeSource func() (*Resume, func(), error)

// fixedSource is a snapshot's state, which needs no holding.
func fixedSource(r *Resume) resumeSource {
	return func() (*Resume, func(), error) { return r, func() {}, nil }
}

// take hands over a waiting guest of shape (and layer, "" for the
// snapshot), or returns nil.
func (w *warmPool) take(shape vmShape, layer string) *warmGuest {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, g := range w.guests {
		if g.shape == shape && g.layer == layer {
			w.guests = append(w.guests[:i], w.guests[i+1:]...)
			g.timer.Stop()
			return g
		}
	}
	return nil
}

// fill prepares a guest of shape (resumed from layer, or the snapshot
// when layer is "") in the background, if there is room and none such
// waits or is being prepared. A full pool makes room by dropping its
// oldest guest of another kind: the image and packages used last are the
// ones kept warm.
func (w *warmPool) fill(shape vmShape, layer string, cfg VMConfig, src resumeSource) {
	key := shape.key() + "|" + layer
	w.mu.Lock()
	if w.closed || w.max <= 0 || w.filling[key] {
		w.mu.Unlock()
		return
	}
	var drop *warmGuest
	for _, g := range w.guests {
		if g.shape == shape && g.layer == layer {
			w.mu.Unlock()
			return
		}
	}
	if len(w.guests) >= w.max {
		drop = w.guests[0]
		w.guests = w.guests[1:]
		drop.timer.Stop()
	}
	w.filling[key] = true
	w.wg.Add(1)
	w.mu.Unlock()
	if drop != nil {
		w.shut(drop)
	}
	go func() {
		defer w.wg.Done()
		g, err := w.prepare(shape, cfg, src)
		w.mu.Lock()
		delete(w.filling, key)
		if err != nil || w.closed {
			w.mu.Unlock()
			if err != nil {
				w.b.Log.Debug("no warm guest", "image", shape.Image, "layer", layer, "err", err)
			}
			if g != nil {
				w.shut(g)
			}
			return
		}
		g.layer = layer
		g.timer = time.AfterFunc(warmMaxIdle, func() { w.expire(g) })
		w.guests = append(w.guests, g)
		w.mu.Unlock()
	}()
}

// prepare resumes a guest of the saved state src and logs in once.
func (w *warmPool) prepare(shape vmShape, cfg VMConfig, src resumeSource) (*warmGuest, error) {
	r, release, err := src()
	if err != nil {
		return nil, err
	}
	started := false
	defer func() {
		if !started {
			release()
		}
	}()
	dir, err := os.MkdirTemp(w.b.cfg.Runner.WorkDir, "warm-")
	if err != nil {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	h := &handover{}
	cfg.WorkDir, cfg.Resume, cfg.Console, cfg.NetRefused = dir, r, h, h.refusal
	cfg.AuthorizedKey, cfg.ClientSigner = signer.PublicKey(), signer
	ctx, cancel := context.WithTimeout(w.b.bg, 2*time.Minute)
	defer cancel()
	start := time.Now()
	vm, err := StartVM(ctx, cfg)
	started = true
	release() // QEMU holds the files once it started
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	resumed := time.Since(start)
	// one login exercises sshd, the shell and the tools the first steps
	// use, so that the job finds them translated
	if st, err := runCommand(ctx, vm.Client(), "sh -c 'base64 </dev/null >/dev/null; true'", nil, io.Discard, io.Discard); err != nil || st != 0 {
		vm.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("warm-up login: status %d, %v", st, err)
	}
	return &warmGuest{shape: shape, vm: vm, img: cfg.Image, dir: dir, base: r.Disk, h: h, ready: time.Now(), resumed: resumed}, nil
}

// expire shuts down a guest that waited too long.
func (w *warmPool) expire(g *warmGuest) {
	w.mu.Lock()
	for i, x := range w.guests {
		if x == g {
			w.guests = append(w.guests[:i], w.guests[i+1:]...)
			w.mu.Unlock()
			w.shut(g)
			return
		}
	}
	w.mu.Unlock()
}

// drop shuts down the waiting guests of a snapshot that is gone.
func (w *warmPool) drop(key string) {
	w.mu.Lock()
	var gone []*warmGuest
	kept := w.guests[:0]
	for _, g := range w.guests {
		if g.shape.key() == key {
			g.timer.Stop()
			gone = append(gone, g)
		} else {
			kept = append(kept, g)
		}
	}
	w.guests = kept
	w.mu.Unlock()
	for _, g := range gone {
		w.shut(g)
	}
}

func (w *warmPool) shut(g *warmGuest) {
	g.vm.Close()
	os.RemoveAll(g.dir)
}

// close shuts every waiting guest down and waits for those being made.
func (w *warmPool) close() {
	w.mu.Lock()
	w.closed = true
	gs := w.guests
	w.guests = nil
	w.mu.Unlock()
	for _, g := range gs {
		g.timer.Stop()
		w.shut(g)
	}
	w.wg.Wait()
}
