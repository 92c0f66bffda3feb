package app

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// mustParse parses src and fails the test on any error.
func mustParse(t *testing.T, src string) *Manifest {
	t.Helper()
	m, err := ParseManifest([]byte(src), 0)
	if err != nil {
		t.Fatalf("ParseManifest: %v", err)
	}
	return m
}

func readManifestFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestParseManifestFixtures parses the real-world shaped manifests in
// testdata/manifests and checks what each one is there to exercise.
func TestParseManifestFixtures(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		check func(t *testing.T, m *Manifest)
	}{
		{name: "Basic", file: "debian-basic.yml", check: func(t *testing.T, m *Manifest) {
			want := &Manifest{
				Image:       "debian/stable",
				Packages:    []string{"build-essential", "curl"},
				Sources:     []string{"https://git.example.org/~alice/hello"},
				Environment: []EnvVar{{Name: "GOFLAGS", Kind: EnvString, Value: "-mod=readonly"}},
				Tasks: []ManifestTask{
					{Name: "build", Script: "cd hello\nmake\n"},
					{Name: "test", Script: "cd hello\nmake check\n"},
				},
			}
			want.Raw = m.Raw
			if !reflect.DeepEqual(m, want) {
				t.Errorf("got %+v\nwant %+v", m, want)
			}
		}},
		{name: "ListsAtColumnZero", file: "column0-lists.yml", check: func(t *testing.T, m *Manifest) {
			wantStrings(t, "packages", m.Packages, "go", "git")
			wantTasks(t, m, "build", "cd tool\ngo build ./...\n", "test", "cd tool\ngo test ./...\n")
		}},
		{name: "OneThreeFourSpaceIndents", file: "odd-indent.yml", check: func(t *testing.T, m *Manifest) {
			wantStrings(t, "packages", m.Packages, "base-devel", "meson")
			if want := []Repository{{"extra", "https://repo.example.org/$repo/os/$arch"}}; !reflect.DeepEqual(m.Repositories, want) {
				t.Errorf("repositories = %+v", m.Repositories)
			}
			wantTasks(t, m, "setup", "meson setup build\n", "build", "ninja -C build\n")
		}},
		{name: "DocumentStartAnchorsAndMerge", file: "anchors.yml", check: func(t *testing.T, m *Manifest) {
			want := []EnvVar{
				{Name: "LANG", Kind: EnvString, Value: "C.UTF-8"},
				{Name: "JOBS", Kind: EnvNumber, Value: "8"},
				{Name: "EXTRA", Kind: EnvBool, Value: "true"},
			}
			if !reflect.DeepEqual(m.Environment, want) {
				t.Errorf("environment = %+v", m.Environment)
			}
			wantTasks(t, m, "build", "make -j\"$JOBS\"\n", "again", "make -j\"$JOBS\"\n")
		}},
		{name: "HeredocInBlockScalar", file: "heredoc.yml", check: func(t *testing.T, m *Manifest) {
			wantTasks(t, m,
				"write-config", "cat > ~/config.ini <<EOF2\n[section]\nkey = value: with colon\n  indented line\nEOF2\ncat ~/config.ini\n",
				"deploy", "if [ \"$GIT_REF\" = refs/heads/main ]; then\n  echo \"# not a comment\" | tee out.txt\nfi\n")
		}},
		{name: "TabsInBlockScalarAndPlainBody", file: "tabs-in-block.yml", check: func(t *testing.T, m *Manifest) {
			wantTasks(t, m, "build", "printf \"a\\tb\\n\"\n\techo tab-indented\n", "plain", "make all")
		}},
		{name: "CRLFNormalisedByYAML", file: "crlf.yml", check: func(t *testing.T, m *Manifest) {
			// YAML turns line breaks inside scalars into "\n"; Raw keeps CRLF.
			wantTasks(t, m, "build", "echo one\necho two\n", "test", "make test")
			if !strings.Contains(m.Raw, "\r\n") {
				t.Error("Raw lost its CRLF line endings")
			}
		}},
		{name: "NoFinalNewline", file: "no-final-newline.yml", check: func(t *testing.T, m *Manifest) {
			wantTasks(t, m, "build", "make")
		}},
		{name: "SubmitterOAuthSecretsTriggers", file: "submitter.yml", check: func(t *testing.T, m *Manifest) {
			if m.OAuth != "pages.sr.ht/PAGES:RW git.sr.ht/OBJECTS" {
				t.Errorf("oauth = %q", m.OAuth)
			}
			wantStrings(t, "secrets", m.Secrets, "5b9d9f44-0c5d-4a36-9c3c-2b0c8b1b6f55", "deploy-key")
			wantStrings(t, "artifacts", m.Artifacts, "out/site.tar.gz", "hello/build/report.html")
			want := []ManifestTrigger{
				{Action: "email", Condition: "failure", To: "Alice <alice@example.org>, ~alice/ci@lists.example.org", InReplyTo: "<1234@example.org>"},
				{Action: "webhook", Condition: "always", URL: "https://hooks.example.org/builds"},
			}
			if !reflect.DeepEqual(m.Triggers, want) {
				t.Errorf("triggers = %+v", m.Triggers)
			}
			wantTasks(t, m, "_apply_patch", "git -C hello am -3 /tmp/patch.mbox\n", "site", "tar -C out -czf out/site.tar.gz .\n")
		}},
		{name: "ShellWithoutTasks", file: "shell-only.yml", check: func(t *testing.T, m *Manifest) {
			if !m.Shell || m.Arch != "x86_64" || len(m.Tasks) != 0 {
				t.Errorf("got shell=%v arch=%q tasks=%v", m.Shell, m.Arch, m.Tasks)
			}
		}},
		{name: "EmptyTrailingDocument", file: "trailing-doc-marker.yml", check: func(t *testing.T, m *Manifest) {
			wantTasks(t, m, "build", "make")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := readManifestFixture(t, tt.file)
			m, err := ParseManifest(data, 0)
			if err != nil {
				t.Fatalf("ParseManifest: %v", err)
			}
			if m.Raw != string(data) {
				t.Error("Raw differs from the input")
			}
			tt.check(t, m)
		})
	}
}

func wantStrings(t *testing.T, field string, got []string, want ...string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %q, want %q", field, got, want)
	}
}

// wantTasks checks the tasks against name, script pairs.
func wantTasks(t *testing.T, m *Manifest, nameScript ...string) {
	t.Helper()
	var want []ManifestTask
	for i := 0; i+1 < len(nameScript); i += 2 {
		want = append(want, ManifestTask{Name: nameScript[i], Script: nameScript[i+1]})
	}
	if !reflect.DeepEqual(m.Tasks, want) {
		t.Errorf("tasks = %q\nwant    %q", m.Tasks, want)
	}
}

// TestParseManifestScripts checks that task scripts are the YAML scalar
// values byte for byte (no strip, unlike upstream's Python validator).
func TestParseManifestScripts(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string
		script string
	}{
		{name: "Plain", yaml: "- b: make", script: "make"},
		{name: "PlainMultiLineFolds", yaml: "- b: make\n    all", script: "make all"},
		{name: "DoubleQuotedEscapes", yaml: `- b: "echo \"hi\"\n"`, script: "echo \"hi\"\n"},
		{name: "SingleQuoted", yaml: `- b: 'it''s'`, script: "it's"},
		{name: "LiteralClip", yaml: "- b: |\n    a\n    b\n\n\n", script: "a\nb\n"},
		{name: "LiteralStrip", yaml: "- b: |-\n    a\n    b\n", script: "a\nb"},
		{name: "LiteralKeep", yaml: "- b: |+\n    a\n", script: "a\n\n"},
		{name: "IndentationIndicatorKeepsLeadingSpaces", yaml: "- b: |2\n       indented  \n    x\n", script: "   indented  \nx\n"},
		{name: "LiteralInnerBlankLines", yaml: "- b: |\n    a\n\n    b\n", script: "a\n\nb\n"},
		{name: "Folded", yaml: "- b: >\n    a\n    b\n", script: "a b\n"},
		{name: "CommentAfterBlockIsNotContent", yaml: "- b: |\n    make\n# done\n", script: "make\n"},
		{name: "HashInsideBlockIsContent", yaml: "- b: |\n    # comment\n    make\n", script: "# comment\nmake\n"},
		{name: "TabInsideBlock", yaml: "- b: |\n    if x; then\n    \ty\n    fi\n", script: "if x; then\n\ty\nfi\n"},
		{name: "TabFirstLineWithIndicator", yaml: "- b: |2\n    \tx\n", script: "\tx\n"},
		{name: "CRLFBlock", yaml: "- b: |\r\n    a\r\n    b\r\n", script: "a\nb\n"},
		{name: "EmptyQuoted", yaml: `- b: ""`, script: ""},
		{name: "EmptyBlock", yaml: "- b: |\n- c: x", script: ""},
		{name: "Unicode", yaml: "- b: echo héllo ✓", script: "echo héllo ✓"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, "image: x\ntasks:\n"+tt.yaml+"\n")
			if got := m.Tasks[0].Script; got != tt.script {
				t.Errorf("script = %q, want %q", got, tt.script)
			}
		})
	}
}

// TestParseManifestValid covers accepted shapes that are not fixtures.
func TestParseManifestValid(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, m *Manifest)
	}{
		{name: "FalsyValuesAreAbsent", yaml: "image: x\npackages: []\nsources:\nenvironment: {}\nrepositories:\nsecrets: []\nartifacts:\ntriggers: []\noauth:\narch:\nshell:\ntasks:\n- b: make\n",
			check: func(t *testing.T, m *Manifest) {
				if m.Packages != nil || m.Environment != nil || m.Arch != "" || m.Shell || m.OAuth != "" {
					t.Errorf("got %+v", m)
				}
			}},
		{name: "EmptyListForMapAndMapForList", yaml: "image: x\nenvironment: []\nrepositories: []\npackages: {}\ntasks:\n- b: make\n"},
		{name: "UnknownKeysIgnored", yaml: "image: x\nsubmitter:\n  git.sr.ht: {enabled: false}\nfoo: [1, {a: b}]\n1: 2\n? [complex]\n: key\ntasks:\n- b: make\n"},
		{name: "ShellYes", yaml: "image: x\nshell: yes\n", check: func(t *testing.T, m *Manifest) {
			if !m.Shell {
				t.Error("shell: yes should be true")
			}
		}},
		{name: "ShellFalseWithTasks", yaml: "image: x\nshell: False\ntasks:\n- b: make\n"},
		{name: "RepositoriesInOrder", yaml: "image: x\nrepositories:\n  zeta: z\n  alpha: a\n  mid: m\ntasks:\n- b: make\n",
			check: func(t *testing.T, m *Manifest) {
				want := []Repository{{"zeta", "z"}, {"alpha", "a"}, {"mid", "m"}}
				if !reflect.DeepEqual(m.Repositories, want) {
					t.Errorf("repositories = %+v", m.Repositories)
				}
			}},
		{name: "AliasedLists", yaml: ".p: &pkgs [a, b]\nimage: x\npackages: *pkgs\nsources: *pkgs\ntasks:\n- b: make\n",
			check: func(t *testing.T, m *Manifest) {
				wantStrings(t, "packages", m.Packages, "a", "b")
				wantStrings(t, "sources", m.Sources, "a", "b")
			}},
		{name: "TopLevelMerge", yaml: ".base: &base\n  image: debian/stable\n  packages: [make]\n<<: *base\npackages: [gcc]\ntasks:\n- b: make\n",
			check: func(t *testing.T, m *Manifest) {
				if m.Image != "debian/stable" {
					t.Errorf("image = %q", m.Image)
				}
				wantStrings(t, "packages", m.Packages, "gcc")
			}},
		{name: "MergeListEarlierWins", yaml: ".a: &a {A: a1, B: a2}\n.b: &b {B: b2, C: b3}\nimage: x\nenvironment:\n  <<: [*a, *b]\n  C: own\ntasks:\n- b: make\n",
			check: func(t *testing.T, m *Manifest) {
				want := []EnvVar{
					{Name: "A", Kind: EnvString, Value: "a1"},
					{Name: "B", Kind: EnvString, Value: "a2"},
					{Name: "C", Kind: EnvString, Value: "own"},
				}
				if !reflect.DeepEqual(m.Environment, want) {
					t.Errorf("environment = %+v", m.Environment)
				}
			}},
		{name: "NestedMerge", yaml: ".a: &a {A: 1}\n.b: &b {<<: *a, B: 2}\nimage: x\nenvironment: {<<: *b, C: 3}\ntasks:\n- b: make\n",
			check: func(t *testing.T, m *Manifest) {
				var names []string
				for _, e := range m.Environment {
					names = append(names, e.Name)
				}
				wantStrings(t, "environment", names, "A", "B", "C")
			}},
		{name: "SelfMergeCycle", yaml: ".a: &a {A: 1, <<: *a}\nimage: x\nenvironment: *a\ntasks:\n- b: make\n",
			check: func(t *testing.T, m *Manifest) {
				if len(m.Environment) != 1 {
					t.Errorf("environment = %+v", m.Environment)
				}
			}},
		{name: "FlowStyle", yaml: "{image: x, packages: [a], tasks: [{b: make}, {c: \"make c\"}]}",
			check: func(t *testing.T, m *Manifest) { wantTasks(t, m, "b", "make", "c", "make c") }},
		{name: "CommentsEverywhere", yaml: "# head\nimage: x # trailing\n# between\ntasks: # here\n  # inside\n  - b: make # not part of plain script\n# tail\n",
			check: func(t *testing.T, m *Manifest) { wantTasks(t, m, "b", "make") }},
		{name: "SecretLengthBounds", yaml: "image: x\nsecrets: [abc, " + strings.Repeat("s", 512) + ", \"{5B9D9F44-0C5D-4A36-9C3C-2B0C8B1B6F55}\"]\ntasks:\n- b: make\n"},
		{name: "TaskNameLimits", yaml: "image: x\ntasks:\n- " + strings.Repeat("a", 128) + ": x\n- 0_-z: y\n"},
		{name: "EmailCcOnly", yaml: "image: x\ntasks:\n- b: make\ntriggers:\n- {action: email, condition: success, cc: a@example.org}\n"},
		{name: "WebhookHTTP", yaml: "image: x\ntasks:\n- b: make\ntriggers:\n- {action: webhook, condition: failure, url: \"http://127.0.0.1:8080/hook?x=1\"}\n"},
		{name: "OAuthEmptyString", yaml: "image: x\noauth: \"\"\ntasks:\n- b: make\n"},
		{name: "OAuthAllForms", yaml: "image: x\noauth: builds.sr.ht/JOBS builds.sr.ht/LOGS:RO  meta.sr.ht/PROFILE:RW\ntasks:\n- b: make\n"},
		{name: "ArtifactsSameDirDifferentNames", yaml: "image: x\nartifacts: [a/x.tar, a/y.tar, /abs/z]\ntasks:\n- b: make\n"},
		{name: "SizeExactlyAtLimit", yaml: "image: x\ntasks:\n- b: make\n" + strings.Repeat("#", 16384-len("image: x\ntasks:\n- b: make\n"))},
		{name: "ByteOrderMark", yaml: "\ufeffimage: x\ntasks:\n- b: make\n"},
		{name: "ExplicitNullSecondDocument", yaml: "image: x\ntasks:\n- b: make\n--- ~\n"},
		{name: "SeveralEmptyTrailingDocuments", yaml: "image: x\ntasks:\n- b: make\n---\n---\n# c\n"},
		{name: "YAMLDirective", yaml: "%YAML 1.1\n---\nimage: x\ntasks:\n- b: make\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, tt.yaml)
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

// TestParseManifestErrors checks every rule's message and line.
func TestParseManifestErrors(t *testing.T) {
	const ok = "image: x\ntasks:\n- b: make\n" // lines 1-3
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{name: "EmptyDocument", yaml: "", want: []string{"image: Missing image in manifest", "tasks: Attempted to create manifest with no tasks"}},
		{name: "CommentsOnly", yaml: "# nothing\n", want: []string{"image: Missing image in manifest", "tasks: Attempted to create manifest with no tasks"}},
		{name: "NullDocument", yaml: "~\n", want: []string{"image: Missing image in manifest", "tasks: Attempted to create manifest with no tasks"}},
		{name: "TopLevelList", yaml: "- image: x\n", want: []string{"line 1: Expected manifest to be a YAML mapping of keys to values, got a list"}},
		{name: "TopLevelString", yaml: "\n\nhello\n", want: []string{"line 3: Expected manifest to be a YAML mapping of keys to values, got a string"}},
		{name: "SyntaxError", yaml: "image: x\ntasks:\n  - b: make\n bad: [\n", want: []string{"line 4: Invalid YAML: did not find expected key"}},
		{name: "TabIndentation", yaml: "image: x\ntasks:\n\t- b: make\n", want: []string{"line 3: Invalid YAML: found character that cannot start any token"}},
		{name: "UnknownAnchor", yaml: "image: x\ntasks:\n- b: *nope\n", want: []string{"line 3: Invalid YAML: unknown anchor 'nope' referenced"}},
		{name: "ParserErrorAtEnd", yaml: "[a, b\n", want: []string{"line 2: Invalid YAML: did not find expected ',' or ']'"}},
		{name: "ScannerErrorOnFirstLine", yaml: "a: b: c\n", want: []string{"line 1: Invalid YAML: mapping values are not allowed in this context"}},
		{name: "ControlCharacter", yaml: "image: \x01\n", want: []string{"Invalid YAML: control characters are not allowed"}},
		{name: "InvalidUTF8", yaml: "image: \xff\n", want: []string{"Invalid YAML: invalid leading UTF-8 octet"}},
		{name: "SecondDocument", yaml: ok + "---\nimage: y\n", want: []string{"line 4: Manifest must contain a single YAML document"}},
		{name: "EmptyFirstDocument", yaml: "---\n---\n" + ok, want: []string{"line 2: Manifest must contain a single YAML document"}},
		{name: "SyntaxErrorInSecondDocument", yaml: ok + "---\n[\n", want: []string{"line 6: Invalid YAML: did not find expected node content"}},
		{name: "TooLarge", yaml: ok + strings.Repeat("#", 16384), want: []string{"Manifest must be less than 16384 bytes"}},
		{name: "DuplicateTopLevelKey", yaml: ok + "image: y\n", want: []string{"line 4: Duplicate key 'image' (first defined on line 1)"}},

		{name: "ImageMissing", yaml: "tasks:\n- b: make\n", want: []string{"image: Missing image in manifest"}},
		{name: "ImageNull", yaml: "image:\ntasks:\n- b: make\n", want: []string{"line 1: image: Missing image in manifest"}},
		{name: "ImageEmpty", yaml: "image: ''\ntasks:\n- b: make\n", want: []string{"line 1: image: Missing image in manifest"}},
		{name: "ImageNotString", yaml: "image: [debian]\ntasks:\n- b: make\n", want: []string{"line 1: image: Expected image to be a string"}},
		{name: "ImageNumber", yaml: "image: 12\ntasks:\n- b: make\n", want: []string{"line 1: image: Expected image to be a string"}},
		{name: "ArchNotString", yaml: ok + "arch: {a: b}\n", want: []string{"line 4: arch: Expected arch to be a string"}},

		{name: "PackagesString", yaml: ok + "packages: make gcc\n", want: []string{"line 4: packages: Expected packages to be a string array"}},
		{name: "PackagesNonStringItems", yaml: ok + "packages:\n- make\n- 1.2\n- [x]\n", want: []string{
			"line 6: packages: Expected packages to be a string array", "line 7: packages: Expected packages to be a string array"}},
		{name: "RepositoriesList", yaml: ok + "repositories: [a]\n", want: []string{"line 4: repositories: Expected repositories to be a dict"}},
		{name: "RepositoryNotString", yaml: ok + "repositories:\n  good: url\n  bad: [url]\n  nul:\n", want: []string{
			"line 6: repositories: Expected url for repository bad", "line 7: repositories: Expected url for repository nul"}},
		{name: "SourcesMap", yaml: ok + "sources: {a: b}\n", want: []string{"line 4: sources: Expected sources to be a string array"}},
		{name: "EnvironmentList", yaml: ok + "environment: [A=1]\n", want: []string{"line 4: environment: Expected environment to be a dictionary"}},
		{name: "EnvironmentString", yaml: ok + "environment: A=1\n", want: []string{"line 4: environment: Expected environment to be a dictionary"}},
		{name: "EnvironmentMapValue", yaml: ok + "environment:\n  A: 1\n  NESTED:\n    x: y\n", want: []string{
			"line 6: environment: Unknown environment type for 'NESTED': expected a string, number, boolean, null or list, got a mapping"}},
		{name: "EnvironmentNestedList", yaml: ok + "environment:\n  L: [a, [b]]\n", want: []string{
			"line 5: environment: Unknown environment type for 'L': list items must be strings, numbers, booleans or null"}},
		{name: "EnvironmentBadNames", yaml: ok + "environment:\n  FOO-BAR: 1\n  1X: 2\n  \"A B\": 3\n  \"X=1; rm -rf ~; Y\": 4\n", want: []string{
			"line 5: environment: Invalid environment variable name 'FOO-BAR' (must be letters, digits and underscores, not starting with a digit)",
			"line 6: environment: Invalid environment variable name '1X' (must be letters, digits and underscores, not starting with a digit)",
			"line 7: environment: Invalid environment variable name 'A B' (must be letters, digits and underscores, not starting with a digit)",
			"line 8: environment: Invalid environment variable name 'X=1; rm -rf ~; Y' (must be letters, digits and underscores, not starting with a digit)"}},
		{name: "EnvironmentNUL", yaml: ok + "environment:\n  A: \"a\\0b\"\n", want: []string{"line 5: environment: Environment variable 'A' must not contain NUL bytes"}},
		{name: "EnvironmentDuplicateKey", yaml: ok + "environment:\n  A: 1\n  A: 2\n", want: []string{"line 6: environment: Duplicate key 'A' (first defined on line 5)"}},
		{name: "BadMergeValue", yaml: ok + "environment:\n  <<: [1]\n", want: []string{"line 5: environment: Expected a mapping or a list of mappings to merge with '<<'"}},

		{name: "SecretsString", yaml: ok + "secrets: abc\n", want: []string{"line 4: secrets: Expected secrets to be a UUID/String array"}},
		{name: "SecretsBadItems", yaml: ok + "secrets:\n- ab\n- 12345\n- \"\"\n- " + strings.Repeat("s", 513) + "\n", want: []string{
			"line 5: secrets: Secret names must be between 3 and 512 chars",
			"line 6: secrets: Expected secrets to be a UUID/String array",
			"line 7: secrets: Secret names must be between 3 and 512 chars",
			"line 8: secrets: Secret names must be between 3 and 512 chars"}},
		{name: "ShellString", yaml: ok + "shell: \"true\"\n", want: []string{"line 4: shell: Expected shell to be a boolean"}},
		{name: "ShellNumber", yaml: ok + "shell: 1\n", want: []string{"line 4: shell: Expected shell to be a boolean"}},

		{name: "ArtifactsString", yaml: ok + "artifacts: out.tar\n", want: []string{"line 4: artifacts: Expected artifacts to be a list of unique file paths"}},
		{name: "ArtifactsBadEntries", yaml: ok + "artifacts:\n- a/out.tar\n- b/out.tar\n- \"\"\n- dir/\n- 5\n- c/other\n", want: []string{
			"line 6: artifacts: Expected artifacts to be a list of unique file paths",
			"line 7: artifacts: Expected artifacts to be a list of unique file paths",
			"line 8: artifacts: Expected artifacts to be a list of unique file paths",
			"line 9: artifacts: Expected artifacts to be a list of unique file paths"}},
		{name: "ArtifactsDotNames", yaml: ok + "artifacts:\n- out/..\n- .\n", want: []string{
			"line 5: artifacts: Expected artifacts to be a list of unique file paths",
			"line 6: artifacts: Expected artifacts to be a list of unique file paths"}},
		{name: "OAuthNotString", yaml: ok + "oauth: [builds.sr.ht/JOBS]\n", want: []string{"line 4: oauth: Expected oauth to be a string"}},
		{name: "OAuthBadGrants", yaml: ok + "oauth: JOBS:RW builds.sr.ht/JOBS:rw builds.sr.ht/jobs /JOBS builds.sr.ht/JOBS:RW\n", want: []string{
			"line 4: oauth: Invalid grant 'JOBS:RW' (expected service/SCOPE, service/SCOPE:RO or service/SCOPE:RW)",
			"line 4: oauth: Invalid grant 'builds.sr.ht/JOBS:rw' (expected service/SCOPE, service/SCOPE:RO or service/SCOPE:RW)",
			"line 4: oauth: Invalid grant 'builds.sr.ht/jobs' (expected service/SCOPE, service/SCOPE:RO or service/SCOPE:RW)",
			"line 4: oauth: Invalid grant '/JOBS' (expected service/SCOPE, service/SCOPE:RO or service/SCOPE:RW)"}},

		{name: "NoTasks", yaml: "image: x\n", want: []string{"tasks: Attempted to create manifest with no tasks"}},
		{name: "TasksNull", yaml: "image: x\ntasks:\n", want: []string{"line 2: tasks: Attempted to create manifest with no tasks"}},
		{name: "TasksEmpty", yaml: "image: x\ntasks: []\n", want: []string{"line 2: tasks: Attempted to create manifest with no tasks"}},
		{name: "TasksEmptyShellFalse", yaml: "image: x\ntasks: []\nshell: false\n", want: []string{"line 2: tasks: Attempted to create manifest with no tasks"}},
		{name: "TasksMapping", yaml: "image: x\ntasks:\n  build: make\n", want: []string{"line 2: tasks: Expected tasks to be a list of 'name: script' entries"}},
		{name: "TaskShapes", yaml: "image: x\ntasks:\n- make\n- a: x\n  b: y\n- c:\n- d: [x]\n- 5: x\n- {}\n- ok: x\n", want: []string{
			"line 3: tasks: Expected task to be a string: string",
			"line 4: tasks: Expected task to be a string: string",
			"line 6: tasks: Expected task to be a string: string",
			"line 7: tasks: Expected task to be a string: string",
			"line 8: tasks: Expected task to be a string: string",
			"line 9: tasks: Expected task to be a string: string"}},
		{name: "TaskNames", yaml: "image: x\ntasks:\n- Build: x\n- a.b: x\n- " + strings.Repeat("a", 129) + ": x\n- \"\": x\n", want: []string{
			"line 3: tasks: Task name 'Build' is invalid (must be all lowercase letters, numbers, underscores, and dashes, and <=128 characters)",
			"line 4: tasks: Task name 'a.b' is invalid (must be all lowercase letters, numbers, underscores, and dashes, and <=128 characters)",
			"line 5: tasks: Task name '" + strings.Repeat("a", 129) + "' is invalid (must be all lowercase letters, numbers, underscores, and dashes, and <=128 characters)",
			"line 6: tasks: Task name '' is invalid (must be all lowercase letters, numbers, underscores, and dashes, and <=128 characters)"}},
		{name: "DuplicateTask", yaml: "image: x\ntasks:\n- build: a\n- test: b\n- build: c\n", want: []string{"line 5: tasks: Duplicate task 'build'"}},

		{name: "TriggersMapping", yaml: ok + "triggers: {action: email}\n", want: []string{"line 4: triggers: Expected triggers to be a list"}},
		{name: "TriggerNotDict", yaml: ok + "triggers:\n- email\n", want: []string{"line 5: triggers: Expected trigger to be a dict"}},
		{name: "TriggerBadAction", yaml: ok + "triggers:\n- action: irc\n  condition: always\n", want: []string{"line 5: triggers: 'irc' is not a valid TriggerAction"}},
		{name: "TriggerBadCondition", yaml: ok + "triggers:\n- action: webhook\n  condition: x\n  url: https://h.example/\n", want: []string{"line 5: triggers: 'x' is not a valid TriggerCondition"}},
		{name: "TriggerMissingActionAndCondition", yaml: ok + "triggers:\n- to: a@example.org\n", want: []string{
			"line 5: triggers: Expected trigger condition (always, success or failure)",
			"line 5: triggers: Expected trigger action (email or webhook)"}},
		{name: "TriggerWrongFieldTypes", yaml: ok + "triggers:\n- action: email\n  condition: [always]\n  to: [a@example.org]\n", want: []string{
			"line 6: triggers: Expected trigger condition to be a string",
			"line 7: triggers: Expected trigger to to be a string"}},
		{name: "EmailWithoutRecipients", yaml: ok + "triggers:\n- action: email\n  condition: always\n  to: \" \"\n", want: []string{"line 5: triggers: email trigger requires 'to' or 'cc'"}},
		{name: "EmailBadAddress", yaml: ok + "triggers:\n- action: email\n  condition: always\n  to: not an address\n", want: []string{
			"line 5: triggers: Invalid address list in trigger 'to': no angle-addr"}},
		{name: "EmailHeaderInjection", yaml: ok + "triggers:\n- action: email\n  condition: always\n  to: a@example.org\n  in_reply_to: \"<x>\\r\\nBcc: evil@example.org\"\n", want: []string{
			"line 5: triggers: Expected trigger in_reply_to to be a single line"}},
		{name: "WebhookWithoutURL", yaml: ok + "triggers:\n- action: webhook\n  condition: always\n", want: []string{"line 5: triggers: webhook trigger requires 'url'"}},
		{name: "WebhookBadURLs", yaml: ok + "triggers:\n- {action: webhook, condition: always, url: \"ftp://h.example/\"}\n- {action: webhook, condition: always, url: \"https://\"}\n- {action: webhook, condition: always, url: \"h.example/hook\"}\n", want: []string{
			"line 5: triggers: webhook trigger url must be an http or https URL: 'ftp://h.example/'",
			"line 6: triggers: webhook trigger url must be an http or https URL: 'https://'",
			"line 7: triggers: webhook trigger url must be an http or https URL: 'h.example/hook'"}},

		{name: "AllErrorsInLineOrder", yaml: "tasks:\n- Bad: x\npackages: 5\nimage: [x]\nshell: maybe\n", want: []string{
			"line 2: tasks: Task name 'Bad' is invalid (must be all lowercase letters, numbers, underscores, and dashes, and <=128 characters)",
			"line 3: packages: Expected packages to be a string array",
			"line 4: image: Expected image to be a string",
			"line 5: shell: Expected shell to be a boolean"}},
		{name: "RepeatedAliasReportedOnce", yaml: ".t: &t {a: x, b: y}\nimage: x\ntasks: [*t, *t, *t]\n", want: []string{
			"line 3: tasks: Expected task to be a string: string"}},
		{name: "AliasErrorsPointAtUse", yaml: ".t: &t [x]\nimage: x\ntasks:\n- b: make\n- *t\ntriggers:\n- *t\n", want: []string{
			"line 5: tasks: Expected task to be a string: string", "line 7: triggers: Expected trigger to be a dict"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := ParseManifest([]byte(tt.yaml), 0)
			if err == nil {
				t.Fatalf("no error, got %+v", m)
			}
			if m != nil {
				t.Error("manifest returned together with an error")
			}
			var errs ManifestErrors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want ManifestErrors", err)
			}
			got := make([]string, len(errs))
			for i, e := range errs {
				got[i] = e.Error()
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func TestParseManifestMaxSize(t *testing.T) {
	src := []byte("image: x\ntasks:\n- b: make\n") // 26 bytes
	tests := []struct {
		name    string
		maxSize int
		wantErr string
	}{
		{name: "Default", maxSize: 0},
		{name: "Negative", maxSize: -1},
		{name: "Exact", maxSize: len(src)},
		{name: "OneShort", maxSize: len(src) - 1, wantErr: "Manifest must be less than 25 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseManifest(src, tt.maxSize)
			if got := errString(err); got != tt.wantErr {
				t.Errorf("err = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestManifestErrorsFormat(t *testing.T) {
	errs := ManifestErrors{
		{Message: "Manifest must be less than 10 bytes"},
		{Line: 7, Field: "tasks", Message: "Duplicate task 'build'"},
		{Line: 9, Message: "Invalid YAML: x"},
	}
	want := "Manifest must be less than 10 bytes\nline 7: tasks: Duplicate task 'build'\nline 9: Invalid YAML: x"
	if got := errs.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	var one ManifestError
	if !errors.As(error(errs), &one) || one.Line != 0 {
		t.Errorf("errors.As(ManifestError) = %+v", one)
	}
	if code, msg := ErrorCode(errs), ErrorMessage(errs); code != EINVALID || msg != want {
		t.Errorf("ErrorCode/ErrorMessage = %q, %q", code, msg)
	}
}

func TestManifestSummary(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{name: "Tasks", yaml: "image: debian/stable\ntasks:\n- build: make\n- test: make check\n", want: "image debian/stable, tasks: build, test"},
		{name: "ArchAndShell", yaml: "image: alpine/edge\narch: aarch64\nshell: true\ntasks:\n- build: make\n", want: "image alpine/edge (aarch64), tasks: build, shell"},
		{name: "ShellOnly", yaml: "image: alpine/edge\nshell: true\n", want: "image alpine/edge, no tasks, shell"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.yaml).Summary(); got != tt.want {
				t.Errorf("Summary() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestParseManifestEnvironment checks value kinds and their text.
func TestParseManifestEnvironment(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want EnvVar
	}{
		{name: "Null", yaml: "V:", want: EnvVar{Kind: EnvNull}},
		{name: "Tilde", yaml: "V: ~", want: EnvVar{Kind: EnvNull}},
		{name: "True", yaml: "V: true", want: EnvVar{Kind: EnvBool, Value: "true"}},
		{name: "TitleFalse", yaml: "V: False", want: EnvVar{Kind: EnvBool, Value: "false"}},
		{name: "YAML11Yes", yaml: "V: yes", want: EnvVar{Kind: EnvBool, Value: "true"}},
		{name: "YAML11Off", yaml: "V: OFF", want: EnvVar{Kind: EnvBool, Value: "false"}},
		{name: "QuotedYesIsString", yaml: "V: 'yes'", want: EnvVar{Kind: EnvString, Value: "yes"}},
		{name: "TaggedStrIsString", yaml: "V: !!str on", want: EnvVar{Kind: EnvString, Value: "on"}},
		{name: "BigIntAsWritten", yaml: "V: 1000000", want: EnvVar{Kind: EnvNumber, Value: "1000000"}},
		{name: "FloatAsWritten", yaml: "V: 2.72", want: EnvVar{Kind: EnvNumber, Value: "2.72"}},
		{name: "HexAsWritten", yaml: "V: 0x10", want: EnvVar{Kind: EnvNumber, Value: "0x10"}},
		{name: "Exponent", yaml: "V: 1e3", want: EnvVar{Kind: EnvNumber, Value: "1e3"}},
		{name: "Negative", yaml: "V: -5", want: EnvVar{Kind: EnvNumber, Value: "-5"}},
		{name: "QuotedNumberIsString", yaml: `V: "42"`, want: EnvVar{Kind: EnvString, Value: "42"}},
		{name: "String", yaml: "V: hello world", want: EnvVar{Kind: EnvString, Value: "hello world"}},
		{name: "EmptyString", yaml: `V: ""`, want: EnvVar{Kind: EnvString, Value: ""}},
		{name: "Timestamp", yaml: "V: 2024-01-02", want: EnvVar{Kind: EnvString, Value: "2024-01-02"}},
		{name: "Block", yaml: "V: |\n  a\n  b", want: EnvVar{Kind: EnvString, Value: "a\nb\n"}},
		{name: "List", yaml: "V: [a, 1, true, ~, \"x y\"]", want: EnvVar{Kind: EnvList, List: []string{"a", "1", "true", "", "x y"}}},
		{name: "EmptyList", yaml: "V: []", want: EnvVar{Kind: EnvList, List: []string{}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustParse(t, "image: x\ntasks:\n- b: make\nenvironment:\n  "+strings.ReplaceAll(tt.yaml, "\n", "\n  ")+"\n")
			tt.want.Name = "V"
			if len(m.Environment) != 1 || !reflect.DeepEqual(m.Environment[0], tt.want) {
				t.Errorf("environment = %#v, want %#v", m.Environment, tt.want)
			}
		})
	}
}

func TestEnvVarShellLine(t *testing.T) {
	tests := []struct {
		name string
		v    EnvVar
		want string
	}{
		{name: "Null", v: EnvVar{Name: "K", Kind: EnvNull}, want: `export K=""`},
		{name: "Bool", v: EnvVar{Name: "K", Kind: EnvBool, Value: "true"}, want: "export K=true"},
		{name: "Number", v: EnvVar{Name: "K", Kind: EnvNumber, Value: "1000000"}, want: "export K=1000000"},
		{name: "SafeString", v: EnvVar{Name: "K", Kind: EnvString, Value: "a-Z_0@%+=:,./"}, want: "export K=a-Z_0@%+=:,./"},
		{name: "Empty", v: EnvVar{Name: "K", Kind: EnvString}, want: "export K=''"},
		{name: "Space", v: EnvVar{Name: "K", Kind: EnvString, Value: "a b"}, want: "export K='a b'"},
		{name: "SingleQuote", v: EnvVar{Name: "K", Kind: EnvString, Value: "it's"}, want: `export K='it'"'"'s'`},
		{name: "Dollar", v: EnvVar{Name: "K", Kind: EnvString, Value: "$HOME"}, want: "export K='$HOME'"},
		{name: "List", v: EnvVar{Name: "K", Kind: EnvList, List: []string{"a", "b c", `"q"`, ""}}, want: `K=(a 'b c' '"q"' '')`},
		{name: "EmptyList", v: EnvVar{Name: "K", Kind: EnvList}, want: "K=()"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.ShellLine(); got != tt.want {
				t.Errorf("ShellLine() = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestEnvVarShellLineBash sources each line in a real bash, the shell task
// scripts run under, and compares what bash sees with the value.
func TestEnvVarShellLineBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	nasty := []string{
		"", " ", "plain", "a b", "it's", `"double"`, `back\slash`, "$HOME", "${X:-y}", "`id`", "$(id)",
		"a\nb", "trailing\n", "\ttab", "semi;colon", "amp&", "pipe|", "glob*?[a]", "~", "~/x", "{a,b}",
		"!bang", "#hash", "'", "''", `'"'"'`, "héllo ✓", "\x01\x7f", "\r\n", "-n", "--", "=", "a=b",
	}
	tests := []struct {
		name string
		v    EnvVar
	}{
		{name: "Null", v: EnvVar{Kind: EnvNull}},
		{name: "Number", v: EnvVar{Kind: EnvNumber, Value: "1e+06"}},
		{name: "List", v: EnvVar{Kind: EnvList, List: nasty}},
		{name: "EmptyList", v: EnvVar{Kind: EnvList}},
	}
	for i, s := range nasty {
		tests = append(tests, struct {
			name string
			v    EnvVar
		}{name: "String" + string(rune('A'+i)), v: EnvVar{Kind: EnvString, Value: s}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.v
			v.Name = "V"
			// Print each element NUL-terminated so empty items and
			// newlines are visible.
			script := v.ShellLine() + "\nprintf '%s\\0' \"${V[@]}\"\n"
			if v.Kind != EnvList {
				script = v.ShellLine() + "\nprintf '%s\\0' \"$V\"\nenv | grep -q '^V=' && printf exported\n"
			}
			out, err := exec.Command(bash, "--norc", "--noprofile", "-c", script).Output()
			if err != nil {
				t.Fatalf("bash: %v\nscript: %s", err, script)
			}
			want := []string{v.Value}
			if v.Kind == EnvList {
				want = v.List
			}
			var b strings.Builder
			for _, s := range want {
				b.WriteString(s + "\x00")
			}
			if v.Kind == EnvList && len(want) == 0 {
				b.WriteString("\x00") // printf runs once with no arguments
			}
			if v.Kind != EnvList {
				b.WriteString("exported")
			}
			if got := string(out); got != b.String() {
				t.Errorf("bash printed %q, want %q\nscript: %s", got, b.String(), script)
			}
		})
	}
}

// BenchmarkParseManifest measures a typical manifest and manifests that try
// to blow up through aliases and merges within the 16 KiB limit.
func BenchmarkParseManifest(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "manifests", "submitter.yml"))
	if err != nil {
		b.Fatal(err)
	}
	fill := func(head, repeat string) []byte {
		n := (DefaultManifestMaxSize - len(head)) / len(repeat)
		return []byte(head + strings.Repeat(repeat, n))
	}
	var keys strings.Builder
	for i := range 600 {
		fmt.Fprintf(&keys, "k%d: 1, ", i)
	}
	var chain strings.Builder
	for i := range 60 {
		fmt.Fprintf(&chain, ".a%d: &a%d {v%d: 1", i, i, i)
		for j := range i {
			fmt.Fprintf(&chain, ", <<: *a%d", j)
		}
		chain.WriteString("}\n")
	}
	cases := []struct {
		name string
		data []byte
	}{
		{name: "Typical", data: data},
		{name: "AliasedTaskMaps", data: fill(".t: &t {"+keys.String()+"}\nimage: x\ntasks:\n", "- *t\n")},
		{name: "AliasedEnvLists", data: fill(".l: &l ["+strings.Repeat("a, ", 1500)+"]\nimage: x\ntasks: [b: c]\nenvironment:\n", "  V: *l\n")},
		{name: "RepeatedMerges", data: fill(".m: &m {"+keys.String()+"}\nimage: x\ntasks: [b: c]\nenvironment:\n", "  <<: *m\n")},
		{name: "MergeChain", data: []byte(chain.String() + "image: x\ntasks: [b: c]\nenvironment: *a59\n")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				ParseManifest(c.data, len(c.data))
			}
		})
	}
}
