package app

import (
	"bytes"
	"cmp"
	"io"
	"slices"
	"strings"
	"sync"
)

// MaskText replaces secret values in logs.
const MaskText = "[masked]"

// minMaskLen is the shortest secret value masked: shorter strings are too
// likely to appear by chance and would mangle the logs.
const minMaskLen = 6

// Masker holds the secret values of one job. Values are added while the
// job sets up (secrets are resolved, a token is minted) and apply to every
// log of the job from then on.
type Masker struct {
	mu      sync.RWMutex
	secrets []maskSecret
	// With many secrets (the lines of a private key), one pass over a
	// write finds candidates by their first two bytes, where a search per
	// secret would read the write once per line.
	pairs  []uint64         // bitmap of the secrets' first two bytes; nil with few secrets
	byPair map[uint16][]int // indices into secrets
}

// manySecrets is where one pass (about 1 ns a byte) starts to beat a
// vectorised search per secret.
const manySecrets = 8

func pairOf(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

type maskSecret struct {
	val  []byte
	fail []int // KMP failure function of val
}

// Add registers a secret's material. Multi-line material is masked line by
// line so that it is also caught when printed partially or re-wrapped by
// the guest; PEM/armor boundary lines are not secret and stay readable.
func (m *Masker) Add(material string) {
	var vals []string
	for _, line := range strings.Split(material, "\n") {
		line = strings.TrimSpace(line)
		if len(line) < minMaskLen || strings.HasPrefix(line, "-----") {
			continue
		}
		vals = append(vals, line)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range vals {
		if !m.has(v) {
			m.secrets = append(m.secrets, maskSecret{val: []byte(v), fail: kmpTable([]byte(v))})
		}
	}
	if len(m.secrets) > manySecrets {
		m.pairs, m.byPair = make([]uint64, 1<<16/64), map[uint16][]int{}
		for i, sec := range m.secrets {
			p := pairOf(sec.val) // values have at least minMaskLen bytes
			m.pairs[p/64] |= 1 << (p % 64)
			m.byPair[p] = append(m.byPair[p], i)
		}
	}
}

func (m *Masker) has(v string) bool {
	for _, s := range m.secrets {
		if string(s.val) == v {
			return true
		}
	}
	return false
}

// Empty reports whether there is nothing to mask (a nil Masker is empty).
func (m *Masker) Empty() bool {
	if m == nil {
		return true
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.secrets) == 0
}

// maskString masks one complete text, such as a line of a setup log.
func (m *Masker) maskString(s string) string {
	var b bytes.Buffer
	mw := m.NewWriter(&b)
	mw.Write([]byte(s))
	mw.Flush()
	return b.String()
}

// MaskWriter masks one stream of writes, a log, and passes it on to its
// writer. Every byte inside an occurrence of a secret is hidden, and each
// run of overlapping occurrences becomes one MaskText, so what comes out
// does not depend on how the stream was cut into writes. A tail that could
// begin a secret is held back until the next write decides it, or Flush
// ends the stream: a secret split across writes is still caught.
//
// Logs are hot (a task can print hundreds of MB/s), so a write in which no
// secret occurs is passed on without a copy, and the buffers the other
// writes need are kept for the next.
type MaskWriter struct {
	m *Masker
	w io.Writer

	pend    []byte // held back, shorter than the longest secret
	covered int    // leading bytes of pend inside a MaskText already written
	join    []byte // pend followed by the write, when pend is not empty
	out     []byte // the masked output of a write with a secret in it
	spans   []maskSpan
}

// maskSpan is an occurrence of a secret: buf[start:end].
type maskSpan struct{ start, end int }

// NewWriter returns a MaskWriter that writes masked output to w. A nil
// Masker masks nothing.
func (m *Masker) NewWriter(w io.Writer) *MaskWriter { return &MaskWriter{m: m, w: w} }

// Write masks p and writes what is decided of it. It returns len(p) unless
// the underlying writer failed; held bytes stay held either way.
func (mw *MaskWriter) Write(p []byte) (int, error) {
	if err := mw.process(p, false); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush ends the stream: it writes the held tail, masked as far as it is
// a secret itself.
func (mw *MaskWriter) Flush() error { return mw.process(nil, true) }

func (mw *MaskWriter) process(p []byte, final bool) error {
	buf := p
	if len(mw.pend) > 0 {
		mw.join = append(append(mw.join[:0], mw.pend...), p...)
		buf = mw.join
	}
	cut := len(buf)
	mw.spans = mw.spans[:0]
	if m := mw.m; m != nil {
		m.mu.RLock()
		mw.spans = m.find(mw.spans, buf)
		if !final {
			cut -= m.heldTail(buf)
		}
		m.mu.RUnlock()
	}
	out, pos := mw.render(buf, cut)
	// buf may be mw.join, never mw.pend: the tail is copied out safely.
	mw.pend = append(mw.pend[:0], buf[cut:]...)
	mw.covered = max(0, pos-cut)
	if len(out) == 0 {
		return nil
	}
	_, err := mw.w.Write(out)
	return err
}

// render returns buf[:cut] with each group of overlapping spans that
// starts before cut replaced by MaskText, and the offset in buf where the
// hidden part of the last group ends: past cut when a group straddles it.
// The first mw.covered bytes belong to a group already written.
func (mw *MaskWriter) render(buf []byte, cut int) (out []byte, pos int) {
	if len(mw.spans) == 0 && mw.covered == 0 {
		return buf[:cut], cut
	}
	out = mw.out[:0]
	// the group being built is buf[a:b]; open says there is one, and
	// written that its MaskText was written with an earlier write
	a, b := 0, mw.covered
	open, written := mw.covered > 0, mw.covered > 0
	for k := 0; ; k++ {
		if k < len(mw.spans) && open && mw.spans[k].start < b {
			b = max(b, mw.spans[k].end)
			continue
		}
		if open {
			out = append(out, buf[pos:a]...)
			if !written {
				out = append(out, MaskText...)
			}
			pos = b
		}
		if k == len(mw.spans) || mw.spans[k].start >= cut {
			break
		}
		a, b = mw.spans[k].start, mw.spans[k].end
		open, written = true, false
	}
	if pos < cut {
		out = append(out, buf[pos:cut]...)
	}
	mw.out = out
	return out, pos
}

// find appends every occurrence of every secret in buf to spans, in order
// of their start (overlapping occurrences of one secret included: they
// widen the hidden part).
func (m *Masker) find(spans []maskSpan, buf []byte) []maskSpan {
	if m.pairs != nil {
		for i := 0; i+1 < len(buf); i++ {
			p := pairOf(buf[i:])
			if m.pairs[p/64]&(1<<(p%64)) == 0 {
				continue
			}
			for _, k := range m.byPair[p] {
				if v := m.secrets[k].val; bytes.HasPrefix(buf[i:], v) {
					spans = append(spans, maskSpan{i, i + len(v)})
				}
			}
		}
		return spans // in order of their start already
	}
	for _, s := range m.secrets {
		for i := 0; ; {
			j := bytes.Index(buf[i:], s.val)
			if j < 0 {
				break
			}
			spans = append(spans, maskSpan{i + j, i + j + len(s.val)})
			i += j + 1
		}
	}
	if len(m.secrets) > 1 && len(spans) > 1 {
		slices.SortFunc(spans, func(x, y maskSpan) int { return cmp.Compare(x.start, y.start) })
	}
	return spans
}

// heldTail returns how many trailing bytes of buf must wait for the next
// write: the longest suffix that is a proper prefix of a secret.
func (m *Masker) heldTail(buf []byte) int {
	keep := 0
	for _, s := range m.secrets {
		keep = max(keep, s.suffixPrefix(buf))
	}
	return keep
}

// suffixPrefix returns the length of the longest suffix of buf that is a
// proper prefix of the secret, running the KMP automaton over at most
// len(val)-1 trailing bytes.
func (s maskSecret) suffixPrefix(buf []byte) int {
	tail := buf
	if n := len(s.val) - 1; len(tail) > n {
		tail = tail[len(tail)-n:]
	}
	q := 0
	for _, c := range tail {
		for q > 0 && s.val[q] != c {
			q = s.fail[q-1]
		}
		if s.val[q] == c {
			q++
		}
		if q == len(s.val) {
			q = s.fail[q-1]
		}
	}
	return q
}

// kmpTable returns the KMP failure function: fail[i] is the length of the
// longest proper prefix of v[:i+1] that is also its suffix.
func kmpTable(v []byte) []int {
	fail := make([]int, len(v))
	k := 0
	for i := 1; i < len(v); i++ {
		for k > 0 && v[k] != v[i] {
			k = fail[k-1]
		}
		if v[k] == v[i] {
			k++
		}
		fail[i] = k
	}
	return fail
}
