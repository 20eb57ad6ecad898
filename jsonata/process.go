package jsonata

// process is the reference's post-parse stage: it flattens location paths into steps with
// predicates and stages, resolves parent (%) references and marks tail calls.
func (p *parser) process(expr *node) (*node, error) {
	var result *node
	var err error
	switch expr.typ {
	case "binary":
		switch expr.str() {
		case ".":
			lstep, err := p.process(expr.lhs)
			if err != nil {
				return nil, err
			}
			if lstep.typ == "path" {
				result = lstep
			} else {
				result = &node{typ: "path", steps: []*node{lstep}}
			}
			if lstep.typ == "parent" {
				result.seekingParent = []*slot{lstep.slot}
			}
			rest, err := p.process(expr.rhs)
			if err != nil {
				return nil, err
			}
			if rest.typ == "path" {
				result.steps = append(result.steps, rest.steps...)
			} else {
				if rest.predicate != nil {
					rest.stages = rest.predicate
					rest.predicate = nil
				}
				result.steps = append(result.steps, rest)
			}
			for _, step := range result.steps {
				if step.typ == "number" || step.typ == "value" {
					return nil, &Error{Code: "S0213", Position: step.position, Value: step.value}
				}
				if step.typ == "string" {
					step.typ = "name"
				}
			}
			for _, step := range result.steps {
				if step.keepArray {
					result.keepSingletonArray = true
				}
			}
			first := result.steps[0]
			if first.typ == "unary" && first.str() == "[" {
				first.consarray = true
			}
			last := result.steps[len(result.steps)-1]
			if last.typ == "unary" && last.str() == "[" {
				last.consarray = true
			}
			if err := p.resolveAncestry(result); err != nil {
				return nil, err
			}
		case "[":
			result, err = p.process(expr.lhs)
			if err != nil {
				return nil, err
			}
			step := result
			usePredicate := true
			if result.typ == "path" {
				step = result.steps[len(result.steps)-1]
				usePredicate = false
			}
			if step.group != nil {
				return nil, &Error{Code: "S0209", Position: expr.position}
			}
			predicate, err := p.process(expr.rhs)
			if err != nil {
				return nil, err
			}
			if predicate.seekingParent != nil {
				for _, sl := range predicate.seekingParent {
					if sl.level == 1 {
						if _, err := p.seekParent(step, sl); err != nil {
							return nil, err
						}
					} else {
						sl.level--
					}
				}
				pushAncestry(step, predicate)
			}
			f := &node{typ: "filter", filterExpr: predicate, position: expr.position}
			if usePredicate {
				step.predicate = append(step.predicate, f)
			} else {
				step.stages = append(step.stages, f)
			}
		case "{":
			result, err = p.process(expr.lhs)
			if err != nil {
				return nil, err
			}
			if result.group != nil {
				return nil, &Error{Code: "S0210", Position: expr.position}
			}
			g := &groupSpec{position: expr.position}
			for _, pr := range expr.pairs {
				k, err := p.process(pr[0])
				if err != nil {
					return nil, err
				}
				v, err := p.process(pr[1])
				if err != nil {
					return nil, err
				}
				g.pairs = append(g.pairs, [2]*node{k, v})
			}
			result.group = g
		case "^":
			result, err = p.process(expr.lhs)
			if err != nil {
				return nil, err
			}
			if result.typ != "path" {
				result = &node{typ: "path", steps: []*node{result}}
			}
			sortStep := &node{typ: "sort", position: expr.position}
			for _, t := range expr.terms {
				e, err := p.process(t.expression)
				if err != nil {
					return nil, err
				}
				pushAncestry(sortStep, e)
				sortStep.terms = append(sortStep.terms, sortTerm{descending: t.descending, expression: e})
			}
			result.steps = append(result.steps, sortStep)
			if err := p.resolveAncestry(result); err != nil {
				return nil, err
			}
		case ":=":
			result = &node{typ: "bind", value: expr.value, position: expr.position}
			if result.lhs, err = p.process(expr.lhs); err != nil {
				return nil, err
			}
			if result.rhs, err = p.process(expr.rhs); err != nil {
				return nil, err
			}
			pushAncestry(result, result.rhs)
		case "@":
			result, err = p.process(expr.lhs)
			if err != nil {
				return nil, err
			}
			step := result
			if result.typ == "path" {
				step = result.steps[len(result.steps)-1]
			}
			if step.stages != nil || step.predicate != nil {
				return nil, &Error{Code: "S0215", Position: expr.position}
			}
			if step.typ == "sort" {
				return nil, &Error{Code: "S0216", Position: expr.position}
			}
			if expr.keepArray {
				step.keepArray = true
			}
			name := expr.rhs.str()
			step.focus = &name
			step.tuple = true
		case "#":
			result, err = p.process(expr.lhs)
			if err != nil {
				return nil, err
			}
			step := result
			if result.typ == "path" {
				step = result.steps[len(result.steps)-1]
			} else {
				result = &node{typ: "path", steps: []*node{result}}
				if step.predicate != nil {
					step.stages = step.predicate
					step.predicate = nil
				}
			}
			name := expr.rhs.str()
			if step.stages == nil {
				step.index = &name
			} else {
				step.stages = append(step.stages, &node{typ: "index", value: name, position: expr.position})
			}
			step.tuple = true
		case "~>":
			result = &node{typ: "apply", value: expr.value, position: expr.position}
			if result.lhs, err = p.process(expr.lhs); err != nil {
				return nil, err
			}
			if result.rhs, err = p.process(expr.rhs); err != nil {
				return nil, err
			}
			result.keepArray = result.lhs.keepArray || result.rhs.keepArray
		default:
			result = &node{typ: expr.typ, value: expr.value, position: expr.position}
			if result.lhs, err = p.process(expr.lhs); err != nil {
				return nil, err
			}
			if result.rhs, err = p.process(expr.rhs); err != nil {
				return nil, err
			}
			pushAncestry(result, result.lhs)
			pushAncestry(result, result.rhs)
		}
	case "unary":
		result = &node{typ: expr.typ, value: expr.value, position: expr.position}
		switch expr.str() {
		case "[":
			for _, item := range expr.expressions {
				v, err := p.process(item)
				if err != nil {
					return nil, err
				}
				pushAncestry(result, v)
				result.expressions = append(result.expressions, v)
			}
			if result.expressions == nil {
				result.expressions = []*node{}
			}
		case "{":
			for _, pr := range expr.pairs {
				k, err := p.process(pr[0])
				if err != nil {
					return nil, err
				}
				pushAncestry(result, k)
				v, err := p.process(pr[1])
				if err != nil {
					return nil, err
				}
				pushAncestry(result, v)
				result.pairs = append(result.pairs, [2]*node{k, v})
			}
		default:
			if result.expression, err = p.process(expr.expression); err != nil {
				return nil, err
			}
			if expr.str() == "-" && result.expression.typ == "number" {
				result = result.expression
				result.value = -result.value.(float64)
			} else {
				pushAncestry(result, result.expression)
			}
		}
	case "function", "partial":
		result = &node{typ: expr.typ, value: expr.value, position: expr.position}
		for _, a := range expr.arguments {
			v, err := p.process(a)
			if err != nil {
				return nil, err
			}
			pushAncestry(result, v)
			result.arguments = append(result.arguments, v)
		}
		if result.procedure, err = p.process(expr.procedure); err != nil {
			return nil, err
		}
	case "lambda":
		result = &node{typ: expr.typ, arguments: expr.arguments, signature: expr.signature, position: expr.position}
		body, err := p.process(expr.body)
		if err != nil {
			return nil, err
		}
		result.body = tailCallOptimize(body)
	case "condition":
		result = &node{typ: expr.typ, position: expr.position}
		if result.condition, err = p.process(expr.condition); err != nil {
			return nil, err
		}
		pushAncestry(result, result.condition)
		if result.then, err = p.process(expr.then); err != nil {
			return nil, err
		}
		pushAncestry(result, result.then)
		if expr.els != nil {
			if result.els, err = p.process(expr.els); err != nil {
				return nil, err
			}
			pushAncestry(result, result.els)
		}
	case "transform":
		result = &node{typ: expr.typ, position: expr.position}
		if result.pattern, err = p.process(expr.pattern); err != nil {
			return nil, err
		}
		if result.update, err = p.process(expr.update); err != nil {
			return nil, err
		}
		if expr.del != nil {
			if result.del, err = p.process(expr.del); err != nil {
				return nil, err
			}
		}
	case "block":
		result = &node{typ: expr.typ, position: expr.position}
		for _, item := range expr.expressions {
			part, err := p.process(item)
			if err != nil {
				return nil, err
			}
			pushAncestry(result, part)
			if part.consarray || (part.typ == "path" && part.steps[0].consarray) {
				result.consarray = true
			}
			result.expressions = append(result.expressions, part)
		}
	case "name":
		result = &node{typ: "path", steps: []*node{expr}}
		if expr.keepArray {
			result.keepSingletonArray = true
		}
	case "parent":
		result = &node{typ: "parent", slot: &slot{label: "!" + itoa(p.ancestorLabel), level: 1, index: p.ancestorIndex}}
		p.ancestorLabel++
		p.ancestorIndex++
		p.ancestry = append(p.ancestry, result)
	case "string", "number", "value", "wildcard", "descendant", "variable", "regex":
		result = expr
	case "operator":
		v := expr.str()
		if v == "and" || v == "or" || v == "in" {
			expr.typ = "name"
			return p.process(expr)
		} else if v == "?" {
			result = expr
		} else {
			return nil, &Error{Code: "S0201", Position: expr.position, Token: expr.value}
		}
	default:
		code := "S0206"
		if expr.id == "(end)" {
			code = "S0207"
		}
		return nil, &Error{Code: code, Position: expr.position, Token: expr.value}
	}
	if expr.keepArray {
		result.keepArray = true
	}
	return result, nil
}

func tailCallOptimize(expr *node) *node {
	switch {
	case expr.typ == "function" && expr.predicate == nil:
		return &node{typ: "lambda", thunk: true, arguments: []*node{}, position: expr.position, body: expr}
	case expr.typ == "condition":
		expr.then = tailCallOptimize(expr.then)
		if expr.els != nil {
			expr.els = tailCallOptimize(expr.els)
		}
	case expr.typ == "block":
		if n := len(expr.expressions); n > 0 {
			expr.expressions[n-1] = tailCallOptimize(expr.expressions[n-1])
		}
	}
	return expr
}

func (p *parser) seekParent(n *node, sl *slot) (*slot, error) {
	switch n.typ {
	case "name", "wildcard":
		sl.level--
		if sl.level == 0 {
			if n.ancestor != nil {
				p.ancestry[sl.index].slot.label = n.ancestor.label
			}
			n.ancestor = sl
			n.tuple = true
		}
	case "parent":
		sl.level++
	case "block":
		if len(n.expressions) > 0 {
			n.tuple = true
			return p.seekParent(n.expressions[len(n.expressions)-1], sl)
		}
	case "path":
		n.tuple = true
		index := len(n.steps) - 1
		var err error
		sl, err = p.seekParent(n.steps[index], sl)
		index--
		if err != nil {
			return nil, err
		}
		for sl.level > 0 && index >= 0 {
			if sl, err = p.seekParent(n.steps[index], sl); err != nil {
				return nil, err
			}
			index--
		}
	default:
		return nil, &Error{Code: "S0217", Token: n.typ, Position: n.position}
	}
	return sl, nil
}

func pushAncestry(result, value *node) {
	if value.seekingParent != nil || value.typ == "parent" {
		slots := value.seekingParent
		if value.typ == "parent" {
			slots = append(slots, value.slot)
		}
		result.seekingParent = append(result.seekingParent, slots...)
	}
}

func (p *parser) resolveAncestry(path *node) error {
	index := len(path.steps) - 1
	last := path.steps[index]
	slots := last.seekingParent
	if last.typ == "parent" {
		slots = append(slots, last.slot)
	}
	for _, sl := range slots {
		index = len(path.steps) - 2
		for sl.level > 0 {
			if index < 0 {
				path.seekingParent = append(path.seekingParent, sl)
				break
			}
			step := path.steps[index]
			index--
			for index >= 0 && step.focus != nil && path.steps[index].focus != nil {
				step = path.steps[index]
				index--
			}
			var err error
			if sl, err = p.seekParent(step, sl); err != nil {
				return err
			}
		}
	}
	return nil
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}
