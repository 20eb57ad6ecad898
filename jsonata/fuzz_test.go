package jsonata

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Seeds live in testdata/fuzz/<Target>/ (expressions from the official suite and hostile ones).

func FuzzCompile(f *testing.F) {
	f.Add(`Account.Order.Product[Price > 30].SKU`)
	f.Fuzz(func(t *testing.T, src string) {
		expr, err := New(Limits{}).Compile(src)
		if err != nil {
			var je *Error
			if !errors.As(err, &je) || je.Code == "" {
				t.Fatalf("compile error without a code: %v", err)
			}
			return
		}
		if expr == nil {
			t.Fatal("nil expression without error")
		}
	})
}

func FuzzEvaluate(f *testing.F) {
	f.Add(`$sum(items.(price * qty))`, `{"items":[{"price":2.5,"qty":4},{"price":1,"qty":1}]}`)
	eng := New(Limits{Timeout: 200 * time.Millisecond, MaxDepth: 200, MaxItems: 10_000, MaxAlloc: 100_000})
	f.Fuzz(func(t *testing.T, src, input string) {
		expr, err := eng.Compile(src)
		if err != nil {
			return
		}
		in, err := DecodeJSON([]byte(input))
		if err != nil {
			in = nil
		}
		_, err = expr.Evaluate(context.Background(), in, Options{Now: time.Unix(0, 0)})
		if err != nil {
			var je *Error
			if !errors.As(err, &je) || je.Code == "" {
				t.Fatalf("evaluation error without a code: %v", err)
			}
		}
	})
}
