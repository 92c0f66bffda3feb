package app

// YAML decoding and walking for the manifest parser: the first document,
// syntax errors with their lines, mappings with merge keys and aliases
// flattened, and the node predicates the field rules use.

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

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
