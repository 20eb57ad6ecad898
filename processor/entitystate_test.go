package processor_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
)

// contractConfig relates a contract to contacts with the operation given.
func contractConfig(operation string) json.RawMessage {
	return json.RawMessage(`{"entities":[{"entity_schema":"contract","unique_ids":["nr"],"fields":[
		{"attribute":"nr","field":"nr"},
		{"attribute":"contacts","relations":{"operation":"` + operation + `","jsonataExpression":
			"kontakte.{\"entity_schema\": \"contact\", \"unique_ids\": [{\"attribute\": \"no\", \"constant\": no}], \"_tags\": [rolle]}"}}]}]}`)
}

// worked example 3 on the pipeline, across a processor restart: the second and third events
// find the relations the first one wrote in the entity state, which a new processor restores.
func TestRelationAppendsUseTheEntityStateAcrossRestarts(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	must(t, reg.PutIntegration(ctx, &registry.Integration{ID: "int", OrgID: "org", Name: "SAP"}))
	for _, op := range []string{"_set", "_append", "_append_all"} {
		must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "uc" + op, OrgID: "org", IntegrationID: "int", Name: op, Slug: "c" + op,
			Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: contractConfig(op)}))
	}
	event := func(id, useCase string, at int64, contacts string) envelope.Event {
		return envelope.Event{EventID: id, OrgID: "org", IntegrationID: "int", UseCaseID: useCase, Format: "json",
			Payload: json.RawMessage(`{"nr":"V-1","kontakte":` + contacts + `}`), ReceivedAtUs: at}
	}
	relations := func(writes []envelope.EntityWrite, eventID string) []any {
		for _, w := range writes {
			if w.EventID == eventID && w.EntitySchema == "contract" {
				var attrs map[string]any
				must(t, json.Unmarshal(w.Attributes, &attrs))
				return attrs["contacts"].(map[string]any)["$relation"].([]any)
			}
		}
		t.Fatalf("no contract write of %s", eventID)
		return nil
	}
	tagsOf := func(items []any) []string {
		var out []string
		for _, it := range items {
			tags := it.(map[string]any)["_tags"].([]any)
			out = append(out, tags[0].(string))
		}
		return out
	}

	_, writes := runPipeline(t, c, reg, []envelope.Event{event("e1", "uc_set", 1000, `[{"no":"c-1","rolle":"A"}]`)})
	if got := tagsOf(relations(writes, "e1")); len(got) != 1 || got[0] != "A" {
		t.Fatalf("_set: %v", got)
	}
	// A new processor (a restart) restores the state the first one wrote.
	_, writes = runPipeline(t, c, reg, []envelope.Event{event("e2", "uc_append", 2000, `[{"no":"c-1","rolle":"B"},{"no":"c-2","rolle":"C"}]`)})
	if got := tagsOf(relations(writes, "e2")); len(got) != 2 || got[0] != "A" || got[1] != "C" {
		t.Errorf("_append gave tags %v, want [A C]: c-1 keeps its tag, c-2 is added", got)
	}
	_, writes = runPipeline(t, c, reg, []envelope.Event{event("e3", "uc_append_all", 3000, `[{"no":"c-1","rolle":"D"}]`)})
	if got := tagsOf(relations(writes, "e3")); len(got) != 3 || got[2] != "D" {
		t.Errorf("_append_all gave tags %v, want [A C D]", got)
	}
}

// Deleting an unknown entity is a no-op (with a tombstone, so an older upsert still in flight
// cannot resurrect it); an upsert of a deleted entity restores it with a warning; CREATE of an
// existing entity fails when the integration honours event_type.
func TestModesUseTheEntityState(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	must(t, reg.PutIntegration(ctx, &registry.Integration{ID: "int", OrgID: "org", Name: "SAP",
		Fields: map[string]json.RawMessage{"settings": json.RawMessage(`{"honor_event_type":true}`)}}))
	must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "uc-1", OrgID: "org", IntegrationID: "int", Name: "c", Slug: "customer",
		Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(mappingConfig)}))
	ev := func(id, eventType string, at int64) envelope.Event {
		return envelope.Event{EventID: id, OrgID: "org", IntegrationID: "int", UseCaseID: "uc-1", Format: "json",
			Payload: json.RawMessage(`{"no":"K-1","name":"x"}`), EventType: eventType, ReceivedAtUs: at}
	}
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		ev("d0", "DELETE", 1000), ev("c1", "CREATE", 2000), ev("c2", "CREATE", 3000), ev("d1", "DELETE", 4000), ev("u1", "UPDATE", 5000),
	})
	want := map[string]string{"d0": "ENTITY_NO_OP", "c1": "ENTITY_CREATED", "c2": "ENTITY_ALREADY_EXISTS", "d1": "ENTITY_DELETED", "u1": "SOFT_DELETED_ENTITY_MATCHED"}
	for id, code := range want {
		if m := monitoring[id]; m.Code != code {
			t.Errorf("%s: %s (%s), want %s", id, m.Code, m.Message, code)
		}
	}
	if m := monitoring["u1"]; m.Level != envelope.LevelWarning {
		t.Errorf("u1 level %s, want warning", m.Level)
	}
	ops := map[string]envelope.EntityOp{}
	for _, w := range writes {
		ops[w.EventID] = w.Op
	}
	if ops["d0"] != envelope.OpDelete || ops["d1"] != envelope.OpDelete || ops["c1"] != envelope.OpUpsert || ops["u1"] != envelope.OpUpsert {
		t.Errorf("writes by event %v", ops)
	}
	if _, wrote := ops["c2"]; wrote {
		t.Error("a failed CREATE was written")
	}
}

// Meter readings by external id: the meter must exist (readings never create one), a reading sent
// again updates the same reading, and mode delete removes it.
func TestMeterReadingsByExternalID(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	must(t, reg.PutIntegration(ctx, &registry.Integration{ID: "int", OrgID: "org", Name: "SAP"}))
	readings := func(mode string) json.RawMessage {
		return json.RawMessage(`{"meter_readings":[{"jsonataExpression":"ablesungen","mode":"` + mode + `",
			"meter":{"unique_ids":[{"attribute":"meter_number","field":"zaehler"}]},
			"fields":[{"attribute":"external_id","jsonataExpression":"zaehler & '-' & datum"},{"attribute":"timestamp","field":"datum"},
			{"attribute":"value","jsonataExpression":"$number(stand)"},{"attribute":"source","constant":"ERP"}]}]}`)
	}
	for id, cfg := range map[string]json.RawMessage{
		"meters":   json.RawMessage(`{"entities":[{"entity_schema":"meter","unique_ids":["meter_number"],"fields":[{"attribute":"meter_number","field":"nr"}]}]}`),
		"readings": readings("upsert"), "removals": readings("delete"),
	} {
		must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: id, OrgID: "org", IntegrationID: "int", Name: id, Slug: id,
			Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: cfg}))
	}
	ev := func(id, useCase, payload string, at int64) envelope.Event {
		return envelope.Event{EventID: id, OrgID: "org", IntegrationID: "int", UseCaseID: useCase, Format: "json",
			Payload: json.RawMessage(payload), ReceivedAtUs: at}
	}
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		ev("r0", "readings", `{"ablesungen":[{"zaehler":"Z-9","datum":"2025-03-10","stand":"1"}]}`, 1000),
		ev("m1", "meters", `{"nr":"Z-1"}`, 2000),
		ev("r1", "readings", `{"ablesungen":[{"zaehler":"Z-1","datum":"2025-03-10","stand":"4711.5"},{"zaehler":"Z-1","datum":"2025-03-11","stand":"4712"}]}`, 3000),
		ev("r2", "readings", `{"ablesungen":[{"zaehler":"Z-1","datum":"2025-03-10","stand":"4711.6"}]}`, 4000),
		ev("d1", "removals", `{"ablesungen":[{"zaehler":"Z-1","datum":"2025-03-11","stand":"0"}]}`, 5000),
	})
	want := map[string]string{"r0": "METER_READING_GROUP_FAILED", "m1": "ENTITY_CREATED", "r1": "METER_READING_UPSERTED",
		"r2": "METER_READING_UPSERTED", "d1": "METER_READING_DELETED"}
	for id, code := range want {
		if m := monitoring[id]; m.Code != code {
			t.Errorf("%s: %s (%s), want %s", id, m.Code, m.Message, code)
		}
	}
	byEvent := map[string][]envelope.EntityWrite{}
	for _, w := range writes {
		if w.EntitySchema == "meter_reading" {
			byEvent[w.EventID] = append(byEvent[w.EventID], w)
		}
	}
	if len(byEvent["r0"]) != 0 || len(byEvent["r1"]) != 2 || len(byEvent["r2"]) != 1 || len(byEvent["d1"]) != 1 {
		t.Fatalf("reading writes per event: r0 %d, r1 %d, r2 %d, d1 %d", len(byEvent["r0"]), len(byEvent["r1"]), len(byEvent["r2"]), len(byEvent["d1"]))
	}
	// Writes of different entities come back in partition order: find them by external id.
	byExternalID := map[string]envelope.EntityWrite{}
	for _, w := range byEvent["r1"] {
		var attrs map[string]any
		must(t, json.Unmarshal(w.Attributes, &attrs))
		byExternalID[attrs["external_id"].(string)] = w
	}
	first, second := byExternalID["Z-1-2025-03-10"], byExternalID["Z-1-2025-03-11"]
	if byEvent["r2"][0].EntityID != first.EntityID {
		t.Error("the reading sent again got a new id")
	}
	if d := byEvent["d1"][0]; d.Op != envelope.OpPurge || d.EntityID != second.EntityID {
		t.Errorf("delete of %s (%s), want the 11 March reading purged (reading deletes are permanent)", d.EntityID, d.Op)
	}
	var attrs map[string]any
	must(t, json.Unmarshal(first.Attributes, &attrs))
	if attrs["timestamp"] != "2025-03-10T00:00:00.000Z" || attrs["value"] != 4711.5 || attrs["meter_id"] == nil {
		t.Errorf("reading attributes %v", attrs)
	}
}

// worked example 5 on the pipeline: billing events of account BA-9 not in the payload are
// soft-deleted; an empty list prunes the whole scope.
func TestPruneScopeRelations(t *testing.T) {
	raw, err := os.ReadFile("../mapping/testdata/golden/ex5-prune-scope.json")
	must(t, err)
	var gc struct {
		Configuration json.RawMessage `json:"configuration"`
	}
	must(t, json.Unmarshal(raw, &gc))
	c, reg := withUseCases(t, map[string]json.RawMessage{
		"accounts": json.RawMessage(`{"entities":[{"entity_schema":"billing_account",
			"unique_ids":["billing_account_number"],"fields":[{"attribute":"billing_account_number","field":"nr"}]}]}`),
		"events": gc.Configuration,
	})
	seq := &eventSeq{}
	ev := seq.ev
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		ev("a", "accounts", `{"nr":"BA-9"}`),
		ev("p1", "events", `{"konto":"BA-9","events":[{"id":"E-1"},{"id":"E-2"},{"id":"E-3"}]}`),
		ev("p2", "events", `{"konto":"BA-9","events":[{"id":"E-2"},{"id":"E-4"}]}`),
		ev("p3", "events", `{"konto":"BA-9","events":[]}`),
		ev("p4", "events", `{"konto":"BA-404","events":[]}`),
	})
	deletedBy := map[string]int{}
	for _, w := range writes {
		if w.Op == envelope.OpDelete {
			deletedBy[w.EventID]++
		}
	}
	for id, want := range map[string]int{"p1": 0, "p2": 2, "p3": 2} {
		if m := monitoring[id]; m.Code != "PRUNE_SCOPE_COMPLETED" || deletedBy[id] != want {
			t.Errorf("%s: %s (%s), %d deleted; want PRUNE_SCOPE_COMPLETED with %d deleted", id, m.Code, m.Message, deletedBy[id], want)
		}
	}
	if m := monitoring["p4"]; m.Code != "PRUNE_SCOPE_PARTIAL_FAILURE" || m.Level != envelope.LevelWarning {
		t.Errorf("unknown scope: %s/%s (%s), want a PRUNE_SCOPE_PARTIAL_FAILURE warning", m.Level, m.Code, m.Message)
	}
}
