package app

// The manifest's field rules: what each top-level key may hold, with the
// messages of upstream's validators (behaviour.md §1.2).

import (
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// manifestParser walks the YAML node tree and collects errors with lines.
type manifestParser struct {
	errs     ManifestErrors
	reported map[ManifestError]bool
	// flat and lists memoize flattened mappings and converted lists per
	// node, so a manifest that aliases one anchor many times costs one walk.
	flat  map[*yaml.Node][]manifestPair
	lists map[*yaml.Node][]string
}

func newManifestParser() *manifestParser {
	return &manifestParser{
		reported: map[ManifestError]bool{},
		flat:     map[*yaml.Node][]manifestPair{},
		lists:    map[*yaml.Node][]string{},
	}
}

// errorf records an error once (aliases can repeat the same node).
func (p *manifestParser) errorf(line int, field, format string, args ...any) {
	e := ManifestError{Line: line, Field: field, Message: fmt.Sprintf(format, args...)}
	if !p.reported[e] {
		p.reported[e] = true
		p.errs = append(p.errs, e)
	}
}

// manifestPair is one key/value of a mapping after merges; key is the key
// node (its Value is the name), value is alias-resolved.
type manifestPair struct {
	key, value *yaml.Node
}

func (kv manifestPair) name() string { return kv.key.Value }

func (p *manifestParser) parse(root *yaml.Node, m *Manifest) {
	keys, ok := p.topLevel(root)
	if !ok {
		return
	}
	// field returns a top-level key's pair; null values count as absent.
	field := func(name string) (manifestPair, bool) {
		kv, ok := keys[name]
		return kv, ok && !isYAMLNull(kv.value)
	}
	p.parseImage(keys["image"], m)
	if kv, ok := field("arch"); ok {
		m.Arch = p.stringValue(kv, "Expected arch to be a string")
	}
	if kv, ok := field("packages"); ok {
		m.Packages = p.stringList(kv, "Expected packages to be a string array")
	}
	if kv, ok := field("repositories"); ok {
		m.Repositories = p.repositories(kv)
	}
	if kv, ok := field("sources"); ok {
		m.Sources = p.stringList(kv, "Expected sources to be a string array")
	}
	if kv, ok := field("environment"); ok {
		m.Environment = p.environment(kv)
	}
	if kv, ok := field("secrets"); ok {
		m.Secrets = p.secrets(kv)
	}
	if kv, ok := field("shell"); ok {
		b, isBool := yamlBool(kv.value)
		if !isBool {
			p.errorf(kv.key.Line, "shell", "Expected shell to be a boolean")
		}
		m.Shell = b
	}
	if kv, ok := field("artifacts"); ok {
		m.Artifacts = p.artifacts(kv)
	}
	if kv, ok := field("oauth"); ok {
		m.OAuth = p.stringValue(kv, "Expected oauth to be a string")
		p.oauthGrants(kv.key.Line, m.OAuth)
	}
	if kv, ok := field("tasks"); ok {
		m.Tasks = p.tasks(kv)
	}
	p.requireTasks(keys["tasks"], m)
	if kv, ok := field("triggers"); ok {
		m.Triggers = p.triggers(kv)
	}
}

// topLevel returns the manifest's top-level pairs by name. An empty
// document is an empty mapping; anything else that is not a mapping is
// reported and ok is false.
func (p *manifestParser) topLevel(root *yaml.Node) (keys map[string]manifestPair, ok bool) {
	keys = map[string]manifestPair{}
	if root = resolveYAMLAlias(root); isYAMLNull(root) {
		return keys, true
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "", "Expected manifest to be a YAML mapping of keys to values, got %s", describeYAMLNode(root))
		return nil, false
	}
	for _, kv := range p.mappingPairs(root, "") {
		if kv.key.Kind == yaml.ScalarNode { // other keys cannot be ours
			keys[kv.name()] = kv
		}
	}
	return keys, true
}

// requireTasks reports a manifest with neither tasks nor shell. A tasks
// value of the wrong type has been reported already.
func (p *manifestParser) requireTasks(kv manifestPair, m *Manifest) {
	if len(m.Tasks) > 0 || m.Shell {
		return
	}
	line := 0
	if kv.key != nil {
		line = kv.key.Line
		if !isYAMLNull(kv.value) && !isEmptyYAMLCollection(kv.value) {
			return
		}
	}
	p.errorf(line, "tasks", "Attempted to create manifest with no tasks")
}

func (p *manifestParser) parseImage(kv manifestPair, m *Manifest) {
	switch {
	case kv.key == nil || isYAMLNull(kv.value) || isYAMLString(kv.value) && kv.value.Value == "":
		line := 0
		if kv.key != nil {
			line = kv.key.Line
		}
		p.errorf(line, "image", "Missing image in manifest")
	case !isYAMLString(kv.value):
		p.errorf(kv.key.Line, "image", "Expected image to be a string")
	default:
		m.Image = kv.value.Value
	}
}

// stringValue returns kv's string value or reports msg.
func (p *manifestParser) stringValue(kv manifestPair, msg string) string {
	if !isYAMLString(kv.value) {
		p.errorf(kv.key.Line, kv.name(), "%s", msg)
		return ""
	}
	return kv.value.Value
}

// stringList returns kv's value as a list of strings or reports msg: once for
// a value that is not a list, once per item that is not a string.
func (p *manifestParser) stringList(kv manifestPair, msg string) []string {
	items, ok := p.sequence(kv, msg)
	if !ok {
		return nil
	}
	var out []string
	for _, it := range items {
		if !isYAMLString(it.Node) {
			p.errorf(it.line, kv.name(), "%s", msg)
			continue
		}
		out = append(out, it.Value)
	}
	return out
}

// manifestItem is an alias-resolved list item; line is where the item itself
// is written, so errors point at the alias rather than the anchor.
type manifestItem struct {
	*yaml.Node
	line int
}

// sequence returns the items of kv's list value. An empty mapping counts as
// an empty list (upstream's Python treats falsy values as absent).
func (p *manifestParser) sequence(kv manifestPair, msg string) ([]manifestItem, bool) {
	v := kv.value
	switch {
	case v.Kind == yaml.MappingNode && len(v.Content) == 0:
		return nil, true
	case v.Kind != yaml.SequenceNode:
		p.errorf(kv.key.Line, kv.name(), "%s", msg)
		return nil, false
	}
	items := make([]manifestItem, len(v.Content))
	for i, it := range v.Content {
		items[i] = manifestItem{Node: resolveYAMLAlias(it), line: it.Line}
	}
	return items, true
}

// mapping returns the pairs of kv's mapping value; an empty list counts as an
// empty mapping.
func (p *manifestParser) mapping(kv manifestPair, msg string) ([]manifestPair, bool) {
	v := kv.value
	switch {
	case v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		return nil, true
	case v.Kind != yaml.MappingNode:
		p.errorf(kv.key.Line, kv.name(), "%s", msg)
		return nil, false
	}
	return p.mappingPairs(v, kv.name()), true
}

func (p *manifestParser) repositories(kv manifestPair) []Repository {
	pairs, ok := p.mapping(kv, "Expected repositories to be a dict")
	if !ok {
		return nil
	}
	var out []Repository
	for _, r := range pairs {
		if !isYAMLString(r.value) {
			p.errorf(r.key.Line, "repositories", "Expected url for repository %s", r.name())
			continue
		}
		out = append(out, Repository{Name: r.name(), Source: r.value.Value})
	}
	return out
}

func (p *manifestParser) secrets(kv manifestPair) []string {
	const msg = "Expected secrets to be a UUID/String array"
	items, ok := p.sequence(kv, msg)
	if !ok {
		return nil
	}
	var out []string
	for _, it := range items {
		// A UUID in any form Python accepts is 32 to 45 characters, so the
		// length check alone covers "UUID or name".
		switch n := utf8.RuneCountInString(it.Value); {
		case !isYAMLString(it.Node):
			p.errorf(it.line, "secrets", msg)
		case n < 3 || n > 512:
			p.errorf(it.line, "secrets", "Secret names must be between 3 and 512 chars")
		default:
			out = append(out, it.Value)
		}
	}
	return out
}

func (p *manifestParser) artifacts(kv manifestPair) []string {
	const msg = "Expected artifacts to be a list of unique file paths"
	items, ok := p.sequence(kv, msg)
	if !ok {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, it := range items {
		// Artifacts are stored under their basename, so two paths with the
		// same basename would collide; "dir/" has an empty basename and
		// "." or ".." name no file.
		base := it.Value[strings.LastIndex(it.Value, "/")+1:]
		if !isYAMLString(it.Node) || base == "" || base == "." || base == ".." || seen[base] {
			p.errorf(it.line, "artifacts", msg)
			continue
		}
		seen[base] = true
		out = append(out, it.Value)
	}
	return out
}

// oauthGrants checks the space-separated grants "service/SCOPE[:RO|:RW]".
func (p *manifestParser) oauthGrants(line int, grants string) {
	for _, g := range strings.Fields(grants) {
		svc, rest, ok := strings.Cut(g, "/")
		scope, access, hasAccess := strings.Cut(rest, ":")
		if !ok || !isOAuthGrantService(svc) || !isOAuthGrantScope(scope) ||
			hasAccess && access != "RO" && access != "RW" {
			p.errorf(line, "oauth", "Invalid grant '%s' (expected service/SCOPE, service/SCOPE:RO or service/SCOPE:RW)", g)
		}
	}
}

func isOAuthGrantService(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789.-") == ""
}

func isOAuthGrantScope(s string) bool {
	return s != "" && strings.Trim(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZ_") == ""
}

func (p *manifestParser) tasks(kv manifestPair) []ManifestTask {
	items, ok := p.sequence(kv, "Expected tasks to be a list of 'name: script' entries")
	if !ok {
		return nil
	}
	var out []ManifestTask
	seen := map[string]bool{}
	for _, it := range items {
		var pairs []manifestPair
		if it.Kind == yaml.MappingNode {
			pairs = p.mappingPairs(it.Node, "tasks")
		}
		if len(pairs) != 1 || !isYAMLString(pairs[0].key) || !isYAMLString(pairs[0].value) {
			p.errorf(it.line, "tasks", "Expected task to be a string: string")
			continue
		}
		name := pairs[0].name()
		switch {
		case !isManifestTaskName(name):
			p.errorf(it.line, "tasks", "Task name '%s' is invalid (must be all lowercase letters, numbers, underscores, and dashes, and <=128 characters)", name)
		case seen[name]:
			p.errorf(it.line, "tasks", "Duplicate task '%s'", name)
		default:
			seen[name] = true
			out = append(out, ManifestTask{Name: name, Script: pairs[0].value.Value})
		}
	}
	return out
}

func isManifestTaskName(s string) bool {
	return s != "" && len(s) <= 128 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == ""
}

func (p *manifestParser) triggers(kv manifestPair) []ManifestTrigger {
	items, ok := p.sequence(kv, "Expected triggers to be a list")
	if !ok {
		return nil
	}
	var out []ManifestTrigger
	for _, it := range items {
		if it.Kind != yaml.MappingNode {
			p.errorf(it.line, "triggers", "Expected trigger to be a dict")
			continue
		}
		if t, ok := p.trigger(it.Node, it.line); ok {
			out = append(out, t)
		}
	}
	return out
}

// trigger validates one trigger mapping (behaviour.md §1.10).
func (p *manifestParser) trigger(n *yaml.Node, line int) (ManifestTrigger, bool) {
	nerrs := len(p.errs)
	fields := map[string]string{}
	bad := map[string]bool{} // present with a wrong type: reported already
	for _, kv := range p.mappingPairs(n, "triggers") {
		switch k := kv.name(); k {
		case "action", "condition", "to", "cc", "in_reply_to", "url":
			switch {
			case isYAMLNull(kv.value):
			case isYAMLString(kv.value), (k == "action" || k == "condition") && kv.value.Kind == yaml.ScalarNode:
				fields[k] = kv.value.Value
			default:
				p.errorf(kv.key.Line, "triggers", "Expected trigger %s to be a string", k)
				bad[k] = true
			}
		}
	}
	t := ManifestTrigger{
		Action: fields["action"], Condition: fields["condition"],
		To: fields["to"], Cc: fields["cc"], InReplyTo: fields["in_reply_to"], URL: fields["url"],
	}
	switch _, ok := fields["condition"]; {
	case bad["condition"]:
	case !ok:
		p.errorf(line, "triggers", "Expected trigger condition (always, success or failure)")
	case t.Condition != "always" && t.Condition != "success" && t.Condition != "failure":
		p.errorf(line, "triggers", "'%s' is not a valid TriggerCondition", t.Condition)
	}
	switch _, ok := fields["action"]; {
	case bad["action"]:
	case !ok:
		p.errorf(line, "triggers", "Expected trigger action (email or webhook)")
	case t.Action == "email":
		if !bad["to"] && !bad["cc"] {
			p.emailTrigger(line, t)
		}
	case t.Action == "webhook":
		if !bad["url"] {
			p.webhookTrigger(line, t)
		}
	default:
		p.errorf(line, "triggers", "'%s' is not a valid TriggerAction", t.Action)
	}
	return t, len(p.errs) == nerrs
}

func (p *manifestParser) emailTrigger(line int, t ManifestTrigger) {
	if strings.TrimSpace(t.To) == "" && strings.TrimSpace(t.Cc) == "" {
		p.errorf(line, "triggers", "email trigger requires 'to' or 'cc'")
	}
	for _, f := range []struct{ key, list string }{{"to", t.To}, {"cc", t.Cc}} {
		if strings.TrimSpace(f.list) == "" {
			continue
		}
		if _, err := mail.ParseAddressList(f.list); err != nil {
			p.errorf(line, "triggers", "Invalid address list in trigger '%s': %s", f.key, strings.TrimPrefix(err.Error(), "mail: "))
		}
	}
	if strings.ContainsAny(t.InReplyTo, "\r\n") {
		p.errorf(line, "triggers", "Expected trigger in_reply_to to be a single line")
	}
}

func (p *manifestParser) webhookTrigger(line int, t ManifestTrigger) {
	if strings.TrimSpace(t.URL) == "" {
		p.errorf(line, "triggers", "webhook trigger requires 'url'")
		return
	}
	u, err := url.Parse(t.URL)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		p.errorf(line, "triggers", "webhook trigger url must be an http or https URL: '%s'", t.URL)
	}
}
