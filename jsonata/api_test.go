package jsonata

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func eval(t *testing.T, eng *Engine, src, input string, opts Options) any {
	t.Helper()
	x, err := eng.Compile(src)
	if err != nil {
		t.Fatal(err)
	}
	var in any
	if input != "" {
		if in, err = DecodeJSON([]byte(input)); err != nil {
			t.Fatal(err)
		}
	}
	v, err := x.Evaluate(context.Background(), in, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func js(t *testing.T, v any) string {
	t.Helper()
	b, err := MarshalValue(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNowComesFromTheEvaluationNotTheClock(t *testing.T) {
	eng := New(Limits{})
	at := time.Date(2025, 5, 1, 8, 30, 0, 123e6, time.UTC)
	for i := 0; i < 2; i++ {
		got := js(t, eval(t, eng, `[$now(), $millis(), $now('[D01].[M01].[Y0001]')]`, "", Options{Now: at}))
		if got != `["2025-05-01T08:30:00.123Z",1746088200123,"01.05.2025"]` {
			t.Fatalf("got %s", got)
		}
	}
}

func TestRandomIsSeedable(t *testing.T) {
	eng := New(Limits{})
	run := func() string {
		return js(t, eval(t, eng, `[$random(), $shuffle([1,2,3,4,5,6,7,8])]`, "", Options{Random: rand.New(rand.NewPCG(1, 2))}))
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("same seed, different results: %s vs %s", a, b)
	}
}

func TestKeyOrderOfTheInputIsKept(t *testing.T) {
	got := js(t, eval(t, New(Limits{}), `$keys($)`, `{"zeta":1,"alpha":2,"mid":3}`, Options{}))
	if got != `["zeta","alpha","mid"]` {
		t.Fatalf("got %s", got)
	}
}

func TestNumbersAndNullsAreNotCorrupted(t *testing.T) {
	cases := map[string]string{
		`1/3`:                                    `0.3333333333333333`,
		`100/3*3`:                                `100`,
		`0.1+0.2`:                                `0.30000000000000004`,
		`{'x': a}`:                               `{"x":null}`,
		`$toMillis('2018-02-01T09:42:13+01:00')`: `1517474533000`,
		`$string(1e21)`:                          `"1e+21"`,
		`$round(2.5) & "," & $round(3.5)`:        `"2,4"`,
	}
	for src, want := range cases {
		if got := js(t, eval(t, New(Limits{}), src, `{"a":null}`, Options{})); got != want {
			t.Errorf("%s = %s, want %s", src, got, want)
		}
	}
}

func TestExtensionFunctionsAndBindings(t *testing.T) {
	eng := New(Limits{})
	err := eng.RegisterFunction("vatId", "<s-:s>", []string{"s"}, func(args []any) (any, error) {
		s, _ := args[0].(string)
		return strings.ToUpper(strings.ReplaceAll(s, " ", "")), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := js(t, eval(t, eng, `{"vat": vat.$vatId(), "tenant": $tenant}`, `{"vat":"de 123 456"}`,
		Options{Bindings: map[string]any{"tenant": "org-1"}}))
	if got != `{"vat":"DE123456","tenant":"org-1"}` {
		t.Fatalf("got %s", got)
	}
	// A wrong argument type is rejected by the signature, with the reference's code.
	x, _ := eng.Compile(`$vatId(42)`)
	if _, err := x.Evaluate(context.Background(), nil, Options{}); err == nil || !strings.Contains(err.Error(), "T0410") {
		t.Fatalf("want T0410, got %v", err)
	}
}

func TestCompileErrorsCarryCodeAndPosition(t *testing.T) {
	_, err := New(Limits{}).Compile(`Account.Order[0`)
	je, ok := err.(*Error)
	if !ok || je.Code != "S0203" || je.Position != 15 {
		t.Fatalf("got %#v", err)
	}
	if _, err := New(Limits{MaxExprBytes: 10}).Compile(strings.Repeat("a", 11)); err == nil {
		t.Fatal("an over-long expression compiled")
	}
}
