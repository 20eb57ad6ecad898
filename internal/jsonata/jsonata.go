// Package jsonata is erpstream's boundary to its JSONata engine (package
// github.com/erpstream/erpstream/jsonata) and the only package that imports it: mapping code
// compiles an expression once per use-case version and evaluates it per event through Engine and
// Expression, and every package works in the engine's JSON value model through value.go's names.
package jsonata

import (
	"context"
	"time"

	engine "github.com/erpstream/erpstream/jsonata"
)

// Undefined is the result of an expression that selects nothing. It is distinct from JSON null
// (engine.Null).
var Undefined = undefinedValue{}

type undefinedValue struct{}

// Env is the evaluation's environment.
type Env struct {
	// Now is what $now() and $millis() return: the event's receive time, so a replay maps alike.
	Now time.Time
	// Bindings are extra variables ($name) visible to the expression, as engine values.
	Bindings map[string]any
	// Root is what $$ refers to (nil: the input).
	Root any
}

// Expression is a compiled expression, safe for concurrent use.
type Expression interface {
	// Eval evaluates against input, an engine value (engine.DecodeJSON). It returns Undefined when
	// the expression selects nothing.
	Eval(ctx context.Context, input any, env *Env) (any, error)
}

// Engine compiles expressions.
type Engine interface {
	Compile(src string) (Expression, error)
	Name() string
}

// MappingLimits bound one mapping expression: mappings run on untrusted configuration, per event,
// and must never stall a partition.
var MappingLimits = engine.Limits{
	MaxDepth:     1000,
	MaxSteps:     5_000_000,
	Timeout:      500 * time.Millisecond,
	MaxItems:     1_000_000,
	MaxAlloc:     5_000_000,
	MaxExprBytes: 64 << 10, // the largest real mappings are a few KB; compiling 64 KB takes ~40 ms
}

// Default is the engine the mapping uses.
var Default Engine = Native{engine: engine.New(MappingLimits)}

// Native is erpstream's own JSONata engine.
type Native struct{ engine *engine.Engine }

// NewNative wraps an engine with its own limits and extension functions.
func NewNative(e *engine.Engine) Native { return Native{engine: e} }

// Name identifies the engine in logs and benchmarks.
func (Native) Name() string { return "erpstream/jsonata" }

// Compile parses src.
func (n Native) Compile(src string) (Expression, error) {
	x, err := n.engine.Compile(src)
	if err != nil {
		return nil, err
	}
	return nativeExpr{x: x}, nil
}

type nativeExpr struct{ x *engine.Expression }

func (e nativeExpr) Eval(ctx context.Context, input any, env *Env) (any, error) {
	opts := engine.Options{}
	if env != nil {
		opts.Now, opts.Bindings, opts.Root = env.Now, env.Bindings, env.Root
		if opts.Now.IsZero() {
			// Never the wall clock: a mapping evaluated twice must give the same result.
			opts.Now = time.Unix(0, 0).UTC()
		}
	}
	v, err := e.x.Evaluate(ctx, input, opts)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return Undefined, nil
	}
	return v, nil
}
