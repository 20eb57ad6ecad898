// Package jsonata is erpstream's boundary to a JSONata engine. Mapping code compiles an
// expression once per use-case version and evaluates it per event through these types only,
// so the engine behind them can be replaced without touching the mapping.
package jsonata

import (
	"context"
	"time"
)

// Undefined is the result of an expression that selects nothing. It is distinct from JSON null.
var Undefined = undefinedValue{}

type undefinedValue struct{}

// Env is the evaluation's environment.
type Env struct {
	// Now is what $now() and $millis() return: the event's receive time, so a replay maps alike.
	Now time.Time
	// Bindings are extra variables ($name) visible to the expression.
	Bindings map[string]any
}

// Expression is a compiled expression, safe for concurrent use.
type Expression interface {
	// Eval evaluates against input (values as encoding/json decodes them into any).
	// It returns Undefined when the expression selects nothing.
	Eval(ctx context.Context, input any, env *Env) (any, error)
}

// Engine compiles expressions.
type Engine interface {
	Compile(src string) (Expression, error)
	Name() string
}

// Default is the engine the mapping uses.
var Default Engine = Interim{}
