package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseDeb822(t *testing.T) {
	in := `Types: deb deb-src
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
 contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: bookworm
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
`
	got, err := ParseDeb822(strings.NewReader(in), "debian.sources")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d sources: %+v", len(got), got)
	}
	if got[0].URI != "http://mirror.example/debian" || strings.Join(got[0].Suites, ",") != "bookworm,bookworm-updates" ||
		strings.Join(got[0].Components, ",") != "main,contrib" {
		t.Fatalf("first stanza: %+v", got[0])
	}
	if _, err := ParseDeb822(strings.NewReader("no colon here\n"), "x.sources"); err == nil {
		t.Fatal("malformed field accepted")
	}
}

func TestParseSourcesList(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // URI + " " + suite
		err      bool
	}{
		{name: "plain", in: "deb http://m.example/debian bookworm main\n", want: []string{"http://m.example/debian bookworm"}},
		{name: "options", in: "deb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\n",
			want: []string{"http://m.example/debian bookworm"}},
		{name: "comments and src", in: "# deb http://x/ y main\ndeb-src http://m/ bookworm main\n\ndeb file:/srv/mirror bookworm main # local\n",
			want: []string{"file:/srv/mirror bookworm"}},
		{name: "bad type", in: "rpm http://x y\n", err: true},
		{name: "short", in: "deb http://x\n", err: true},
		{name: "unterminated options", in: "deb [arch=amd64 http://x bookworm\n", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSourcesList(strings.NewReader(tt.in), "sources.list")
			if tt.err {
				if err == nil {
					t.Fatalf("accepted %q", tt.in)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, g := range got {
				s = append(s, g.URI+" "+g.Suites[0])
			}
			if strings.Join(s, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("got %v, want %v", s, tt.want)
			}
		})
	}
}

func TestPickMirror(t *testing.T) {
	tests := []struct {
		name string
		srcs []AptSource
		want Mirror
		err  bool
	}{
		{name: "archive and security", srcs: []AptSource{
			{URI: "http://a.example/node", Suites: []string{"nodistro"}},
			{URI: "http://m.example/debian/", Suites: []string{"bookworm", "bookworm-updates"}},
			{URI: "http://m.example/debian-security", Suites: []string{"bookworm-security"}},
		}, want: Mirror{Archive: "http://m.example/debian", Security: "http://m.example/debian-security"}},
		{name: "old security layout", srcs: []AptSource{
			{URI: "http://m.example/debian", Suites: []string{"buster"}},
			{URI: "http://s.example/debian-security", Suites: []string{"buster/updates"}},
		}, want: Mirror{Archive: "http://m.example/debian", Security: "http://s.example/debian-security"}},
		{name: "no security", srcs: []AptSource{{URI: "file:/srv/debian", Suites: []string{"stable"}}},
			want: Mirror{Archive: "file:/srv/debian"}},
		{name: "only third party", srcs: []AptSource{{URI: "http://x.example/", Suites: []string{"jammy"}}}, err: true},
		{name: "empty", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PickMirror(tt.srcs)
			if tt.err {
				if err == nil || !strings.Contains(err.Error(), "debian-mirror") {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestHostMirrorBothFormats(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  Mirror
	}{
		{name: "deb822", files: map[string]string{
			"etc/apt/sources.list.d/debian.sources": "Types: deb\nURIs: http://m.example/debian\nSuites: trixie trixie-updates\nComponents: main\n\n" +
				"Types: deb\nURIs: http://m.example/debian-security\nSuites: trixie-security\nComponents: main\n",
			"etc/apt/sources.list.d/other.sources.disabled": "Types: deb\nURIs: http://wrong.example/debian\nSuites: trixie\n",
		}, want: Mirror{Archive: "http://m.example/debian", Security: "http://m.example/debian-security"}},
		{name: "one-line", files: map[string]string{
			"etc/apt/sources.list": "deb http://l.example/debian bookworm main\ndeb http://l.example/debian-security bookworm-security main\n",
		}, want: Mirror{Archive: "http://l.example/debian", Security: "http://l.example/debian-security"}},
		{name: "sources.list wins by order", files: map[string]string{
			"etc/apt/sources.list":                   "deb http://first.example/debian bookworm main\n",
			"etc/apt/sources.list.d/extra.list":      "deb http://second.example/debian bookworm main\n",
			"etc/apt/sources.list.d/sec.sources":     "Types: deb\nURIs: http://sec.example/ds\nSuites: bookworm-security\n",
			"etc/apt/sources.list.d/nodesource.list": "deb http://node.example/ nodistro main\n",
		}, want: Mirror{Archive: "http://first.example/debian", Security: "http://sec.example/ds"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for p, c := range tt.files {
				os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755)
				if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := HostMirror(root)
			if err != nil || got != tt.want {
				t.Fatalf("HostMirror = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestHostMirrorOfThisMachine(t *testing.T) {
	m, err := HostMirror("/")
	if err != nil {
		t.Skipf("this host has no Debian apt sources: %v", err)
	}
	if !strings.Contains(m.Archive, "://") && !strings.HasPrefix(m.Archive, "file:") {
		t.Fatalf("archive %q is not a URI", m.Archive)
	}
}

func TestConfiguredMirror(t *testing.T) {
	tests := []struct {
		name, in string
		want     Mirror
		err      bool
	}{
		{name: "one url", in: "http://m.example/debian/", want: Mirror{Archive: "http://m.example/debian", Security: "http://m.example/debian-security"}},
		{name: "two urls", in: "file:///srv/debian file:///srv/security", want: Mirror{Archive: "file:///srv/debian", Security: "file:///srv/security"}},
		{name: "no security", in: "http://m.example/debian none", want: Mirror{Archive: "http://m.example/debian"}},
		{name: "three", in: "a b c", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConfiguredMirror(tt.in, t.TempDir())
			if (err != nil) != tt.err || !tt.err && got != tt.want {
				t.Fatalf("got %+v, %v", got, err)
			}
		})
	}
}
