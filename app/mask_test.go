package app_test

import (
	"bytes"
	"math/rand/v2"
	"os"
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
		var out, pend []byte
		rest := text
		for len(rest) > 0 {
			n := 1 + rng.IntN(min(len(rest), 12))
			var o []byte
			o, pend = m.Apply(pend, rest[:n])
			out = append(out, o...)
			rest = rest[n:]
		}
		out = append(out, pend...)
		if string(out) != want {
			t.Fatalf("split run %d:\n got %s\nwant %s", i, out, want)
		}
	}
}

func TestMaskerNoSecretsPassesThrough(t *testing.T) {
	m := &app.Masker{}
	if !m.Empty() {
		t.Fatal("new masker not empty")
	}
	out, hold := (&app.Masker{}).Apply(nil, []byte("abc"))
	if !bytes.Equal(out, []byte("abc")) || len(hold) != 0 {
		t.Fatalf("apply = %q, %q", out, hold)
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
