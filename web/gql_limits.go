package web

import (
	"fmt"

	"github.com/graphql-go/graphql/language/ast"
)

// checkLimits rejects documents nested deeper than maxDepth or selecting
// more than maxFields fields once fragments are expanded. It runs before
// validation, so fragment cycles are cut here and reported by validation.
func checkLimits(doc *ast.Document) error {
	l := &limitWalker{
		frags:  map[string]*ast.FragmentDefinition{},
		depths: map[string]int{},
		counts: map[string]int{},
		active: map[string]bool{},
	}
	for _, d := range doc.Definitions {
		if f, ok := d.(*ast.FragmentDefinition); ok && f.Name != nil {
			l.frags[f.Name.Value] = f
		}
	}
	// graphql-go's validation recurses forever on a fragment that spreads
	// itself (a fatal stack overflow), so cycles are refused first.
	if err := l.findCycle(); err != nil {
		return err
	}
	for _, d := range doc.Definitions {
		op, ok := d.(*ast.OperationDefinition)
		if !ok {
			continue
		}
		if depth := l.depth(op.SelectionSet); depth > maxDepth {
			return fmt.Errorf("query is too deep: %d levels of nesting, the limit is %d", depth, maxDepth)
		}
		if n := l.count(op.SelectionSet); n > maxFields {
			return fmt.Errorf("query is too complex: it selects more than %d fields (fragments included)", maxFields)
		}
	}
	return nil
}

// limitWalker measures selection sets, memoising per fragment so that
// fragments spread many times cost nothing extra to measure.
type limitWalker struct {
	frags  map[string]*ast.FragmentDefinition
	depths map[string]int
	counts map[string]int
	active map[string]bool // fragments being measured (cycle guard)
}

func (l *limitWalker) depth(set *ast.SelectionSet) int {
	if set == nil {
		return 0
	}
	max := 0
	for _, sel := range set.Selections {
		d := 0
		switch sel := sel.(type) {
		case *ast.Field:
			d = 1 + l.depth(sel.SelectionSet)
		case *ast.InlineFragment:
			d = l.depth(sel.SelectionSet)
		case *ast.FragmentSpread:
			d = l.fragment(sel, l.depths, l.depth)
		}
		if d > max {
			max = d
		}
	}
	return max
}

func (l *limitWalker) count(set *ast.SelectionSet) int {
	if set == nil {
		return 0
	}
	n := 0
	for _, sel := range set.Selections {
		switch sel := sel.(type) {
		case *ast.Field:
			n += 1 + l.count(sel.SelectionSet)
		case *ast.InlineFragment:
			n += l.count(sel.SelectionSet)
		case *ast.FragmentSpread:
			n += l.fragment(sel, l.counts, l.count)
		}
		if n > maxFields {
			return maxFields + 1 // saturate: exponential spreads cannot overflow
		}
	}
	return n
}

// fragment measures a spread's fragment once with measure, caching the
// result in memo; unknown or cyclic fragments measure 0.
func (l *limitWalker) fragment(sp *ast.FragmentSpread, memo map[string]int, measure func(*ast.SelectionSet) int) int {
	if sp.Name == nil {
		return 0
	}
	name := sp.Name.Value
	if v, ok := memo[name]; ok {
		return v
	}
	f := l.frags[name]
	if f == nil || l.active[name] {
		return 0
	}
	l.active[name] = true
	v := measure(f.SelectionSet)
	delete(l.active, name)
	memo[name] = v
	return v
}

// findCycle reports a fragment that spreads itself, directly or not,
// looking at every fragment definition (used or not: validation visits
// them all).
func (l *limitWalker) findCycle() error {
	const (
		unseen = iota
		open
		done
	)
	state := map[string]int{}
	var visit func(name string, set *ast.SelectionSet) error
	spreads := func(set *ast.SelectionSet, fn func(*ast.FragmentSpread) error) error {
		var walk func(*ast.SelectionSet) error
		walk = func(set *ast.SelectionSet) error {
			if set == nil {
				return nil
			}
			for _, sel := range set.Selections {
				switch sel := sel.(type) {
				case *ast.Field:
					if err := walk(sel.SelectionSet); err != nil {
						return err
					}
				case *ast.InlineFragment:
					if err := walk(sel.SelectionSet); err != nil {
						return err
					}
				case *ast.FragmentSpread:
					if err := fn(sel); err != nil {
						return err
					}
				}
			}
			return nil
		}
		return walk(set)
	}
	visit = func(name string, set *ast.SelectionSet) error {
		state[name] = open
		err := spreads(set, func(sp *ast.FragmentSpread) error {
			if sp.Name == nil {
				return nil
			}
			next := sp.Name.Value
			f := l.frags[next]
			switch {
			case f == nil || state[next] == done:
				return nil
			case state[next] == open:
				return fmt.Errorf("fragment %q spreads itself (through %q): fragment cycles are not allowed", next, name)
			}
			return visit(next, f.SelectionSet)
		})
		state[name] = done
		return err
	}
	for name, f := range l.frags {
		if state[name] == unseen {
			if err := visit(name, f.SelectionSet); err != nil {
				return err
			}
		}
	}
	return nil
}
