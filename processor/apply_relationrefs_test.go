package processor_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
)

// worked example 4 on the pipeline: a reference to an address equal to a stored one keeps its
// _id and changes nothing; a new address is appended with a new _id; the contact's own mapping
// keeps the _ids; a missing contact becomes a placeholder holding the address.
func TestRelationRefsPreserveElementIDs(t *testing.T) {
	raw, err := os.ReadFile("../mapping/testdata/golden/ex4-relation-refs.json")
	must(t, err)
	var gc struct {
		Configuration json.RawMessage `json:"configuration"`
	}
	must(t, json.Unmarshal(raw, &gc))
	c, reg := withUseCases(t, map[string]json.RawMessage{
		"contacts": json.RawMessage(`{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
			{"attribute":"customer_number","field":"kunde"},{"attribute":"name","field":"name"},
			{"attribute":"address","jsonataExpression":"[{\"_id\": adr_id, \"street\": str, \"city\": ort, \"postal_code\": plz}]"}]}]}`),
		"orders": gc.Configuration,
	})
	seq := &eventSeq{}
	ev := seq.ev
	ring := func(kunde, plz string) string {
		return `{"auftrag":"A-` + plz + `-` + kunde + `","kunde":"` + kunde + `","str":"Ring 5","ort":"Köln","plz":"` + plz + `"}`
	}
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		// The ERP names the stored address a1, as in the example.
		ev("contact", "contacts", `{"kunde":"K-700","adr_id":"a1","str":"Ring 5","ort":"Köln","plz":"50667"}`),
		ev("same", "orders", ring("K-700", "50667")),
		ev("other", "orders", ring("K-700", "50668")),
		// What the contact's mapping last wrote, sent again: the reference changed the contact since.
		ev("contact-same", "contacts", `{"kunde":"K-700","adr_id":"a1","str":"Ring 5","ort":"Köln","plz":"50667"}`),
		ev("contact-again", "contacts", `{"kunde":"K-700","name":"Ann","str":"Ring 5","ort":"Köln","plz":"50667"}`),
		ev("missing", "orders", ring("K-999", "50667")),
	})
	for id, m := range monitoring {
		if m.Level != envelope.LevelSuccess {
			t.Errorf("%s: %s %s (%s)", id, m.Level, m.Code, m.Message)
		}
	}
	type address struct {
		ID   string `json:"_id"`
		Code string `json:"postal_code"`
	}
	type ref struct {
		EntityID string `json:"entity_id"`
		Path     string `json:"path"`
		ID       string `json:"_id"`
	}
	var attrs struct {
		Address        []address `json:"address"`
		CustomerNumber string    `json:"customer_number"`
		BillingAddress struct {
			Refs []ref `json:"$relation_ref"`
		} `json:"billing_address"`
	}
	got := map[string]map[string]envelope.EntityWrite{} // event -> schema -> write
	for _, w := range writes {
		if got[w.EventID] == nil {
			got[w.EventID] = map[string]envelope.EntityWrite{}
		}
		if _, dup := got[w.EventID][w.EntitySchema]; dup {
			t.Fatalf("%s wrote two %s entities", w.EventID, w.EntitySchema)
		}
		got[w.EventID][w.EntitySchema] = w
	}
	read := func(event, schema string) {
		t.Helper()
		w, ok := got[event][schema]
		if !ok {
			t.Fatalf("%s wrote no %s", event, schema)
		}
		attrs.Address, attrs.BillingAddress.Refs = nil, nil
		must(t, json.Unmarshal(w.Attributes, &attrs))
	}
	read("contact", "contact")
	contactID := got["contact"]["contact"].EntityID
	if len(attrs.Address) != 1 || attrs.Address[0].ID != "a1" {
		t.Fatalf("the contact's address %+v, want _id a1", attrs.Address)
	}
	const a1 = "a1"

	if _, wrote := got["same"]["contact"]; wrote {
		t.Error("a reference to an address the contact has wrote the contact")
	}
	read("same", "order")
	if r := attrs.BillingAddress.Refs; len(r) != 1 || r[0] != (ref{contactID, "address", a1}) {
		t.Errorf("same: billing_address %+v, want the contact's address %s", r, a1)
	}

	read("other", "contact")
	if len(attrs.Address) != 2 || attrs.Address[0].ID != a1 || attrs.Address[1].Code != "50668" || attrs.Address[1].ID == a1 {
		t.Fatalf("other: contact addresses %+v, want a1 kept and 50668 appended with a new _id", attrs.Address)
	}
	a2 := attrs.Address[1].ID
	read("other", "order")
	if r := attrs.BillingAddress.Refs; len(r) != 1 || r[0] != (ref{contactID, "address", a2}) {
		t.Errorf("other: billing_address %+v, want %s", r, a2)
	}

	read("contact-same", "contact")
	if len(attrs.Address) != 1 || attrs.Address[0].ID != a1 {
		t.Errorf("contact-same: %+v, want the contact's own single address again (not a no-op)", attrs.Address)
	}

	read("contact-again", "contact")
	if len(attrs.Address) != 1 || attrs.Address[0].ID != a1 {
		t.Errorf("the contact's own mapping, sent without _id, lost it: %+v, want %s", attrs.Address, a1)
	}

	read("missing", "contact")
	placeholder := got["missing"]["contact"]
	if attrs.CustomerNumber != "K-999" || len(attrs.Address) != 1 || placeholder.Version != 1 {
		t.Errorf("missing: placeholder %s (version %d), want K-999 with the address at version 1", placeholder.Attributes, placeholder.Version)
	}
	read("missing", "order")
	if r := attrs.BillingAddress.Refs; len(r) != 1 || r[0].EntityID != placeholder.EntityID || r[0].ID == "" {
		t.Errorf("missing: billing_address %+v, want the placeholder %s", r, placeholder.EntityID)
	}
}
