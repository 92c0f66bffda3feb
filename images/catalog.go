// Package images is the guest image catalogue and builder.
//
// An image lives in <Dir>/<distro>/<release>/<arch>/ (builds.sr.ht's layout,
// behaviour.md §3.1) and holds image.json (Metadata), the base disk, a kernel
// and initrd for direct boot, the guest's SSH host key and a client key. The
// <arch> entry is usually a symlink to a sibling ".<arch>.<id>" directory so
// that a rebuild or import replaces an image with one atomic rename; a plain
// directory (an image brought by the operator) works too.
//
// Aliases (debian/stable -> debian/trixie) are data from the configuration,
// not symlinks on disk.
package images

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	_ "embed"
)

// DefaultArch is the architecture used when a job names none (upstream's
// default_arch for Debian).
const DefaultArch = "amd64"

// MetadataFile is the name of an image's metadata file.
const MetadataFile = "image.json"

// aliasData is aliases.txt: builds.sr.ht's aliases, as data.
//
//go:embed aliases.txt
var aliasData string

// upstreamAliases parses aliases.txt once; the map is never written.
var upstreamAliases = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(aliasData, "\n") {
		line, _, _ = strings.Cut(line, "#")
		if f := strings.Fields(line); len(f) == 2 {
			m[f[0]] = f[1]
		}
	}
	return m
})

// DefaultAliases returns the Debian aliases builds.sr.ht offers, pointing at
// the releases the Debian archive assigns those suite names to (aliases.txt).
// Sites override or extend them with [images] aliases.
func DefaultAliases() map[string]string {
	m := map[string]string{}
	for k, v := range upstreamAliases() {
		if strings.HasPrefix(k, "debian/") {
			m[k] = v
		}
	}
	return m
}

// CloudAliases returns aliases.txt's aliases of the other distributions
// (ubuntu/lts, alpine/latest, archlinux, ...), whose images operators
// import from the distributions' cloud images. Every catalogue resolves
// them unless its own Aliases name the same alias.
func CloudAliases() map[string]string {
	m := map[string]string{}
	for k, v := range upstreamAliases() {
		if !strings.HasPrefix(k, "debian/") {
			m[k] = v
		}
	}
	return m
}

// Catalog is the set of images below Dir plus the configured aliases. An
// alias mapped to itself ("debian/testing" -> "debian/testing") is listed
// for operators to repoint but resolves to the image of that name.
type Catalog struct {
	Dir     string
	Aliases map[string]string // alias -> target, both "distro/release"
}

// NewCatalog returns a catalogue over dir whose aliases are DefaultAliases
// overlaid with aliases; an alias mapped to "" removes a default.
func NewCatalog(dir string, aliases map[string]string) *Catalog {
	m := DefaultAliases()
	for k, v := range aliases {
		if v == "" {
			delete(m, k)
			continue
		}
		m[k] = v
	}
	return &Catalog{Dir: dir, Aliases: m}
}

// NotFoundError reports a missing image or a missing architecture of an
// image. Its text starts as builds.sr.ht's and goes on to name the images
// that exist and how to add one; it unwraps to fs.ErrNotExist.
type NotFoundError struct {
	Name string // as the user wrote it
	Arch string // set when the image exists but not for this arch
	// Canonical is what Name resolved to ("" = Name itself).
	Canonical string
	// Available lists the catalogue's images ("name (arch, ...)"), for
	// the error to name them; nil names none.
	Available []string
}

// maxListed bounds how many images an error names.
const maxListed = 20

func (e *NotFoundError) Error() string {
	if e.Arch != "" {
		return fmt.Sprintf("Image '%s' is not available for arch '%s'", e.Name, e.Arch)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Image '%s' does not exist", e.Name)
	if e.Available == nil {
		return b.String()
	}
	target := cmp.Or(e.Canonical, e.Name)
	if target != e.Name {
		fmt.Fprintf(&b, " (an alias of %s)", target)
	}
	switch n := len(e.Available); {
	case n == 0:
		b.WriteString("; this server has no images yet")
	case n > maxListed:
		fmt.Fprintf(&b, "; images here: %s and %d more", strings.Join(e.Available[:maxListed], ", "), n-maxListed)
	default:
		fmt.Fprintf(&b, "; images here: %s", strings.Join(e.Available, ", "))
	}
	if d, _, _ := SplitName(target); d == "debian" {
		fmt.Fprintf(&b, ". An administrator adds it with `builds image build %s`", target)
	} else {
		fmt.Fprintf(&b, ". An administrator adds it from the distribution's cloud image with `builds image import-cloud %s FILE` (images/README.md)", target)
	}
	return b.String()
}

// Unwrap lets errors.Is(err, fs.ErrNotExist) match.
func (e *NotFoundError) Unwrap() error { return fs.ErrNotExist }

var (
	partRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._+-]{0,63}$`)
	archRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,31}$`)
)

// SplitName checks that name is "distro/release" made of safe characters and
// returns the two parts. It never accepts a name that could leave the
// catalogue directory ("..", absolute paths, extra slashes).
func SplitName(name string) (distro, release string, err error) {
	d, r, ok := strings.Cut(name, "/")
	if !ok || strings.Contains(r, "/") {
		return "", "", fmt.Errorf("invalid image name %q: want distro/release, e.g. debian/bookworm", name)
	}
	for _, p := range []string{d, r} {
		if !partRe.MatchString(p) || strings.Contains(p, "..") {
			return "", "", fmt.Errorf("invalid image name %q: use lower-case letters, digits and . _ + -", name)
		}
	}
	return d, r, nil
}

// CheckArch validates an architecture name.
func CheckArch(arch string) error {
	if !archRe.MatchString(arch) {
		return fmt.Errorf("invalid arch %q", arch)
	}
	return nil
}

// alias returns what name is an alias of: the catalogue's own aliases
// first, then CloudAliases.
func (c *Catalog) alias(name string) (string, bool) {
	if t, ok := c.Aliases[name]; ok {
		return t, true
	}
	if strings.HasPrefix(name, "debian/") {
		return "", false // Debian's defaults are config (DefaultAliases): removable
	}
	t, ok := upstreamAliases()[name]
	return t, ok
}

// Resolve follows aliases and returns the canonical "distro/release". An
// alias may be one word (builds.sr.ht's "archlinux"); images may not.
func (c *Catalog) Resolve(name string) (string, error) {
	seen := map[string]bool{}
	cur := name
	for {
		next, ok := c.alias(cur)
		if !ok || next == cur { // a name mapped to itself is an image, not an alias
			if _, _, err := SplitName(cur); err != nil {
				if cur != name {
					return "", fmt.Errorf("alias %q -> %q: %w", name, cur, err)
				}
				return "", err
			}
			return cur, nil
		}
		if !partRe.MatchString(strings.Replace(cur, "/", "", 1)) || strings.Contains(cur, "..") {
			return "", fmt.Errorf("invalid image name %q: use lower-case letters, digits and . _ + -", cur)
		}
		if seen[cur] {
			return "", fmt.Errorf("alias %q: loop through %q", name, cur)
		}
		seen[cur] = true
		cur = next
	}
}

// AliasesFor lists the aliases that resolve to the canonical name.
func (c *Catalog) AliasesFor(canonical string) []string {
	var out []string
	names := map[string]bool{}
	for a := range c.Aliases {
		names[a] = true
	}
	for a := range CloudAliases() {
		names[a] = true
	}
	for a := range names {
		if t, err := c.Resolve(a); err == nil && t == canonical && a != canonical {
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

// releaseDir returns <Dir>/<distro>/<release> for a canonical name.
func (c *Catalog) releaseDir(canonical string) (string, error) {
	d, r, err := SplitName(canonical)
	if err != nil {
		return "", err
	}
	return filepath.Join(c.Dir, d, r), nil
}

// Lookup finds an image by name (aliases allowed) and arch ("" = the default
// arch, or the only one present).
func (c *Catalog) Lookup(name, arch string) (*Image, error) {
	canonical, err := c.Resolve(name)
	if err != nil {
		return nil, err
	}
	rel, err := c.releaseDir(canonical)
	if err != nil {
		return nil, err
	}
	arches, err := c.arches(rel)
	if err != nil {
		return nil, err
	}
	if len(arches) == 0 {
		return nil, &NotFoundError{Name: name, Canonical: canonical, Available: c.available()}
	}
	if arch == "" {
		arch = DefaultArch
		if len(arches) == 1 {
			arch = arches[0]
		}
	} else if err := CheckArch(arch); err != nil {
		return nil, err
	}
	for _, a := range arches {
		if a == arch {
			return c.open(canonical, arch, filepath.Join(rel, arch))
		}
	}
	return nil, &NotFoundError{Name: name, Arch: arch}
}

// available lists the catalogue's images for an error, each with its
// arches and aliases; an unreadable catalogue lists none.
func (c *Catalog) available() []string {
	imgs, _ := c.List()
	out := []string{}
	for i := 0; i < len(imgs); {
		name := imgs[i].Name
		var arches []string
		for ; i < len(imgs) && imgs[i].Name == name; i++ {
			arches = append(arches, imgs[i].Arch)
		}
		s := name + " (" + strings.Join(arches, ", ")
		if al := c.AliasesFor(name); len(al) > 0 {
			s += "; " + strings.Join(al, ", ")
		}
		out = append(out, s+")")
	}
	return out
}

// arches lists the architectures below a release directory that hold an
// image.json. A missing directory is an empty list.
func (c *Catalog) arches(rel string) ([]string, error) {
	ents, err := os.ReadDir(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image directory: %w", err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, ".") || CheckArch(n) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(rel, n, MetadataFile)); err == nil {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// open reads one image directory.
func (c *Catalog) open(canonical, arch, dir string) (*Image, error) {
	meta, err := ReadMetadata(filepath.Join(dir, MetadataFile))
	if err != nil {
		return nil, fmt.Errorf("image %s (%s): %w", canonical, arch, err)
	}
	return &Image{Name: canonical, Arch: arch, Dir: dir, Meta: *meta}, nil
}

// List returns every image in the catalogue, sorted by name and arch.
// Directories that are not valid images are skipped.
func (c *Catalog) List() ([]*Image, error) {
	distros, err := os.ReadDir(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var out []*Image
	for _, d := range distros {
		if !partRe.MatchString(d.Name()) || !isDir(filepath.Join(c.Dir, d.Name())) {
			continue
		}
		rels, err := os.ReadDir(filepath.Join(c.Dir, d.Name()))
		if err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
		for _, r := range rels {
			name := d.Name() + "/" + r.Name()
			rel := filepath.Join(c.Dir, d.Name(), r.Name())
			if _, _, err := SplitName(name); err != nil || !isDir(rel) {
				continue
			}
			arches, err := c.arches(rel)
			if err != nil {
				return nil, err
			}
			for _, a := range arches {
				img, err := c.open(name, a, filepath.Join(rel, a))
				if err != nil {
					return nil, err
				}
				out = append(out, img)
			}
		}
	}
	return out, nil
}

// isDir reports whether path is a directory, following symlinks: an
// operator may link a release (or distribution) directory to another
// disk or to another release.
func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// Remove deletes an image: one arch, or every arch when arch is "". It
// refuses aliases and symlinked release directories, so removing
// "debian/stable" cannot silently delete the release it points at.
// Running VMs keep their open files.
func (c *Catalog) Remove(name, arch string) ([]string, error) {
	if target, ok := c.Aliases[name]; ok && target != name {
		return nil, fmt.Errorf("%s is an alias of %s; remove %s", name, target, target)
	}
	rel, err := c.releaseDir(name)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(rel); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		target, _ := os.Readlink(rel)
		return nil, fmt.Errorf("%s is a symlink to %s; remove the image there, or the link itself", name, target)
	}
	arches := []string{arch}
	if arch == "" {
		if arches, err = c.arches(rel); err != nil {
			return nil, err
		}
	} else if err := CheckArch(arch); err != nil {
		return nil, err
	}
	if len(arches) == 0 {
		return nil, &NotFoundError{Name: name}
	}
	var done []string
	for _, a := range arches {
		if _, err := os.Lstat(filepath.Join(rel, a)); err != nil {
			return done, &NotFoundError{Name: name, Arch: a}
		}
		lock, err := lockImage(rel, a)
		if err != nil {
			return done, err
		}
		err = removeImage(rel, a)
		if err == nil {
			err = cleanStale(rel, a)
		}
		os.Remove(filepath.Join(rel, "."+a+".lock"))
		os.Remove(filepath.Join(rel, a+"-build-failed.log"))
		lock.unlock()
		if err != nil {
			return done, err
		}
		done = append(done, a)
	}
	os.Remove(rel) // only succeeds when empty
	return done, nil
}
