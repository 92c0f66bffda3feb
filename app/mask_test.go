package app_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"builds/app"
)

func TestMasker(t *testing.T) {
	m := &app.Masker{}
	m.Add("-----BEGIN KEY-----\nAAAAsecretline1\nshort\n  BBBBsecretline2  \n-----END KEY-----\n")
	m.Add("tok3n-abcabcabd")
	text := []byte("start AAAAsecretline1 x tok3n-tok3n-abcabcabd BBBBsecretline2BBBBsecretline2 AAAAsecret -----BEGIN KEY----- short tok3n-abcabcab")
	want := "start [masked] x tok3n-[masked] [masked][masked] AAAAsecret -----BEGIN KEY----- short tok3n-abcabcab"
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 500; i++ {
		if got := maskSplit(m, text, rng, 12); got != want {
			t.Fatalf("split run %d:\n got %s\nwant %s", i, got, want)
		}
	}
}

// maskSplit masks text written through a MaskWriter in random pieces of
// 1 to maxPiece bytes.
func maskSplit(m *app.Masker, text []byte, rng *rand.Rand, maxPiece int) string {
	var out bytes.Buffer
	mw := m.NewWriter(&out)
	for rest := text; len(rest) > 0; {
		n := 1 + rng.IntN(min(len(rest), maxPiece))
		mw.Write(rest[:n])
		rest = rest[n:]
	}
	mw.Flush()
	return out.String()
}

// refMask is the masking rule spelled out naively over the whole text:
// every occurrence of every secret, found at every offset, hides its
// bytes, and each run of overlapping occurrences becomes one MaskText
// (occurrences that only touch stay two).
func refMask(text string, secrets []string) string {
	type span struct{ start, end int }
	var spans []span
	for i := range text {
		for _, s := range secrets {
			if strings.HasPrefix(text[i:], s) {
				spans = append(spans, span{i, i + len(s)})
			}
		}
	}
	var b strings.Builder
	pos := 0
	for k := 0; k < len(spans); {
		start, end := spans[k].start, spans[k].end
		for k++; k < len(spans) && spans[k].start < end; k++ {
			end = max(end, spans[k].end)
		}
		b.WriteString(text[pos:start])
		b.WriteString(app.MaskText)
		pos = end
	}
	b.WriteString(text[pos:])
	return b.String()
}

// randomMaskCase makes secrets and a text from a two- and three-letter
// alphabet, so that secrets overlap, repeat, and share prefixes and
// suffixes with each other and with the text; a third of the cases have
// more than manySecrets of them.
func randomMaskCase(rng *rand.Rand) (secrets []string, text []byte) {
	word := func(alphabet string, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return string(b)
	}
	n := 1 + rng.IntN(4)
	if rng.IntN(3) == 0 {
		n = 9 + rng.IntN(8) // past manySecrets: the one-pass search
	}
	for range n {
		secrets = append(secrets, word("ab", 6+rng.IntN(6)))
	}
	for range rng.IntN(8) {
		// plant secrets, sometimes cut short, into the text
		s := secrets[rng.IntN(len(secrets))]
		text = append(text, word("abc", rng.IntN(8))...)
		text = append(text, s[:len(s)-rng.IntN(3)]...)
	}
	text = append(text, word("abc", rng.IntN(40))...)
	return secrets, text
}

// TestMaskWriterMatchesReference: however a stream is cut into writes,
// the MaskWriter's output is the naive masking of the whole text.
func TestMaskWriterMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 5000; i++ {
		secrets, text := randomMaskCase(rng)
		m := &app.Masker{}
		for _, s := range secrets {
			m.Add(s)
		}
		want := refMask(string(text), secrets)
		for j := 0; j < 5; j++ {
			if got := maskSplit(m, text, rng, 1+rng.IntN(16)); got != want {
				t.Fatalf("case %d split %d: secrets %q text %q\n got %q\nwant %q", i, j, secrets, text, got, want)
			}
		}
	}
}

func FuzzMaskWriter(f *testing.F) {
	f.Add("aaaaaa", "abcabd", []byte("aaaaaaa abcabcabd aaaaab"), uint64(1))
	f.Add("abab-secret", "secret-xyz", []byte("abab-secret-xyz abab-secret-x"), uint64(2))
	f.Fuzz(func(t *testing.T, s1, s2 string, text []byte, seed uint64) {
		m := &app.Masker{}
		var secrets []string
		for _, s := range []string{s1, s2} {
			// only values Add keeps as they are
			if len(s) >= 6 && !strings.Contains(s, "\n") && strings.TrimSpace(s) == s && !strings.HasPrefix(s, "-----") {
				m.Add(s)
				secrets = append(secrets, s)
			}
		}
		want := refMask(string(text), secrets)
		rng := rand.New(rand.NewPCG(seed, 0))
		if got := maskSplit(m, text, rng, 1+rng.IntN(32)); got != want {
			t.Fatalf("secrets %q text %q\n got %q\nwant %q", secrets, text, got, want)
		}
	})
}

// TestMaskWriterHoldsPrefix: the start of a secret is not written until
// the stream shows it is not one; Flush writes it as it is.
func TestMaskWriterHoldsPrefix(t *testing.T) {
	m := &app.Masker{}
	m.Add("tok3n-abcabcabd")
	var out bytes.Buffer
	mw := m.NewWriter(&out)
	mw.Write([]byte("line one\ntok3n-abc"))
	if out.String() != "line one\n" {
		t.Fatalf("written before the secret was decided: %q", out.String())
	}
	mw.Flush()
	if out.String() != "line one\ntok3n-abc" {
		t.Fatalf("after Flush: %q", out.String())
	}
}

// TestMaskWriterNoSecretNoCopy: a write with no secret in it is passed on
// as it is, without allocating (the log path's hot case).
func TestMaskWriterNoSecretNoCopy(t *testing.T) {
	m := &app.Masker{}
	m.Add("tok3n-abcabcabd")
	p := bytes.Repeat([]byte("a line of build output 0123456789\n"), 1000)
	var got []byte
	mw := m.NewWriter(writerFunc(func(b []byte) (int, error) { got = b; return len(b), nil }))
	allocs := testing.AllocsPerRun(100, func() { mw.Write(p) })
	if allocs != 0 {
		t.Errorf("write allocates %v times", allocs)
	}
	if len(got) != len(p) || &got[0] != &p[0] {
		t.Errorf("write was copied or cut: %d of %d bytes", len(got), len(p))
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestMaskerNoSecretsPassesThrough(t *testing.T) {
	m := &app.Masker{}
	if !m.Empty() {
		t.Fatal("new masker not empty")
	}
	var out bytes.Buffer
	mw := m.NewWriter(&out)
	mw.Write([]byte("abc"))
	mw.Flush()
	if out.String() != "abc" {
		t.Fatalf("masked %q", out.String())
	}
}

// BenchmarkMaskWriter masks 32 KiB writes of build output with one secret
// (a job token) and with fifty (the lines of an RSA key).
func BenchmarkMaskWriter(b *testing.B) {
	chunk := bytes.Repeat([]byte("a line of build output 0123456789 abcdefghijklmnopqrstuvwxyz\n"), 32<<10/61)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 50} {
		b.Run(fmt.Sprint(n, "-secrets"), func(b *testing.B) {
			m := &app.Masker{}
			for range n {
				s := make([]byte, 64)
				for i := range s {
					s[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[rng.IntN(64)]
				}
				m.Add(string(s))
			}
			mw := m.NewWriter(io.Discard)
			b.SetBytes(int64(len(chunk)))
			for b.Loop() {
				mw.Write(chunk)
			}
		})
	}
}

// TestSetupLogOneWriter: lines the service and notifications add to a
// running job's setup log get the runner's prefix, the Service's clock
// and the job's mask; they do not make a finished log live again.
func TestSetupLogOneWriter(t *testing.T) {
	e := newEnv(t)
	e.svc.Now = func() time.Time { return time.Date(2026, 3, 4, 5, 6, 7, 0, time.Local) }
	m := &app.Masker{}
	m.Add("supersecret-value")
	w, err := e.svc.OpenLog(7, "", m)
	if err != nil {
		t.Fatal(err)
	}
	w.Printf("runner line")
	e.svc.SetupLogf(7, "trigger posted to https://hooks.example.org/?token=%s", "supersecret-value")
	w.Close()
	e.svc.SetupLogf(7, "after the job")
	b, err := os.ReadFile(e.svc.LogPath(7, ""))
	if err != nil {
		t.Fatal(err)
	}
	want := "[#7] 2026/03/04 05:06:07 runner line\n" +
		"[#7] 2026/03/04 05:06:07 trigger posted to https://hooks.example.org/?token=[masked]\n" +
		"[#7] 2026/03/04 05:06:07 after the job\n"
	if string(b) != want {
		t.Fatalf("setup log:\n%s\nwant:\n%s", b, want)
	}
	if e.svc.Logs.Live(7, "") {
		t.Error("SetupLogf made a complete log live again")
	}
}
