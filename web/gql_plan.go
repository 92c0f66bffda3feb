package web

import (
	"math"
	"reflect"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
)

// What a query selects, worked out per request for runQuery
// (gql_exec.go): fields collected by response key through fragments and
// directives, their arguments, and the variables they use, each the way
// graphql-go works them out.

// planField is one response key of a selection on one object type: the
// field's merged selections, its definition and its arguments, which
// depend on the document and the variables only, so each is worked out
// once per request however many objects the field is resolved on.
type planField struct {
	key    string
	keyAny any // key as ResponsePath wants it, boxed once
	asts   []*ast.Field
	def    *graphql.FieldDefinition // nil for __typename
	args   map[string]any
	subs   []planSub // the selection under the field, by runtime type
}

type planSub struct {
	obj    *graphql.Object
	fields []*planField
}

// sub returns the fields selected under f on runtime type obj, collected
// on first use in this request.
func (q *queryRun) sub(f *planField, obj *graphql.Object) []*planField {
	for _, s := range f.subs {
		if s.obj == obj {
			return s.fields
		}
	}
	sets := make([]*ast.SelectionSet, 0, len(f.asts))
	for _, a := range f.asts {
		if a.SelectionSet != nil {
			sets = append(sets, a.SelectionSet)
		}
	}
	fields := q.collect(obj, sets)
	f.subs = append(f.subs, planSub{obj: obj, fields: fields})
	return fields
}

// collect groups the fields that sets select on obj by response key, in
// document order, following fragments whose type condition obj meets and
// honouring @skip and @include.
func (q *queryRun) collect(obj *graphql.Object, sets []*ast.SelectionSet) []*planField {
	var fields []*planField
	visited := map[string]bool{}
	var walk func(set *ast.SelectionSet)
	walk = func(set *ast.SelectionSet) {
		for _, sel := range set.Selections {
			switch sel := sel.(type) {
			case *ast.Field:
				if q.included(sel.Directives) {
					fields = q.addField(fields, obj, sel)
				}
			case *ast.InlineFragment:
				if q.included(sel.Directives) && q.matches(sel.TypeCondition, obj) && sel.SelectionSet != nil {
					walk(sel.SelectionSet)
				}
			case *ast.FragmentSpread:
				if sel.Name == nil || visited[sel.Name.Value] || !q.included(sel.Directives) {
					continue
				}
				visited[sel.Name.Value] = true
				frag, _ := q.doc.frags[sel.Name.Value].(*ast.FragmentDefinition)
				if frag != nil && q.matches(frag.TypeCondition, obj) && frag.SelectionSet != nil {
					walk(frag.SelectionSet)
				}
			}
		}
	}
	for _, set := range sets {
		walk(set)
	}
	return fields
}

// addField adds one field selection to fields, merging it into the entry
// of its response key.
func (q *queryRun) addField(fields []*planField, obj *graphql.Object, sel *ast.Field) []*planField {
	key := responseKey(sel)
	for _, f := range fields {
		if f.key == key {
			f.asts = append(f.asts, sel)
			return fields
		}
	}
	name := ""
	if sel.Name != nil {
		name = sel.Name.Value
	}
	f := &planField{key: key, keyAny: key, asts: []*ast.Field{sel}}
	if name != "__typename" {
		f.def = obj.Fields()[name]
		if f.def == nil {
			return fields // as graphql-go: a field the type lacks is left out
		}
		f.args = argValues(f.def.Args, sel.Arguments, q.vars)
	}
	return append(fields, f)
}

func responseKey(f *ast.Field) string {
	if f.Alias != nil && f.Alias.Value != "" {
		return f.Alias.Value
	}
	if f.Name != nil {
		return f.Name.Value
	}
	return ""
}

// matches reports whether a fragment with type condition cond applies to
// obj (no condition: always).
func (q *queryRun) matches(cond *ast.Named, obj *graphql.Object) bool {
	if cond == nil || cond.Name == nil {
		return true
	}
	switch t := q.schema.Type(cond.Name.Value).(type) {
	case *graphql.Object:
		return t.Name() == obj.Name()
	case *graphql.Interface:
		return q.schema.IsPossibleType(t, obj)
	case *graphql.Union:
		return q.schema.IsPossibleType(t, obj)
	}
	return false
}

// included evaluates @skip(if:) and @include(if:) as graphql-go does:
// the last of each counts, and either can leave the selection out.
func (q *queryRun) included(dirs []*ast.Directive) bool {
	var skip, include *ast.Directive
	for _, d := range dirs {
		switch {
		case d.Name == nil:
		case d.Name.Value == graphql.SkipDirective.Name:
			skip = d
		case d.Name.Value == graphql.IncludeDirective.Name:
			include = d
		}
	}
	if skip != nil {
		if v, ok := argValues(graphql.SkipDirective.Args, skip.Arguments, q.vars)["if"].(bool); ok && v {
			return false
		}
	}
	if include != nil {
		if v, ok := argValues(graphql.IncludeDirective.Args, include.Arguments, q.vars)["if"].(bool); ok && !v {
			return false
		}
	}
	return true
}

// argValues works out a field's or directive's arguments the way
// graphql-go does: the given value (a variable's or a literal's), else
// the default; null ones are left out. fastCheck (gql_doc.go) admits
// only arguments of scalar and enum types.
func argValues(defs []*graphql.Argument, asts []*ast.Argument, vars map[string]any) map[string]any {
	if len(defs) == 0 {
		return nil
	}
	args := make(map[string]any, len(defs))
	for _, def := range defs {
		var v any
		for _, a := range asts {
			if a.Name != nil && a.Name.Value == def.PrivateName {
				v = literalValue(a.Value, def.Type, vars)
				break
			}
		}
		if nullish(v) {
			v = def.DefaultValue
		}
		if !nullish(v) {
			args[def.PrivateName] = v
		}
	}
	return args
}

// literalValue is the value of an argument of a scalar or enum type.
func literalValue(v ast.Value, t graphql.Type, vars map[string]any) any {
	if vr, ok := v.(*ast.Variable); ok {
		if vr.Name == nil {
			return nil
		}
		return vars[vr.Name.Value]
	}
	if nn, ok := t.(*graphql.NonNull); ok {
		t = nn.OfType
	}
	switch t := t.(type) {
	case *graphql.Scalar:
		return t.ParseLiteral(v)
	case *graphql.Enum:
		return t.ParseLiteral(v)
	}
	return nil
}

// coerceVariables turns the request's variables into the values the
// resolvers see, as graphql-go does for scalar and enum variables. It
// reports false for any value graphql-go would refuse.
func coerceVariables(schema *graphql.Schema, op *ast.OperationDefinition, input map[string]any) (map[string]any, bool) {
	vars := make(map[string]any, len(op.VariableDefinitions))
	for _, def := range op.VariableDefinitions {
		name := def.Variable.Name.Value
		t, nonNull := varType(schema, def.Type)
		in := input[name]
		var v any
		switch {
		case !nullish(in):
			if v = parseValue(t, in); nullish(v) {
				return nil, false
			}
		case nonNull:
			return nil, false
		case def.DefaultValue != nil:
			v = literalValue(def.DefaultValue, t, nil)
		}
		vars[name] = v
	}
	return vars, true
}

func parseValue(t graphql.Type, v any) any {
	switch t := t.(type) {
	case *graphql.Scalar:
		return t.ParseValue(v)
	case *graphql.Enum:
		return t.ParseValue(v)
	}
	return nil
}

// varType returns the scalar or enum type of a variable definition (nil
// for any other) and whether it is non-null.
func varType(schema *graphql.Schema, t ast.Type) (graphql.Type, bool) {
	nonNull := false
	if nn, ok := t.(*ast.NonNull); ok {
		t, nonNull = nn.Type, true
	}
	named, ok := t.(*ast.Named)
	if !ok || named.Name == nil {
		return nil, nonNull
	}
	switch st := schema.Type(named.Name.Value).(type) {
	case *graphql.Scalar:
		return st, nonNull
	case *graphql.Enum:
		return st, nonNull
	}
	return nil, nonNull
}

// nullish is graphql-go's notion of no value: nil, a nil pointer, or NaN
// (also behind a pointer).
func nullish(v any) bool {
	switch v.(type) {
	case nil:
		return true
	case string, bool, int, int64, int32:
		return false
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return true
		}
		rv = rv.Elem()
	}
	switch rv.Kind() {
	case reflect.Float32, reflect.Float64:
		return math.IsNaN(rv.Float())
	}
	return false
}
