package jsonata

import (
	"strings"
	"testing"
)

// render writes a shape compactly: {k: T}, [T], A|B, ?source for unknown.
func render(s *Shape) string {
	switch s.Kind {
	case "object":
		var parts []string
		for _, k := range s.Keys {
			parts = append(parts, k+": "+render(s.Properties[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case "array":
		return "[" + render(s.Items) + "]"
	case "union":
		var parts []string
		for _, v := range s.Variants {
			parts = append(parts, render(v))
		}
		return strings.Join(parts, "|")
	case "unknown":
		return "?" + s.Source
	}
	return s.Kind
}

func TestShapes(t *testing.T) {
	e := New(Limits{})
	for src, want := range map[string]string{
		`{"name": firstName & ' ' & lastName, "age": $number(age), "vip": score > 10}`: `{name: string, age: number, vip: boolean}`,
		`{"items": items.{"id": id, "qty": qty * 2}}`:                                  `{items: [{id: ?id, qty: number}]}`,
		`{"a": [1, 2], "b": [1, "x"], "c": []}`:                                        `{a: [number], b: [number|string], c: [?expression]}`,
		`status = "A" ? "active" : 0`:                                                  `string|number`,
		`status = "A" ? "active" : "inactive"`:                                         `string`,
		`$map(lines, function($l) { {"sku": $l.sku, "n": $count($l.parts)} })`:         `[{sku: ?$l.sku, n: number}]`,
		`customer.address.city`:                                                        `?customer.address.city`,
		`($total := $sum(lines.amount); {"total": $total, "ok": true, "none": null})`:  `{total: number, ok: boolean, none: null}`,
		`$.{"k": k}`:        `{k: ?k}`,
		`[1..3]`:            `[[number]]`,
		`x ~> $uppercase()`: `string`,
		`{"m": $merge([a, b]), "keys": $keys(obj)}`:        `{m: ?$merge(…), keys: [string]}`,
		`{"nested": {"deep": {"v": -x}}, "s": $string(1)}`: `{nested: {deep: {v: number}}, s: string}`,
	} {
		x, err := e.Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := render(x.Shape()); got != want {
			t.Errorf("%s\n got %s\nwant %s", src, got, want)
		}
	}
}

func TestInputs(t *testing.T) {
	e := New(Limits{})
	for src, want := range map[string]string{
		`{"sku": item.sku, "qty": $number(qty)}`:               `item.sku qty`,
		`items.{"id": id, "price": price.amount}`:              `items[].id items[].price.amount`,
		`$map(lines, function($l) { $l.sku & $string($l.n) })`: `lines lines[].sku lines[].n`,
		`items[price > 10].name`:                               `items[].price items.name`,
		`$$.root.value & $.local`:                              `root.value local`,
		`($x := a.b; $x & c)`:                                  `a.b c`,
		`cond ? yes : no`:                                      `cond yes no`,
		`{"fixed": "literal"}`:                                 ``,
	} {
		x, err := e.Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if got := strings.Join(x.Inputs(), " "); got != want {
			t.Errorf("%s\n got %q\nwant %q", src, got, want)
		}
	}
}
