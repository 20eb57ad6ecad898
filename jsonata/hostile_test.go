package jsonata

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Untrusted expressions must end with an error code, never crash, hang or exhaust the process.
func TestHostileExpressionsAreBounded(t *testing.T) {
	cases := []struct {
		name, expr string
		codes      []string
	}{
		{"infinite recursion", `($f := function($x){ $f($x) + 1 }; $f(1))`, []string{"U1001"}},
		{"infinite tail recursion", `($f := function($x){ $f($x) }; $f(1))`, []string{"U1002"}},
		{"mutual recursion", `($a := function(){ 1 + $b() }; $b := function(){ 1 + $a() }; $a())`, []string{"U1001"}},
		{"cartesian range", `[1..10000].[1..10000]`, []string{"U1003"}},
		{"huge range", `[1..10000000]`, []string{"U1003"}},
		{"string doubling", `$reduce([1..64], function($acc, $i){ $acc & $acc }, "xxxxxxxxxx")`, []string{"U1003"}},
		{"pad bomb", `$pad("x", 1e12)`, []string{"U1003"}},
		{"catastrophic regex", `$match("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!", /^(a+)+$/)`, []string{"U1002"}},
		{"deep nesting", strings.Repeat("(", 5000) + "1" + strings.Repeat(")", 5000), []string{"S0218"}},
		{"eval recursion", `($f := function(){ $eval("$f()") }; $f())`, []string{"U1001"}},
		{"sort bomb", `$sort([1..3000], function($a, $b){ $sort([1..3000]) ~> $count() > 0 })`, []string{"U1002", "U1003"}},
	}
	eng := New(Limits{Timeout: 5 * time.Second, MaxItems: 1_000_000})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			expr, err := eng.Compile(tc.expr)
			if err == nil {
				_, err = expr.Evaluate(context.Background(), nil, Options{})
			}
			var je *Error
			if !errors.As(err, &je) {
				t.Fatalf("want one of %v, got %v", tc.codes, err)
			}
			ok := false
			for _, c := range tc.codes {
				ok = ok || je.Code == c
			}
			if !ok {
				t.Fatalf("want one of %v, got %v", tc.codes, err)
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			t.Logf("%s → %s (heap grew %d MB)", tc.name, je.Code, (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>20)
		})
	}
}

func TestCancellationStopsEvaluation(t *testing.T) {
	expr, err := New(Limits{}).Compile(`($f := function($x){ $f($x) }; $f(1))`)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err = expr.Evaluate(ctx, nil, Options{})
	var je *Error
	if !errors.As(err, &je) || je.Code != "U1002" || !strings.Contains(je.Error(), "canceled") {
		t.Fatalf("want U1002 naming the cancellation, got %v", err)
	}
}

func TestPanicInAnExtensionFunctionIsAnError(t *testing.T) {
	eng := New(Limits{})
	if err := eng.RegisterFunction("boom", "<s:s>", []string{"s"}, func(args []any) (any, error) {
		var m map[string]int
		m["x"] = 1 // nil map write: panics
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	expr, err := eng.Compile(`$boom("a")`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err = expr.Evaluate(context.Background(), nil, Options{}); err == nil {
		t.Fatal("a panicking function returned no error")
	}
}
