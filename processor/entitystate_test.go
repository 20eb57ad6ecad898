package processor_test

import (
	"context"
	"encoding/json"
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

// MAPPING.md §18 Ex 3 on the pipeline, across a processor restart: the second and third events
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
	want := map[string]string{"d0": "ENTITY_NO_OP", "c1": "ENTITY_UPDATED", "c2": "ENTITY_ALREADY_EXISTS", "d1": "ENTITY_DELETED", "u1": "SOFT_DELETED_ENTITY_MATCHED"}
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
