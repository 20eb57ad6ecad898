package processor

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"

	"github.com/erpstream/erpstream/mapping"
)

// The hand-written encoder writes what json.Marshal writes, byte for byte but for how control
// characters are escaped (the "escapes" state), and every state reads back as it was.
func TestStateJSONIsWhatJSONMarshalWrites(t *testing.T) {
	amount, inclusive, rate := int64(1999), true, 0.19
	states := map[string]*entityState{
		"minimal": {Schema: "contact", Version: 1},
		"contact": {Org: "org-1", Schema: "contact", Version: 1_700_000_000_000_123, LastWrite: 0xfedcba9876543210,
			Keys: attrKeys{{Attr: "email", Key: keyOf("org-1", "contact", "email", "a@b.c")},
				{Attr: "customer_number", Key: keyOf("org-1", "contact", "customer_number", "K-1")},
				{Attr: "email", Key: keyOf("org-1", "contact", "email", "x@y.z")}}},
		"flags": {Org: "o", Schema: "s", Deleted: true, Placeholder: true, Phantom: true, Version: 7},
		"nested": {Org: "o", Schema: "contract", Version: 9,
			Relations: map[string][]mapping.ResolvedRelationItem{"customer": {{EntityID: "e1", Schema: "contact", Tags: []string{"KUNDE"}}},
				"account": {{EntityID: "e2", Schema: "account"}}},
			Arrays:  map[string][]refElement{"addresses": {{ID: "a1", Body: `{"city":"Köln"}`}}},
			RelRefs: map[string][]mapping.RelationRefEntry{"billing": {{EntityID: "e3", Path: "addresses", ID: "a1"}}}},
		"reading": {Org: "o", Schema: "meter_reading", Version: 3, Reading: &readingState{Group: "m1/c1", ExternalID: "r-1", Day: "2026-12-01"}},
		"price":   {Org: "o", Schema: "price", Version: 4, Price: &priceFacts{UnitAmount: &amount, Currency: "EUR", TaxInclusive: &inclusive, TaxRate: &rate}},
		"escapes": {Org: "o\"\\\n\x01", Schema: "ünïcode\xff", Version: 5},
	}
	for name, st := range states {
		t.Run(name, func(t *testing.T) {
			got, err := st.appendJSON(nil)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(st)
			if name != "escapes" && string(got) != string(want) {
				t.Fatalf("appendJSON\n got %s\nwant %s", got, want)
			}
			var back entityState
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatal(err)
			}
			var again, decoded entityState
			_ = json.Unmarshal(want, &again)
			// The store and the changelog reader decode states with envelope.Decode.
			if err := envelope.Decode(got, &decoded); err != nil {
				t.Fatal(err)
			}
			byKey := func(a, b attrKey) int { return bytes.Compare(a.Key[:], b.Key[:]) }
			for _, st := range []*entityState{&back, &again, &decoded} {
				slices.SortFunc(st.Keys, byKey) // they decode from a map
			}
			if !reflect.DeepEqual(back, again) || !reflect.DeepEqual(decoded, again) {
				t.Fatalf("read back %+v, decoded %+v, want %+v", back, decoded, again)
			}
		})
	}
}
