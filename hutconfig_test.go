package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"codeberg.org/emersion/go-scfg"
)

// hutFile is the shape of hut's config file, field for field as hut
// decodes it (codeberg.org/emersion/go-scfg, the version hut pins): the
// decoder refuses unknown directives and parameters where a block has
// none, as hut does.
type hutFile struct {
	Instances []*hutInstance `scfg:"instance"`
}

type hutInstance struct {
	Name           string      `scfg:",param"`
	AccessToken    string      `scfg:"access-token"`
	AccessTokenCmd []string    `scfg:"access-token-cmd"`
	Builds         *hutService `scfg:"builds"`
	Git            *hutService `scfg:"git"`
	Hg             *hutService `scfg:"hg"`
	Lists          *hutService `scfg:"lists"`
	Meta           *hutService `scfg:"meta"`
	Pages          *hutService `scfg:"pages"`
	Paste          *hutService `scfg:"paste"`
	Todo           *hutService `scfg:"todo"`
}

type hutService struct {
	Origin string `scfg:"origin"`
}

func decodeHut(t *testing.T, text string) (*hutFile, error) {
	t.Helper()
	var f hutFile
	err := scfg.NewDecoder(strings.NewReader(text)).Decode(&f)
	return &f, err
}

// TestHutConfigText: the hut configuration the README shows and the one
// the first start prints both decode under hut's grammar to one instance
// with a token and a builds origin; the one-line form the README used to
// show is refused (so the check is not vacuous).
func TestHutConfigText(t *testing.T) {
	t.Run("ErrOneLine", func(t *testing.T) {
		_, err := decodeHut(t, "instance \"local\" {\n    access-token \"x\"\n    builds { origin \"http://127.0.0.1:8080\" }\n}\n")
		if err == nil || !strings.Contains(err.Error(), "builds") {
			t.Fatalf("one-line builds block accepted: %v", err)
		}
	})
	t.Run("README", func(t *testing.T) {
		readme, err := os.ReadFile("README.md")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile("(?s)```\n# ~/.config/hut/config\n(.*?)```").FindSubmatch(readme)
		if m == nil {
			t.Fatal("README has no ~/.config/hut/config block")
		}
		f, err := decodeHut(t, string(m[1]))
		if err != nil {
			t.Fatalf("README's hut config: %v\n%s", err, m[1])
		}
		checkInstance(t, f, "<token printed by builds>", "http://127.0.0.1:8080")
	})
	t.Run("FirstStart", func(t *testing.T) {
		// hostile values are quoted, not interpreted
		for _, tc := range []struct{ origin, token string }{
			{"http://127.0.0.1:8080", "abc123"},
			{"https://ci.example.org", `to"k{en} \ x`},
		} {
			f, err := decodeHut(t, hutConfig("local", tc.origin, tc.token))
			if err != nil {
				t.Fatalf("%v\n%s", err, hutConfig("local", tc.origin, tc.token))
			}
			checkInstance(t, f, tc.token, tc.origin)
		}
	})
	t.Run("Serve", func(t *testing.T) {
		// what `builds serve` prints on the very first start
		port := freePort(t)
		cfg := testConfig(t, "")
		out := startServe(t, cfg, port)
		i := strings.Index(out, "instance ")
		if i < 0 {
			t.Fatalf("no hut config in the first-start message:\n%s", out)
		}
		token := strings.Fields(out[strings.Index(out, "API token: ")+len("API token: "):])[0]
		f, err := decodeHut(t, out[i:])
		if err != nil {
			t.Fatalf("first-start hut config: %v\n%s", err, out[i:])
		}
		checkInstance(t, f, token, "http://127.0.0.1:"+itoa(port))
	})
}

func checkInstance(t *testing.T, f *hutFile, token, origin string) {
	t.Helper()
	if len(f.Instances) != 1 {
		t.Fatalf("%d instances", len(f.Instances))
	}
	in := f.Instances[0]
	if in.Name != "local" || in.AccessToken != token || in.Builds == nil || in.Builds.Origin != origin {
		t.Errorf("instance = %+v builds %+v, want token %q origin %q", in, in.Builds, token, origin)
	}
}
