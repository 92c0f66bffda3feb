package images

import (
	"fmt"
	"regexp"
	"strings"
)

// Keyserver is where AddRepoCommand fetches a repository's signing key when
// the manifest gives a key fingerprint, as builds.sr.ht does. Air-gapped sites
// cannot reach it: they bake their repository keys into the image (or mirror
// the repository under a key the image already trusts) and give no key.
const Keyserver = "hkps://keyserver.ubuntu.com"

// InstallCommand returns the shell command that installs packages in the
// guest as the build user, with the image's family's package manager
// (family.go has the others; apt here). apt lists are baked into images,
// so it tries the install first and refreshes the lists (apt-get update,
// 18-33 s under TCG) only when that fails, saying so in the log first.
// Package names are shell-quoted.
func (img *Image) InstallCommand(pkgs []string) string {
	if f := img.family(); f != FamilyApt {
		return installCommand(f, pkgs)
	}
	return withRetry("sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "+quoteAll(pkgs),
		"sudo apt-get update -q", "apt-get update")
}

// maxRepoSource bounds a repository's source text: a URL or two and a key.
const maxRepoSource = 4096

var (
	repoNameRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	aptWordRe   = regexp.MustCompile(`^[A-Za-z0-9./][A-Za-z0-9._/~+-]*$`)
	keyIDRe     = regexp.MustCompile(`^(0x)?([0-9A-Fa-f]{8}|[0-9A-Fa-f]{16}|[0-9A-Fa-f]{40})$`)
	aptOptsRe   = regexp.MustCompile(`^\[[A-Za-z0-9=,._/: -]+\]$`)
	repoURLRe   = regexp.MustCompile(`^(https?|file|ftp)://[A-Za-z0-9._~:/?#@&+,=%-]+$`)
	shellSafeRe = regexp.MustCompile(`^[A-Za-z0-9._/:=+@%^,-]+$`)
)

// AddRepoCommand returns the shell command that adds a repository in the
// image family's syntax (family.go for the others); for apt:
// source is builds.sr.ht's "url suite component [key-fingerprint]"
// (behaviour.md §3.6), optionally preceded by an apt options block such as
// "[trusted=yes]" for sites without a keyserver. With a key, it is fetched
// from Keyserver into /etc/apt/keyrings/<name>.gpg and referenced with
// signed-by; without one the repository must be signed by a key the image
// already trusts. The lists are refreshed afterwards.
func (img *Image) AddRepoCommand(name, source string) (string, error) {
	if len(source) > maxRepoSource {
		return "", fmt.Errorf("repository %.64s: source is %d bytes, at most %d", name, len(source), maxRepoSource)
	}
	if f := img.family(); f != FamilyApt {
		return addRepoCommand(f, name, source)
	}
	if !repoNameRe.MatchString(name) {
		return "", fmt.Errorf("repository name %q: use letters, digits, . _ -", name)
	}
	fields := strings.Fields(source)
	var opts []string
	if len(fields) > 0 && strings.HasPrefix(fields[0], "[") {
		end := 0
		for end < len(fields) && !strings.HasSuffix(fields[end], "]") {
			end++
		}
		if end == len(fields) {
			return "", fmt.Errorf("repository %s: unterminated [options]", name)
		}
		block := strings.Join(fields[:end+1], " ")
		if !aptOptsRe.MatchString(block) {
			return "", fmt.Errorf("repository %s: invalid options %q", name, block)
		}
		opts = append(opts, strings.Fields(strings.Trim(block, "[]"))...)
		fields = fields[end+1:]
	}
	if len(fields) != 3 && len(fields) != 4 {
		return "", fmt.Errorf("repository %s: want \"url suite component [key-fingerprint]\", got %q", name, source)
	}
	url, suite, comp := fields[0], fields[1], fields[2]
	if !repoURLRe.MatchString(url) {
		return "", fmt.Errorf("repository %s: invalid url %q", name, url)
	}
	if !aptWordRe.MatchString(suite) || !aptWordRe.MatchString(comp) {
		return "", fmt.Errorf("repository %s: invalid suite or component in %q", name, source)
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	list := "/etc/apt/sources.list.d/" + name + ".list"
	if len(fields) == 4 {
		key := fields[3]
		if !keyIDRe.MatchString(key) {
			return "", fmt.Errorf("repository %s: invalid key fingerprint %q", name, key)
		}
		key = strings.ToUpper(strings.TrimPrefix(strings.TrimPrefix(key, "0x"), "0X"))
		keyring := "/etc/apt/keyrings/" + name + ".gpg"
		opts = append(opts, "signed-by="+keyring)
		install := img.InstallCommand([]string{"gnupg", "dirmngr"})
		fmt.Fprintf(&b, "command -v gpg >/dev/null && command -v dirmngr >/dev/null || { %s; }\n", install)
		fmt.Fprintf(&b, "export GNUPGHOME=$(mktemp -d)\n")
		fmt.Fprintf(&b, "gpg --batch --keyserver %s --recv-keys %s\n", shellQuote(Keyserver), key)
		fmt.Fprintf(&b, "sudo install -d -m 0755 /etc/apt/keyrings\n")
		fmt.Fprintf(&b, "gpg --batch --export %s | sudo tee %s >/dev/null\n", key, keyring)
		fmt.Fprintf(&b, "rm -rf \"$GNUPGHOME\"\n")
	}
	prefix := ""
	if len(opts) > 0 {
		prefix = "[" + strings.Join(opts, " ") + "] "
	}
	lines := fmt.Sprintf("deb %s%s %s %s\ndeb-src %s%s %s %s\n", prefix, url, suite, comp, prefix, url, suite, comp)
	fmt.Fprintf(&b, "printf '%%s' %s | sudo tee -a %s >/dev/null\n", shellQuote(lines), list)
	b.WriteString("sudo apt-get update -q\n")
	return b.String(), nil
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	if shellSafeRe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
