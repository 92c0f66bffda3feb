package web

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAPIMeta(t *testing.T) {
	e := newAPIEnv(t)
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	key := base64.StdEncoding.EncodeToString(pub)
	tests := []struct {
		name string
		key  string
	}{
		{"webhook key configured", key},
		{"no webhook key", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &Server{Service: e.svc, Config: e.cfg, Log: e.srv.Log, WebhookPublicKey: tt.key}
			rec := httptest.NewRecorder()
			srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/query/api-meta.json", nil))
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("status %d, type %q", rec.Code, rec.Header().Get("Content-Type"))
			}
			var meta struct {
				Scopes           []string `json:"scopes"`
				WebhookPublicKey *string  `json:"webhookPublicKey"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &meta); err != nil {
				t.Fatalf("%v: %s", err, rec.Body)
			}
			if len(meta.Scopes) == 0 {
				t.Errorf("no scopes: %s", rec.Body)
			}
			if tt.key == "" {
				if meta.WebhookPublicKey != nil {
					t.Errorf("webhookPublicKey = %q, want it left out", *meta.WebhookPublicKey)
				}
				return
			}
			if meta.WebhookPublicKey == nil {
				t.Fatalf("no webhookPublicKey: %s", rec.Body)
			}
			// A receiver verifies a signed payload with the published key.
			raw, err := base64.StdEncoding.DecodeString(*meta.WebhookPublicKey)
			if err != nil || len(raw) != ed25519.PublicKeySize {
				t.Fatalf("webhookPublicKey %q: %v, %d bytes", *meta.WebhookPublicKey, err, len(raw))
			}
			payload := []byte(`{"id":1}` + "nonce")
			if !ed25519.Verify(ed25519.PublicKey(raw), payload, ed25519.Sign(priv, payload)) {
				t.Error("a signature does not verify with the published key")
			}
		})
	}
}
