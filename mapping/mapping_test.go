package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/jsonata"
)

func compile(t *testing.T, cfg string) *Mapping {
	t.Helper()
	m, err := Compile(json.RawMessage(cfg), jsonata.Default)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return m
}

func run(t *testing.T, m *Mapping, payload string) []EntityUpdate {
	t.Helper()
	p, err := jsonata.DecodeJSON([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Map(context.Background(), p, &jsonata.Env{Now: time.Unix(0, 0)})
	if err != nil {
		t.Fatalf("map: %v", err)
	}
	return out
}

func asJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

const customerConfig = `{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
	{"attribute":"customer_number","field":"customerNumber"},
	{"attribute":"first_name","field":"firstName"},
	{"attribute":"full_name","jsonataExpression":"firstName & ' ' & lastName"},
	{"attribute":"city","field":"$.address.city"},
	{"attribute":"source","constant":"SAP"},
	{"attribute":"nickname","jsonataExpression":"nickname"}
]}]}`

func TestFieldSourcesAndOrder(t *testing.T) {
	m := compile(t, customerConfig)
	out := run(t, m, `{"customerNumber":"K-1","firstName":"Lena","lastName":"Meyer","address":{"city":"Köln"}}`)
	if len(out) != 1 {
		t.Fatalf("want 1 update, got %d", len(out))
	}
	// nickname is undefined in the payload: the attribute is omitted, not null.
	want := `{"customer_number":"K-1","first_name":"Lena","full_name":"Lena Meyer","city":"Köln","source":"SAP"}`
	if got := asJSON(t, out[0].Attributes); got != want {
		t.Errorf("attributes\n got %s\nwant %s", got, want)
	}
	if got := asJSON(t, out[0].UniqueIdentifiers); got != `{"customer_number":"K-1"}` {
		t.Errorf("unique ids = %s", got)
	}
	if out[0].EntitySlug != "contact" || out[0].Mode != "upsert" {
		t.Errorf("slug/mode = %s/%s", out[0].EntitySlug, out[0].Mode)
	}
}

func TestConstantWinsOverExpressionAndField(t *testing.T) {
	m := compile(t, `{"entities":[{"entity_schema":"contact","unique_ids":["id"],"fields":[
		{"attribute":"id","field":"id"},
		{"attribute":"kind","constant":null,"jsonataExpression":"'expr'","field":"kind"},
		{"attribute":"other","jsonataExpression":"'expr'","field":"kind"}]}]}`)
	out := run(t, m, `{"id":"1","kind":"field"}`)
	if got := asJSON(t, out[0].Attributes); got != `{"id":"1","kind":null,"other":"expr"}` {
		t.Errorf("attributes = %s", got)
	}
}

func TestEntityExpressionFansOut(t *testing.T) {
	m := compile(t, `{"entities":[{"entity_schema":"contract","unique_ids":["number"],"jsonataExpression":"contracts",
		"fields":[{"attribute":"number","field":"no"},{"attribute":"status","field":"status"}]}]}`)
	out := run(t, m, `{"contracts":[{"no":"C-1","status":"active"},{"no":"C-2","status":"ended"}]}`)
	if len(out) != 2 {
		t.Fatalf("want 2 updates, got %d", len(out))
	}
	if out[0].EntityID("org") == out[1].EntityID("org") {
		t.Error("two contracts got one entity id")
	}
	if got := asJSON(t, out[1].Attributes); got != `{"number":"C-2","status":"ended"}` {
		t.Errorf("second = %s", got)
	}
}

func TestEnabledRules(t *testing.T) {
	m := compile(t, `{"entities":[
		{"entity_schema":"a","unique_ids":["id"],"enabled":false,"fields":[{"attribute":"id","field":"id"}]},
		{"entity_schema":"b","unique_ids":["id"],"enabled":"kind = 'b'","fields":[{"attribute":"id","field":"id"},
			{"attribute":"secret","field":"secret","enabled":false},
			{"attribute":"maybe","field":"maybe","enabled":"$exists(maybe) and maybe != ''"}]}]}`)
	out := run(t, m, `{"id":"1","kind":"b","secret":"x","maybe":""}`)
	if len(out) != 1 || out[0].EntitySlug != "b" {
		t.Fatalf("want only entity b, got %+v", out)
	}
	if got := asJSON(t, out[0].Attributes); got != `{"id":"1"}` {
		t.Errorf("attributes = %s", got)
	}
	if out := run(t, m, `{"id":"1","kind":"c"}`); len(out) != 0 {
		t.Errorf("entity b should be disabled for kind c, got %d updates", len(out))
	}
}

func TestEntityIDIsStableAndOrderIndependent(t *testing.T) {
	a := EntityUpdate{EntitySlug: "contact", UniqueIdentifiers: Attributes{{"x", "1"}, {"y", 2.0}}}
	// Key order in the payload must not matter either.
	b := EntityUpdate{EntitySlug: "contact", UniqueIdentifiers: Attributes{{"y", 2.0}, {"x", "1"}}}
	if a.EntityID("org") != b.EntityID("org") {
		t.Error("unique-id order changed the entity id")
	}
	if a.EntityID("org") == a.EntityID("other-org") {
		t.Error("two orgs share an entity id")
	}
	c := EntityUpdate{EntitySlug: "contract", UniqueIdentifiers: a.UniqueIdentifiers}
	if a.EntityID("org") == c.EntityID("org") {
		t.Error("two schemas share an entity id")
	}
	// Values that print alike but differ in type must not collide.
	d := EntityUpdate{EntitySlug: "contact", UniqueIdentifiers: Attributes{{"x", 1.0}, {"y", 2.0}}}
	if a.EntityID("org") == d.EntityID("org") {
		t.Error(`"1" and 1 share an entity id`)
	}
}

func TestMissingUniqueIDFailsTheEvent(t *testing.T) {
	m := compile(t, customerConfig)
	p, _ := jsonata.DecodeJSON([]byte(`{"firstName":"Lena"}`))
	_, err := m.Map(context.Background(), p, &jsonata.Env{})
	var me *Error
	if !errors.As(err, &me) || me.Code != "MISSING_UNIQUE_IDENTIFIERS" || !strings.Contains(me.Error(), "customer_number") {
		t.Fatalf("want MISSING_UNIQUE_IDENTIFIERS naming customer_number, got %v", err)
	}
}

func TestCompileErrorsNameThePath(t *testing.T) {
	cases := map[string]struct{ cfg, path string }{
		"bad jsonata":        {`{"entities":[{"entity_schema":"c","unique_ids":["a"],"fields":[{"attribute":"a","jsonataExpression":"$foo("}]}]}`, "configuration.entities[0].fields[0].jsonataExpression"},
		"no schema":          {`{"entities":[{"unique_ids":["a"],"fields":[{"attribute":"a","field":"a"}]}]}`, "configuration.entities[0].entity_schema"},
		"unmapped uid":       {`{"entities":[{"entity_schema":"c","unique_ids":["a","b"],"fields":[{"attribute":"a","field":"a"}]}]}`, "configuration.entities[0].unique_ids[1]"},
		"no source":          {`{"entities":[{"entity_schema":"c","unique_ids":["a"],"fields":[{"attribute":"a"}]}]}`, "configuration.entities[0].fields[0]"},
		"unknown mode":       {`{"entities":[{"entity_schema":"c","unique_ids":["a"],"mode":"shred","fields":[{"attribute":"a","field":"a"}]}]}`, "configuration.entities[0].mode"},
		"prune no scope":     {`{"entities":[{"entity_schema":"c","unique_ids":["a"],"mode":"upsert-prune-scope-delete","fields":[{"attribute":"a","field":"a"}]}]}`, "configuration.entities[0].scope"},
		"relations scope":    {`{"entities":[{"entity_schema":"c","unique_ids":["a"],"mode":"upsert-prune-scope-delete","scope":{"scope_mode":"relations"},"fields":[{"attribute":"a","field":"a"}]}]}`, "configuration.entities[0].scope.schema"},
		"enabled not bool":   {`{"entities":[{"entity_schema":"c","unique_ids":["a"],"enabled":3,"fields":[{"attribute":"a","field":"a"}]}]}`, "configuration.entities[0].enabled"},
		"not an object":      {`[1,2]`, "configuration"},
		"relations no items": {`{"entities":[{"entity_schema":"c","unique_ids":["a"],"fields":[{"attribute":"a","field":"a"},{"attribute":"r","relations":{"operation":"_set"}}]}]}`, "configuration.entities[0].fields[1].relations"},
		"file proxy both":    {`{"entities":[{"entity_schema":"c","unique_ids":["a"],"fields":[{"attribute":"a","field":"a"},{"attribute":"f","file_proxy_url":{"use_case_slug":"x","use_case_id":"y"}}]}]}`, "configuration.entities[0].fields[1].file_proxy_url"},
		"file proxy slug":    {`{"entities":[{"entity_schema":"c","unique_ids":["a"],"fields":[{"attribute":"a","field":"a"},{"attribute":"f","file_proxy_url":{"use_case_slug":"Bad Slug"}}]}]}`, "configuration.entities[0].fields[1].file_proxy_url.use_case_slug"},
		"file proxy param":   {`{"entities":[{"entity_schema":"c","unique_ids":["a"],"fields":[{"attribute":"a","field":"a"},{"attribute":"f","file_proxy_url":{"use_case_id":"u","params":{"p":{"jsonataExpression":"$x("}}}}]}]}`, "configuration.entities[0].fields[1].file_proxy_url.params.p.jsonataExpression"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Compile(json.RawMessage(tc.cfg), jsonata.Default)
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("want a ConfigError, got %v", err)
			}
			if ce.Path != tc.path {
				t.Errorf("path = %q, want %q (%v)", ce.Path, tc.path, err)
			}
		})
	}
}

func BenchmarkMapFieldCopy20(b *testing.B) {
	var fields []string
	payload := map[string]any{"id": "K-1"}
	for i := 0; i < 20; i++ {
		name := "f" + string(rune('a'+i))
		fields = append(fields, `{"attribute":"`+name+`","field":"`+name+`"}`)
		payload[name] = "value " + name
	}
	cfg := `{"entities":[{"entity_schema":"contact","unique_ids":["fa"],"fields":[` + strings.Join(fields, ",") + `]}]}`
	m, err := Compile(json.RawMessage(cfg), jsonata.Default)
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := json.Marshal(payload)
	env := &jsonata.Env{}
	b.ReportAllocs()
	for b.Loop() {
		p, _ := jsonata.DecodeJSON(raw)
		if _, err := m.Map(context.Background(), p, env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMapJSONataHeavy maps worked example 2 (entity fan-out, expressions, $$, relations) and
// does what the processor does with the result: resolve relations and marshal the attributes.
func BenchmarkMapJSONataHeavy(b *testing.B) {
	raw, err := os.ReadFile("testdata/golden/ex2-fanout-relations.json")
	if err != nil {
		b.Fatal(err)
	}
	var gc struct {
		Configuration json.RawMessage `json:"configuration"`
		Payload       json.RawMessage `json:"payload"`
	}
	if err := json.Unmarshal(raw, &gc); err != nil {
		b.Fatal(err)
	}
	m, err := Compile(gc.Configuration, jsonata.Default)
	if err != nil {
		b.Fatal(err)
	}
	env := &jsonata.Env{}
	b.ReportAllocs()
	for b.Loop() {
		p, _ := jsonata.DecodeJSON(gc.Payload)
		updates, err := m.Map(context.Background(), p, env)
		if err != nil || len(updates) != 3 {
			b.Fatal(err)
		}
		for _, u := range updates {
			attrs, _, _ := u.Resolve("org", nil)
			if _, err := json.Marshal(attrs); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func TestFileProxyURLKeepsParameterOrderAndEncodes(t *testing.T) {
	m := compile(t, `{"entities":[{"entity_schema":"contract","unique_ids":["nr"],"fields":[{"attribute":"nr","field":"nr"},
		{"attribute":"pdf","file_proxy_url":{"use_case_id":"uc-1","params":{"z":{"field":"doc"},"a":{"constant":7},"gone":{"field":"missing"}}}}]}]}`)
	u := run(t, m, `{"nr":"V-1","doc":"R 2025/17&x"}`)[0]
	ResolveFileProxyURLs(u.Attributes, "https://files.example.com/", "org 1", "int-1", nil)
	got, _ := u.Attributes.get("pdf")
	want := "https://files.example.com/download?orgId=org+1&integrationId=int-1&useCaseId=uc-1&z=R+2025%2F17%26x&a=7"
	if got != want {
		t.Errorf("url\n got %v\nwant %s", got, want)
	}
}

func TestPricingRefusesNumbersOutOfRange(t *testing.T) {
	m := compile(t, `{"entities":[{"entity_schema":"order","unique_ids":["nr"],"fields":[{"attribute":"nr","field":"nr"}],
		"pricing":{"items_jsonata":"[{'description': 'x', 'unit_amount': cent, 'quantity': menge}]"}}]}`)
	for _, payload := range []string{`{"nr":"1","cent":100,"menge":"NaN"}`, `{"nr":"1","cent":100,"menge":"1e13"}`,
		`{"nr":"1","cent":999999999999,"menge":10000}`} {
		p, _ := ParsePayload(json.RawMessage(payload), "json")
		_, err := m.Simulate(context.Background(), p, time.Now())
		var me *Error
		if !errors.As(err, &me) || me.Code != "PRICING_FAILED" {
			t.Errorf("%s: %v, want PRICING_FAILED", payload, err)
		}
	}
}

func TestAttributesMarshalInOrderWithNamesEscaped(t *testing.T) {
	as := Attributes{{Name: "z", Value: "last\n"}, {Name: `a"b\c`, Value: 1.5}, {Name: "ü", Value: nil},
		{Name: "raw", Value: json.RawMessage(`{"k":[1,2]}`)}, {Name: "tab\there", Value: true}}
	got, err := as.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"z":"last\n","a\"b\\c":1.5,"ü":null,"raw":{"k":[1,2]},"tab\there":true}`; string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !json.Valid(got) {
		t.Fatalf("%s is not JSON", got)
	}
}
