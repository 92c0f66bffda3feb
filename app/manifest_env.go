package app

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// EnvKind is the YAML type of an environment value.
type EnvKind int

// Environment value kinds.
const (
	EnvNull EnvKind = iota
	EnvBool
	EnvString
	EnvNumber
	EnvList
)

// String returns the kind's name.
func (k EnvKind) String() string {
	switch k {
	case EnvNull:
		return "null"
	case EnvBool:
		return "bool"
	case EnvString:
		return "string"
	case EnvNumber:
		return "number"
	case EnvList:
		return "list"
	}
	return "unknown"
}

// EnvVar is one entry of the manifest's environment map.
//
// Value holds scalars: numbers exactly as written (1000000 stays 1000000, not
// upstream's 1e+06; 0x10 stays 0x10), booleans as "true"/"false" (YAML 1.1
// spellings such as yes/On included, as upstream's parsers read them), ""
// for null, and the string value for everything else. List holds the items
// of a list, each converted the same way.
type EnvVar struct {
	Name  string
	Kind  EnvKind
	Value string
	List  []string
}

// ShellLine renders the ~/.buildenv line for e: `export K=value` with the
// value quoted for a POSIX shell where needed, `export K=""` for null, and
// for lists a bash array `K=(a 'b c')` (arrays cannot be exported). Unlike
// upstream, list items are quoted too, so any item survives intact.
func (e EnvVar) ShellLine() string {
	switch e.Kind {
	case EnvNull:
		return "export " + e.Name + `=""`
	case EnvList:
		items := make([]string, len(e.List))
		for i, it := range e.List {
			items[i] = ShellQuote(it)
		}
		return e.Name + "=(" + strings.Join(items, " ") + ")"
	}
	return "export " + e.Name + "=" + ShellQuote(e.Value)
}

// ShellQuote quotes s as one POSIX shell word, like Python's shlex.quote: unchanged if it only
// holds [A-Za-z0-9_@%+=:,./-], a pair of single quotes if empty, else
// wrapped in single quotes with each inner quote written as '"'"'.
func ShellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_@%+=:,./-", c) >= 0) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// environment converts the environment mapping. Names must be shell
// identifiers (anything else would break or inject into ~/.buildenv); values
// must be scalars or lists of scalars, without NUL bytes (which no shell
// variable can hold).
func (p *manifestParser) environment(kv manifestPair) []EnvVar {
	pairs, ok := p.mapping(kv, "Expected environment to be a dictionary")
	if !ok {
		return nil
	}
	var out []EnvVar
	for _, e := range pairs {
		name, v := e.name(), e.value
		if e.key.Kind != yaml.ScalarNode || !isEnvVarName(name) {
			p.errorf(e.key.Line, "environment", "Invalid environment variable name '%s' (must be letters, digits and underscores, not starting with a digit)", name)
			continue
		}
		var ev EnvVar
		switch v.Kind {
		case yaml.ScalarNode:
			ev = EnvVar{Name: name}
			ev.Kind, ev.Value = envScalarValue(v)
		case yaml.SequenceNode:
			list, ok := p.envList(v)
			if !ok {
				p.errorf(e.key.Line, "environment", "Unknown environment type for '%s': list items must be strings, numbers, booleans or null", name)
				continue
			}
			ev = EnvVar{Name: name, Kind: EnvList, List: list}
		default:
			p.errorf(e.key.Line, "environment", "Unknown environment type for '%s': expected a string, number, boolean, null or list, got %s", name, describeYAMLNode(v))
			continue
		}
		if strings.ContainsRune(ev.Value, 0) || anyContainsNUL(ev.List) {
			p.errorf(e.key.Line, "environment", "Environment variable '%s' must not contain NUL bytes", name)
			continue
		}
		out = append(out, ev)
	}
	return out
}

// envList converts a list's items; ok is false if one is not a scalar.
// Results are memoized per node because an anchored list may be aliased by
// many variables.
func (p *manifestParser) envList(n *yaml.Node) ([]string, bool) {
	if list, ok := p.lists[n]; ok {
		return list, list != nil
	}
	list := make([]string, 0, len(n.Content))
	for _, it := range n.Content {
		it = resolveYAMLAlias(it)
		if it.Kind != yaml.ScalarNode {
			list = nil
			break
		}
		_, s := envScalarValue(it)
		list = append(list, s)
	}
	p.lists[n] = list
	return list, list != nil
}

// envScalarValue classifies a scalar node and returns its shell value.
func envScalarValue(n *yaml.Node) (EnvKind, string) {
	if b, ok := yamlBool(n); ok {
		if b {
			return EnvBool, "true"
		}
		return EnvBool, "false"
	}
	switch n.ShortTag() {
	case "!!null":
		return EnvNull, ""
	case "!!int", "!!float":
		return EnvNumber, n.Value
	}
	return EnvString, n.Value
}

func isEnvVarName(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func anyContainsNUL(list []string) bool {
	for _, s := range list {
		if strings.ContainsRune(s, 0) {
			return true
		}
	}
	return false
}
