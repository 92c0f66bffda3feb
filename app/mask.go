package app

import (
	"bytes"
	"sort"
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
	secrets []maskSecret // longest first
}

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
	sort.SliceStable(m.secrets, func(i, j int) bool { return len(m.secrets[i].val) > len(m.secrets[j].val) })
}

func (m *Masker) has(v string) bool {
	for _, s := range m.secrets {
		if string(s.val) == v {
			return true
		}
	}
	return false
}

func (m *Masker) Empty() bool {
	if m == nil {
		return true
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.secrets) == 0
}

// Apply masks pend+p. It returns the bytes that are safe to write and the
// tail to hold back: the longest suffix that could be the start of a
// secret continued by the next write, so a secret split across writes is
// still caught.
func (m *Masker) Apply(pend, p []byte) (out, hold []byte) {
	buf := make([]byte, 0, len(pend)+len(p))
	buf = append(append(buf, pend...), p...)
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, s := range m.secrets {
		if bytes.Contains(buf, s.val) {
			buf = bytes.ReplaceAll(buf, s.val, []byte(MaskText))
		}
	}
	keep := 0
	for _, s := range m.secrets {
		if k := s.suffixPrefix(buf); k > keep {
			keep = k
		}
	}
	n := len(buf) - keep
	return buf[:n], append([]byte(nil), buf[n:]...)
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
