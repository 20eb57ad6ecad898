package processor_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
)

// an entity is found by any attribute a configuration looks it up by, whichever
// mapping wrote it, also after a restart; several matches fail the event; query scopes prune
// by attribute values.
func TestLookupByIndexedAttributes(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{
		"customers": json.RawMessage(`{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
			{"attribute":"customer_number","field":"kdnr"},{"attribute":"email","field":"mail","_type":"email"}]}]}`),
		// The documented fallback: by customer number when there is one, else by email.
		"by-email": json.RawMessage(`{"entities":[{"entity_schema":"contact","unique_ids":["email"],"fields":[
			{"attribute":"email","field":"mail","_type":"email"},{"attribute":"first_name","field":"vorname"}]}]}`),
		"contracts": json.RawMessage(`{"entities":[{"entity_schema":"contract","unique_ids":["contract_number"],"fields":[
			{"attribute":"contract_number","field":"vertrag"},
			{"attribute":"customer","relations":{"operation":"_set","items":[{"entity_schema":"contact",
				"unique_ids":[{"attribute":"email","field":"mail","_type":"email"}]}]}}]}]}`),
		"tariffs": json.RawMessage(`{"entities":[{"entity_schema":"tariff","unique_ids":["code"],"mode":"upsert-prune-scope-delete",
			"jsonataExpression":"tarife","scope":{"scope_mode":"query","query":[{"attribute":"provider","field":"anbieter"}]},
			"fields":[{"attribute":"code","field":"code"},{"attribute":"provider","field":"$$.anbieter"}]}]}`),
	})
	seq := &eventSeq{}
	ev := seq.ev
	runPipeline(t, c, reg, []envelope.Event{ev("k1", "customers", `{"kdnr":"K-1","mail":"a@x.de"}`)})
	// A second processor restores the lookup index from the entity-state topic.
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		ev("mail-a", "by-email", `{"mail":"a@x.de","vorname":"Lena"}`),
		ev("v1", "contracts", `{"vertrag":"V-1","mail":"a@x.de"}`),
		ev("k2", "customers", `{"kdnr":"K-2","mail":"b@x.de"}`),
		ev("k3", "customers", `{"kdnr":"K-3","mail":"b@x.de"}`),
		ev("mail-b", "by-email", `{"mail":"b@x.de","vorname":"Max"}`),
		ev("v2", "contracts", `{"vertrag":"V-2","mail":"b@x.de"}`),
		ev("p1", "tariffs", `{"anbieter":"P1","tarife":[{"code":"T1"},{"code":"T2"}]}`),
		ev("p2", "tariffs", `{"anbieter":"P2","tarife":[{"code":"T9"}]}`),
		ev("p1-again", "tariffs", `{"anbieter":"P1","tarife":[{"code":"T2"}]}`),
	})
	want := map[string]string{"mail-a": "ENTITY_UPDATED", "v1": "ENTITY_CREATED", "mail-b": "UNIQUE_ID_MULTIPLE_MATCHES",
		"v2": "UNIQUE_ID_MULTIPLE_MATCHES", "p1-again": "PRUNE_SCOPE_COMPLETED"}
	for id, code := range want {
		if m := monitoring[id]; m.Code != code {
			t.Errorf("%s: %s (%s), want %s", id, m.Code, m.Message, code)
		}
	}
	if m := monitoring["mail-b"]; !strings.Contains(m.Message, "at least 2 contact entities") || !strings.Contains(m.Message, "by-email") {
		t.Errorf("mail-b message %q should name the use case and the two matches", m.Message)
	}
	byEvent := map[string][]envelope.EntityWrite{}
	for _, w := range writes {
		byEvent[w.EventID] = append(byEvent[w.EventID], w)
	}
	contact := byEvent["k1"][0].EntityID
	if w := byEvent["mail-a"]; len(w) != 1 || w[0].EntityID != contact {
		t.Fatalf("mail-a wrote %+v, want one write of contact K-1 (%s)", w, contact)
	}
	if w := byEvent["v1"]; len(w) != 1 || !strings.Contains(string(w[0].Attributes), `"entity_id":"`+contact+`"`) {
		t.Errorf("v1 wrote %d records (%s), want the contract relating to K-1 and no placeholder", len(w), w[0].Attributes)
	}
	if len(byEvent["mail-b"])+len(byEvent["v2"]) != 0 {
		t.Error("an ambiguous lookup wrote something")
	}
	tariff := map[string]string{}
	for _, w := range byEvent["p1"] {
		var a map[string]any
		must(t, json.Unmarshal(w.Attributes, &a))
		tariff[a["code"].(string)] = w.EntityID
	}
	var pruned []string
	for _, w := range byEvent["p1-again"] {
		if w.Op == envelope.OpDelete {
			pruned = append(pruned, w.EntityID)
		}
	}
	if len(pruned) != 1 || pruned[0] != tariff["T1"] {
		t.Errorf("p1-again deleted %v, want only T1 (%s): T2 was sent, T9 belongs to P2", pruned, tariff["T1"])
	}
}

// An entry finds an entity an earlier entry of the same event created, by an indexed attribute
// (not by the id its own unique ids derive): both write one contact.
func TestLookupFindsTheEventsOwnEntities(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{
		"both": json.RawMessage(`{"entities":[
			{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"kdnr"},
				{"attribute":"email","field":"mail","_type":"email"}]},
			{"entity_schema":"contact","unique_ids":["email"],"fields":[{"attribute":"email","field":"mail","_type":"email"},
				{"attribute":"first_name","field":"vorname"}]}]}`),
	})
	seq := &eventSeq{}
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		seq.ev("one", "both", `{"kdnr":"K-1","mail":"lena@example.com","vorname":"Lena"}`),
	})
	if m := monitoring["one"]; m.Level != envelope.LevelSuccess {
		t.Fatalf("one: %s %s", m.Code, m.Message)
	}
	ids := map[string]bool{}
	for _, w := range writes {
		if w.EntitySchema == "contact" {
			ids[w.EntityID] = true
		}
	}
	if len(ids) != 1 {
		t.Errorf("the event wrote %d contacts, want the one both entries name", len(ids))
	}
}
