package jsonata

import (
	"encoding/json"
	"time"
)

type slot struct {
	label string
	level int
	index int
}

type sortTerm struct {
	descending bool
	expression *node
}

type groupSpec struct {
	pairs    [][2]*node
	position int
}

// node is both a parse token and an AST node, as in jsonata-js.
type node struct {
	typ      string
	value    any
	position int

	// Pratt bookkeeping
	id  string
	lbp int

	lhs, rhs    *node
	pairs       [][2]*node // object constructor (unary {) and group-by (binary {)
	terms       []sortTerm
	expression  *node
	expressions []*node
	condition   *node
	then, els   *node
	pattern     *node
	update      *node
	del         *node
	procedure   *node
	arguments   []*node
	body        *node
	signature   *signature
	thunk       bool

	steps     []*node
	predicate []*node
	stages    []*node
	group     *groupSpec

	keepArray          bool
	keepSingletonArray bool
	consarray          bool
	tuple              bool
	focus              *string
	index              *string

	kind nodeKind // typ as a number, set after parsing for fast dispatch
	op   binOp    // the operator of a binary node
	// plainPath: a path of bare names (fastPath applies); name: the str() of a name/variable node
	plainPath bool
	name      string
	// builtin: the standard-library function a variable names, used unless a frame shadows it
	builtin *builtin

	ancestor      *slot
	slot          *slot
	seekingParent []*slot
	filterExpr    *node // for stage nodes of type "filter"
}

func (n *node) str() string {
	s, _ := n.value.(string)
	return s
}

type parser struct {
	lex  *lexer
	src  string
	node *node
	ancestorLabel,
	ancestorIndex int
	ancestry []*node
	depth    int
	// deadline bounds compiling (zero: none); checked every compileCheckEvery tokens.
	deadline time.Time
	tokens   int
}

const compileCheckEvery = 256

const maxParseDepth = 500

func (p *parser) advance(id string, infix bool) error {
	if id != "" && p.node.id != id {
		code := "S0202"
		if p.node.id == "(end)" {
			code = "S0203"
		}
		return &Error{Code: code, Position: p.node.position, Token: p.node.value, Value: id}
	}
	p.tokens++
	if p.tokens%compileCheckEvery == 0 && !p.deadline.IsZero() && time.Now().After(p.deadline) {
		return &Error{Code: "S0220", Position: p.lex.pos, Message: "compiling the expression took longer than its time limit"}
	}
	tok, err := p.lex.next(infix)
	if err != nil {
		return err
	}
	if tok == nil {
		p.node = &node{id: "(end)", typ: "(end)", value: "(end)", position: p.lex.length}
		return nil
	}
	n := &node{value: tok.value, typ: tok.typ, position: tok.position}
	switch tok.typ {
	case "name", "variable":
		n.id = "(name)"
	case "operator":
		op := tok.value.(string)
		if _, ok := operators[op]; !ok || op == "!" || op == "~" {
			return &Error{Code: "S0204", Position: tok.position, Token: op}
		}
		n.id = op
		n.lbp = lbp(op)
	case "string", "number", "value":
		n.id = "(literal)"
	case "regex":
		n.id = "(regex)"
	default:
		return &Error{Code: "S0205", Position: tok.position, Token: tok.value}
	}
	p.node = n
	return nil
}

// lbp is the left binding power of a symbol as the reference's symbol table defines it.
func lbp(id string) int {
	switch id {
	case ".", "+", "-", "*", "/", "%", "=", "<", ">", "!=", "<=", ">=", "&", "and", "or", "in", "~>",
		"??", "(", "[", "^", "{", ":=", "@", "#", "?", "?:":
		return operators[id]
	}
	return 0
}

func (p *parser) expression(rbp int) (*node, error) {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > maxParseDepth {
		return nil, &Error{Code: "S0218", Position: p.node.position, Message: "expression nesting is too deep"}
	}
	t := p.node
	if err := p.advance("", true); err != nil {
		return nil, err
	}
	left, err := p.nud(t)
	if err != nil {
		return nil, err
	}
	for rbp < p.node.lbp {
		t = p.node
		if err := p.advance("", false); err != nil {
			return nil, err
		}
		if left, err = p.led(t, left); err != nil {
			return nil, err
		}
	}
	return left, nil
}

func (p *parser) nud(t *node) (*node, error) {
	switch t.id {
	case "(end)", "(name)", "(literal)", "(regex)", "and", "or", "in":
		return t, nil
	case "-":
		e, err := p.expression(70)
		if err != nil {
			return nil, err
		}
		t.expression, t.typ = e, "unary"
		return t, nil
	case "*":
		t.typ = "wildcard"
		return t, nil
	case "**":
		t.typ = "descendant"
		return t, nil
	case "%":
		t.typ = "parent"
		return t, nil
	case "(":
		var exprs []*node
		for p.node.id != ")" {
			e, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			exprs = append(exprs, e)
			if p.node.id != ";" {
				break
			}
			if err := p.advance(";", false); err != nil {
				return nil, err
			}
		}
		if err := p.advance(")", true); err != nil {
			return nil, err
		}
		t.typ, t.expressions = "block", exprs
		return t, nil
	case "[":
		var items []*node
		if p.node.id != "]" {
			for {
				item, err := p.expression(0)
				if err != nil {
					return nil, err
				}
				if p.node.id == ".." {
					r := &node{typ: "binary", value: "..", position: p.node.position, lhs: item}
					if err := p.advance("..", false); err != nil {
						return nil, err
					}
					if r.rhs, err = p.expression(0); err != nil {
						return nil, err
					}
					item = r
				}
				items = append(items, item)
				if p.node.id != "," {
					break
				}
				if err := p.advance(",", false); err != nil {
					return nil, err
				}
			}
		}
		if err := p.advance("]", true); err != nil {
			return nil, err
		}
		t.expressions, t.typ = items, "unary"
		return t, nil
	case "{":
		return p.objectParser(t, nil)
	case "|":
		var err error
		t.typ = "transform"
		if t.pattern, err = p.expression(0); err != nil {
			return nil, err
		}
		if err := p.advance("|", false); err != nil {
			return nil, err
		}
		if t.update, err = p.expression(0); err != nil {
			return nil, err
		}
		if p.node.id == "," {
			if err := p.advance(",", false); err != nil {
				return nil, err
			}
			if t.del, err = p.expression(0); err != nil {
				return nil, err
			}
		}
		if err := p.advance("|", false); err != nil {
			return nil, err
		}
		return t, nil
	}
	return nil, &Error{Code: "S0211", Token: t.value, Position: t.position}
}

func (p *parser) led(t *node, left *node) (*node, error) {
	switch t.id {
	case ".", "+", "-", "*", "/", "%", "=", "<", ">", "!=", "<=", ">=", "&", "and", "or", "in", "~>":
		bp := operators[t.id]
		rhs, err := p.expression(bp)
		if err != nil {
			return nil, err
		}
		t.lhs, t.rhs, t.typ = left, rhs, "binary"
		return t, nil
	case "??":
		t.typ = "condition"
		t.condition = &node{typ: "function", value: "(", procedure: &node{typ: "variable", value: "exists"}, arguments: []*node{cloneNode(left)}}
		t.then = left
		var err error
		if t.els, err = p.expression(0); err != nil {
			return nil, err
		}
		return t, nil
	case "(":
		return p.invocation(t, left)
	case "[":
		if p.node.id == "]" {
			step := left
			for step != nil && step.typ == "binary" && step.value == "[" {
				step = step.lhs
			}
			step.keepArray = true
			if err := p.advance("]", false); err != nil {
				return nil, err
			}
			return left, nil
		}
		rhs, err := p.expression(operators["]"])
		if err != nil {
			return nil, err
		}
		t.lhs, t.rhs, t.typ = left, rhs, "binary"
		if err := p.advance("]", true); err != nil {
			return nil, err
		}
		return t, nil
	case "^":
		if err := p.advance("(", false); err != nil {
			return nil, err
		}
		var terms []sortTerm
		for {
			term := sortTerm{}
			if p.node.id == "<" {
				if err := p.advance("<", false); err != nil {
					return nil, err
				}
			} else if p.node.id == ">" {
				term.descending = true
				if err := p.advance(">", false); err != nil {
					return nil, err
				}
			}
			e, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			term.expression = e
			terms = append(terms, term)
			if p.node.id != "," {
				break
			}
			if err := p.advance(",", false); err != nil {
				return nil, err
			}
		}
		if err := p.advance(")", false); err != nil {
			return nil, err
		}
		t.lhs, t.terms, t.typ = left, terms, "binary"
		return t, nil
	case "{":
		return p.objectParser(t, left)
	case ":=":
		if left.typ != "variable" {
			return nil, &Error{Code: "S0212", Position: left.position, Token: left.value}
		}
		rhs, err := p.expression(operators[":="] - 1)
		if err != nil {
			return nil, err
		}
		t.lhs, t.rhs, t.typ = left, rhs, "binary"
		return t, nil
	case "@", "#":
		rhs, err := p.expression(operators[t.id])
		if err != nil {
			return nil, err
		}
		if rhs.typ != "variable" {
			return nil, &Error{Code: "S0214", Position: rhs.position, Token: t.id}
		}
		t.lhs, t.rhs, t.typ = left, rhs, "binary"
		return t, nil
	case "?":
		var err error
		t.typ, t.condition = "condition", left
		if t.then, err = p.expression(0); err != nil {
			return nil, err
		}
		if p.node.id == ":" {
			if err := p.advance(":", false); err != nil {
				return nil, err
			}
			if t.els, err = p.expression(0); err != nil {
				return nil, err
			}
		}
		return t, nil
	case "?:":
		var err error
		t.typ, t.condition, t.then = "condition", cloneNode(left), left
		if t.els, err = p.expression(0); err != nil {
			return nil, err
		}
		return t, nil
	}
	return nil, &Error{Code: "S0211", Token: t.value, Position: t.position}
}

func (p *parser) invocation(t, left *node) (*node, error) {
	t.procedure, t.typ = left, "function"
	if p.node.id != ")" {
		for {
			if p.node.typ == "operator" && p.node.id == "?" {
				t.typ = "partial"
				t.arguments = append(t.arguments, p.node)
				if err := p.advance("?", false); err != nil {
					return nil, err
				}
			} else {
				a, err := p.expression(0)
				if err != nil {
					return nil, err
				}
				t.arguments = append(t.arguments, a)
			}
			if p.node.id != "," {
				break
			}
			if err := p.advance(",", false); err != nil {
				return nil, err
			}
		}
	}
	if err := p.advance(")", true); err != nil {
		return nil, err
	}
	if left.typ == "name" && (left.value == "function" || left.value == "\u03BB") {
		for i, a := range t.arguments {
			if a.typ != "variable" {
				return nil, &Error{Code: "S0208", Position: a.position, Token: a.value, Value: i + 1}
			}
		}
		t.typ = "lambda"
		if p.node.id == "<" {
			sigPos := p.node.position
			depth := 1
			sig := "<"
			for depth > 0 && p.node.id != "{" && p.node.id != "(end)" {
				if err := p.advance("", false); err != nil {
					return nil, err
				}
				tok := p.node
				if tok.id == ">" {
					depth--
				} else if tok.id == "<" {
					depth++
				}
				sig += tokenText(tok)
			}
			if err := p.advance(">", false); err != nil {
				return nil, err
			}
			s, err := parseSignature(sig)
			if err != nil {
				if e, ok := err.(*Error); ok {
					e.Position = sigPos + e.offset
				}
				return nil, err
			}
			t.signature = s
		}
		if err := p.advance("{", false); err != nil {
			return nil, err
		}
		body, err := p.expression(0)
		if err != nil {
			return nil, err
		}
		t.body = body
		if err := p.advance("}", false); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func tokenText(n *node) string {
	switch v := n.value.(type) {
	case string:
		return v
	case float64:
		return formatNumber(v)
	case bool:
		if v {
			return "true"
		}
		return "false"
	}
	return "null"
}

func (p *parser) objectParser(t, left *node) (*node, error) {
	var pairs [][2]*node
	if p.node.id != "}" {
		for {
			n, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			if err := p.advance(":", false); err != nil {
				return nil, err
			}
			v, err := p.expression(0)
			if err != nil {
				return nil, err
			}
			pairs = append(pairs, [2]*node{n, v})
			if p.node.id != "," {
				break
			}
			if err := p.advance(",", false); err != nil {
				return nil, err
			}
		}
	}
	if err := p.advance("}", true); err != nil {
		return nil, err
	}
	if left == nil {
		t.pairs, t.typ = pairs, "unary"
	} else {
		t.lhs, t.pairs, t.typ = left, pairs, "binary"
	}
	return t, nil
}

// cloneNode deep-copies an unprocessed parse tree (the reference does JSON.parse(JSON.stringify())).
func cloneNode(n *node) *node {
	if n == nil {
		return nil
	}
	c := *n
	c.lhs, c.rhs = cloneNode(n.lhs), cloneNode(n.rhs)
	c.expression = cloneNode(n.expression)
	c.condition, c.then, c.els = cloneNode(n.condition), cloneNode(n.then), cloneNode(n.els)
	c.pattern, c.update, c.del = cloneNode(n.pattern), cloneNode(n.update), cloneNode(n.del)
	c.procedure, c.body = cloneNode(n.procedure), cloneNode(n.body)
	c.expressions = cloneNodes(n.expressions)
	c.arguments = cloneNodes(n.arguments)
	if n.pairs != nil {
		c.pairs = make([][2]*node, len(n.pairs))
		for i, pr := range n.pairs {
			c.pairs[i] = [2]*node{cloneNode(pr[0]), cloneNode(pr[1])}
		}
	}
	if n.terms != nil {
		c.terms = make([]sortTerm, len(n.terms))
		for i, t := range n.terms {
			c.terms[i] = sortTerm{descending: t.descending, expression: cloneNode(t.expression)}
		}
	}
	return &c
}

func cloneNodes(ns []*node) []*node {
	if ns == nil {
		return nil
	}
	out := make([]*node, len(ns))
	for i, n := range ns {
		out[i] = cloneNode(n)
	}
	return out
}

// parse turns source into a processed AST.
func parse(src string, deadline time.Time) (*node, error) {
	p := &parser{lex: newLexer(src), src: src, deadline: deadline}
	if err := p.advance("", false); err != nil {
		return nil, err
	}
	expr, err := p.expression(0)
	if err != nil {
		return nil, err
	}
	if p.node.id != "(end)" {
		return nil, &Error{Code: "S0201", Position: p.node.position, Token: p.node.value}
	}
	expr, err = p.process(expr)
	if err != nil {
		return nil, err
	}
	if expr.typ == "parent" || expr.seekingParent != nil {
		return nil, &Error{Code: "S0217", Token: expr.typ, Position: expr.position}
	}
	setKinds(expr, map[*node]bool{})
	return expr, nil
}

var _ = json.Marshal

type nodeKind uint8

const (
	kOther nodeKind = iota
	kPath
	kBinary
	kUnary
	kName
	kLiteral
	kWildcard
	kDescendant
	kParent
	kCondition
	kBlock
	kBind
	kRegex
	kFunction
	kVariable
	kLambda
	kPartial
	kApply
	kTransform
)

var kinds = map[string]nodeKind{
	"path": kPath, "binary": kBinary, "unary": kUnary, "name": kName, "string": kLiteral, "number": kLiteral,
	"value": kLiteral, "wildcard": kWildcard, "descendant": kDescendant, "parent": kParent, "condition": kCondition,
	"block": kBlock, "bind": kBind, "regex": kRegex, "function": kFunction, "variable": kVariable, "lambda": kLambda,
	"partial": kPartial, "apply": kApply, "transform": kTransform,
}

type binOp uint8

const (
	opNone binOp = iota
	opAdd
	opSub
	opMul
	opDiv
	opMod
	opEq
	opNe
	opLt
	opLe
	opGt
	opGe
	opConcat
	opRange
	opIn
	opAnd
	opOr
)

var binOps = map[string]binOp{"+": opAdd, "-": opSub, "*": opMul, "/": opDiv, "%": opMod, "=": opEq, "!=": opNe,
	"<": opLt, "<=": opLe, ">": opGt, ">=": opGe, "&": opConcat, "..": opRange, "in": opIn, "and": opAnd, "or": opOr}

// setKinds fills kind and op on every node of a processed tree.
func setKinds(n *node, seen map[*node]bool) {
	if n == nil || seen[n] {
		return
	}
	seen[n] = true
	n.kind = kinds[n.typ]
	n.name = n.str()
	if n.typ == "binary" {
		n.op = binOps[n.str()]
	}
	if n.typ == "variable" {
		n.builtin = builtins[n.name]
	}
	if n.typ == "path" {
		n.plainPath = !n.keepSingletonArray && n.group == nil && !n.tuple
		for i, st := range n.steps {
			n.plainPath = n.plainPath && plainStep(st, i == 0)
		}
	}
	for _, c := range []*node{n.lhs, n.rhs, n.expression, n.condition, n.then, n.els, n.pattern, n.update, n.del, n.procedure, n.body, n.filterExpr} {
		setKinds(c, seen)
	}
	for _, list := range [][]*node{n.expressions, n.arguments, n.steps, n.predicate, n.stages} {
		for _, c := range list {
			setKinds(c, seen)
		}
	}
	for _, p := range n.pairs {
		setKinds(p[0], seen)
		setKinds(p[1], seen)
	}
	if n.group != nil {
		for _, p := range n.group.pairs {
			setKinds(p[0], seen)
			setKinds(p[1], seen)
		}
	}
	for _, t := range n.terms {
		setKinds(t.expression, seen)
	}
}
