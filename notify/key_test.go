package notify

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"builds/app"
)

func TestLoadKey(t *testing.T) {
	t.Run("GeneratedOnceAndKept", func(t *testing.T) {
		cfg := testConfig(t)
		k1, err := LoadKey(cfg)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(cfg.Builds.DataDir, KeyFile))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("key file: %v, mode %v", err, fi.Mode())
		}
		k2, err := LoadKey(cfg)
		if err != nil || !k1.Equal(k2) {
			t.Fatalf("second load gave another key (%v)", err)
		}
	})
	t.Run("FromConfig", func(t *testing.T) {
		cfg := testConfig(t)
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = 7
		want := ed25519.NewKeyFromSeed(seed)
		for _, enc := range []string{base64.StdEncoding.EncodeToString(seed), base64.StdEncoding.EncodeToString(want)} {
			cfg.Webhooks.PrivateKey = enc
			got, err := LoadKey(cfg)
			if err != nil || !got.Equal(want) {
				t.Fatalf("LoadKey(%q) = %v", enc, err)
			}
		}
		if _, err := os.Stat(filepath.Join(cfg.Builds.DataDir, KeyFile)); !os.IsNotExist(err) {
			t.Error("a key file was written although the config has a key")
		}
		if PublicKey(want) != base64.StdEncoding.EncodeToString(want.Public().(ed25519.PublicKey)) {
			t.Error("PublicKey is not the base64 public key")
		}
	})
	tests := []struct {
		name, key, want string
	}{
		{name: "ErrNotBase64", key: "not base64!", want: "webhooks.private-key: not valid base64"},
		{name: "ErrWrongSize", key: base64.StdEncoding.EncodeToString([]byte("short")), want: "decodes to 5 bytes"},
		{name: "ErrMismatchedHalves", key: base64.StdEncoding.EncodeToString(make([]byte, 64)), want: "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Webhooks.PrivateKey = tt.key
			if _, err := LoadKey(cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("ErrCorruptFile", func(t *testing.T) {
		cfg := testConfig(t)
		os.WriteFile(filepath.Join(cfg.Builds.DataDir, KeyFile), []byte("garbage"), 0o600)
		if _, err := LoadKey(cfg); err == nil || !strings.Contains(err.Error(), KeyFile) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestDispatcherLifecycle(t *testing.T) {
	e := newEnv(t, testConfig(t))
	hook := newHookServer(t, e.publicKey())
	d := e.d
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	// Events after Close are dropped without blocking or panicking.
	job := e.createJob(jobSpec{manifest: webhookManifest(hook.URL)}, app.JobQueued)
	d.JobChanged(context.Background(), app.EventJobUpdated, job)

	// A Dispatcher that never started closes at once.
	d2, err := NewDispatcher(e.svc, e.cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := d2.Close(); err != nil {
		t.Fatal(err)
	}
	if d2.PublicKey() != d.PublicKey() {
		t.Error("two dispatchers on one data dir use different keys")
	}
}
