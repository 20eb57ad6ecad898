package jsonata

import (
	"context"
	"errors"
	"fmt"

	xjsonata "github.com/xiatechs/jsonata-go"
)

// Interim wraps github.com/xiatechs/jsonata-go until erpstream's own engine replaces it.
// Known limits (../shared/jsonata-suite/README.md): $now()/$millis() read the wall clock instead
// of Env.Now, arithmetic is rounded, there is no time or depth bound, and Bindings are ignored.
// Panics inside the library are turned into errors here.
type Interim struct{}

// Name identifies the engine in logs and benchmarks.
func (Interim) Name() string { return "xiatechs/jsonata-go (interim)" }

// Compile parses src.
func (Interim) Compile(src string) (expr Expression, err error) {
	defer func() {
		if r := recover(); r != nil {
			expr, err = nil, fmt.Errorf("jsonata compile panicked: %v", r)
		}
	}()
	e, err := xjsonata.Compile(src)
	if err != nil {
		return nil, err
	}
	return interimExpr{e: e}, nil
}

type interimExpr struct{ e *xjsonata.Expr }

func (x interimExpr) Eval(ctx context.Context, input any, _ *Env) (out any, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("jsonata evaluation panicked: %v", r)
		}
	}()
	v, err := x.e.Eval(input)
	if errors.Is(err, xjsonata.ErrUndefined) {
		return Undefined, nil
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}
