package web

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"

	"builds/app"
)

// What one GraphQL request may cost. Two limits work together:
//
//   - Up front, a document's cost is estimated from the schema: every
//     field costs 1, a list multiplies what is selected under it by its
//     expected length (a page of 25 for cursors), and fields that carry
//     text weigh their size in KiB (last128KiB weighs 128). A document over
//     maxCost is refused before it runs, HTTP requests and stored
//     user-webhook queries alike.
//   - While it runs, every resolved field is charged to a budget of
//     maxResponseBytes: a fixed overhead plus the length of the text it
//     returns. Estimates can be beaten (a job with 500 tasks), the budget
//     cannot: once spent, fields fail with a message naming the limit
//     instead of being computed, so no request holds more than that much
//     data in memory.
const (
	maxCost          = 10000
	maxResponseBytes = 4 << 20
	fieldOverhead    = 16 // bytes charged per resolved field
	defaultListLen   = 10
)

// listLen is the expected length of each list field, by "Type.field";
// others count defaultListLen. Introspection lists count 1: their sizes
// are the schema's, small and fixed, and the runtime budget covers them.
var listLen = map[string]int{
	"JobCursor.results":                 app.PageSize,
	"SecretCursor.results":              app.PageSize,
	"WebhookDeliveryCursor.results":     app.PageSize,
	"WebhookSubscriptionCursor.results": app.PageSize,
	"JobGroup.jobs":                     app.PageSize,
	"Job.tasks":                         50,
	"Job.artifacts":                     8,
}

// fieldWeight is the cost of text fields beyond 1, in KiB of their
// largest value.
var fieldWeight = map[string]int{
	"Log.last128KiB":                  128,
	"Job.manifest":                    16,
	"WebhookDelivery.requestBody":     64,
	"WebhookDelivery.responseBody":    64,
	"WebhookDelivery.responseHeaders": 8,
	"WebhookSubscription.sample":      8,
	"UserWebhookSubscription.sample":  8,
}

// checkCost refuses a validated document whose estimated cost is over
// maxCost.
func checkCost(schema *graphql.Schema, doc *ast.Document) error {
	c := &costWalker{schema: schema, frags: map[string]*ast.FragmentDefinition{}, memo: map[string]int{}, active: map[string]bool{}}
	for _, d := range doc.Definitions {
		if f, ok := d.(*ast.FragmentDefinition); ok && f.Name != nil {
			c.frags[f.Name.Value] = f
		}
	}
	for _, d := range doc.Definitions {
		op, ok := d.(*ast.OperationDefinition)
		if !ok {
			continue
		}
		var root graphql.Type = schema.QueryType()
		if op.Operation == ast.OperationTypeMutation {
			root = schema.MutationType()
		}
		if n := c.set(root, op.SelectionSet); n > maxCost {
			return fmt.Errorf("query is too expensive: it may cost %s points, the limit is %d "+
				"(a field costs 1, a list multiplies what it selects by its page size, last128KiB weighs 128): ask for fewer jobs or logs at once",
				costText(n), maxCost)
		}
	}
	return nil
}

func costText(n int) string {
	if n > maxCost*100 {
		return fmt.Sprintf("more than %d", maxCost*100)
	}
	return fmt.Sprint(n)
}

// costWalker estimates selection sets against the schema, memoising
// fragments (their type condition fixes their type).
type costWalker struct {
	schema *graphql.Schema
	frags  map[string]*ast.FragmentDefinition
	memo   map[string]int
	active map[string]bool
}

// saturate keeps sums and products bounded: exponential documents end at
// the cap instead of overflowing.
func saturate(n int) int { return min(n, maxCost*100+1) }

func (c *costWalker) set(t graphql.Type, set *ast.SelectionSet) int {
	if set == nil || t == nil {
		return 0
	}
	total := 0
	for _, sel := range set.Selections {
		switch sel := sel.(type) {
		case *ast.Field:
			total = saturate(total + c.field(t, sel))
		case *ast.InlineFragment:
			tt := t
			if sel.TypeCondition != nil && sel.TypeCondition.Name != nil {
				if named := c.schema.Type(sel.TypeCondition.Name.Value); named != nil {
					tt = named
				}
			}
			total = saturate(total + c.set(tt, sel.SelectionSet))
		case *ast.FragmentSpread:
			total = saturate(total + c.fragment(sel))
		}
	}
	return total
}

func (c *costWalker) fragment(sp *ast.FragmentSpread) int {
	if sp.Name == nil {
		return 0
	}
	name := sp.Name.Value
	if v, ok := c.memo[name]; ok {
		return v
	}
	f := c.frags[name]
	if f == nil || c.active[name] || f.TypeCondition == nil || f.TypeCondition.Name == nil {
		return 0
	}
	c.active[name] = true
	v := c.set(c.schema.Type(f.TypeCondition.Name.Value), f.SelectionSet)
	delete(c.active, name)
	c.memo[name] = v
	return v
}

func (c *costWalker) field(parent graphql.Type, f *ast.Field) int {
	if f.Name == nil {
		return 1
	}
	name := f.Name.Value
	def := fieldDef(c.schema, parent, name)
	if def == nil {
		return 1 // __typename, or nothing validation would let through
	}
	key := parent.Name() + "." + name
	cost := 1 + fieldWeight[key]
	if f.SelectionSet == nil {
		return cost
	}
	elem, list := unwrapType(def.Type)
	n := 1
	if list && !isIntrospection(parent.Name()) {
		n = defaultListLen
		if l, ok := listLen[key]; ok {
			n = l
		}
	}
	return saturate(cost + saturate(n*c.set(elem, f.SelectionSet)))
}

// fieldDef finds a field of an object or interface type, introspection
// meta-fields included.
func fieldDef(schema *graphql.Schema, t graphql.Type, name string) *graphql.FieldDefinition {
	if t == schema.QueryType() {
		switch name {
		case "__schema":
			return graphql.SchemaMetaFieldDef
		case "__type":
			return graphql.TypeMetaFieldDef
		}
	}
	switch t := t.(type) {
	case *graphql.Object:
		return t.Fields()[name]
	case *graphql.Interface:
		return t.Fields()[name]
	}
	return nil
}

// unwrapType strips NonNull and List wrappers; list says whether there
// was a list.
func unwrapType(t graphql.Type) (graphql.Type, bool) {
	list := false
	for {
		switch w := t.(type) {
		case *graphql.NonNull:
			t = w.OfType
		case *graphql.List:
			t, list = w.OfType, true
		default:
			return t, list
		}
	}
}

func isIntrospection(typeName string) bool { return len(typeName) > 2 && typeName[:2] == "__" }

// meterIntrospection wraps the shared introspection types once.
var meterIntrospection sync.Once

// responseBudget is the runtime half of the cost limit, one per request.
type responseBudget struct{ left atomic.Int64 }

type budgetKey struct{}

func withResponseBudget(ctx context.Context) context.Context {
	b := &responseBudget{}
	b.left.Store(maxResponseBytes)
	return context.WithValue(ctx, budgetKey{}, b)
}

// errResponseTooLarge is what fields answer once the budget is spent.
func errResponseTooLarge() error {
	return &gqlFieldError{code: "RESPONSE_TOO_LARGE", msg: fmt.Sprintf(
		"response too large: the limit is %d MiB per request; ask for fewer jobs or logs at once", maxResponseBytes>>20)}
}

// meterResolvers wraps every field resolver of the schema so that it
// charges the request's budget: nothing is computed once the budget is
// spent, and a value that overspends it is dropped.
//
// The introspection types (__Schema, __Type, ...) are graphql-go's
// package-level values, shared by every schema of the process: they are
// wrapped once, by the first schema, not once more per server (which
// charged each introspection field once per server built, and raced with
// a server answering meanwhile).
func meterResolvers(schema graphql.Schema) {
	introspection := false
	meterIntrospection.Do(func() { introspection = true })
	for _, t := range schema.TypeMap() {
		obj, ok := t.(*graphql.Object)
		if !ok || isIntrospection(obj.Name()) && !introspection {
			continue
		}
		for _, def := range obj.Fields() {
			inner := def.Resolve
			if inner == nil {
				inner = graphql.DefaultResolveFn
			}
			def.Resolve = func(p graphql.ResolveParams) (any, error) {
				b, _ := p.Context.Value(budgetKey{}).(*responseBudget)
				if b == nil {
					return inner(p)
				}
				if b.left.Load() <= 0 {
					return nil, errResponseTooLarge()
				}
				v, err := inner(p)
				size := int64(fieldOverhead)
				switch s := v.(type) {
				case string:
					size += int64(len(s))
				case *string:
					if s != nil {
						size += int64(len(*s))
					}
				case []byte:
					size += int64(len(s))
				}
				if b.left.Add(-size) < 0 {
					return nil, errResponseTooLarge()
				}
				return v, err
			}
		}
	}
}
