package web

import (
	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
)

// gqlDoc is a validated document as the server keeps it: clients send the
// same few queries over and over (hut polls once a second), so what can
// be worked out from the text alone is worked out once.
type gqlDoc struct {
	doc   *ast.Document
	frags map[string]ast.Definition // by name, as graphql-go's ResolveInfo carries them
	// fast holds the operations runQuery executes (gql_exec.go); the
	// others go to graphql-go.
	fast map[*ast.OperationDefinition]bool
}

func newGQLDoc(schema *graphql.Schema, doc *ast.Document) *gqlDoc {
	d := &gqlDoc{doc: doc, frags: map[string]ast.Definition{}, fast: map[*ast.OperationDefinition]bool{}}
	for _, def := range doc.Definitions {
		switch def := def.(type) {
		case *ast.FragmentDefinition:
			if def.Name != nil {
				d.frags[def.Name.Value] = def
			}
		case *ast.OperationDefinition:
		default:
			return d // graphql-go refuses to execute such a document: it words that
		}
	}
	for _, def := range doc.Definitions {
		if op, ok := def.(*ast.OperationDefinition); ok && op.Operation == ast.OperationTypeQuery {
			c := &fastCheck{schema: schema, frags: d.frags, seen: map[string]bool{}}
			d.fast[op] = c.variables(op) && c.set(schema.QueryType(), op.SelectionSet)
		}
	}
	return d
}

// fastCheck decides whether runQuery executes an operation exactly as
// graphql-go would. It admits what the API's clients send: queries whose
// variables are scalars or enums, whose arguments are scalar or enum
// values, and that do not introspect the schema (__schema, __type; the
// introspection types stay graphql-go's). Mutations always go to
// graphql-go, which runs their fields one after another as they must.
type fastCheck struct {
	schema *graphql.Schema
	frags  map[string]ast.Definition
	seen   map[string]bool // fragments checked (or being checked)
}

func (c *fastCheck) variables(op *ast.OperationDefinition) bool {
	for _, def := range op.VariableDefinitions {
		if def.Variable == nil || def.Variable.Name == nil {
			return false
		}
		if t, _ := varType(c.schema, def.Type); t == nil {
			return false
		}
		if def.DefaultValue != nil {
			if _, isVar := def.DefaultValue.(*ast.Variable); isVar {
				return false
			}
		}
	}
	return true
}

// set checks a selection set on composite type t.
func (c *fastCheck) set(t graphql.Type, set *ast.SelectionSet) bool {
	if set == nil || t == nil {
		return set == nil
	}
	for _, sel := range set.Selections {
		switch sel := sel.(type) {
		case *ast.Field:
			if !c.directives(sel.Directives) || !c.field(t, sel) {
				return false
			}
		case *ast.InlineFragment:
			tt := t
			if sel.TypeCondition != nil && sel.TypeCondition.Name != nil {
				tt = c.schema.Type(sel.TypeCondition.Name.Value)
			}
			if !c.directives(sel.Directives) || !c.set(tt, sel.SelectionSet) {
				return false
			}
		case *ast.FragmentSpread:
			if sel.Name == nil || !c.directives(sel.Directives) {
				return false
			}
			if !c.fragment(sel.Name.Value) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (c *fastCheck) fragment(name string) bool {
	if c.seen[name] {
		return true // checked, or being checked further up
	}
	c.seen[name] = true
	f, _ := c.frags[name].(*ast.FragmentDefinition)
	if f == nil || f.TypeCondition == nil || f.TypeCondition.Name == nil {
		return false
	}
	return c.set(c.schema.Type(f.TypeCondition.Name.Value), f.SelectionSet)
}

func (c *fastCheck) field(t graphql.Type, f *ast.Field) bool {
	if f.Name == nil {
		return false
	}
	switch f.Name.Value {
	case "__typename":
		return f.SelectionSet == nil
	case "__schema", "__type":
		return false
	}
	def := fieldDef(c.schema, t, f.Name.Value)
	if def == nil {
		return false
	}
	for _, a := range f.Arguments {
		if !c.argument(def.Args, a) {
			return false
		}
	}
	if f.SelectionSet == nil {
		return true
	}
	elem, _ := unwrapType(def.Type)
	return c.set(elem, f.SelectionSet)
}

// argument admits a variable, or a literal of a scalar or enum argument.
func (c *fastCheck) argument(defs []*graphql.Argument, a *ast.Argument) bool {
	if a.Name == nil {
		return false
	}
	for _, def := range defs {
		if def.PrivateName != a.Name.Value {
			continue
		}
		if _, isVar := a.Value.(*ast.Variable); isVar {
			return true
		}
		t := def.Type
		if nn, ok := t.(*graphql.NonNull); ok {
			t = nn.OfType
		}
		switch t.(type) {
		case *graphql.Scalar, *graphql.Enum:
			return true
		}
		return false
	}
	return false
}

// directives admits @skip and @include with a Boolean literal or
// variable, and any directive that does not affect execution.
func (c *fastCheck) directives(dirs []*ast.Directive) bool {
	for _, d := range dirs {
		if d.Name == nil {
			return false
		}
		if d.Name.Value != "skip" && d.Name.Value != "include" {
			continue
		}
		for _, a := range d.Arguments {
			switch a.Value.(type) {
			case *ast.Variable, *ast.BooleanValue:
			default:
				return false
			}
		}
	}
	return true
}
