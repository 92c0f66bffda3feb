package images

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Mirror is where images are bootstrapped from: the Debian archive and its
// security archive (which lives at a different path on Debian's mirrors).
type Mirror struct {
	Archive  string // e.g. http://mirror.example/debian
	Security string // e.g. http://mirror.example/debian-security; "" = none
}

// AptSource is one "deb" entry of an apt sources file, in either format.
type AptSource struct {
	URI        string
	Suites     []string
	Components []string
	File       string // where it was read from
}

// ParseSourcesList parses the one-line format of /etc/apt/sources.list:
// "deb [options] uri suite [component...]". deb-src and comments are skipped.
func ParseSourcesList(r io.Reader, file string) ([]AptSource, error) {
	var out []AptSource
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "deb-src" {
			continue
		}
		if f[0] != "deb" {
			return nil, fmt.Errorf("%s:%d: unknown type %q", file, n, f[0])
		}
		f = f[1:]
		if len(f) > 0 && strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) == 0 {
				return nil, fmt.Errorf("%s:%d: unterminated [options]", file, n)
			}
			f = f[1:]
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("%s:%d: want \"deb uri suite [component...]\"", file, n)
		}
		out = append(out, AptSource{URI: f[0], Suites: f[1:2], Components: f[2:], File: file})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return out, nil
}

// ParseDeb822 parses the deb822 format of /etc/apt/sources.list.d/*.sources:
// stanzas of "Key: value" fields separated by blank lines. Stanzas without
// type deb or with "Enabled: no" are skipped.
func ParseDeb822(r io.Reader, file string) ([]AptSource, error) {
	var out []AptSource
	stanza := map[string]string{}
	last := ""
	flush := func() {
		defer func() { stanza = map[string]string{}; last = "" }()
		if len(stanza) == 0 || strings.EqualFold(stanza["enabled"], "no") {
			return
		}
		if !slices.Contains(strings.Fields(stanza["types"]), "deb") {
			return
		}
		for _, uri := range strings.Fields(stanza["uris"]) {
			out = append(out, AptSource{
				URI:        uri,
				Suites:     strings.Fields(stanza["suites"]),
				Components: strings.Fields(stanza["components"]),
				File:       file,
			})
		}
	}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
		case strings.HasPrefix(line, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return nil, fmt.Errorf("%s:%d: continuation line without a field", file, n)
			}
			stanza[last] += " " + strings.TrimSpace(line)
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				return nil, fmt.Errorf("%s:%d: want \"Field: value\"", file, n)
			}
			last = strings.ToLower(strings.TrimSpace(k))
			stanza[last] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	flush()
	return out, nil
}

// ReadAptSources reads every sources file of the apt configuration below
// root ("/" for the host): etc/apt/sources.list, sources.list.d/*.list and
// sources.list.d/*.sources. Other files (e.g. *.disabled) are ignored, as apt
// ignores them.
func ReadAptSources(root string) ([]AptSource, error) {
	files := []string{filepath.Join(root, "etc/apt/sources.list")}
	d := filepath.Join(root, "etc/apt/sources.list.d")
	ents, err := os.ReadDir(d)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read apt sources: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".list") || strings.HasSuffix(n, ".sources") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		files = append(files, filepath.Join(d, n))
	}
	var out []AptSource
	for _, p := range files {
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read apt sources: %w", err)
		}
		var src []AptSource
		if strings.HasSuffix(p, ".sources") {
			src, err = ParseDeb822(f, p)
		} else {
			src, err = ParseSourcesList(f, p)
		}
		f.Close()
		if err != nil {
			return nil, err
		}
		out = append(out, src...)
	}
	return out, nil
}

// isSecuritySuite reports whether suite is a security suite
// ("bookworm-security", or "buster/updates" before bullseye).
func isSecuritySuite(s string) bool {
	return strings.HasSuffix(s, "-security") || strings.HasSuffix(s, "/updates")
}

// debianSuite reports whether suite belongs to the Debian archive rather
// than a third-party repository, judging by its name before any
// "-updates"/"-security" suffix.
func debianSuite(s string) bool {
	base, _, _ := strings.Cut(s, "-")
	base, _, _ = strings.Cut(base, "/")
	switch base {
	case "buster", "bullseye", "bookworm", "trixie", "forky", "duke", "sid",
		"oldoldstable", "oldstable", "stable", "testing", "unstable", "experimental":
		return true
	}
	return false
}

// PickMirror chooses the Debian archive and security URIs from apt sources:
// the first deb entry with a Debian suite that is not a security suite, and
// the first one with a security suite. Trailing slashes are dropped.
func PickMirror(srcs []AptSource) (Mirror, error) {
	var m Mirror
	for _, s := range srcs {
		for _, suite := range s.Suites {
			if !debianSuite(suite) {
				continue
			}
			uri := strings.TrimRight(s.URI, "/")
			if isSecuritySuite(suite) {
				if m.Security == "" {
					m.Security = uri
				}
			} else if m.Archive == "" {
				m.Archive = uri
			}
		}
	}
	if m.Archive == "" {
		return Mirror{}, errors.New("no Debian archive in the host's apt sources; set [images] debian-mirror")
	}
	return m, nil
}

// HostMirror returns the Debian mirror the host's apt uses.
func HostMirror(root string) (Mirror, error) {
	srcs, err := ReadAptSources(root)
	if err != nil {
		return Mirror{}, err
	}
	return PickMirror(srcs)
}

// ConfiguredMirror turns [images] debian-mirror into a Mirror: "" reads the
// host's apt sources; otherwise the value is the archive URL, optionally
// followed by the security archive's URL ("none" for no security suite).
// Without one, "<archive>-security" is tried (Debian's own layout) and
// skipped at build time if absent.
func ConfiguredMirror(value, root string) (Mirror, error) {
	f := strings.Fields(value)
	switch len(f) {
	case 0:
		return HostMirror(root)
	case 1:
		a := strings.TrimRight(f[0], "/")
		return Mirror{Archive: a, Security: a + "-security"}, nil
	case 2:
		m := Mirror{Archive: strings.TrimRight(f[0], "/"), Security: strings.TrimRight(f[1], "/")}
		if f[1] == "none" {
			m.Security = ""
		}
		return m, nil
	}
	return Mirror{}, fmt.Errorf("images.debian-mirror: want \"URL [SECURITY-URL]\", got %q", value)
}
