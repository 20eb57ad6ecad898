package jsonata

import "time"

// lambda is a user-defined function (and the partial application of any function).
type lambda struct {
	input     any
	env       *frame
	params    []*node
	signature *signature
	body      *node
	thunk     bool
	native    *builtin // set for a partially applied built-in: the body calls it
	nativeMap []string // parameter names of native, in order
}

func (l *lambda) arity() int      { return len(l.params) }
func (l *lambda) sig() *signature { return l.signature }

// callCtx is what a built-in sees of the evaluation.
type callCtx struct {
	r     *run
	env   *frame
	input any
}

// builtin is a function implemented in Go.
type builtin struct {
	name      string
	params    []string // parameter names (used for partial application and arity)
	signature *signature
	fn        func(c callCtx, args []any) (any, error)
}

func (b *builtin) arity() int      { return len(b.params) }
func (b *builtin) sig() *signature { return b.signature }

// regexMatcher is the function a regex literal evaluates to.
type regexMatcher struct {
	lit      *regexLiteral
	position int
}

func (m *regexMatcher) arity() int      { return 2 }
func (m *regexMatcher) sig() *signature { return nil }

func (r *run) evaluateFunction(expr *node, input any, env *frame, applyTo any, hasApplyTo bool) (any, error) {
	proc, err := r.evaluate(expr.procedure, input, env)
	if err != nil {
		return nil, err
	}
	if proc == nil && expr.procedure.typ == "path" && env.lookup(expr.procedure.steps[0].str()) != nil {
		return nil, &Error{Code: "T1005", Position: expr.position, Token: expr.procedure.steps[0].str()}
	}
	args := make([]any, 0, len(expr.arguments)+1)
	if hasApplyTo {
		args = append(args, applyTo)
	}
	for _, a := range expr.arguments {
		v, err := r.evaluate(a, input, env)
		if err != nil {
			return nil, err
		}
		args = append(args, v)
	}
	procName := ""
	if expr.procedure.typ == "path" {
		procName = expr.procedure.steps[0].str()
	} else {
		procName = expr.procedure.str()
	}
	result, err := r.apply(proc, args, input, env)
	if err != nil {
		if e, ok := err.(*Error); ok {
			if e.Position == 0 {
				e.Position = expr.position
			}
			if e.Token == nil {
				e.Token = procName
			}
		}
		return nil, err
	}
	return result, nil
}

// apply calls proc and runs the trampoline for tail calls.
func (r *run) apply(proc any, args []any, input any, env *frame) (any, error) {
	result, err := r.applyInner(proc, args, input, env)
	if err != nil {
		return nil, err
	}
	for {
		l, ok := result.(*lambda)
		if !ok || !l.thunk {
			return result, nil
		}
		if err := r.enter(); err != nil { // a tail-recursive loop still spends its budget
			return nil, err
		}
		r.depth--
		next, err := r.evaluate(l.body.procedure, l.input, l.env)
		if err != nil {
			return nil, err
		}
		evaluated := make([]any, 0, len(l.body.arguments))
		for _, a := range l.body.arguments {
			v, err := r.evaluate(a, l.input, l.env)
			if err != nil {
				return nil, err
			}
			evaluated = append(evaluated, v)
		}
		if result, err = r.applyInner(next, evaluated, input, env); err != nil {
			if e, ok := err.(*Error); ok && e.Token == nil && l.body.procedure.typ == "variable" {
				e.Token = l.body.procedure.str()
			}
			return nil, err
		}
	}
}

func (r *run) applyInner(proc any, args []any, input any, env *frame) (any, error) {
	fn, ok := proc.(Callable)
	if !ok {
		return nil, &Error{Code: "T1006"}
	}
	validated := args
	if s := fn.sig(); s != nil {
		var err error
		if validated, err = s.validate(args, input); err != nil {
			return nil, err
		}
	}
	switch f := fn.(type) {
	case *lambda:
		return r.applyProcedure(f, validated)
	case *builtin:
		v, err := f.fn(callCtx{r: r, env: env, input: input}, validated)
		if err == nil {
			err = r.overDeadline()
		}
		return v, err
	case *regexMatcher:
		return r.applyRegex(f, validated)
	}
	return nil, &Error{Code: "T1006"}
}

func (r *run) applyProcedure(l *lambda, args []any) (any, error) {
	env := newFrame(l.env)
	for i, p := range l.params {
		var v any
		if i < len(args) {
			v = args[i]
		}
		env.bind(p.str(), v)
	}
	if l.native != nil {
		nargs := make([]any, len(l.nativeMap))
		for i, name := range l.nativeMap {
			nargs[i] = env.lookup(name)
		}
		// As in the reference, a partially applied built-in gets its arguments unvalidated.
		return l.native.fn(callCtx{r: r, env: env, input: l.input}, nargs)
	}
	return r.evaluate(l.body, l.input, env)
}

func (r *run) evaluatePartialApplication(expr *node, input any, env *frame) (any, error) {
	args := make([]any, len(expr.arguments))
	placeholder := make([]bool, len(expr.arguments))
	for i, a := range expr.arguments {
		if a.typ == "operator" && a.str() == "?" {
			placeholder[i] = true
			continue
		}
		v, err := r.evaluate(a, input, env)
		if err != nil {
			return nil, err
		}
		args[i] = v
	}
	proc, err := r.evaluate(expr.procedure, input, env)
	if err != nil {
		return nil, err
	}
	if proc == nil && expr.procedure.typ == "path" && env.lookup(expr.procedure.steps[0].str()) != nil {
		return nil, &Error{Code: "T1007", Position: expr.position, Token: expr.procedure.steps[0].str()}
	}
	switch f := proc.(type) {
	case *lambda:
		return partialApplyProcedure(f, args, placeholder, env), nil
	case *builtin:
		params := make([]*node, len(f.params))
		for i, p := range f.params {
			params[i] = &node{typ: "variable", value: p}
		}
		base := &lambda{env: env, params: params, native: f, nativeMap: f.params, input: input}
		return partialApplyProcedure(base, args, placeholder, env), nil
	}
	tok := expr.procedure.str()
	if expr.procedure.typ == "path" {
		tok = expr.procedure.steps[0].str()
	}
	return nil, &Error{Code: "T1008", Position: expr.position, Token: tok}
}

func partialApplyProcedure(l *lambda, args []any, placeholder []bool, env *frame) *lambda {
	base := l.env
	if base == nil {
		base = env
	}
	e := newFrame(base)
	var unbound []*node
	for i, p := range l.params {
		if i < len(placeholder) && placeholder[i] {
			unbound = append(unbound, p)
			continue
		}
		var v any
		if i < len(args) {
			v = args[i]
		}
		e.bind(p.str(), v)
	}
	return &lambda{input: l.input, env: e, params: unbound, body: l.body, native: l.native, nativeMap: l.nativeMap}
}

var chainLambda *node

func init() {
	n, err := parse("function($f, $g) { function($x){ $g($f($x)) } }", time.Time{})
	if err != nil {
		panic(err)
	}
	chainLambda = n
}

func (r *run) evaluateApplyExpression(expr *node, input any, env *frame) (any, error) {
	lhs, err := r.evaluate(expr.lhs, input, env)
	if err != nil {
		return nil, err
	}
	if expr.rhs.typ == "function" {
		return r.evaluateFunction(expr.rhs, input, env, lhs, true)
	}
	fn, err := r.evaluate(expr.rhs, input, env)
	if err != nil {
		return nil, err
	}
	if !isFunction(fn) {
		return nil, &Error{Code: "T2006", Position: expr.position, Value: fn}
	}
	if isFunction(lhs) {
		chain, err := r.evaluate(chainLambda, nil, env)
		if err != nil {
			return nil, err
		}
		return r.apply(chain, []any{lhs, fn}, nil, env)
	}
	return r.apply(fn, []any{lhs}, nil, env)
}

var transformSignature = mustSignature("<(oa):o>")

func mustSignature(s string) *signature {
	sig, err := parseSignature(s)
	if err != nil {
		panic(err)
	}
	return sig
}

func (r *run) evaluateTransformExpression(expr *node, env *frame) any {
	return &builtin{name: "transform", params: []string{"obj"}, signature: transformSignature,
		fn: func(c callCtx, args []any) (any, error) {
			obj := args[0]
			if obj == nil {
				return nil, nil
			}
			cloneFn := env.lookup("clone")
			if !isFunction(cloneFn) {
				return nil, &Error{Code: "T2013", Position: expr.position}
			}
			result, err := c.r.apply(cloneFn, []any{obj}, nil, env)
			if err != nil {
				return nil, err
			}
			matches, err := c.r.evaluate(expr.pattern, result, env)
			if err != nil {
				return nil, err
			}
			if matches == nil {
				return result, nil
			}
			list := []any{matches}
			if a, ok := matches.(*Array); ok {
				list = a.Items
			}
			for _, match := range list {
				update, err := c.r.evaluate(expr.update, match, env)
				if err != nil {
					return nil, err
				}
				if update != nil {
					uo, ok := update.(*Object)
					if !ok {
						return nil, &Error{Code: "T2011", Position: expr.update.position, Value: update}
					}
					if mo, ok := match.(*Object); ok {
						for _, k := range uo.keys {
							mo.Set(k, uo.get(k))
						}
					}
				}
				if expr.del != nil {
					dels, err := c.r.evaluate(expr.del, match, env)
					if err != nil {
						return nil, err
					}
					if dels != nil {
						val := dels
						da, ok := dels.(*Array)
						if !ok {
							da = &Array{Items: []any{dels}}
						}
						if !isArrayOfStrings(da) {
							return nil, &Error{Code: "T2012", Position: expr.del.position, Value: val}
						}
						if mo, ok := match.(*Object); ok {
							for _, k := range da.Items {
								mo.Delete(k.(string))
							}
						}
					}
				}
			}
			return result, nil
		}}
}
