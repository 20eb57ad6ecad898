package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/mapping"
)

// The pipeline writes what the simulation shows for the same configuration and payload, with
// relations resolved to the related entities' ids and a placeholder for a related entity that no
// event of this batch writes.
func TestPipelineWritesWhatTheSimulationShows(t *testing.T) {
	raw, err := os.ReadFile("../mapping/testdata/golden/ex2-fanout-relations.json")
	must(t, err)
	var gc struct {
		Configuration json.RawMessage `json:"configuration"`
		Payload       json.RawMessage `json:"payload"`
	}
	must(t, json.Unmarshal(raw, &gc))

	c, reg := withUseCases(t, map[string]json.RawMessage{"uc-1": gc.Configuration})
	ctx := context.Background()
	const receivedUs = 1_746_088_200_000_000
	ev := envelope.Event{EventID: "e1", OrgID: "org", IntegrationID: "int", UseCaseID: "uc-1", Format: "json", Payload: gc.Payload,
		CorrelationID: "c1", ReceivedAtUs: receivedUs}
	monitoring, list := runPipeline(t, c, reg, []envelope.Event{ev})
	if outcome := monitoring["e1"]; outcome.Code != "ENTITY_CREATED" {
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

// Every golden case through the pipeline, on an empty state (one organization per case): each
// entity update the simulation shows is written as shown, relations resolved to the ids the
// simulation's unique ids derive. Updates whose pipeline form depends on lookups the simulation
// does not make are left out: references (their _ids) and meter readings (their meters must exist).
func TestPipelineWritesWhatTheSimulationShowsForEveryGoldenCase(t *testing.T) {
	files, err := filepath.Glob("../mapping/testdata/golden/*.json")
	must(t, err)
	type goldenCase struct {
		name    string
		org     string
		sim     *mapping.Simulation
		receive int64
	}
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	var cases []goldenCase
	var events []envelope.Event
	for i, file := range files {
		raw, err := os.ReadFile(file)
		must(t, err)
		var gc struct {
			Configuration json.RawMessage `json:"configuration"`
			Format        string          `json:"format"`
			Payload       json.RawMessage `json:"payload"`
			Error         json.RawMessage `json:"error"`
		}
		must(t, json.Unmarshal(raw, &gc))
		if gc.Configuration == nil || gc.Error != nil {
			continue // v1 wrapped configurations are simulation-only; error cases write nothing
		}
		format := gc.Format
		if format == "" {
			format = "json"
		}
		org := fmt.Sprintf("org-%d", i)
		must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "uc-" + org, OrgID: org, IntegrationID: "int-" + org, Name: "c", Slug: "c",
			Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: gc.Configuration}))
		receive := int64(1_746_088_200_000_000 + i)
		ev := envelope.Event{EventID: org, OrgID: org, IntegrationID: "int-" + org, UseCaseID: "uc-" + org, Format: format, Payload: gc.Payload,
			ReceivedAtUs: receive}
		m, err := mapping.Compile(gc.Configuration, jsonata.Default)
		must(t, err)
		payload, err := mapping.ParsePayload(gc.Payload, format)
		must(t, err)
		sim, err := m.Simulate(ctx, payload, ev.ReceivedAt())
		must(t, err)
		cases = append(cases, goldenCase{name: filepath.Base(file), org: org, sim: sim, receive: receive})
		events = append(events, ev)
	}
	monitoring, list := runPipeline(t, c, reg, events)
	writes := map[string]envelope.EntityWrite{}
	for _, w := range list {
		writes[w.OrgID+"/"+w.EntityID] = w
	}
	compared := 0
	for _, gc := range cases {
		if o := monitoring[gc.org]; o.Level == envelope.LevelError && len(gc.sim.MeterReadingsUpdates) == 0 {
			t.Errorf("%s: the pipeline failed (%s: %s) where the simulation succeeds", gc.name, o.Code, o.Message)
			continue
		}
	updates:
		for _, u := range gc.sim.EntityUpdates {
			for _, a := range u.Attributes {
				if _, isRef := a.Value.(*mapping.RelationRef); isRef {
					continue updates
				}
			}
			w, ok := writes[gc.org+"/"+u.EntityID(gc.org)]
			if !ok {
				t.Errorf("%s: the simulation's %s %v was not written", gc.name, u.EntitySlug, u.UniqueIdentifiers)
				continue
			}
			attrs, _, _ := u.Resolve(gc.org, nil)
			var got, want map[string]any
			must(t, json.Unmarshal(w.Attributes, &got))
			b, _ := json.Marshal(attrs)
			must(t, json.Unmarshal(b, &want))
			for k, v := range got { // file_proxy_url attributes: written by the pipeline only
				if s, ok := v.(string); ok && want[k] == nil && strings.HasPrefix(s, "https://files.example.com/download?") {
					delete(got, k)
				}
			}
			if !reflect.DeepEqual(got, want) || uint64(gc.receive) != w.Version {
				t.Errorf("%s: %s written as %s (version %d), the simulation shows %s", gc.name, u.EntitySlug, w.Attributes, w.Version, b)
			}
			compared++
		}
	}
	if compared < 17 { // the golden cases held 17 comparable updates when this test was written
		t.Errorf("only %d updates compared", compared)
	}
}
