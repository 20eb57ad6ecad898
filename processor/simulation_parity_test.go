package processor_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/processor/mapping"
)

// The pipeline writes what the simulation shows for the same configuration and payload, with
// relations resolved to the related entities' ids and a placeholder for a related entity that no
// event of this batch writes (MAPPING.md §18 Ex 2).
func TestPipelineWritesWhatTheSimulationShows(t *testing.T) {
	raw, err := os.ReadFile("mapping/testdata/golden/ex2-fanout-relations.json")
	must(t, err)
	var gc struct {
		Configuration json.RawMessage `json:"configuration"`
		Payload       json.RawMessage `json:"payload"`
	}
	must(t, json.Unmarshal(raw, &gc))

	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "uc-1", OrgID: "org", IntegrationID: "int", Name: "c", Slug: "contract",
		Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: gc.Configuration}))
	const receivedUs = 1_746_088_200_000_000
	ev := envelope.Event{EventID: "e1", OrgID: "org", IntegrationID: "int", UseCaseID: "uc-1", Format: "json", Payload: gc.Payload,
		CorrelationID: "c1", ReceivedAtUs: receivedUs}
	monitoring, list := runPipeline(t, c, reg, []envelope.Event{ev})
	if outcome := monitoring["e1"]; outcome.Code != "ENTITY_UPDATED" {
		t.Fatalf("outcome %s: %s", outcome.Code, outcome.Message)
	}
	writes := map[string]envelope.EntityWrite{}
	for _, w := range list {
		if _, dup := writes[w.EntityID]; dup {
			t.Errorf("entity %s written twice", w.EntityID)
		}
		writes[w.EntityID] = w
	}
	if len(writes) != 4 {
		t.Fatalf("%d entities written, want the contract, two meters and the contact placeholder", len(writes))
	}

	m, err := mapping.Compile(gc.Configuration, jsonata.Default)
	must(t, err)
	payload, err := mapping.ParsePayload(gc.Payload, "json")
	must(t, err)
	sim, err := m.Simulate(ctx, payload, ev.ReceivedAt())
	must(t, err)
	for _, u := range sim.EntityUpdates {
		w, ok := writes[u.EntityID("org")]
		if !ok {
			t.Fatalf("the simulation's %s %v was not written", u.EntitySlug, u.UniqueIdentifiers)
		}
		attrs, _, _ := u.Resolve("org", nil)
		want, _ := json.Marshal(attrs)
		if string(w.Attributes) != string(want) || w.Version != receivedUs {
			t.Errorf("%s written as %s (version %d), simulation resolves to %s", u.EntitySlug, w.Attributes, w.Version, want)
		}
	}
	// The contact K-701 is only related to: a placeholder holding its unique id, below any real version.
	stub := mapping.EntityUpdate{EntitySlug: "contact", UniqueIdentifiers: mapping.Attributes{{Name: "customer_number", Value: "K-701"}}}
	w, ok := writes[stub.EntityID("org")]
	if !ok || w.Version != 1 || string(w.Attributes) != `{"customer_number":"K-701"}` || w.EntitySchema != "contact" {
		t.Errorf("placeholder for contact K-701: %+v (found %v)", w, ok)
	}
	var contract map[string]any
	for _, w := range writes {
		if w.EntitySchema == "contract" {
			must(t, json.Unmarshal(w.Attributes, &contract))
		}
	}
	rel := contract["customer"].(map[string]any)["$relation"].([]any)[0].(map[string]any)
	if rel["entity_id"] != stub.EntityID("org") || rel["_schema"] != "contact" {
		t.Errorf("contract's customer relation %v, want the placeholder's id", rel)
	}
}
