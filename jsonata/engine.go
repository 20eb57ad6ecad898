package jsonata

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
	"unicode/utf8"
)

// Limits bound what an expression may cost. Zero fields take the defaults.
type Limits struct {
	MaxDepth     int           // evaluation nesting (recursion); U1001 beyond. Default 1000.
	MaxSteps     int64         // evaluation steps; U1002 beyond. Default 50 million.
	Timeout      time.Duration // wall time per evaluation; U1002 beyond. Default none (use the context).
	MaxItems     int           // the largest sequence, array or string an evaluation may build. Default 10 million (the reference's range cap).
	MaxAlloc     int64         // items (and string bytes / 16) built in one evaluation in all. Default 20 million.
	MaxExprBytes int           // compile: longest source accepted. Default 1 MiB.
	// CompileTimeout bounds compiling one expression; S0220 beyond. Default 2 s. Compiling is
	// linear in the source, so this only trips on a machine that is starved.
	CompileTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = 1000
	}
	if l.MaxSteps <= 0 {
		l.MaxSteps = 50_000_000
	}
	if l.MaxItems <= 0 {
		l.MaxItems = 10_000_000
	}
	if l.MaxAlloc <= 0 {
		l.MaxAlloc = 20_000_000
	}
	if l.MaxExprBytes <= 0 {
		l.MaxExprBytes = 1 << 20
	}
	if l.CompileTimeout <= 0 {
		l.CompileTimeout = 2 * time.Second
	}
	return l
}

// Engine compiles expressions with a set of limits and extension functions.
type Engine struct {
	limits Limits
	// env holds the extension functions; its parent holds the standard library. Both are
	// read-only once evaluations run, so they are shared by every evaluation.
	env *frame
}

var (
	staticOnce  sync.Once
	staticFrame *frame
)

// New makes an engine.
func New(limits Limits) *Engine {
	// Built on first use: the library is registered by init functions, which run after
	// package-level variables are initialized.
	staticOnce.Do(func() {
		staticFrame = newFrame(nil)
		for name, b := range builtins {
			staticFrame.bind(name, b)
		}
	})
	return &Engine{limits: limits.withDefaults(), env: newFrame(staticFrame)}
}

// Function is an extension function: it receives validated arguments as engine values.
type Function func(args []any) (any, error)

// RegisterFunction adds $name with a JSONata signature (e.g. "<s-n?:s>"; empty: no validation).
func (e *Engine) RegisterFunction(name, sig string, params []string, fn Function) error {
	var s *signature
	if sig != "" {
		var err error
		if s, err = parseSignature(sig); err != nil {
			return err
		}
	}
	// Register before evaluating: the frame is shared by evaluations without a lock.
	e.env.bind(name, &builtin{name: name, params: params, signature: s,
		fn: func(c callCtx, args []any) (any, error) { return fn(args) }})
	return nil
}

// Expression is a compiled expression, safe for concurrent use.
type Expression struct {
	ast    *node
	engine *Engine
	source string
}

// Compile parses src.
func (e *Engine) Compile(src string) (*Expression, error) {
	if len(src) > e.limits.MaxExprBytes {
		return nil, &Error{Code: "S0219", Value: float64(len(src))}
	}
	if !utf8.ValidString(src) {
		return nil, &Error{Code: "S0201", Token: "invalid UTF-8"}
	}
	ast, err := parse(src, time.Now().Add(e.limits.CompileTimeout))
	if err != nil {
		if e, ok := err.(*Error); ok {
			e.populate()
		}
		return nil, err
	}
	return &Expression{ast: ast, engine: e, source: src}, nil
}

// Options of one evaluation.
type Options struct {
	Now      time.Time      // $now()/$millis(); default time.Now()
	Bindings map[string]any // extra variables, as engine values (see FromGo)
	Random   *rand.Rand     // $random()/$shuffle(); default a seeded-per-call source
	// Root is what $$ refers to; default the input. Mappings evaluate per-item expressions with
	// the item as input and the whole payload as $$.
	Root any
}

// Evaluate runs the expression against input (an engine value: use DecodeJSON or FromGo).
// It returns nil for undefined.
func (x *Expression) Evaluate(ctx context.Context, input any, opts Options) (result any, err error) {
	lim := x.engine.limits
	r := &run{ctx: ctx, maxDepth: lim.MaxDepth, maxSteps: lim.MaxSteps, maxItems: lim.MaxItems, maxAlloc: lim.MaxAlloc, engine: x.engine, now: opts.Now}
	if r.now.IsZero() {
		r.now = time.Now()
	}
	if lim.Timeout > 0 {
		r.deadline = time.Now().Add(lim.Timeout)
	}
	if dl, ok := ctx.Deadline(); ok && (r.deadline.IsZero() || dl.Before(r.deadline)) {
		r.deadline = dl
	}
	rnd := opts.Random
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(uint64(r.now.UnixNano()), 0x9e3779b97f4a7c15))
	}
	r.random = rnd.Float64
	defer func() {
		if p := recover(); p != nil {
			result, err = nil, &Error{Code: "U1002", Value: fmt.Sprintf("internal error: %v", p)}
		}
	}()
	exec := newFrame(x.engine.env)
	for k, v := range opts.Bindings {
		exec.bind(k, v)
	}
	if opts.Root != nil {
		exec.bind("$", opts.Root)
	} else {
		exec.bind("$", input)
	}
	if a, ok := input.(*Array); ok && !a.sequence {
		input = &Array{Items: []any{a}, sequence: true, outerWrapper: true}
	}
	if err := r.overDeadline(); err != nil { // e.g. an earlier expression of the event used the time up
		err.(*Error).populate()
		return nil, err
	}
	res, err := r.evaluate(x.ast, input, exec)
	if err != nil {
		if e, ok := err.(*Error); ok {
			e.populate()
		}
		return nil, err
	}
	if a, ok := res.(*Array); ok && a.sequence {
		res = unwrapSequence(a)
	}
	return res, nil
}

func unwrapSequence(a *Array) any {
	return a
}
