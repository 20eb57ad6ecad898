package processor_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
)

// On the pipeline: catalog lines priced from the product's one active price,
// custom lines from items_jsonata (tax-inclusive), result_mapping, and the three on_error modes.
func TestPricing(t *testing.T) {
	raw, err := os.ReadFile("../mapping/testdata/golden/pricing-template.json")
	must(t, err)
	var gc struct {
		Configuration json.RawMessage `json:"configuration"`
	}
	must(t, json.Unmarshal(raw, &gc))
	onError := func(mode string) json.RawMessage {
		return json.RawMessage(strings.Replace(string(gc.Configuration), `"on_error":"warn"`, `"on_error":"`+mode+`"`, 1))
	}
	c, reg := withUseCases(t, map[string]json.RawMessage{
		"catalog": json.RawMessage(`{"entities":[
			{"entity_schema":"price","unique_ids":["price_number"],"fields":[{"attribute":"price_number","field":"preis"},
				{"attribute":"unit_amount","field":"cent"},{"attribute":"tax_rate","constant":19},{"attribute":"type","constant":"recurring"},
				{"attribute":"billing_period","constant":"monthly"},{"attribute":"description","constant":"Grundpreis"}]},
			{"entity_schema":"product","unique_ids":["product_number"],"fields":[{"attribute":"product_number","field":"produkt"},
				{"attribute":"price_options","relations":{"operation":"_set","items":[{"entity_schema":"price","unique_ids":[{"attribute":"price_number","field":"preis"}]}]}}]}]}`),
		"warn": onError("warn"), "fail": onError("fail"), "skip": onError("skip"),
		"custom": json.RawMessage(`{"entities":[{"entity_schema":"order","unique_ids":["order_number"],"fields":[{"attribute":"order_number","field":"nr"},
			{"attribute":"amount_total","constant":1}],
			"pricing":{"items_jsonata":"positionen.{'description': text, 'unit_amount_decimal': preis, 'quantity': menge, 'tax_rate': 19, 'is_tax_inclusive': true}"}}]}`),
	})
	seq := &eventSeq{}
	ev := seq.ev
	known := `{"vertrag":"V-1","positionen":[{"sku":"P-1","menge":"2","text":"Strom Basis"}]}`
	unknown := `{"vertrag":"V-2","positionen":[{"sku":"P-9","menge":"1"}]}`
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		ev("catalog", "catalog", `{"preis":"PR-1","cent":1000,"produkt":"P-1"}`),
		ev("priced", "warn", known),
		ev("custom", "custom", `{"nr":"O-1","positionen":[{"text":"Zähler","preis":"11.90","menge":2}]}`),
		ev("warned", "warn", unknown),
		ev("failed", "fail", unknown),
		ev("skipped", "skip", unknown),
	})
	want := map[string][2]string{"catalog": {"success", "ENTITY_CREATED"}, "priced": {"success", "ENTITY_CREATED"},
		"custom": {"success", "ENTITY_CREATED"}, "warned": {"warning", "PRICING_FAILED"}, "failed": {"error", "PRICING_FAILED"},
		"skipped": {"success", "ENTITY_UPDATED"}}
	for id, w := range want {
		if m := monitoring[id]; string(m.Level) != w[0] || m.Code != w[1] {
			t.Errorf("%s: %s %s (%s), want %s %s", id, m.Level, m.Code, m.Message, w[0], w[1])
		}
	}
	if m := monitoring["failed"]; !strings.Contains(m.Message, "P-9") || !strings.Contains(m.Message, "not found") {
		t.Errorf("failed: message %q should name the missing product", m.Message)
	}
	byEvent := map[string]map[string]any{}
	for _, w := range writes {
		var attrs map[string]any
		must(t, json.Unmarshal(w.Attributes, &attrs))
		if w.EntitySchema == "contract" || w.EntitySchema == "order" {
			byEvent[w.EventID] = attrs
		}
	}
	priced := byEvent["priced"]
	// 2 x 10.00 EUR net at 19 %: 20.00 + 3.80 = 23.80; amount_total is written as total, total_details not at all.
	if priced["amount_subtotal"] != 2000.0 || priced["total"] != 2380.0 || priced["currency"] != "EUR" || priced["total_details"] != nil {
		t.Errorf("priced attributes %v", priced)
	}
	lines, _ := priced["line_items"].([]any)
	if len(lines) != 1 {
		t.Fatalf("priced line_items %v", priced["line_items"])
	}
	line := lines[0].(map[string]any)
	if line["description"] != "Strom Basis" || line["type"] != "recurring" || line["billing_period"] != "monthly" ||
		line["unit_amount_decimal"] != "10.00" || line["amount_tax"] != 380.0 || line["price_id"] == nil || line["product_id"] == nil {
		t.Errorf("priced line %v", line)
	}
	// Tax-inclusive custom line: 2 x 11.90 = 23.80 gross, 20.00 net; pricing overrides the mapped amount_total.
	custom := byEvent["custom"]
	details, _ := custom["total_details"].(map[string]any)
	if custom["amount_total"] != 2380.0 || custom["amount_subtotal"] != 2000.0 || details["amount_tax"] != 380.0 {
		t.Errorf("custom attributes %v", custom)
	}
	for _, id := range []string{"warned", "skipped"} {
		if a := byEvent[id]; a == nil || a["contract_number"] != "V-2" || a["line_items"] != nil {
			t.Errorf("%s: wrote %v, want the contract without pricing", id, a)
		}
	}
	if byEvent["failed"] != nil {
		t.Error("on_error fail wrote the contract")
	}
}
