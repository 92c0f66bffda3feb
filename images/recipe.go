package images

import (
	"bufio"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// recipes holds the per-distro build data the Go builder drives: the
// mmdebstrap customize hook, the package list, the release table and the
// sanity script of "builds image check".
//
//go:embed recipes
var recipes embed.FS

// sanityScript is the recipe file "builds image check" runs in a guest.
const sanityScript = "sanity.sh"

// builderVersion changes whenever the Go side of the build changes in a way
// that alters images; it is part of the recipe hash.
const builderVersion = "debian-3"

// Release is one row of recipes/<distro>/releases.txt.
type Release struct {
	Name         string
	Updates      bool // use <release>-updates from the archive
	Security     bool // use <release>-security from the security archive
	NoValidUntil bool // the suite's Release file expires (testing, sid)
}

// recipeFile returns one embedded recipe file.
func recipeFile(distro, name string) ([]byte, error) {
	b, err := recipes.ReadFile(path.Join("recipes", distro, name))
	if err != nil {
		return nil, fmt.Errorf("no %s recipe for distro %q", name, distro)
	}
	return b, nil
}

// recipeLines returns the non-empty lines of a recipe file with comments cut.
func recipeLines(distro, name string) ([][]string, error) {
	b, err := recipeFile(distro, name)
	if err != nil {
		return nil, err
	}
	var out [][]string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if f := strings.Fields(line); len(f) > 0 {
			out = append(out, f)
		}
	}
	return out, nil
}

// Packages returns the package list of a distro's images.
func Packages(distro string) ([]string, error) {
	lines, err := recipeLines(distro, "packages.txt")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, f := range lines {
		out = append(out, f...)
	}
	return out, nil
}

// Releases returns the releases the builder knows for a distro.
func Releases(distro string) ([]Release, error) {
	lines, err := recipeLines(distro, "releases.txt")
	if err != nil {
		return nil, err
	}
	var out []Release
	for _, f := range lines {
		if len(f) != 3 {
			return nil, fmt.Errorf("recipes/%s/releases.txt: want 3 columns in %q", distro, strings.Join(f, " "))
		}
		r := Release{Name: f[0]}
		for _, s := range strings.Split(f[1], ",") {
			switch s {
			case "updates":
				r.Updates = true
			case "security":
				r.Security = true
			case "-":
			default:
				return nil, fmt.Errorf("recipes/%s/releases.txt: unknown suite %q", distro, s)
			}
		}
		switch f[2] {
		case "no-valid-until":
			r.NoValidUntil = true
		case "-":
		default:
			return nil, fmt.Errorf("recipes/%s/releases.txt: unknown option %q", distro, f[2])
		}
		out = append(out, r)
	}
	return out, nil
}

// SanityScript returns the script "builds image check" runs in the guest.
func SanityScript(distro string) (string, error) {
	b, err := recipeFile(distro, sanityScript)
	return string(b), err
}

// RecipeHash identifies everything that determines how a distro's image is
// built (recipe files and builder version), not the mirror's content. Test
// caches and "image list" use it to spot images built by an older recipe.
func RecipeHash(distro string) (string, error) {
	dir := path.Join("recipes", distro)
	ents, err := fs.ReadDir(recipes, dir)
	if err != nil {
		return "", fmt.Errorf("no recipe for distro %q", distro)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.Name() != sanityScript { // run by image check, not part of the image
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	h := sha256.New()
	fmt.Fprintf(h, "builder %s\n", builderVersion)
	for _, n := range names {
		b, err := recipes.ReadFile(path.Join(dir, n))
		if err != nil {
			return "", fmt.Errorf("read recipe: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}
