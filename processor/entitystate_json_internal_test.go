package processor

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
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

// Both decoders read the same keys from any JSON of them, and refuse the same broken ones
// without a panic (a key of 34 digits overran hex.Decode's destination).
func TestLookupKeysDecodeAlikeWithBothDecoders(t *testing.T) {
	k1, k2 := keyOf("o", "contact", "email", "a@b.c"), keyOf("o", "contact", "customer_number", "K-1")
	h1, h2 := hex.EncodeToString(k1[:]), hex.EncodeToString(k2[:])
	for name, c := range map[string]struct {
		doc  string
		want attrKeys // nil: refused
	}{
		"two attributes": {`{"email":["` + h1 + `"],"customer_number":["` + h2 + `"]}`, attrKeys{{"customer_number", k2}, {"email", k1}}},
		"null":           {`null`, attrKeys{}},
		"null list":      {`{"email":null,"customer_number":["` + h2 + `"]}`, attrKeys{{"customer_number", k2}}},
		"repeated":       {`{"email":["` + h2 + `"],"email":["` + h1 + `"]}`, attrKeys{{"email", k1}}},
		"escaped":        {`{"email":["` + fmt.Sprintf(`\u%04x`, h1[0]) + h1[1:] + `"]}`, attrKeys{{"email", k1}}},
		"long key":       {`{"email":["` + h1 + `00"]}`, nil},
		"short key":      {`{"email":["` + h1[:30] + `"]}`, nil},
		"not hex":        {`{"email":["` + h1[:31] + `g"]}`, nil},
		"a number":       {`{"email":[12]}`, nil},
		"a list":         {`["` + h1 + `"]`, nil},
	} {
		t.Run(name, func(t *testing.T) {
			var v1, v2 attrKeys
			err1, err2 := json.Unmarshal([]byte(c.doc), &v1), envelope.Decode([]byte(c.doc), &v2)
			byKey := func(a, b attrKey) int { return bytes.Compare(a.Key[:], b.Key[:]) }
			slices.SortFunc(v1, byKey)
			slices.SortFunc(v2, byKey)
			slices.SortFunc(c.want, byKey)
			switch {
			case c.want == nil && (err1 == nil || err2 == nil):
				t.Errorf("accepted: %v (%v), %v (%v)", v1, err1, v2, err2)
			case c.want != nil && (err1 != nil || err2 != nil):
				t.Errorf("refused: %v, %v", err1, err2)
			case c.want != nil && (!reflect.DeepEqual(v1, c.want) || !reflect.DeepEqual(v2, c.want)):
				t.Errorf("decoded %v and %v, want %v", v1, v2, c.want)
			}
		})
	}
}
