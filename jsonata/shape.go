package jsonata

import (
	"sort"
	"strings"
)

// Shape is the type of an expression's result as far as its text tells, for generating client
// types: object constructors give their literal keys, arrays their items, conditionals a union,
// operators and built-in functions their result types; what comes from the input is unknown,
// with the path it comes from.
type Shape struct {
	Kind       string            // object, array, string, number, boolean, null, unknown, union
	Properties map[string]*Shape // object
	Keys       []string          // object: the properties in source order
	Items      *Shape            // array
	Source     string            // unknown: the input path or expression that produces the value
	Variants   []*Shape          // union
}

// Shape infers the type of the expression's result.
func (x *Expression) Shape() *Shape { return shapeOf(x.ast, map[string]*Shape{}, 0) }

// Inputs lists the input paths the expression reads, in order, without repeats: "customer.id",
// "items[].sku" (a name read for each item of items).
func (x *Expression) Inputs() []string {
	w := &inputWalker{seen: map[string]bool{}, bound: map[string]string{}}
	w.walk(x.ast, "")
	return w.paths
}

func unknown(source string) *Shape { return &Shape{Kind: "unknown", Source: source} }

func prim(kind string) *Shape { return &Shape{Kind: kind} }

// maxShapeDepth bounds inference on deeply nested expressions (they still compile up to 500).
const maxShapeDepth = 64

var builtinResults = map[string]string{
	"string": "string", "uppercase": "string", "lowercase": "string", "substring": "string", "substringBefore": "string",
	"substringAfter": "string", "trim": "string", "pad": "string", "join": "string", "replace": "string", "now": "string",
	"formatNumber": "string", "formatBase": "string", "formatInteger": "string", "fromMillis": "string", "base64encode": "string",
	"base64decode": "string", "encodeUrl": "string", "encodeUrlComponent": "string", "decodeUrl": "string", "decodeUrlComponent": "string",
	"type":   "string",
	"number": "number", "sum": "number", "count": "number", "max": "number", "min": "number", "average": "number", "round": "number",
	"floor": "number", "ceil": "number", "abs": "number", "power": "number", "sqrt": "number", "random": "number", "millis": "number",
	"toMillis": "number", "length": "number", "parseInteger": "number",
	"boolean": "boolean", "not": "boolean", "exists": "boolean", "contains": "boolean",
}

func shapeOf(n *node, vars map[string]*Shape, depth int) *Shape {
	if n == nil || depth > maxShapeDepth {
		return unknown("expression")
	}
	depth++
	switch n.typ {
	case "string":
		return prim("string")
	case "number":
		return prim("number")
	case "value":
		if _, ok := n.value.(bool); ok {
			return prim("boolean")
		}
		return prim("null")
	case "unary":
		switch n.str() {
		case "{":
			obj := &Shape{Kind: "object", Properties: map[string]*Shape{}}
			for _, p := range n.pairs {
				if p[0].typ != "string" {
					continue // a computed key: nothing static to name
				}
				k := p[0].str()
				if _, dup := obj.Properties[k]; !dup {
					obj.Keys = append(obj.Keys, k)
				}
				obj.Properties[k] = shapeOf(p[1], vars, depth)
			}
			return obj
		case "[":
			var items []*Shape
			for _, e := range n.expressions {
				items = append(items, shapeOf(e, vars, depth))
			}
			return &Shape{Kind: "array", Items: union(items...)}
		case "-":
			return prim("number")
		}
	case "binary":
		switch n.str() {
		case "&":
			return prim("string")
		case "+", "-", "*", "/", "%":
			return prim("number")
		case "..":
			return &Shape{Kind: "array", Items: prim("number")}
		default:
			return prim("boolean")
		}
	case "condition":
		if n.els == nil {
			return shapeOf(n.then, vars, depth)
		}
		return union(shapeOf(n.then, vars, depth), shapeOf(n.els, vars, depth))
	case "block":
		scope := make(map[string]*Shape, len(vars))
		for k, v := range vars {
			scope[k] = v
		}
		var last *Shape
		for _, e := range n.expressions {
			last = shapeOf(e, scope, depth)
		}
		if last == nil {
			return unknown("expression")
		}
		return last
	case "bind":
		s := shapeOf(n.rhs, vars, depth)
		if n.lhs != nil {
			vars[n.lhs.str()] = s
		}
		return s
	case "variable":
		if s, ok := vars[n.str()]; ok {
			return s
		}
		return unknown("$" + n.str())
	case "function":
		return callShape(n.procedure, n.arguments, vars, depth)
	case "apply":
		if n.rhs != nil && n.rhs.typ == "function" {
			return callShape(n.rhs.procedure, append([]*node{n.lhs}, n.rhs.arguments...), vars, depth)
		}
	case "path":
		return pathShape(n, vars, depth)
	case "name":
		return unknown(n.str())
	}
	return unknown("expression")
}

func callShape(proc *node, args []*node, vars map[string]*Shape, depth int) *Shape {
	if proc == nil || proc.typ != "variable" {
		return unknown("expression")
	}
	name := proc.str()
	if kind, ok := builtinResults[name]; ok {
		return prim(kind)
	}
	switch name {
	case "map":
		if len(args) == 2 && args[1].typ == "lambda" {
			return &Shape{Kind: "array", Items: shapeOf(args[1].body, vars, depth)}
		}
	case "filter", "sort", "distinct", "reverse", "shuffle", "zip", "append":
		if len(args) > 0 {
			if s := shapeOf(args[0], vars, depth); s.Kind == "array" {
				return s
			}
			return &Shape{Kind: "array", Items: unknown(pathText(args[0]))}
		}
	case "keys", "split":
		return &Shape{Kind: "array", Items: prim("string")}
	case "merge", "spread", "lookup", "each", "sift":
		return unknown("$" + name + "(" + argText(args) + ")")
	}
	return unknown("$" + name + "(" + argText(args) + ")")
}

func argText(args []*node) string {
	if len(args) == 0 {
		return ""
	}
	if t := args[0].typ; t != "path" && t != "name" && t != "variable" {
		return "…"
	}
	return pathText(args[0])
}

// pathShape: a path ending in a constructor builds that shape once per item of what precedes it
// (an array), unless it starts from the context itself ($.{…}); any other path reads the input.
func pathShape(n *node, vars map[string]*Shape, depth int) *Shape {
	if len(n.steps) == 0 {
		return unknown("expression")
	}
	last := n.steps[len(n.steps)-1]
	if last.typ == "unary" && (last.str() == "{" || last.str() == "[") {
		built := shapeOf(last, vars, depth)
		if len(n.steps) == 2 && n.steps[0].typ == "variable" && n.steps[0].str() == "" {
			return built
		}
		return &Shape{Kind: "array", Items: built}
	}
	if len(n.steps) == 1 {
		return shapeOf(last, vars, depth)
	}
	return unknown(pathText(n))
}

// pathText writes a path's names the way the input is addressed (filters left out).
func pathText(n *node) string {
	if n == nil {
		return "expression"
	}
	switch n.typ {
	case "name":
		return n.str()
	case "variable":
		if n.str() == "" {
			return "$"
		}
		return "$" + n.str()
	case "path":
		var parts []string
		for _, st := range n.steps {
			switch st.typ {
			case "name":
				parts = append(parts, st.str())
			case "variable":
				if st.str() != "" {
					parts = append(parts, "$"+st.str())
				}
			default:
				parts = append(parts, "…")
			}
		}
		if len(parts) == 0 {
			return "$"
		}
		return strings.Join(parts, ".")
	}
	return "expression"
}

// union folds shapes: equal primitives collapse, nested unions flatten, one variant is itself.
func union(shapes ...*Shape) *Shape {
	var out []*Shape
	seen := map[string]bool{}
	var add func(s *Shape)
	add = func(s *Shape) {
		if s == nil {
			return
		}
		if s.Kind == "union" {
			for _, v := range s.Variants {
				add(v)
			}
			return
		}
		key := s.Kind
		switch s.Kind {
		case "object":
			key += ":" + strings.Join(sortedKeys(s.Properties), ",")
		case "unknown":
			key += ":" + s.Source
		case "array":
			key += ":" + shapeKey(s.Items)
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, s)
		}
	}
	for _, s := range shapes {
		add(s)
	}
	switch len(out) {
	case 0:
		return unknown("expression")
	case 1:
		return out[0]
	}
	return &Shape{Kind: "union", Variants: out}
}

func shapeKey(s *Shape) string {
	if s == nil {
		return ""
	}
	return s.Kind + "/" + s.Source + "/" + strings.Join(sortedKeys(s.Properties), ",")
}

func sortedKeys(m map[string]*Shape) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// inputWalker collects the input paths an expression reads, relative to the context each part
// of the expression evaluates in.
type inputWalker struct {
	paths []string
	seen  map[string]bool
	bound map[string]string // lambda parameters bound to an input path ($map(items, function($v) …))
	depth int
}

func (w *inputWalker) record(p string) {
	if p != "" && !w.seen[p] {
		w.seen[p] = true
		w.paths = append(w.paths, p)
	}
}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

func (w *inputWalker) walk(n *node, ctx string) {
	if n == nil || w.depth > maxShapeDepth {
		return
	}
	w.depth++
	defer func() { w.depth-- }()
	switch n.typ {
	case "path":
		w.path(n, ctx)
		return
	case "name":
		w.record(join(ctx, n.str()))
		return
	case "function":
		if n.procedure != nil && n.procedure.typ == "variable" && len(n.arguments) == 2 && n.arguments[1].typ == "lambda" {
			switch n.procedure.str() {
			case "map", "filter", "each", "single", "reduce":
				w.walk(n.arguments[0], ctx)
				lambda := n.arguments[1]
				if len(lambda.arguments) > 0 {
					if src := w.pathOf(n.arguments[0], ctx); src != "" {
						w.bound[lambda.arguments[0].str()] = src + "[]"
						w.walk(lambda.body, ctx)
						delete(w.bound, lambda.arguments[0].str())
						return
					}
				}
			}
		}
	}
	for _, c := range []*node{n.lhs, n.rhs, n.expression, n.condition, n.then, n.els, n.pattern, n.update, n.del, n.body, n.filterExpr} {
		w.walk(c, ctx)
	}
	for _, list := range [][]*node{n.expressions, n.arguments, n.predicate, n.stages} {
		for _, c := range list {
			w.walk(c, ctx)
		}
	}
	for _, p := range n.pairs {
		w.walk(p[0], ctx)
		w.walk(p[1], ctx)
	}
}

// pathOf is the input path a node addresses, or "" when it is not a plain input path.
func (w *inputWalker) pathOf(n *node, ctx string) string {
	if n.typ == "name" {
		return join(ctx, n.str())
	}
	if n.typ != "path" {
		return ""
	}
	cur, ok := w.start(n.steps[0], ctx)
	if !ok {
		return ""
	}
	for _, st := range n.steps[1:] {
		if st.typ != "name" {
			return ""
		}
		cur = join(cur, st.str())
	}
	return cur
}

// start is where a path's first step begins: the context for a name or $, the root for $$, a
// bound lambda parameter's path.
func (w *inputWalker) start(first *node, ctx string) (string, bool) {
	switch first.typ {
	case "name":
		return join(ctx, first.str()), true
	case "variable":
		switch v := first.str(); {
		case v == "":
			return ctx, true
		case v == "$":
			return "", true
		default:
			p, ok := w.bound[v]
			return p, ok
		}
	}
	return "", false
}

func (w *inputWalker) path(n *node, ctx string) {
	if len(n.steps) == 0 {
		return
	}
	cur, ok := w.start(n.steps[0], ctx)
	if !ok {
		for _, st := range n.steps {
			w.walk(st, ctx)
		}
		return
	}
	w.filters(n.steps[0], cur)
	for _, st := range n.steps[1:] {
		if st.typ == "name" {
			cur = join(cur, st.str())
			w.filters(st, cur)
			continue
		}
		// A constructor or expression step evaluates once per item of what precedes it.
		w.walk(st, cur+"[]")
		return
	}
	w.record(cur)
}

func (w *inputWalker) filters(step *node, at string) {
	for _, f := range append(append([]*node{}, step.predicate...), step.stages...) {
		w.walk(f.filterExpr, at+"[]")
	}
}
