package jsonata

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// mappingSource builds a mapping-like expression of about size bytes: an object constructor of
// paths, numbers, strings, function calls and comments, the tokens real mappings are made of.
func mappingSource(size int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `"f%d": a.b[%d].c ? x.y*1.19+%d : $string(c.n)&"-"&[1,2,3][0]`, i, i, i)
		if i%20 == 0 {
			fmt.Fprintf(&b, " /* group %d */", i/20)
		}
	}
	b.WriteString("}")
	return b.String()
}

// Compiling must be linear in the source: the lexer used to copy the rest of the source for
// every number token, so 64 KB took about 16 s. Under the default 2 s compile limit a maximum
// sized mapping expression must compile (it takes milliseconds).
func TestMaximumSizedExpressionCompilesWithinItsLimit(t *testing.T) {
	src := mappingSource(64 << 10)
	if len(src) > 64<<10 {
		t.Fatalf("source is %d bytes", len(src))
	}
	eng := New(Limits{MaxExprBytes: 64 << 10})
	if _, err := eng.Compile(src); err != nil {
		t.Fatalf("compile %d bytes: %v", len(src), err)
	}
}

func TestCompileIsBoundedByItsDeadline(t *testing.T) {
	eng := New(Limits{CompileTimeout: time.Nanosecond})
	_, err := eng.Compile(mappingSource(16 << 10))
	var je *Error
	if !errors.As(err, &je) || je.Code != "S0220" {
		t.Fatalf("want S0220, got %v", err)
	}
}

func TestNumberLiteralsLexLikeTheReference(t *testing.T) {
	for src, want := range map[string]float64{"0": 0, "-1.5": -1.5, "2e3": 2000, "1.25E-2": 0.0125, "10": 10, "1e+2": 100} {
		x, err := New(Limits{}).Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		v, err := x.Evaluate(t.Context(), nil, Options{})
		if err != nil || v != want {
			t.Fatalf("%s = %v (%v), want %v", src, v, err, want)
		}
	}
}

func BenchmarkCompileMaximumMapping(b *testing.B) {
	for _, size := range []int{8 << 10, 64 << 10, 256 << 10} {
		src := mappingSource(size)
		eng := New(Limits{MaxExprBytes: 1 << 20, CompileTimeout: time.Minute})
		b.Run(fmt.Sprintf("%dKB", size>>10), func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				if _, err := eng.Compile(src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
