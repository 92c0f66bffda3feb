package images

import (
	"fmt"
	"regexp"
	"strings"
)

// Family is a guest's package manager family: which commands install
// packages and add repositories (behaviour.md §3.6). Images built here
// are FamilyApt; imported cloud images record theirs in image.json.
type Family string

// The families builds knows.
const (
	FamilyApt    Family = "apt"    // Debian, Ubuntu
	FamilyApk    Family = "apk"    // Alpine
	FamilyPacman Family = "pacman" // Arch Linux
	FamilyDnf    Family = "dnf"    // Fedora, Rocky, Alma, CentOS Stream
	FamilyZypper Family = "zypper" // openSUSE
	FamilyPkg    Family = "pkg"    // FreeBSD
)

// Families lists every family, in the order the documentation uses.
var Families = []Family{FamilyApt, FamilyApk, FamilyPacman, FamilyDnf, FamilyZypper, FamilyPkg}

// ParseFamily checks a family name.
func ParseFamily(s string) (Family, error) {
	for _, f := range Families {
		if string(f) == s {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown package family %q: want one of %s", s, familyNames())
}

// familyNames lists the families, comma separated.
func familyNames() string {
	names := make([]string, len(Families))
	for i, f := range Families {
		names[i] = string(f)
	}
	return strings.Join(names, ", ")
}

// osFamilies maps os-release ID (and ID_LIKE) words to families.
var osFamilies = map[string]Family{
	"debian": FamilyApt, "ubuntu": FamilyApt,
	"alpine": FamilyApk,
	"arch":   FamilyPacman, "archlinux": FamilyPacman,
	"fedora": FamilyDnf, "rhel": FamilyDnf, "centos": FamilyDnf, "rocky": FamilyDnf, "almalinux": FamilyDnf,
	"opensuse": FamilyZypper, "suse": FamilyZypper, "sles": FamilyZypper,
	"opensuse-leap": FamilyZypper, "opensuse-tumbleweed": FamilyZypper,
	"freebsd": FamilyPkg,
}

// FamilyFromOSRelease guesses the family from /etc/os-release text: its
// ID first, then each word of ID_LIKE.
func FamilyFromOSRelease(text string) (Family, error) {
	vals := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		vals[k] = strings.ToLower(strings.Trim(v, `"'`))
	}
	words := append([]string{vals["ID"]}, strings.Fields(vals["ID_LIKE"])...)
	for _, w := range words {
		if f, ok := osFamilies[w]; ok {
			return f, nil
		}
	}
	if vals["ID"] == "" {
		return "", fmt.Errorf("no ID in os-release: give --family")
	}
	return "", fmt.Errorf("os-release ID %.64q (ID_LIKE %.64q) is no family builds knows: give --family", vals["ID"], vals["ID_LIKE"])
}

// family returns the image's family; image.json files from before
// families existed are Debian's.
func (img *Image) family() Family {
	if img.Meta.Family == "" {
		return FamilyApt
	}
	return img.Meta.Family
}

// quoteAll shell-quotes each package name.
func quoteAll(pkgs []string) string {
	q := make([]string, len(pkgs))
	for i, p := range pkgs {
		q[i] = shellQuote(p)
	}
	return strings.Join(q, " ")
}

// withRetry runs install, and when it fails says so, runs refresh and
// installs once more (the apt form of this is InstallCommand's).
func withRetry(install, refresh, what string) string {
	retry := shellQuote("Installing packages failed; refreshing the package lists (" + what + ") and retrying")
	return install + " || { echo " + retry + " && " + refresh + " && " + install + "; }"
}

// installCommand is InstallCommand for the families other than apt.
// Each tries the install first and refreshes its indexes only when that
// fails, as apt's does; pacman always syncs, because Arch supports no
// partial upgrades.
func installCommand(f Family, pkgs []string) string {
	p := quoteAll(pkgs)
	switch f {
	case FamilyApk:
		return withRetry("sudo apk add --no-progress "+p, "sudo apk update -q", "apk update")
	case FamilyPacman:
		return "sudo pacman -Syu --needed --noconfirm --noprogressbar " + p
	case FamilyDnf:
		return withRetry("sudo dnf -y -q install "+p, "sudo dnf -y -q makecache --refresh", "dnf makecache")
	case FamilyZypper:
		return withRetry("sudo zypper --non-interactive --quiet install --no-recommends "+p,
			"sudo zypper --non-interactive --quiet refresh", "zypper refresh")
	case FamilyPkg:
		return withRetry("sudo env ASSUME_ALWAYS_YES=yes pkg install -y "+p, "sudo env ASSUME_ALWAYS_YES=yes pkg update -f", "pkg update")
	}
	return "echo " + shellQuote("unknown package family "+string(f)) + " >&2; exit 1"
}

// NoRepositoriesError is the error for a repository on an image whose
// family takes none (FreeBSD's pkg, as on builds.sr.ht).
type NoRepositoriesError struct {
	Name   string
	Family Family
}

func (e *NoRepositoriesError) Error() string {
	return fmt.Sprintf("repository %s: images of the %s package family take no repositories", e.Name, e.Family)
}

var (
	apkTagRe     = regexp.MustCompile(`^@[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	pacmanURLRe  = regexp.MustCompile(`^(https?|file|ftp)://[A-Za-z0-9._~:/?@&+,=%$-]+$`)
	keyFileRe    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+@-]{0,127}$`)
	pacmanNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
)

// addRepoCommand is AddRepoCommand for the families other than apt,
// taking builds.sr.ht's syntax for each (behaviour.md §3.6).
func addRepoCommand(f Family, name, source string) (string, error) {
	switch f {
	case FamilyApk:
		return apkRepo(name, source)
	case FamilyPacman:
		return pacmanRepo(name, source)
	case FamilyDnf:
		return dnfRepo(name, source)
	case FamilyZypper:
		return zypperRepo(name, source)
	}
	return "", &NoRepositoriesError{Name: name, Family: f}
}

// apkRepo: "<repo url> [<key url> <key file name>]". A name starting
// with "@" makes a tagged repository ("@tag url"), whose packages
// manifests ask for as pkg@tag. The key is downloaded into
// /etc/apk/keys; the repository line goes first in /etc/apk/repositories.
func apkRepo(name, source string) (string, error) {
	if !repoNameRe.MatchString(name) && !apkTagRe.MatchString(name) {
		return "", fmt.Errorf("repository name %q: use letters, digits, . _ - (and a leading @ for a tagged repository)", name)
	}
	fields := strings.Fields(source)
	if len(fields) != 1 && len(fields) != 3 {
		return "", fmt.Errorf("repository %s: want \"repo-url [key-url key-file-name]\", got %q", name, source)
	}
	urls := fields[:1]
	if len(fields) == 3 {
		urls = fields[:2]
	}
	for _, u := range urls {
		if !repoURLRe.MatchString(u) {
			return "", fmt.Errorf("repository %s: invalid url %q", name, u)
		}
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	if len(fields) == 3 {
		if !keyFileRe.MatchString(fields[2]) {
			return "", fmt.Errorf("repository %s: key file name %q: want a plain file name such as alice.rsa.pub", name, fields[2])
		}
		fmt.Fprintf(&b, "sudo wget -q -O %s %s\n", shellQuote("/etc/apk/keys/"+fields[2]), shellQuote(fields[1]))
	}
	line := fields[0]
	if strings.HasPrefix(name, "@") {
		line = name + " " + line
	}
	fmt.Fprintf(&b, "{ printf '%%s\\n' %s; cat /etc/apk/repositories; } >/tmp/ci-apk-repositories\n", shellQuote(line))
	b.WriteString("sudo install -m 0644 /tmp/ci-apk-repositories /etc/apk/repositories && rm -f /tmp/ci-apk-repositories\n")
	b.WriteString("sudo apk update -q\n")
	return b.String(), nil
}

// pacmanRepo: "<server url>[#<pgp key id>]": a [name] section with that
// Server is appended to /etc/pacman.conf; the key is received and
// locally signed; the databases are synced.
func pacmanRepo(name, source string) (string, error) {
	if !pacmanNameRe.MatchString(name) {
		return "", fmt.Errorf("repository name %q: use letters, digits, _ -", name)
	}
	url, key, hasKey := strings.Cut(strings.TrimSpace(source), "#")
	if !pacmanURLRe.MatchString(url) {
		return "", fmt.Errorf("repository %s: want \"server-url[#pgp-key-id]\", invalid url %q", name, url)
	}
	var b strings.Builder
	b.WriteString("set -e\n")
	if hasKey {
		if !keyIDRe.MatchString(key) {
			return "", fmt.Errorf("repository %s: invalid key id %q", name, key)
		}
		key = strings.ToUpper(strings.TrimPrefix(strings.TrimPrefix(key, "0x"), "0X"))
		fmt.Fprintf(&b, "sudo pacman-key --recv-keys %s\nsudo pacman-key --lsign-key %s\n", key, key)
	}
	section := fmt.Sprintf("\n[%s]\nServer = %s\n", name, url)
	fmt.Fprintf(&b, "printf '%%s' %s | sudo tee -a /etc/pacman.conf >/dev/null\n", shellQuote(section))
	b.WriteString("sudo pacman -Sy --noconfirm --noprogressbar\n")
	return b.String(), nil
}

// dnfRepo: "<repo file url>": the .repo file is downloaded into
// /etc/yum.repos.d/<name>.repo (the same on dnf 4 and dnf 5, whose
// config-manager syntaxes differ) and the metadata refreshed.
func dnfRepo(name, source string) (string, error) {
	if !repoNameRe.MatchString(name) {
		return "", fmt.Errorf("repository name %q: use letters, digits, . _ -", name)
	}
	fields := strings.Fields(source)
	if len(fields) != 1 || !repoURLRe.MatchString(fields[0]) {
		return "", fmt.Errorf("repository %s: want the url of a .repo file, got %q", name, source)
	}
	return fmt.Sprintf("set -e\nsudo curl -fsSL -o %s %s\nsudo dnf -y -q makecache\n",
		shellQuote("/etc/yum.repos.d/"+name+".repo"), shellQuote(fields[0])), nil
}

// zypperRepo: "<url>" (a repository or a .repo file), added under the
// name with auto-refresh; its key is imported on the refresh.
func zypperRepo(name, source string) (string, error) {
	if !repoNameRe.MatchString(name) {
		return "", fmt.Errorf("repository name %q: use letters, digits, . _ -", name)
	}
	fields := strings.Fields(source)
	if len(fields) != 1 || !repoURLRe.MatchString(fields[0]) {
		return "", fmt.Errorf("repository %s: want the url of a repository or .repo file, got %q", name, source)
	}
	return fmt.Sprintf("set -e\nsudo zypper --non-interactive addrepo --refresh %s %s\nsudo zypper --non-interactive --gpg-auto-import-keys refresh %s\n",
		shellQuote(fields[0]), shellQuote(name), shellQuote(name)), nil
}
