package web

import (
	"bufio"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// The reference (testdata/builds-graphql-api.txt, a copy of the schema
// document we implement) is parsed here and compared with what the server
// reports through introspection, type by type and field by field.

// refField is a field or argument as the reference lists it.
type refField struct {
	name string
	typ  string // as printed: lists show no inner "!"
	args []refField
}

type refType struct {
	name       string
	kind       string // OBJECT, INTERFACE, ENUM, INPUT_OBJECT, SCALAR
	implements string
	fields     []refField // fields or input fields
	values     []string   // enum values
}

// refOp is a root query or mutation.
type refOp struct {
	name      string
	access    string // "JOBS:RO", "" if none
	returns   string
	args      []refField // from "Arguments" (printed form)
	exactArgs []refField // from the example's variable definitions (exact types)
}

type reference struct {
	queries, mutations []refOp
	types              map[string]*refType
	directives         map[string][]refField
}

var (
	itemRE     = regexp.MustCompile(`^\s+\d+\. (\w+)(?:\((.*)\))? - (.+)$`)
	enumItemRE = regexp.MustCompile(`^\s+\d+\. ([A-Z_]+)$`)
	accessRE   = regexp.MustCompile(`^@access\(scope:(\w+), kind:(\w+)\)$`)
	exampleRE  = regexp.MustCompile(`^query (\w+)(?:\((.*)\))? \{$`)
	nameRE     = regexp.MustCompile(`^[A-Za-z_]\w*$`)
)

func parseReference(t *testing.T) *reference {
	t.Helper()
	f, err := os.Open("testdata/builds-graphql-api.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	section := func(start, end string) []string {
		i, j := slices.Index(lines, start), len(lines)
		if end != "" {
			j = slices.Index(lines, end)
		}
		if i < 0 || j < 0 {
			t.Fatalf("reference has no %q..%q section", start, end)
		}
		return lines[i+1 : j]
	}
	ref := &reference{
		queries:    parseOps(t, section("Queries", "Mutations")),
		mutations:  parseOps(t, section("Mutations", "Definitions")),
		types:      parseTypes(section("Definitions", "Directives")),
		directives: parseDirectives(section("Directives", "")),
	}
	if len(ref.queries) != 10 || len(ref.mutations) != 14 || len(ref.types) < 40 {
		t.Fatalf("reference parse looks wrong: %d queries, %d mutations, %d types", len(ref.queries), len(ref.mutations), len(ref.types))
	}
	return ref
}

func parseOps(t *testing.T, lines []string) []refOp {
	var ops []refOp
	var cur *refOp
	inExample := false
	for _, l := range lines {
		switch {
		case inExample:
			if m := exampleRE.FindStringSubmatch(l); m != nil {
				cur.exactArgs = parseArgList(m[2], "$")
			}
			if l == "}" {
				inExample = false
			}
		case l == "Example Query":
			inExample = true
		case nameRE.MatchString(l) && l != "Arguments":
			ops = append(ops, refOp{name: l})
			cur = &ops[len(ops)-1]
		case cur == nil:
		case accessRE.MatchString(l):
			m := accessRE.FindStringSubmatch(l)
			cur.access = m[1] + ":" + m[2]
		case strings.HasPrefix(l, "Returns "):
			cur.returns = strings.TrimPrefix(l, "Returns ")
		default:
			if m := itemRE.FindStringSubmatch(l); m != nil {
				cur.args = append(cur.args, refField{name: m[1], typ: m[3]})
			}
		}
	}
	return ops
}

// parseArgList reads "cursor: Cursor" or "$id: Int!, $x: [Int!]!".
func parseArgList(s, prefix string) []refField {
	var out []refField
	if strings.TrimSpace(s) == "" {
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		name, typ, _ := strings.Cut(strings.TrimSpace(part), ":")
		out = append(out, refField{name: strings.TrimPrefix(strings.TrimSpace(name), prefix), typ: strings.TrimSpace(typ)})
	}
	return out
}

func parseTypes(lines []string) map[string]*refType {
	kinds := map[string]bool{"OBJECT": true, "INTERFACE": true, "ENUM": true, "INPUT_OBJECT": true, "SCALAR": true}
	types := map[string]*refType{}
	var cur *refType
	for i, l := range lines {
		next := ""
		for j := i + 1; j < len(lines); j++ {
			if strings.TrimSpace(lines[j]) != "" {
				next = lines[j]
				break
			}
		}
		kind, impl, _ := strings.Cut(next, " implements ")
		if nameRE.MatchString(l) && kinds[kind] {
			cur = &refType{name: l, kind: kind, implements: impl}
			types[l] = cur
			continue
		}
		if cur == nil {
			continue
		}
		if m := itemRE.FindStringSubmatch(l); m != nil {
			cur.fields = append(cur.fields, refField{name: m[1], typ: m[3], args: parseArgList(m[2], "")})
		} else if m := enumItemRE.FindStringSubmatch(l); m != nil && cur.kind == "ENUM" {
			cur.values = append(cur.values, m[1])
		}
	}
	return types
}

func parseDirectives(lines []string) map[string][]refField {
	dirs := map[string][]refField{}
	cur := ""
	for _, l := range lines {
		if strings.HasPrefix(l, "@") && nameRE.MatchString(l[1:]) {
			cur = l[1:]
			dirs[cur] = []refField{}
		} else if m := itemRE.FindStringSubmatch(l); m != nil && cur != "" {
			dirs[cur] = append(dirs[cur], refField{name: m[1], typ: m[3]})
		}
	}
	return dirs
}

// Introspection results.

type introType struct {
	Kind   string `json:"kind"`
	Name   string `json:"name"`
	Fields []struct {
		Name string        `json:"name"`
		Args []introValue  `json:"args"`
		Type *introTypeRef `json:"type"`
	} `json:"fields"`
	InputFields []introValue   `json:"inputFields"`
	Interfaces  []introTypeRef `json:"interfaces"`
	EnumValues  []struct {
		Name string `json:"name"`
	} `json:"enumValues"`
}

type introValue struct {
	Name string        `json:"name"`
	Type *introTypeRef `json:"type"`
}

type introTypeRef struct {
	Kind   string        `json:"kind"`
	Name   string        `json:"name"`
	OfType *introTypeRef `json:"ofType"`
}

// render prints a type reference; printed drops the "!" of list elements,
// as the reference document does.
func (r *introTypeRef) render(printed bool) string {
	switch r.Kind {
	case "NON_NULL":
		return r.OfType.render(printed) + "!"
	case "LIST":
		inner := r.OfType
		if printed && inner.Kind == "NON_NULL" {
			inner = inner.OfType
		}
		return "[" + inner.render(printed) + "]"
	}
	return r.Name
}

func fieldsByName[T any](items []T, name func(T) string) map[string]T {
	m := map[string]T{}
	for _, it := range items {
		m[name(it)] = it
	}
	return m
}

func TestSchemaMatchesReference(t *testing.T) {
	ref := parseReference(t)
	e := newAPIEnv(t)
	_, tok := e.user("alice")
	r := e.query(tok, introspectionQuery, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("introspection: %s", r.Raw)
	}
	var schema struct {
		Schema struct {
			Types      []introType `json:"types"`
			Directives []struct {
				Name string       `json:"name"`
				Args []introValue `json:"args"`
			} `json:"directives"`
		} `json:"__schema"`
	}
	remarshal(t, r.Data, &schema)
	served := fieldsByName(schema.Schema.Types, func(t introType) string { return t.Name })

	t.Run("Types", func(t *testing.T) {
		for name, rt := range ref.types {
			st, ok := served[name]
			if !ok {
				t.Errorf("type %s is missing", name)
				continue
			}
			if st.Kind != rt.kind {
				t.Errorf("%s is %s, want %s", name, st.Kind, rt.kind)
			}
			var impl []string
			for _, i := range st.Interfaces {
				impl = append(impl, i.Name)
			}
			if strings.Join(impl, ", ") != rt.implements {
				t.Errorf("%s implements %q, want %q", name, impl, rt.implements)
			}
			compareType(t, rt, st)
		}
		for name := range served {
			if _, ok := ref.types[name]; !ok && !strings.HasPrefix(name, "__") && name != "Query" && name != "Mutation" {
				t.Errorf("served type %s is not in the reference", name)
			}
		}
	})
	t.Run("Query", func(t *testing.T) { compareRoot(t, ref.queries, served["Query"]) })
	t.Run("Mutation", func(t *testing.T) { compareRoot(t, ref.mutations, served["Mutation"]) })
	t.Run("Directives", func(t *testing.T) {
		got := map[string][]refField{}
		for _, d := range schema.Schema.Directives {
			var args []refField
			for _, a := range d.Args {
				args = append(args, refField{name: a.Name, typ: a.Type.render(true)})
			}
			got[d.Name] = args
		}
		for name, args := range ref.directives {
			g, ok := got[name]
			if !ok {
				t.Errorf("directive @%s is missing", name)
				continue
			}
			if want, have := fieldList(args), fieldList(g); want != have {
				t.Errorf("@%s args = %s, want %s", name, have, want)
			}
		}
		for name := range got {
			if _, ok := ref.directives[name]; !ok {
				t.Errorf("served directive @%s is not in the reference", name)
			}
		}
	})
}

func fieldList(fs []refField) string {
	var parts []string
	for _, f := range fs {
		parts = append(parts, f.name+": "+f.typ)
	}
	return strings.Join(parts, ", ")
}

func compareType(t *testing.T, rt *refType, st introType) {
	switch rt.kind {
	case "ENUM":
		var vals []string
		for _, v := range st.EnumValues {
			vals = append(vals, v.Name)
		}
		if strings.Join(vals, " ") != strings.Join(rt.values, " ") {
			t.Errorf("enum %s = %v, want %v (in this order)", rt.name, vals, rt.values)
		}
	case "INPUT_OBJECT":
		got := map[string]string{}
		for _, f := range st.InputFields {
			got[f.Name] = f.Type.render(true)
		}
		compareFieldSet(t, rt.name, rt.fields, got, nil)
	case "OBJECT", "INTERFACE":
		got := map[string]string{}
		gotArgs := map[string]string{}
		for _, f := range st.Fields {
			got[f.Name] = f.Type.render(true)
			var args []refField
			for _, a := range f.Args {
				args = append(args, refField{name: a.Name, typ: a.Type.render(true)})
			}
			gotArgs[f.Name] = fieldList(args)
		}
		compareFieldSet(t, rt.name, rt.fields, got, gotArgs)
	}
}

func compareFieldSet(t *testing.T, typ string, want []refField, got, gotArgs map[string]string) {
	seen := map[string]bool{}
	for _, f := range want {
		seen[f.name] = true
		g, ok := got[f.name]
		if !ok {
			t.Errorf("%s.%s is missing", typ, f.name)
			continue
		}
		if g != f.typ {
			t.Errorf("%s.%s: %s, want %s", typ, f.name, g, f.typ)
		}
		if gotArgs != nil && gotArgs[f.name] != fieldList(f.args) {
			t.Errorf("%s.%s args (%s), want (%s)", typ, f.name, gotArgs[f.name], fieldList(f.args))
		}
	}
	var extra []string
	for name := range got {
		if !seen[name] {
			extra = append(extra, name)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("%s has fields the reference lacks: %v", typ, extra)
	}
}

func compareRoot(t *testing.T, ops []refOp, st introType) {
	type servedField struct {
		typ           string
		printed, args string
	}
	got := map[string]servedField{}
	for _, f := range st.Fields {
		var printed, exact []refField
		for _, a := range f.Args {
			printed = append(printed, refField{name: a.Name, typ: a.Type.render(true)})
			exact = append(exact, refField{name: a.Name, typ: a.Type.render(false)})
		}
		got[f.Name] = servedField{typ: f.Type.render(true), printed: fieldList(printed), args: fieldList(exact)}
	}
	seen := map[string]bool{}
	for _, op := range ops {
		seen[op.name] = true
		g, ok := got[op.name]
		if !ok {
			t.Errorf("%s is missing", op.name)
			continue
		}
		if g.typ != op.returns {
			t.Errorf("%s returns %s, want %s", op.name, g.typ, op.returns)
		}
		if g.printed != fieldList(op.args) {
			t.Errorf("%s args (%s), want (%s)", op.name, g.printed, fieldList(op.args))
		}
		if g.args != fieldList(op.exactArgs) {
			t.Errorf("%s exact arg types (%s), want (%s) as in the example", op.name, g.args, fieldList(op.exactArgs))
		}
	}
	for name := range got {
		if !seen[name] {
			t.Errorf("served %s.%s is not in the reference", st.Name, name)
		}
	}
}
