package web

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/gqlerrors"
	"github.com/graphql-go/graphql/language/ast"
)

// The query executor. graphql-go's own costs more than the database work
// of a typical page: per field it copies a ResolveInfo into closures,
// builds maps and recovers twice, and its result is a tree of maps that
// encoding/json then reflects over and sorts. On hut's jobs page (25 jobs
// with their tasks) that was most of the request.
//
// queryRun calls the same resolvers with the same parameters, so access
// checks and the response budget (gql_cost.go) apply unchanged, and it
// writes the JSON response as it goes, in the document's field order.
// It runs only what it can run exactly as graphql-go would (fastCheck in
// gql_doc.go decides); everything else, and every request whose variables
// do not coerce, goes to graphql.Execute, which also words those errors.

// queryRun is the execution of one query operation.
type queryRun struct {
	ctx    context.Context // the request's: ends it on time
	rctx   context.Context // what resolvers get (see runQuery)
	schema *graphql.Schema
	doc    *gqlDoc
	op     *ast.OperationDefinition
	vars   map[string]any
	out    []byte
	errs   []error
	// The path of what is being resolved, one node per level: a field's
	// node is reused by its next sibling, so a page of results needs no
	// node of its own per field. A path is therefore valid while its field
	// resolves; resolvers only log it, and errors copy it (AsArray).
	stack [64]graphql.ResponsePath
	depth int
}

// at returns the path of key under parent, at the current depth.
func (q *queryRun) at(parent *graphql.ResponsePath, key any) *graphql.ResponsePath {
	if q.depth >= len(q.stack) {
		return &graphql.ResponsePath{Prev: parent, Key: key} // deeper than any query the limits let through
	}
	q.stack[q.depth] = graphql.ResponsePath{Prev: parent, Key: key}
	return &q.stack[q.depth]
}

// runQuery executes op of doc with a response budget of its own: data is
// the JSON of the result, written from the start of buf (nil when the
// result is null). It reports ok=false when the variables do not coerce:
// graphql-go then runs the request and words the error.
func runQuery(ctx context.Context, schema *graphql.Schema, d *gqlDoc, op *ast.OperationDefinition, input map[string]any, buf []byte) (data json.RawMessage, errs []error, ok bool) {
	vars, ok := coerceVariables(schema, op, input)
	if !ok {
		return nil, nil, false
	}
	// Resolvers get the request's values without its cancellation: a
	// query only reads, each statement is short, and a cancellable
	// context makes the SQLite driver start and wake a watcher goroutine
	// around every statement, which on a small machine costs about as much
	// as the statement. The request still ends on time: object stops at
	// the next object once ctx is done, and runQuery answers with its
	// error as graphql-go would. (The budget and cache sit on top, where
	// the resolvers' lookups find them first.)
	rctx := withResponseBudget(withGQLCache(context.WithoutCancel(ctx)))
	q := &queryRun{ctx: ctx, rctx: rctx, schema: schema, doc: d, op: op, vars: vars, out: buf[:0]}
	defer func() {
		if r := recover(); r != nil { // outside any field: a bug in the executor
			data, errs = nil, []error{gqlerrors.FormatError(fmt.Errorf("graphql execution: %v", r))}
		}
	}()
	root := schema.QueryType()
	fields := q.collect(root, []*ast.SelectionSet{op.SelectionSet})
	complete := q.object(root, fields, nil, map[string]any{})
	if err := ctx.Err(); err != nil {
		// as graphql-go: a request that ran out of time answers with that
		return nil, []error{gqlerrors.FormatError(err)}, true
	}
	if !complete {
		return nil, q.errs, true
	}
	return q.out, q.errs, true
}

// object writes the fields of one object value. It returns false, having
// written nothing, when a non-null field came out null: the error is
// recorded and the nearest nullable parent becomes null.
func (q *queryRun) object(obj *graphql.Object, fields []*planField, path *graphql.ResponsePath, source any) bool {
	if q.ctx.Err() != nil {
		return false // runQuery answers with the context's error
	}
	mark := len(q.out)
	q.out = append(q.out, '{')
	for i, f := range fields {
		if i > 0 {
			q.out = append(q.out, ',')
		}
		q.out = appendJSONString(q.out, f.key)
		q.out = append(q.out, ':')
		fp := q.at(path, f.keyAny)
		q.depth++
		ok := q.field(obj, f, fp, source)
		q.depth--
		if !ok {
			q.out = q.out[:mark]
			return false
		}
	}
	q.out = append(q.out, '}')
	return true
}

// field resolves and writes one field of source. A resolver's error or
// panic makes the field null, or its parent if the field is non-null.
func (q *queryRun) field(parent *graphql.Object, f *planField, path *graphql.ResponsePath, source any) (ok bool) {
	if f.def == nil {
		q.out = appendJSONString(q.out, parent.Name())
		return true
	}
	mark, depth := len(q.out), q.depth
	defer func() {
		if r := recover(); r != nil {
			q.out, q.depth = q.out[:mark], depth
			ok = q.fail(f.def.Type, f, path, r)
		}
	}()
	info := graphql.ResolveInfo{
		FieldName: f.def.Name, FieldASTs: f.asts, Path: path, ReturnType: f.def.Type, ParentType: parent,
		Schema: *q.schema, Fragments: q.doc.frags, Operation: q.op, VariableValues: q.vars,
	}
	resolve := f.def.Resolve
	if resolve == nil {
		resolve = graphql.DefaultResolveFn
	}
	v, err := resolve(graphql.ResolveParams{Source: source, Args: f.args, Info: info, Context: q.rctx})
	if thunk, isThunk := v.(func() (any, error)); isThunk && err == nil {
		v, err = thunk()
	}
	if err != nil {
		return q.fail(f.def.Type, f, path, err)
	}
	return q.complete(f.def.Type, f, &info, path, v)
}

// fail records an error at path and writes null, or returns false when t
// is non-null so that the parent becomes null instead.
func (q *queryRun) fail(t graphql.Type, f *planField, path *graphql.ResponsePath, cause any) bool {
	err := graphql.NewLocatedErrorWithPath(cause, graphql.FieldASTsToNodeASTs(f.asts), path.AsArray())
	q.errs = append(q.errs, gqlerrors.FormatError(err))
	if _, nonNull := t.(*graphql.NonNull); nonNull {
		return false
	}
	q.out = append(q.out, "null"...)
	return true
}

// complete writes v as a value of type t; false means a null in a
// non-null position, already recorded.
func (q *queryRun) complete(t graphql.Type, f *planField, info *graphql.ResolveInfo, path *graphql.ResponsePath, v any) bool {
	declared := t
	nonNull := false
	if nn, ok := t.(*graphql.NonNull); ok {
		t, nonNull = nn.OfType, true
	}
	if !nullish(v) {
		switch t := t.(type) {
		case *graphql.Scalar:
			if out, ok := appendBuiltinLeaf(q.out, t, v); ok {
				q.out = out
				return true
			}
			v = t.Serialize(v)
		case *graphql.Enum:
			v = t.Serialize(v)
		case *graphql.List:
			return q.list(t, declared, f, info, path, v)
		case *graphql.Object:
			return q.objectValue(t, declared, f, info, path, v)
		case *graphql.Interface, *graphql.Union:
			obj, err := q.resolveType(t.(graphql.Abstract), info, v)
			if err != nil {
				return q.fail(declared, f, path, err)
			}
			return q.objectValue(obj, declared, f, info, path, v)
		default:
			return q.fail(declared, f, path, fmt.Errorf("cannot complete a value of type %v", t))
		}
	}
	if nullish(v) {
		if nonNull {
			return q.fail(declared, f, path, fmt.Sprintf("Cannot return null for non-nullable field %v.%v.", info.ParentType, info.FieldName))
		}
		q.out = append(q.out, "null"...)
		return true
	}
	q.out = appendJSONValue(q.out, v)
	return true
}

// list writes a list value; declared is its type as the field or the
// enclosing list gives it (non-null or not).
func (q *queryRun) list(t *graphql.List, declared graphql.Type, f *planField, info *graphql.ResolveInfo, path *graphql.ResponsePath, v any) bool {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return q.fail(declared, f, path, fmt.Sprintf("User Error: expected iterable, but did not find one for field %v.%v.", info.ParentType, info.FieldName))
	}
	mark := len(q.out)
	q.out = append(q.out, '[')
	for i := range rv.Len() {
		if i > 0 {
			q.out = append(q.out, ',')
		}
		ip := q.at(path, i)
		q.depth++
		ok := q.complete(t.OfType, f, info, ip, rv.Index(i).Interface())
		q.depth--
		if !ok {
			q.out = q.out[:mark]
			return q.nullParent(declared)
		}
	}
	q.out = append(q.out, ']')
	return true
}

// objectValue writes an object value of runtime type obj.
func (q *queryRun) objectValue(obj *graphql.Object, declared graphql.Type, f *planField, info *graphql.ResolveInfo, path *graphql.ResponsePath, v any) bool {
	if obj.IsTypeOf != nil && !obj.IsTypeOf(graphql.IsTypeOfParams{Value: v, Info: *info, Context: q.rctx}) {
		return q.fail(declared, f, path, fmt.Sprintf(`Expected value of type "%v" but got: %T.`, obj, v))
	}
	if !q.object(obj, q.sub(f, obj), path, v) {
		return q.nullParent(declared)
	}
	return true
}

// nullParent ends a list or object whose non-null part was null (the
// error is recorded): it is null itself, or passes the null on.
func (q *queryRun) nullParent(declared graphql.Type) bool {
	if _, nonNull := declared.(*graphql.NonNull); nonNull {
		return false
	}
	q.out = append(q.out, "null"...)
	return true
}

// resolveType finds the object type of an interface or union value.
func (q *queryRun) resolveType(t graphql.Abstract, info *graphql.ResolveInfo, v any) (*graphql.Object, error) {
	p := graphql.ResolveTypeParams{Value: v, Info: *info, Context: q.rctx}
	var resolve graphql.ResolveTypeFn
	switch a := t.(type) {
	case *graphql.Interface:
		resolve = a.ResolveType
	case *graphql.Union:
		resolve = a.ResolveType
	}
	var obj *graphql.Object
	if resolve != nil {
		obj = resolve(p)
	} else {
		// no ResolveType: the first possible type whose IsTypeOf says so
		for _, pt := range q.schema.PossibleTypes(t) {
			if pt.IsTypeOf != nil && pt.IsTypeOf(graphql.IsTypeOfParams{Value: v, Info: *info, Context: q.rctx}) {
				obj = pt
				break
			}
		}
	}
	if obj == nil {
		return nil, fmt.Errorf("Abstract type %v must resolve to an Object type at runtime for field %v.%v with value %q",
			t, info.ParentType, info.FieldName, fmt.Sprint(v))
	}
	if !q.schema.IsPossibleType(t, obj) {
		return nil, fmt.Errorf("Runtime Object type %q is not a possible type for %q.", obj.Name(), t.Name())
	}
	return obj, nil
}
