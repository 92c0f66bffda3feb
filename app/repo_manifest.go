package app

// What a push does to the manifests it submits, as git.sr.ht's update
// hook does (behaviour.md §1.12): the repository's own source pinned to
// the pushed commit, the submitter's environment, no shell access, and
// the tags and note that name the commit.

import (
	"fmt"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// pushInfo is what the rewrite needs to know of a push.
type pushInfo struct {
	Repo      *Repo
	Ref       string
	Commit    *ForgeCommit
	CommitURL string
	Pull      *PullEvent // a pull request's head, not a push
	Reason    string     // BUILD_REASON, or ""
}

// rewriteManifest returns text with the repository's source pinned to the
// commit (the first source whose base name is the repository's name, else
// a new last source), BUILD_SUBMITTER, GIT_REF and GIT_COMMIT set over the
// manifest's own values, BUILD_REASON if the push has one, and shell
// removed. For a pull request the source is the plain clone URL and a
// first task checks the request's head out.
func rewriteManifest(text string, p pushInfo) (string, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(text), &doc); err != nil {
		return "", fmt.Errorf("rewrite manifest: %w", err)
	}
	root := yamlDocumentRoot(&doc)
	if root == nil || root.Kind != yaml.MappingNode {
		return "", fmt.Errorf("rewrite manifest: not a mapping")
	}
	pinned := p.Repo.CloneURL + "#" + p.Commit.SHA
	if p.Pull != nil {
		pinned = p.Repo.CloneURL // the head is checked out by pullTaskName
	}
	sources := mappingValue(root, "sources", yaml.SequenceNode)
	replaced := false
	for _, n := range sources.Content {
		if n.Kind == yaml.ScalarNode && sourceName(n.Value) == p.Repo.Name {
			n.Value, n.Style, n.Tag = pinned, 0, "!!str"
			replaced = true
			break
		}
	}
	if !replaced {
		sources.Content = append(sources.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: pinned})
	}
	env := mappingValue(root, "environment", yaml.MappingNode)
	setMapping(env, "BUILD_SUBMITTER", string(p.Repo.Kind))
	setMapping(env, "GIT_REF", p.Ref)
	setMapping(env, "GIT_COMMIT", p.Commit.SHA)
	deleteMapping(root, "shell")
	if p.Reason != "" {
		setMapping(env, "BUILD_REASON", p.Reason)
	}
	if p.Pull != nil {
		prependTask(root, pullTaskName, pullTask(cloneDir(pinned), p.Pull.Ref, p.Commit.SHA))
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return "", fmt.Errorf("rewrite manifest: %w", err)
	}
	return string(out), nil
}

// sourceName is the repository name a source clones: its last path element
// without "#ref" and ".git" ("git+https://x/y/proj.git#main" -> "proj").
func sourceName(src string) string { return repoNameFromURL(src) }

// mappingValue returns the value of key in m, replacing a value of another
// kind (null, a scalar) with an empty node of kind, or adding one.
func mappingValue(m *yaml.Node, key string, kind yaml.Kind) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			v := m.Content[i+1]
			if v.Kind == yaml.AliasNode && v.Alias != nil {
				v = v.Alias
			}
			if v.Kind != kind {
				v = &yaml.Node{Kind: kind}
				m.Content[i+1] = v
			}
			return v
		}
	}
	v := &yaml.Node{Kind: kind}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
	return v
}

func setMapping(m *yaml.Node, key, value string) {
	val := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = val
			return
		}
	}
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, val)
}

func deleteMapping(m *yaml.Node, key string) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content = append(m.Content[:i], m.Content[i+2:]...)
			return
		}
	}
}

var tagUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// pushTags are git.sr.ht's tags of a push's job: repository, "commits",
// the branch (for branch pushes; its slashes make more parts) and the
// manifest's name. Characters tags may not hold become "_".
func pushTags(repo, ref, manifest string) []string {
	clean := func(s string) string { return tagUnsafe.ReplaceAllString(s, "_") }
	tags := []string{clean(repo), "commits"}
	if branch, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		for part := range strings.SplitSeq(branch, "/") {
			if part != "" {
				tags = append(tags, clean(part))
			}
		}
	}
	tags = append(tags, clean(manifest))
	if len(tags) > MaxTags { // keep the repository and the manifest
		tags = append(tags[:MaxTags-1], tags[len(tags)-1])
	}
	for i, t := range tags {
		if len(t) > MaxTagLength {
			tags[i] = t[:MaxTagLength]
		}
	}
	return tags
}

// pushNote is git.sr.ht's note of a push's job: the short commit linked to
// its page (when the forge gave one), the author linked to their address,
// and the commit's subject.
func pushNote(p pushInfo) string {
	c := p.Commit
	short := c.SHA
	if len(short) > 7 {
		short = short[:7]
	}
	var b strings.Builder
	if p.CommitURL != "" {
		fmt.Fprintf(&b, "[%s][0] — [%s][1]\n\n", short, c.AuthorName)
	} else {
		fmt.Fprintf(&b, "%s — [%s][1]\n\n", short, c.AuthorName)
	}
	fmt.Fprintf(&b, "    %s\n\n", c.Subject)
	if p.CommitURL != "" {
		fmt.Fprintf(&b, "[0]: %s\n", p.CommitURL)
	}
	fmt.Fprintf(&b, "[1]: mailto:%s", c.AuthorEmail)
	note := b.String()
	if len(note) > MaxNoteSize {
		note = strings.ToValidUTF8(note[:MaxNoteSize], "")
	}
	return note
}
