package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestLogFormat: [builds] log-format = json makes every server log line
// one JSON object; log-level drops what is below it; -debug lowers it to
// debug whatever the file says; a bad value stops start-up naming the key.
func TestLogFormat(t *testing.T) {
	t.Run("JSON", func(t *testing.T) {
		cfg := testConfig(t, "")
		appendConfig(t, cfg, "[builds]\nlog-format = json\n")
		s := serveConfig(t, cfg, freePort(t))
		if err := s.stop(t); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(s.errb.String()), "\n")
		var running bool
		for _, l := range lines {
			var rec map[string]any
			if err := json.Unmarshal([]byte(l), &rec); err != nil {
				t.Fatalf("not JSON: %q (%v)", l, err)
			}
			if rec["level"] == "DEBUG" {
				t.Errorf("debug line at level info: %q", l)
			}
			if rec["msg"] == "builds is running" && rec["level"] == "INFO" && rec["listen"] != nil {
				running = true
			}
		}
		if !running {
			t.Errorf("no start-up line in:\n%s", s.errb.String())
		}
	})
	t.Run("LevelWarn", func(t *testing.T) {
		cfg := testConfig(t, "")
		appendConfig(t, cfg, "[builds]\nlog-level = warn\n")
		s := serveConfig(t, cfg, freePort(t))
		s.stop(t)
		if strings.Contains(s.errb.String(), "level=INFO") || strings.Contains(s.errb.String(), "builds is running") {
			t.Errorf("info lines at log-level warn:\n%s", s.errb.String())
		}
	})
	t.Run("DebugFlag", func(t *testing.T) {
		cfg := testConfig(t, "")
		appendConfig(t, cfg, "[builds]\nlog-level = error\n")
		s := serveConfig(t, cfg, freePort(t), "-debug")
		s.stop(t)
		if !strings.Contains(s.errb.String(), "level=DEBUG") {
			t.Errorf("-debug logged no debug lines:\n%s", s.errb.String())
		}
	})
	for _, tc := range []struct{ key, value, want string }{
		{"log-format", "yaml", `builds.log-format: invalid value "yaml" (want text or json)`},
		{"log-level", "verbose", `builds.log-level: invalid value "verbose"`},
		{"log-level", "INFO", `builds.log-level: invalid value "INFO"`},
	} {
		t.Run("Err"+tc.key+"_"+tc.value, func(t *testing.T) {
			cfg := testConfig(t, "")
			appendConfig(t, cfg, "[builds]\n"+tc.key+" = "+tc.value+"\n")
			_, _, err := run(t, cfg, "", "config", "dump")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
