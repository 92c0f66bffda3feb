package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParseManifest checks that ParseManifest never panics and that its
// result is always one of: a manifest satisfying the basic invariants, or a
// non-empty ManifestErrors in line order.
func FuzzParseManifest(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "manifests", "*.yml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"image: x\ntasks:\n- b: make\n",
		".a: &a {A: 1, <<: *a}\nimage: x\nenvironment: *a\ntasks: [*a]\n",
		"a: &a [*a]\nimage: *a\npackages: *a\n",
		"image: x\nenvironment: {V: [a, 1, ~, yes]}\ntriggers: [{action: email, condition: always, to: a@b.c}]\nshell: on\n",
		"image: x\ntasks:\n- b: |+\r\n    x\r\n\r\n---\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data, 0)
		if err != nil {
			if m != nil {
				t.Fatal("manifest and error both returned")
			}
			var errs ManifestErrors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v is not a non-empty ManifestErrors", err, err)
			}
			for i, e := range errs {
				if e.Message == "" {
					t.Fatalf("empty message in %v", errs)
				}
				if i > 0 && errs[i-1].Line > e.Line {
					t.Fatalf("errors out of line order: %v", errs)
				}
			}
			return
		}
		if m.Raw != string(data) || m.Image == "" || len(m.Tasks) == 0 && !m.Shell {
			t.Fatalf("invalid manifest accepted: %+v", m)
		}
		seen := map[string]bool{}
		for _, task := range m.Tasks {
			if !isManifestTaskName(task.Name) || seen[task.Name] {
				t.Fatalf("bad task name %q", task.Name)
			}
			seen[task.Name] = true
		}
		for _, e := range m.Environment {
			line := e.ShellLine()
			if !isEnvVarName(e.Name) || strings.ContainsRune(line, 0) {
				t.Fatalf("bad environment line %q", line)
			}
		}
		_ = m.Summary()
	})
}
