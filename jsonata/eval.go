package jsonata

import (
	"context"
	"math"
	"sort"
	"strings"
	"time"
)

// frame is one scope of variable bindings. Frames hold few names, so a slice searched from the
// end (latest binding wins) beats a map; the shared standard-library frame uses a map.
type frame struct {
	names  []string
	values []any
	index  map[string]any
	parent *frame
	// inline storage: a function call's frame is one allocation
	inlineNames  [4]string
	inlineValues [4]any
}

func newFrame(parent *frame) *frame {
	f := &frame{parent: parent}
	f.names, f.values = f.inlineNames[:0], f.inlineValues[:0]
	return f
}

func (f *frame) bind(name string, v any) {
	if f.index != nil {
		f.index[name] = v
		return
	}
	for i := len(f.names) - 1; i >= 0; i-- {
		if f.names[i] == name {
			f.values[i] = v
			return
		}
	}
	if len(f.names) >= 16 {
		f.index = make(map[string]any, 32)
		for i, n := range f.names {
			f.index[n] = f.values[i]
		}
		f.index[name] = v
		f.names, f.values = nil, nil
		return
	}
	f.names = append(f.names, name)
	f.values = append(f.values, v)
}

// lookupBuiltin resolves a name that the standard library defines: the library's function unless
// a frame below the shared library frame binds the name.
func (f *frame) lookupBuiltin(name string, b *builtin) any {
	for fr := f; fr != nil && fr != staticFrame; fr = fr.parent {
		if fr.index != nil {
			if v, ok := fr.index[name]; ok {
				return v
			}
			continue
		}
		for i := len(fr.names) - 1; i >= 0; i-- {
			if fr.names[i] == name {
				return fr.values[i]
			}
		}
	}
	return b
}

func (f *frame) lookup(name string) any {
	for fr := f; fr != nil; fr = fr.parent {
		if fr.index != nil {
			if v, ok := fr.index[name]; ok {
				return v
			}
			continue
		}
		for i := len(fr.names) - 1; i >= 0; i-- {
			if fr.names[i] == name {
				return fr.values[i]
			}
		}
	}
	return nil
}

// run is the state of one evaluation: its bounds and its environment.
type run struct {
	ctx      context.Context
	depth    int
	maxDepth int
	steps    int64
	maxSteps int64
	deadline time.Time
	maxItems int // the largest sequence/array/string an evaluation may build
	// allocated counts items (and string bytes / 16) built over the whole evaluation, so that many
	// medium structures cannot add up to exhausting memory either.
	allocated int64
	maxAlloc  int64
	now       time.Time
	random    func() float64
	engine    *Engine
}

const checkEvery = 1 << 10

func (r *run) enter() error {
	r.depth++
	if r.depth > r.maxDepth {
		return &Error{Code: "U1001", Value: float64(r.maxDepth)}
	}
	r.steps++
	if r.steps&(checkEvery-1) == 0 {
		if r.maxSteps > 0 && r.steps > r.maxSteps {
			return &Error{Code: "U1002", Value: "more than " + formatNumber(float64(r.maxSteps)) + " evaluation steps"}
		}
		if err := r.ctx.Err(); err != nil {
			return &Error{Code: "U1002", Value: err.Error()}
		}
		if !r.deadline.IsZero() && time.Now().After(r.deadline) {
			return &Error{Code: "U1002", Value: "time limit exceeded"}
		}
	}
	return nil
}

// overDeadline checks the evaluation's deadline and context now, not at the next step count:
// evaluations start with it, and expensive built-ins (regexes, sorts) end with it, so an
// expression made of few steps that each take long still stops at its limit.
func (r *run) overDeadline() error {
	if err := r.ctx.Err(); err != nil {
		return &Error{Code: "U1002", Value: err.Error()}
	}
	if !r.deadline.IsZero() && time.Now().After(r.deadline) {
		return &Error{Code: "U1002", Value: "time limit exceeded"}
	}
	return nil
}

func (r *run) checkSize(n int) error {
	if r.maxItems > 0 && n > r.maxItems {
		return &Error{Code: "U1003", Value: "more than " + formatNumber(float64(r.maxItems)) + " items"}
	}
	r.allocated += int64(n)
	if r.maxAlloc > 0 && r.allocated > r.maxAlloc {
		return &Error{Code: "U1003", Value: "more than " + formatNumber(float64(r.maxAlloc)) + " items built in one evaluation"}
	}
	return nil
}

func (r *run) evaluate(expr *node, input any, env *frame) (any, error) {
	if err := r.enter(); err != nil {
		return nil, err
	}
	result, err := r.evaluateNode(expr, input, env)
	r.depth--
	return result, err
}

func (r *run) evaluateNode(expr *node, input any, env *frame) (any, error) {
	var result any
	var err error
	switch expr.kind {
	case kPath:
		result, err = r.evaluatePath(expr, input, env)
	case kBinary:
		result, err = r.evaluateBinary(expr, input, env)
	case kUnary:
		result, err = r.evaluateUnary(expr, input, env)
	case kName:
		result = lookupField(input, expr.str())
	case kLiteral:
		result = expr.value
	case kWildcard:
		result = evaluateWildcard(input)
	case kDescendant:
		result = evaluateDescendants(input)
	case kParent:
		result = env.lookup(expr.slot.label)
	case kCondition:
		result, err = r.evaluateCondition(expr, input, env)
	case kBlock:
		result, err = r.evaluateBlock(expr, input, env)
	case kBind:
		result, err = r.evaluate(expr.rhs, input, env)
		if err == nil {
			env.bind(expr.lhs.str(), result)
		}
	case kRegex:
		result = &regexMatcher{lit: expr.value.(*regexLiteral), position: expr.position}
	case kFunction:
		result, err = r.evaluateFunction(expr, input, env, nil, false)
	case kVariable:
		if expr.str() == "" {
			if a, ok := input.(*Array); ok && a.outerWrapper {
				result = a.Items[0]
			} else {
				result = input
			}
		} else if expr.builtin != nil {
			result = env.lookupBuiltin(expr.name, expr.builtin)
		} else {
			result = env.lookup(expr.name)
		}
	case kLambda:
		result = &lambda{input: input, env: env, params: expr.arguments, signature: expr.signature, body: expr.body, thunk: expr.thunk}
	case kPartial:
		result, err = r.evaluatePartialApplication(expr, input, env)
	case kApply:
		result, err = r.evaluateApplyExpression(expr, input, env)
	case kTransform:
		result = r.evaluateTransformExpression(expr, env)
	}
	if err != nil {
		return nil, err
	}
	for _, p := range expr.predicate {
		if result, err = r.evaluateFilter(p.filterExpr, result, env); err != nil {
			return nil, err
		}
	}
	if expr.kind != kPath && expr.group != nil {
		if result, err = r.evaluateGroupExpression(expr.group.pairs, expr.group.position, result, env); err != nil {
			return nil, err
		}
	}
	if a, ok := result.(*Array); ok && a.sequence && !a.tupleStream {
		if expr.keepArray {
			a.keepSingleton = true
		}
		switch len(a.Items) {
		case 0:
			result = nil
		case 1:
			if !a.keepSingleton {
				result = a.Items[0]
			}
		}
	}
	return result, nil
}

// plainStep reports whether a step is a bare name (or, first, a variable) with nothing attached.
func plainStep(s *node, first bool) bool {
	if !(s.typ == "name" || first && s.typ == "variable") {
		return false
	}
	return s.stages == nil && s.predicate == nil && s.group == nil && s.focus == nil && s.index == nil &&
		!s.tuple && s.ancestor == nil && !s.keepArray && !s.consarray
}

// fastPath walks a path of plain names through objects without building sequences. It reports
// false when the general path evaluation must decide (arrays, sequences, anything attached).
func fastPath(expr *node, input any, env *frame) (any, bool) {
	if !expr.plainPath {
		return nil, false
	}
	cur := input
	for i, step := range expr.steps {
		if step.kind == kVariable {
			if step.name == "" {
				return nil, false
			}
			cur = env.lookup(step.name)
		} else {
			switch c := cur.(type) {
			case *Object:
				cur = c.get(step.name)
			case nil:
				return nil, true
			case *Array:
				return nil, false
			default:
				return nil, true // a field of a string, number or boolean is undefined
			}
		}
		switch c := cur.(type) {
		case nil:
			return nil, true
		case *Array:
			if c.sequence || i < len(expr.steps)-1 {
				return nil, false
			}
		case Callable:
			return nil, false
		}
	}
	return cur, true
}

func (r *run) evaluatePath(expr *node, input any, env *frame) (any, error) {
	if _, isArr := input.(*Array); !isArr {
		if v, ok := fastPath(expr, input, env); ok {
			return v, nil
		}
	}
	var inputSeq *Array
	if a, ok := input.(*Array); ok && expr.steps[0].typ != "variable" {
		inputSeq = a
	} else {
		inputSeq = newSeq(input)
		if input == nil {
			inputSeq = newSeq(nil)
		}
	}
	var resultSeq any
	isTupleStream := false
	var tupleBindings *Array
	for ii, step := range expr.steps {
		if step.tuple {
			isTupleStream = true
		}
		var err error
		if ii == 0 && step.consarray {
			resultSeq, err = r.evaluate(step, inputSeq, env)
		} else if isTupleStream {
			tupleBindings, err = r.evaluateTupleStep(step, inputSeq, tupleBindings, env)
		} else {
			resultSeq, err = r.evaluateStep(step, inputSeq, env, ii == len(expr.steps)-1)
		}
		if err != nil {
			return nil, err
		}
		if !isTupleStream {
			if resultSeq == nil {
				break
			}
			if a, ok := resultSeq.(*Array); ok && len(a.Items) == 0 {
				break
			}
		}
		if step.focus == nil {
			switch rs := resultSeq.(type) {
			case *Array:
				inputSeq = rs
			default:
				inputSeq = newSeq(rs)
			}
		}
	}
	if isTupleStream {
		if expr.tuple {
			resultSeq = tupleBindings
		} else {
			out := newSeq()
			if tupleBindings != nil {
				for _, t := range tupleBindings.Items {
					out.push(t.(map[string]any)["@"])
				}
			}
			resultSeq = out
		}
	}
	if expr.keepSingletonArray {
		a, ok := resultSeq.(*Array)
		if ok && a.cons && !a.sequence {
			a = newSeq(a)
		} else if !ok {
			a = newSeq()
			if resultSeq != nil {
				a.push(resultSeq)
			}
		}
		a.keepSingleton = true
		resultSeq = a
	}
	if expr.group != nil {
		var in any = resultSeq
		if isTupleStream {
			in = tupleBindings
		}
		return r.evaluateGroupExpression(expr.group.pairs, expr.group.position, in, env)
	}
	return resultSeq, nil
}

func frameFromTuple(env *frame, tuple map[string]any) *frame {
	f := newFrame(env)
	for k, v := range tuple {
		f.bind(k, v)
	}
	return f
}

func (r *run) evaluateStep(expr *node, input *Array, env *frame, lastStep bool) (any, error) {
	if expr.typ == "sort" {
		res, err := r.evaluateSortExpression(expr, input, env)
		if err != nil {
			return nil, err
		}
		if expr.stages != nil {
			return r.evaluateStages(expr.stages, res, env)
		}
		return res, nil
	}
	if len(input.Items) == 1 {
		// One input item (a path over one object): no intermediate sequence is needed.
		res, err := r.evaluate(expr, input.Items[0], env)
		if err != nil {
			return nil, err
		}
		for _, st := range expr.stages {
			if res, err = r.evaluateFilter(st.filterExpr, res, env); err != nil {
				return nil, err
			}
		}
		switch x := res.(type) {
		case nil:
			return newSeq(), nil
		case *Array:
			if lastStep && !x.sequence {
				return x, nil
			}
			if x.cons {
				return newSeq(x), nil
			}
			out := &Array{Items: make([]any, len(x.Items)), sequence: true}
			copy(out.Items, x.Items)
			return out, r.checkSize(len(out.Items))
		default:
			return newSeq(res), nil
		}
	}
	result := &Array{Items: make([]any, 0, len(input.Items)), sequence: true}
	for _, item := range input.Items {
		res, err := r.evaluate(expr, item, env)
		if err != nil {
			return nil, err
		}
		for _, st := range expr.stages {
			if res, err = r.evaluateFilter(st.filterExpr, res, env); err != nil {
				return nil, err
			}
		}
		if res != nil {
			result.push(res)
		}
	}
	if lastStep && len(result.Items) == 1 {
		if a, ok := result.Items[0].(*Array); ok && !a.sequence {
			return a, nil
		}
	}
	out := newSeq()
	for _, res := range result.Items {
		if a, ok := res.(*Array); ok && !a.cons {
			out.Items = append(out.Items, a.Items...)
		} else {
			out.push(res)
		}
	}
	if err := r.checkSize(len(out.Items)); err != nil {
		return nil, err
	}
	return out, nil
}

func (r *run) evaluateStages(stages []*node, input any, env *frame) (any, error) {
	result := input
	for _, st := range stages {
		switch st.typ {
		case "filter":
			var err error
			if result, err = r.evaluateFilter(st.filterExpr, result, env); err != nil {
				return nil, err
			}
		case "index":
			if a, ok := result.(*Array); ok {
				for i, t := range a.Items {
					t.(map[string]any)[st.str()] = float64(i)
				}
			}
		}
	}
	return result, nil
}

func cloneTuple(t map[string]any) map[string]any {
	c := make(map[string]any, len(t)+1)
	for k, v := range t {
		c[k] = v
	}
	return c
}

func (r *run) evaluateTupleStep(expr *node, input *Array, tupleBindings *Array, env *frame) (*Array, error) {
	if expr.typ == "sort" {
		var result *Array
		if tupleBindings != nil {
			res, err := r.evaluateSortExpression(expr, tupleBindings, env)
			if err != nil {
				return nil, err
			}
			result = res
		} else {
			sorted, err := r.evaluateSortExpression(expr, input, env)
			if err != nil {
				return nil, err
			}
			result = newSeq()
			result.tupleStream = true
			for i, v := range sorted.Items {
				t := map[string]any{"@": v}
				if expr.index != nil {
					t[*expr.index] = float64(i)
				}
				result.push(t)
			}
		}
		if expr.stages != nil {
			res, err := r.evaluateStages(expr.stages, result, env)
			if err != nil {
				return nil, err
			}
			result, _ = res.(*Array)
		}
		return result, nil
	}
	result := newSeq()
	result.tupleStream = true
	if tupleBindings == nil {
		tupleBindings = newSeq()
		for _, item := range input.Items {
			tupleBindings.push(map[string]any{"@": item})
		}
	}
	for _, tb := range tupleBindings.Items {
		tuple := tb.(map[string]any)
		stepEnv := frameFromTuple(env, tuple)
		res, err := r.evaluate(expr, tuple["@"], stepEnv)
		if err != nil {
			return nil, err
		}
		if res == nil {
			continue
		}
		resArr, ok := res.(*Array)
		if !ok {
			resArr = &Array{Items: []any{res}}
		}
		for bb, item := range resArr.Items {
			t := cloneTuple(tuple)
			if resArr.tupleStream {
				for k, v := range item.(map[string]any) {
					t[k] = v
				}
			} else {
				if expr.focus != nil {
					t[*expr.focus] = item
					t["@"] = tuple["@"]
				} else {
					t["@"] = item
				}
				if expr.index != nil {
					t[*expr.index] = float64(bb)
				}
				if expr.ancestor != nil {
					t[expr.ancestor.label] = tuple["@"]
				}
			}
			result.push(t)
		}
	}
	if expr.stages != nil {
		res, err := r.evaluateStages(expr.stages, result, env)
		if err != nil {
			return nil, err
		}
		result, _ = res.(*Array)
	}
	return result, nil
}

func (r *run) evaluateFilter(predicate *node, input any, env *frame) (any, error) {
	results := newSeq()
	in, isArr := input.(*Array)
	if isArr && in.tupleStream {
		results.tupleStream = true
	}
	if !isArr {
		in = newSeq()
		if input != nil {
			in.push(input)
		} else {
			in.push(nil)
		}
	}
	if predicate.typ == "number" {
		index := int(math.Floor(predicate.value.(float64)))
		if index < 0 {
			index = len(in.Items) + index
		}
		if index >= 0 && index < len(in.Items) {
			item := in.Items[index]
			if item != nil {
				if a, ok := item.(*Array); ok {
					return a, nil
				}
				results.push(item)
			}
		}
		return results, nil
	}
	for index, item := range in.Items {
		context := item
		e := env
		if in.tupleStream {
			t := item.(map[string]any)
			context = t["@"]
			e = frameFromTuple(env, t)
		}
		res, err := r.evaluate(predicate, context, e)
		if err != nil {
			return nil, err
		}
		if ok, err := isNumeric(res); err != nil {
			return nil, err
		} else if ok {
			res = &Array{Items: []any{res}}
		}
		nums, err := isArrayOfNumbers(res)
		if err != nil {
			return nil, err
		}
		if nums {
			for _, v := range res.(*Array).Items {
				ii := int(math.Floor(v.(float64)))
				if ii < 0 {
					ii = len(in.Items) + ii
				}
				if ii == index {
					results.push(item)
				}
			}
		} else if toBoolean(res) == true {
			results.push(item)
		}
	}
	return results, nil
}

func (r *run) evaluateBinary(expr *node, input any, env *frame) (any, error) {
	op := expr.op
	lhs, err := r.evaluate(expr.lhs, input, env)
	if err != nil {
		return nil, err
	}
	if op == opAnd || op == opOr {
		l := boolize(lhs)
		if op == opAnd && !l {
			return false, nil
		}
		if op == opOr && l {
			return true, nil
		}
		rhs, err := r.evaluate(expr.rhs, input, env)
		if err != nil {
			return nil, err
		}
		return boolize(rhs), nil
	}
	rhs, err := r.evaluate(expr.rhs, input, env)
	if err != nil {
		return nil, err
	}
	var result any
	switch op {
	case opAdd, opSub, opMul, opDiv, opMod:
		result, err = evaluateNumeric(lhs, rhs, op)
	case opEq, opNe:
		if lhs == nil || rhs == nil {
			result = false
		} else if op == opEq {
			result = deepEqual(lhs, rhs)
		} else {
			result = !deepEqual(lhs, rhs)
		}
	case opLt, opLe, opGt, opGe:
		result, err = evaluateComparison(lhs, rhs, op)
	case opConcat:
		result, err = r.evaluateStringConcat(lhs, rhs)
	case opRange:
		result, err = r.evaluateRange(lhs, rhs)
	case opIn:
		result = evaluateIncludes(lhs, rhs)
	}
	if err != nil {
		if e, ok := err.(*Error); ok {
			e.Position = expr.position
			e.Token = expr.str()
		}
		return nil, err
	}
	return result, nil
}

func boolize(v any) bool {
	b := toBoolean(v)
	return b == true
}

func evaluateNumeric(lhs, rhs any, op binOp) (any, error) {
	if lhs != nil {
		if ok, err := isNumeric(lhs); err != nil {
			return nil, err
		} else if !ok {
			return nil, &Error{Code: "T2001", Value: lhs}
		}
	}
	if rhs != nil {
		if ok, err := isNumeric(rhs); err != nil {
			return nil, err
		} else if !ok {
			return nil, &Error{Code: "T2002", Value: rhs}
		}
	}
	if lhs == nil || rhs == nil {
		return nil, nil
	}
	l, r := lhs.(float64), rhs.(float64)
	switch op {
	case opAdd:
		return l + r, nil
	case opSub:
		return l - r, nil
	case opMul:
		return l * r, nil
	case opDiv:
		return l / r, nil
	default:
		return math.Mod(l, r), nil
	}
}

func evaluateComparison(lhs, rhs any, op binOp) (any, error) {
	lt, rt := jsTypeOf(lhs), jsTypeOf(rhs)
	lc := lt == "undefined" || lt == "string" || lt == "number"
	rc := rt == "undefined" || rt == "string" || rt == "number"
	if !lc || !rc {
		v := rhs
		if !(lt == "string" || lt == "number") {
			v = lhs
		}
		return nil, &Error{Code: "T2010", Value: v}
	}
	if lhs == nil || rhs == nil {
		return nil, nil
	}
	if lt != rt {
		return nil, &Error{Code: "T2009", Value: lhs, Value2: rhs}
	}
	var c int
	if lt == "number" {
		l, r := lhs.(float64), rhs.(float64)
		switch {
		case l < r:
			c = -1
		case l > r:
			c = 1
		case l == r:
			c = 0
		default: // NaN
			return false, nil
		}
	} else {
		c = compareJSStrings(lhs.(string), rhs.(string))
	}
	switch op {
	case opLt:
		return c < 0, nil
	case opLe:
		return c <= 0, nil
	case opGt:
		return c > 0, nil
	default:
		return c >= 0, nil
	}
}

// compareJSStrings orders strings by UTF-16 code units, as JavaScript's < does.
func compareJSStrings(a, b string) int {
	if isASCII(a) && isASCII(b) {
		return strings.Compare(a, b)
	}
	ua, ub := toUTF16(a), toUTF16(b)
	for i := 0; i < len(ua) && i < len(ub); i++ {
		if ua[i] != ub[i] {
			if ua[i] < ub[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(ua) < len(ub):
		return -1
	case len(ua) > len(ub):
		return 1
	}
	return 0
}

func evaluateIncludes(lhs, rhs any) any {
	if lhs == nil || rhs == nil {
		return false
	}
	items := []any{rhs}
	if a, ok := rhs.(*Array); ok {
		items = a.Items
	}
	for _, it := range items {
		if strictEqual(it, lhs) {
			return true
		}
	}
	return false
}

func (r *run) evaluateStringConcat(lhs, rhs any) (any, error) {
	var ls, rs string
	var err error
	if lhs != nil {
		if ls, err = toJSONataString(lhs, false); err != nil {
			return nil, err
		}
	}
	if rhs != nil {
		if rs, err = toJSONataString(rhs, false); err != nil {
			return nil, err
		}
	}
	if err := r.checkSize((len(ls) + len(rs)) / 16); err != nil {
		return nil, err
	}
	return ls + rs, nil
}

func (r *run) evaluateRange(lhs, rhs any) (any, error) {
	if lhs != nil {
		if f, ok := lhs.(float64); !ok || f != math.Trunc(f) {
			return nil, &Error{Code: "T2003", Value: lhs}
		}
	}
	if rhs != nil {
		if f, ok := rhs.(float64); !ok || f != math.Trunc(f) {
			return nil, &Error{Code: "T2004", Value: rhs}
		}
	}
	if lhs == nil || rhs == nil {
		return nil, nil
	}
	l, h := lhs.(float64), rhs.(float64)
	if l > h {
		return nil, nil
	}
	size := h - l + 1
	if size > 1e7 {
		return nil, &Error{Code: "D2014", Value: size}
	}
	if err := r.checkSize(int(size)); err != nil {
		return nil, err
	}
	out := &Array{Items: make([]any, int(size)), sequence: true}
	for i := range out.Items {
		out.Items[i] = l + float64(i)
	}
	return out, nil
}

func (r *run) evaluateUnary(expr *node, input any, env *frame) (any, error) {
	switch expr.str() {
	case "-":
		v, err := r.evaluate(expr.expression, input, env)
		if err != nil {
			return nil, err
		}
		if v == nil {
			return nil, nil
		}
		if ok, err := isNumeric(v); err != nil {
			return nil, err
		} else if ok {
			return -v.(float64), nil
		}
		return nil, &Error{Code: "D1002", Position: expr.position, Token: "-", Value: v}
	case "[":
		result := &Array{Items: []any{}}
		for _, item := range expr.expressions {
			v, err := r.evaluate(item, input, env)
			if err != nil {
				return nil, err
			}
			if v == nil {
				continue
			}
			if item.str() == "[" && item.typ == "unary" {
				result.push(v)
			} else {
				result = appendValues(result, v).(*Array)
			}
		}
		if err := r.checkSize(len(result.Items)); err != nil {
			return nil, err
		}
		if expr.consarray {
			result.cons = true
		}
		return result, nil
	case "{":
		return r.evaluateGroupExpression(expr.pairs, expr.position, input, env)
	}
	return nil, nil
}

func lookupField(input any, key string) any {
	switch x := input.(type) {
	case *Array:
		result := newSeq()
		for _, it := range x.Items {
			res := lookupField(it, key)
			if res == nil {
				continue
			}
			if a, ok := res.(*Array); ok {
				result.Items = append(result.Items, a.Items...)
			} else {
				result.push(res)
			}
		}
		return result
	case *Object:
		return x.get(key)
	}
	return nil
}

func evaluateWildcard(input any) any {
	results := newSeq()
	if a, ok := input.(*Array); ok && a.outerWrapper && len(a.Items) > 0 {
		input = a.Items[0]
	}
	add := func(v any) {
		if a, ok := v.(*Array); ok {
			results = appendValues(results, flatten(a, nil)).(*Array)
		} else {
			results.push(v)
		}
	}
	switch x := input.(type) {
	case *Object:
		for _, k := range x.keys {
			add(x.get(k))
		}
	case *Array: // JavaScript arrays are objects too: their values are the items
		for _, v := range x.Items {
			add(v)
		}
	}
	return results
}

func flatten(v any, into *Array) *Array {
	if into == nil {
		into = &Array{Items: []any{}}
	}
	if a, ok := v.(*Array); ok {
		for _, it := range a.Items {
			flatten(it, into)
		}
	} else {
		into.push(v)
	}
	return into
}

func evaluateDescendants(input any) any {
	if input == nil {
		return nil
	}
	res := newSeq()
	recurseDescendants(input, res)
	if len(res.Items) == 1 {
		return res.Items[0]
	}
	return res
}

func recurseDescendants(input any, results *Array) {
	switch x := input.(type) {
	case *Array:
		for _, m := range x.Items {
			recurseDescendants(m, results)
		}
	case *Object:
		results.push(x)
		for _, k := range x.keys {
			recurseDescendants(x.get(k), results)
		}
	default:
		results.push(input)
	}
}

func (r *run) evaluateGroupExpression(pairs [][2]*node, position int, input any, env *frame) (any, error) {
	if _, isArr := input.(*Array); !isArr {
		return r.constructObject(pairs, position, input, env)
	}
	result := NewObject()
	type entry struct {
		data      any
		exprIndex int
	}
	groups := map[string]*entry{}
	var order []string
	in, isArr := input.(*Array)
	reduce := isArr && in.tupleStream
	if !isArr {
		in = newSeq()
		if input != nil {
			in.push(input)
		}
	}
	items := in.Items
	if len(items) == 0 && !reduce {
		items = []any{nil}
	}
	for _, item := range items {
		e := env
		context := item
		if reduce {
			t := item.(map[string]any)
			e = frameFromTuple(env, t)
			context = t["@"]
		}
		for pi, pair := range pairs {
			key, err := r.evaluate(pair[0], context, e)
			if err != nil {
				return nil, err
			}
			if key == nil {
				continue
			}
			ks, ok := key.(string)
			if !ok {
				return nil, &Error{Code: "T1003", Position: position, Value: key}
			}
			if g, ok := groups[ks]; ok {
				if g.exprIndex != pi {
					return nil, &Error{Code: "D1009", Position: position, Value: ks}
				}
				g.data = appendValues(g.data, item)
			} else {
				groups[ks] = &entry{data: item, exprIndex: pi}
				order = append(order, ks)
			}
		}
	}
	for _, key := range order {
		g := groups[key]
		context := g.data
		e := env
		if reduce {
			t := reduceTupleStream(g.data)
			context = t["@"]
			delete(t, "@")
			e = frameFromTuple(env, t)
		}
		v, err := r.evaluate(pairs[g.exprIndex][1], context, e)
		if err != nil {
			return nil, err
		}
		if v != nil {
			result.Set(key, v)
		}
	}
	return result, nil
}

func reduceTupleStream(ts any) map[string]any {
	a, ok := ts.(*Array)
	if !ok {
		return cloneTuple(ts.(map[string]any))
	}
	result := cloneTuple(a.Items[0].(map[string]any))
	for _, t := range a.Items[1:] {
		for k, v := range t.(map[string]any) {
			result[k] = appendValues(result[k], v)
		}
	}
	return result
}

func (r *run) evaluateCondition(expr *node, input any, env *frame) (any, error) {
	cond, err := r.evaluate(expr.condition, input, env)
	if err != nil {
		return nil, err
	}
	if toBoolean(cond) == true {
		return r.evaluate(expr.then, input, env)
	}
	if expr.els != nil {
		return r.evaluate(expr.els, input, env)
	}
	return nil, nil
}

func (r *run) evaluateBlock(expr *node, input any, env *frame) (any, error) {
	f := newFrame(env)
	var result any
	for _, e := range expr.expressions {
		var err error
		if result, err = r.evaluate(e, input, f); err != nil {
			return nil, err
		}
	}
	return result, nil
}

func (r *run) evaluateSortExpression(expr *node, input any, env *frame) (*Array, error) {
	in, ok := input.(*Array)
	if !ok {
		in = newSeq(input)
	}
	isTuple := in.tupleStream
	var sortErr error
	termValue := func(term sortTerm, item any) any {
		context, e := item, env
		if isTuple {
			t := item.(map[string]any)
			context, e = t["@"], frameFromTuple(env, t)
		}
		v, err := r.evaluate(term.expression, context, e)
		if err != nil && sortErr == nil {
			sortErr = err
		}
		return v
	}
	less := func(a, b any) (bool, error) {
		comp := 0
		for _, term := range expr.terms {
			if comp != 0 {
				break
			}
			aa, bb := termValue(term, a), termValue(term, b)
			if sortErr != nil {
				return false, sortErr
			}
			if aa == nil {
				if bb == nil {
					comp = 0
				} else {
					comp = 1
				}
				continue
			}
			if bb == nil {
				comp = -1
				continue
			}
			at, bt := jsTypeOf(aa), jsTypeOf(bb)
			if !(at == "string" || at == "number") || !(bt == "string" || bt == "number") {
				v := bb
				if !(at == "string" || at == "number") {
					v = aa
				}
				return false, &Error{Code: "T2008", Position: expr.position, Value: v}
			}
			if at != bt {
				return false, &Error{Code: "T2007", Position: expr.position, Value: aa, Value2: bb}
			}
			var c int
			if at == "number" {
				x, y := aa.(float64), bb.(float64)
				if x < y {
					c = -1
				} else if x > y {
					c = 1
				}
			} else {
				c = compareJSStrings(aa.(string), bb.(string))
			}
			if c == 0 {
				continue
			}
			comp = c
			if term.descending {
				comp = -comp
			}
		}
		return comp == 1, nil
	}
	items, err := mergeSort(in.Items, less)
	if err != nil {
		return nil, err
	}
	out := &Array{Items: items, sequence: true, tupleStream: in.tupleStream}
	return out, nil
}

// mergeSort is the reference's stable merge sort; swap(a, b) reports whether a sorts after b.
func mergeSort(items []any, swap func(a, b any) (bool, error)) ([]any, error) {
	if len(items) <= 1 {
		return append([]any(nil), items...), nil
	}
	mid := len(items) / 2
	left, err := mergeSort(items[:mid], swap)
	if err != nil {
		return nil, err
	}
	right, err := mergeSort(items[mid:], swap)
	if err != nil {
		return nil, err
	}
	out := make([]any, 0, len(items))
	i, j := 0, 0
	for i < len(left) && j < len(right) {
		s, err := swap(left[i], right[j])
		if err != nil {
			return nil, err
		}
		if s {
			out = append(out, right[j])
			j++
		} else {
			out = append(out, left[i])
			i++
		}
	}
	out = append(out, left[i:]...)
	return append(out, right[j:]...), nil
}

var _ = sort.Ints

// constructObject is the group expression over a single (non-array) context, the usual object
// constructor of a mapping: every pair is evaluated once against the context.
func (r *run) constructObject(pairs [][2]*node, position int, context any, env *frame) (any, error) {
	result := newObjectCap(len(pairs))
	var seen []string // keys defined by a pair, even when the value is undefined
	for _, pair := range pairs {
		key, err := r.evaluate(pair[0], context, env)
		if err != nil {
			return nil, err
		}
		if key == nil {
			continue
		}
		ks, ok := key.(string)
		if !ok {
			return nil, &Error{Code: "T1003", Position: position, Value: key}
		}
		for _, k := range seen {
			if k == ks {
				return nil, &Error{Code: "D1009", Position: position, Value: ks}
			}
		}
		seen = append(seen, ks)
		v, err := r.evaluate(pair[1], context, env)
		if err != nil {
			return nil, err
		}
		if v != nil {
			result.Set(ks, v)
		}
	}
	return result, nil
}
