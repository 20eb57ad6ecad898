package jsonata_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	xjsonata "github.com/xiatechs/jsonata-go"

	"github.com/erpstream/erpstream/jsonata"
)

// The ERP mapping benchmark of ../shared/jsonata-suite/bench: a 2.5 KB contract record mapped to a
// 22-attribute entity. `make bench` runs it for both Go engines and the reference JavaScript engine.

func benchFiles(tb testing.TB) (string, []byte) {
	tb.Helper()
	dir := os.Getenv("JSONATA_BENCH_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "shared", "jsonata-suite", "bench")
	}
	expr, err := os.ReadFile(filepath.Join(dir, "mapping.jsonata"))
	if err != nil {
		tb.Skipf("benchmark files not found (%v); set JSONATA_BENCH_DIR", err)
	}
	input, err := os.ReadFile(filepath.Join(dir, "input.json"))
	if err != nil {
		tb.Fatal(err)
	}
	return string(expr), input
}

var benchNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func BenchmarkERPMapping(b *testing.B) {
	src, input := benchFiles(b)
	b.Run("erpstream", func(b *testing.B) {
		expr, err := jsonata.New(jsonata.Limits{}).Compile(src)
		if err != nil {
			b.Fatal(err)
		}
		in, err := jsonata.DecodeJSON(input)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := expr.Evaluate(ctx, in, jsonata.Options{Now: benchNow}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("erpstream+decode", func(b *testing.B) {
		expr, err := jsonata.New(jsonata.Limits{}).Compile(src)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			in, err := jsonata.DecodeJSON(input)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := expr.Evaluate(ctx, in, jsonata.Options{Now: benchNow}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("xiatechs-jsonata-go", func(b *testing.B) {
		expr, err := xjsonata.Compile(src)
		if err != nil {
			b.Fatal(err)
		}
		var in any
		if err := json.Unmarshal(input, &in); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := expr.Eval(in); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestBenchMappingOutput writes our output of the benchmark mapping as canonical JSON (sorted
// keys), so that bench.js can check it is identical to the reference engine's.
func TestBenchMappingOutput(t *testing.T) {
	src, input := benchFiles(t)
	expr, err := jsonata.New(jsonata.Limits{}).Compile(src)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := jsonata.DecodeJSON(input)
	res, err := expr.Evaluate(context.Background(), in, jsonata.Options{Now: benchNow})
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(jsonata.ToGo(res))
	if err != nil {
		t.Fatal(err)
	}
	if path := os.Getenv("JSONATA_BENCH_OUT"); path != "" {
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil || len(m) != 22 {
		t.Fatalf("mapping produced %d attributes, want 22: %s", len(m), out)
	}
}
