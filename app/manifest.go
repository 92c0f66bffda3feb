package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// DefaultManifestMaxSize is the manifest size limit used when ParseManifest
// is given none; it is the size of upstream's job.manifest column.
const DefaultManifestMaxSize = 16384

// Manifest is a parsed and validated build manifest (behaviour.md §1).
type Manifest struct {
	Raw          string // the text exactly as submitted
	Image        string
	Arch         string // "" when absent
	Packages     []string
	Repositories []Repository // document order
	Sources      []string
	Environment  []EnvVar // document order
	Secrets      []string // UUIDs or names
	OAuth        string
	Tasks        []ManifestTask // document order
	Triggers     []ManifestTrigger
	Artifacts    []string
	Shell        bool
}

// Repository is one entry of the manifest's repositories map.
type Repository struct{ Name, Source string }

// ManifestTask is one task. Script is the YAML scalar's value: block scalars
// keep their content and chomping (a "|" block ends in "\n"), nothing is
// stripped, and YAML itself turns CRLF line breaks into "\n".
type ManifestTask struct{ Name, Script string }

// ManifestTrigger is one entry of the manifest's triggers list.
type ManifestTrigger struct {
	Action    string // "email" | "webhook"
	Condition string // "always" | "success" | "failure"
	To        string // email
	Cc        string // email
	InReplyTo string // email (in_reply_to key)
	URL       string // webhook
}

// ManifestError is one problem found in a manifest. Line is 1-based; 0 means
// the problem concerns the manifest as a whole.
type ManifestError struct {
	Line    int
	Field   string // top-level key, "" when none applies
	Message string
}

// Error renders e as "line 7: tasks: Duplicate task 'build'".
func (e ManifestError) Error() string {
	var b strings.Builder
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// ManifestErrors is every problem found in a manifest, in line order.
type ManifestErrors []ManifestError

// Error renders one error per line.
func (es ManifestErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the individual errors to errors.Is and errors.As.
func (es ManifestErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// As lets errors.As see manifest errors as an EINVALID *Error, so ErrorCode
// and ErrorMessage report them to users instead of "internal error".
func (es ManifestErrors) As(target any) bool {
	if t, ok := target.(**Error); ok {
		*t = &Error{Code: EINVALID, Message: es.Error()}
		return true
	}
	return false
}

// Summary returns a one-line description such as
// "image debian/stable, tasks: build, test".
func (m *Manifest) Summary() string {
	if m == nil {
		return ""
	}
	s := "image " + m.Image
	if m.Arch != "" {
		s += " (" + m.Arch + ")"
	}
	if len(m.Tasks) == 0 {
		s += ", no tasks"
	} else {
		s += ", tasks: " + strings.Join(m.TaskNames(), ", ")
	}
	if m.Shell {
		s += ", shell"
	}
	return s
}

// TaskNames returns the task names in order.
func (m *Manifest) TaskNames() []string {
	names := make([]string, len(m.Tasks))
	for i, t := range m.Tasks {
		names[i] = t.Name
	}
	return names
}

// ParseManifest parses and validates a build manifest. maxSize <= 0 means
// DefaultManifestMaxSize. On failure it returns ManifestErrors holding every
// error found, in line order.
//
// Checks are the union of upstream's two validators with the wording of the
// Python one (behaviour.md §1.2). Only the first YAML document is used; a
// second non-empty one is an error, as with PyYAML's safe_load.
func ParseManifest(data []byte, maxSize int) (*Manifest, error) {
	if maxSize <= 0 {
		maxSize = DefaultManifestMaxSize
	}
	if len(data) > maxSize {
		return nil, ManifestErrors{{Message: fmt.Sprintf("Manifest must be less than %d bytes", maxSize)}}
	}
	root, yerr := decodeManifestYAML(data)
	if yerr != nil {
		return nil, ManifestErrors{*yerr}
	}
	p := newManifestParser()
	m := &Manifest{Raw: string(data)}
	p.parse(root, m)
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		return nil, p.errs
	}
	return m, nil
}

// decodeManifestYAML returns the root node of the first document (nil for an
// empty stream) after checking that no other document has content.
func decodeManifestYAML(data []byte) (*yaml.Node, *ManifestError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return nil, nil
	} else if err != nil {
		return nil, yamlSyntaxError(data, err)
	}
	for {
		var extra yaml.Node
		err := dec.Decode(&extra)
		if errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, yamlSyntaxError(data, err)
		}
		if root := yamlDocumentRoot(&extra); root != nil && !isYAMLNull(root) {
			return nil, &ManifestError{Line: extra.Line, Message: "Manifest must contain a single YAML document"}
		}
	}
	return yamlDocumentRoot(&doc), nil
}

func yamlDocumentRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0]
	}
	return nil
}

// yamlSyntaxError turns "yaml: line 3: did not find expected key" into a
// ManifestError on line 3. yaml.v3 numbers lines from 1 for scanner errors
// but from 0 for parser errors, and leaves the line out when it is 0; this
// undoes both quirks, and finds the line of an unknown alias itself.
func yamlSyntaxError(data []byte, err error) *ManifestError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, tail
			}
		}
	}
	switch {
	case isYAMLParserError(msg):
		line++
	case line == 0 && isYAMLScannerError(msg):
		line = 1
	case line == 0 && strings.HasPrefix(msg, "unknown anchor '"):
		name := strings.TrimSuffix(strings.TrimPrefix(msg, "unknown anchor '"), "' referenced")
		if i := bytes.Index(data, []byte("*"+name)); i >= 0 {
			line = 1 + bytes.Count(data[:i], []byte("\n"))
		}
	}
	return &ManifestError{Line: line, Message: "Invalid YAML: " + msg}
}

// isYAMLParserError reports whether msg comes from libyaml's parser (as
// opposed to its scanner); the two message sets are disjoint.
func isYAMLParserError(msg string) bool {
	switch msg {
	case "found duplicate %YAML directive", "found incompatible YAML document",
		"found duplicate %TAG directive", "found undefined tag handle":
		return true
	}
	return strings.HasPrefix(msg, "did not find expected <") ||
		strings.HasPrefix(msg, "did not find expected node content") ||
		strings.HasPrefix(msg, "did not find expected '-' indicator") ||
		strings.HasPrefix(msg, "did not find expected key") ||
		strings.HasPrefix(msg, "did not find expected ',' or")
}

func isYAMLScannerError(msg string) bool {
	return strings.HasPrefix(msg, "found ") || strings.HasPrefix(msg, "did not find ") ||
		strings.HasPrefix(msg, "mapping values are not allowed") ||
		strings.HasPrefix(msg, "mapping keys are not allowed") ||
		strings.HasPrefix(msg, "exceeded max depth") ||
		strings.HasPrefix(msg, "block sequence entries are not allowed") ||
		strings.HasPrefix(msg, "could not find expected")
}

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

// mappingPairs flattens mapping n: explicit keys in document order, YAML
// merge keys ("<<") expanded in place (explicit keys win, then earlier
// merges), duplicate explicit keys reported. Values are alias-resolved.
func (p *manifestParser) mappingPairs(n *yaml.Node, field string) []manifestPair {
	if pairs, ok := p.flat[n]; ok {
		return pairs
	}
	pairs := p.flatten(n, field, map[*yaml.Node]bool{n: true}, map[string]bool{})
	p.flat[n] = pairs
	return pairs
}

// flatten returns the pairs of n whose names are not yet in taken, and adds
// the names it returns to taken. expanded holds the mappings already merged,
// which stops alias cycles and keeps repeated merges of one anchor linear.
func (p *manifestParser) flatten(n *yaml.Node, field string, expanded map[*yaml.Node]bool, taken map[string]bool) []manifestPair {
	// n's own keys outrank everything it merges, so claim them first.
	own := map[string]bool{}
	firstLine := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || isYAMLMergeKey(k) {
			continue
		}
		if first, dup := firstLine[k.Value]; dup {
			p.errorf(k.Line, field, "Duplicate key '%s' (first defined on line %d)", k.Value, first)
			continue
		}
		firstLine[k.Value] = k.Line
		own[k.Value] = !taken[k.Value]
		taken[k.Value] = true
	}
	var out []manifestPair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case isYAMLMergeKey(k):
			for _, src := range p.mergeSources(k, v, field) {
				if !expanded[src] {
					expanded[src] = true
					out = append(out, p.flatten(src, field, expanded, taken)...)
				}
			}
		case k.Kind != yaml.ScalarNode:
			out = append(out, manifestPair{key: k, value: resolveYAMLAlias(v)})
		case own[k.Value]:
			own[k.Value] = false // a duplicate key keeps its first value
			out = append(out, manifestPair{key: k, value: resolveYAMLAlias(v)})
		}
	}
	return out
}

// mergeSources returns the mappings a "<<" value names.
func (p *manifestParser) mergeSources(k, v *yaml.Node, field string) []*yaml.Node {
	v = resolveYAMLAlias(v)
	var srcs []*yaml.Node
	switch v.Kind {
	case yaml.MappingNode:
		srcs = []*yaml.Node{v}
	case yaml.SequenceNode:
		for _, it := range v.Content {
			srcs = append(srcs, resolveYAMLAlias(it))
		}
	}
	for _, s := range srcs {
		if s.Kind != yaml.MappingNode {
			srcs = nil
			break
		}
	}
	if srcs == nil && !(v.Kind == yaml.SequenceNode && len(v.Content) == 0) {
		p.errorf(k.Line, field, "Expected a mapping or a list of mappings to merge with '<<'")
	}
	return srcs
}

func isYAMLMergeKey(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge"
}

// resolveYAMLAlias follows aliases to the anchored node; nil becomes a null.
func resolveYAMLAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n == nil {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	return n
}

func isYAMLNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isYAMLString(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str"
}

func isEmptyYAMLCollection(n *yaml.Node) bool {
	return (n.Kind == yaml.SequenceNode || n.Kind == yaml.MappingNode) && len(n.Content) == 0
}

// yamlBool reads a boolean the way upstream's YAML 1.1 parsers do: besides
// true/false, plain yes/no/on/off (in the three usual casings) are booleans.
func yamlBool(n *yaml.Node) (value, ok bool) {
	if n.Kind != yaml.ScalarNode {
		return false, false
	}
	if n.ShortTag() == "!!bool" {
		b, err := strconv.ParseBool(n.Value)
		return b, err == nil
	}
	if n.Style != 0 || n.ShortTag() != "!!str" {
		return false, false
	}
	switch n.Value {
	case "yes", "Yes", "YES", "on", "On", "ON":
		return true, true
	case "no", "No", "NO", "off", "Off", "OFF":
		return false, true
	}
	return false, false
}

// describeYAMLNode names a node's kind for error messages.
func describeYAMLNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	switch n.ShortTag() {
	case "!!str":
		return "a string"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	}
	return "a " + strings.TrimPrefix(n.ShortTag(), "!!")
}
