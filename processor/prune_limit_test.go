package processor_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/mapping"
	"github.com/erpstream/erpstream/processor"
)

// A prune reads its whole scope; one larger than Config.MaxPruneScope fails its event alone with
// MAPPING_LIMIT_EXCEEDED, nothing of it written, for a query scope, a relations scope and a meter
// counter's readings. A scope at the limit is pruned.
func TestPruneScopesOverTheLimitFailTheEventAlone(t *testing.T) {
	meter := func(mode, scope string) json.RawMessage {
		return json.RawMessage(`{"entities":[{"entity_schema":"meter","unique_ids":["meter_number"],"mode":"` + mode + `"` + scope + `,
			"jsonataExpression":"zaehler.{\"meter_number\": $, \"vertrag\": $$.vertrag}",
			"fields":[{"attribute":"meter_number","field":"meter_number"},
				{"attribute":"contract","relations":{"operation":"_set","items":[{"entity_schema":"contract","unique_ids":[{"attribute":"contract_number","field":"vertrag"}]}]}}]}]}`)
	}
	tariff := func(mode, scope string) json.RawMessage {
		return json.RawMessage(`{"entities":[{"entity_schema":"tariff","unique_ids":["code"],"mode":"` + mode + `"` + scope + `,
			"jsonataExpression":"tarife","fields":[{"attribute":"code","field":"code"},{"attribute":"provider","field":"$$.anbieter"}]}]}`)
	}
	c, reg := withUseCases(t, map[string]json.RawMessage{
		"contracts":     json.RawMessage(`{"entities":[{"entity_schema":"contract","unique_ids":["contract_number"],"fields":[{"attribute":"contract_number","field":"vertrag"}]}]}`),
		"meters-add":    meter("upsert", ""),
		"meters-mirror": meter("upsert-prune-scope-delete", `,"scope":{"scope_mode":"relations","schema":"contract","unique_ids":[{"attribute":"contract_number","field":"vertrag"}]}`),
		"tariffs-add":   tariff("upsert", ""),
		"meter-setup": json.RawMessage(`{"entities":[{"entity_schema":"meter","unique_ids":["meter_number"],"fields":[{"attribute":"meter_number","field":"nr"}]},
			{"entity_schema":"meter_counter","unique_ids":["obis_number"],"fields":[{"attribute":"obis_number","constant":"1-0:1.8.0"}]}]}`),
		"readings-add":    readingsConfig("external_id", "upsert", ""),
		"readings-mirror": readingsConfig("external_id", "upsert-prune-scope", ""),
		"tariffs-mirror": tariff("upsert-prune-scope-delete",
			`,"scope":{"scope_mode":"query","query":[{"attribute":"provider","field":"anbieter"}]}`),
	})
	seq := &eventSeq{}
	tariffs := func(codes ...string) string {
		return `{"anbieter":"P","tarife":[{"code":"` + strings.Join(codes, `"},{"code":"`) + `"}]}`
	}
	meters := func(numbers ...string) string {
		return `{"vertrag":"V-1","zaehler":["` + strings.Join(numbers, `","`) + `"]}`
	}
	readings := func(days ...string) string {
		var rs []string
		for _, d := range days {
			rs = append(rs, `{"zaehler":"Z-9","datum":"`+d+`","stand":"1"}`)
		}
		return `{"zaehler":"Z-9","ablesungen":[` + strings.Join(rs, ",") + `]}`
	}
	events := []envelope.Event{
		seq.ev("contract", "contracts", `{"vertrag":"V-1"}`),
		seq.ev("meters-at-limit", "meters-mirror", meters("Z-1", "Z-2", "Z-3", "Z-4", "Z-5")),
		seq.ev("meters-sixth", "meters-add", meters("Z-6")),
		seq.ev("meters-over", "meters-mirror", meters("Z-1", "Z-2")),
		seq.ev("tariffs-at-limit", "tariffs-mirror", tariffs("T-1", "T-2", "T-3", "T-4", "T-5")),
		seq.ev("tariffs-sixth", "tariffs-add", tariffs("T-6")),
		seq.ev("tariffs-over", "tariffs-mirror", tariffs("T-1", "T-2")),
		seq.ev("meter", "meter-setup", `{"nr":"Z-9"}`),
		seq.ev("readings-at-limit", "readings-mirror", readings("2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04", "2025-01-05")),
		seq.ev("readings-sixth", "readings-add", readings("2025-01-06")),
		seq.ev("readings-over", "readings-mirror", readings("2025-01-01")),
	}
	produceEvents(t, c, events)
	monitoring, writes := processProduced(t, c, reg, events, func(cfg *processor.Config) { cfg.MaxPruneScope = 5 })
	want := map[string]string{"contract": "ENTITY_CREATED", "meters-at-limit": "PRUNE_SCOPE_COMPLETED", "meters-sixth": "ENTITY_CREATED",
		"meters-over": "MAPPING_LIMIT_EXCEEDED", "tariffs-at-limit": "PRUNE_SCOPE_COMPLETED", "tariffs-sixth": "ENTITY_CREATED",
		"tariffs-over": "MAPPING_LIMIT_EXCEEDED", "meter": "ENTITY_CREATED", "readings-at-limit": "METER_READING_UPSERTED",
		"readings-sixth": "METER_READING_UPSERTED", "readings-over": "MAPPING_LIMIT_EXCEEDED"}
	for id, code := range want {
		if m := monitoring[id]; m.Code != code {
			t.Errorf("%s: %s (%s), want %s", id, m.Code, m.Message, code)
		}
	}
	for _, id := range []string{"meters-over", "tariffs-over", "readings-over"} {
		if m := monitoring[id]; m.Level != envelope.LevelError || !strings.Contains(m.Message, "more than 5") {
			t.Errorf("%s: %s %q, want an error naming the limit", id, m.Level, m.Message)
		}
	}
	for _, w := range writes {
		if strings.HasSuffix(w.EventID, "-over") {
			t.Errorf("%s wrote %s %s", w.EventID, w.EntitySchema, w.Op)
		}
	}
}

// A meter moved to another contract is no longer in its old contract's scope, also when the move
// is not committed yet (an earlier event of the same transaction) and the store's back-index
// still has the meter under the old contract.
func TestPruneScopeFollowsRelationsChangedInTheOpenTransaction(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{
		"contracts": json.RawMessage(`{"entities":[{"entity_schema":"contract","unique_ids":["contract_number"],"fields":[{"attribute":"contract_number","field":"vertrag"}]}]}`),
		"mirror": json.RawMessage(`{"entities":[{"entity_schema":"meter","unique_ids":["meter_number"],"mode":"upsert-prune-scope-delete",
			"scope":{"scope_mode":"relations","schema":"contract","unique_ids":[{"attribute":"contract_number","field":"vertrag"}]},
			"jsonataExpression":"zaehler.{\"meter_number\": $, \"vertrag\": $$.vertrag}",
			"fields":[{"attribute":"meter_number","field":"meter_number"},
				{"attribute":"contract","relations":{"operation":"_set","items":[{"entity_schema":"contract","unique_ids":[{"attribute":"contract_number","field":"vertrag"}]}]}}]}]}`),
	})
	seq := &eventSeq{}
	runPipeline(t, c, reg, []envelope.Event{
		seq.ev("contract-a", "contracts", `{"vertrag":"A"}`),
		seq.ev("contract-b", "contracts", `{"vertrag":"B"}`),
		seq.ev("a-with-two", "mirror", `{"vertrag":"A","zaehler":["M-1","M-2"]}`),
	})
	// Committed: M-1 and M-2 relate to A. Now M-1 moves to B, then A is mirrored without it.
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		seq.ev("b-takes-m1", "mirror", `{"vertrag":"B","zaehler":["M-1"]}`),
		seq.ev("a-keeps-m2", "mirror", `{"vertrag":"A","zaehler":["M-2"]}`),
	})
	for _, id := range []string{"b-takes-m1", "a-keeps-m2"} {
		if m := monitoring[id]; m.Code != "PRUNE_SCOPE_COMPLETED" {
			t.Fatalf("%s: %s %s", id, m.Code, m.Message)
		}
	}
	for _, w := range writes {
		if w.EventID == "a-keeps-m2" && w.Op == envelope.OpDelete {
			t.Errorf("A's mirror deleted %s, which had moved to B", w.EntityID)
		}
	}
}

// A late prune (its event received before the newest write of a member of its scope, as a spread
// org's or a replayed event can be) deletes only the members it is newer than: a member written
// by a later event is not its to prune.
func TestALatePruneLeavesWhatNewerEventsWrote(t *testing.T) {
	tariff := func(mode, scope string) json.RawMessage {
		return json.RawMessage(`{"entities":[{"entity_schema":"tariff","unique_ids":["code"],"mode":"` + mode + `"` + scope + `,
			"jsonataExpression":"tarife","fields":[{"attribute":"code","field":"code"},{"attribute":"provider","field":"$$.anbieter"}]}]}`)
	}
	c, reg := withUseCases(t, map[string]json.RawMessage{
		"tariffs-add":    tariff("upsert", ""),
		"tariffs-mirror": tariff("upsert-prune-scope-delete", `,"scope":{"scope_mode":"query","query":[{"attribute":"provider","field":"anbieter"}]}`),
	})
	tariffs := func(codes ...string) json.RawMessage {
		return json.RawMessage(`{"anbieter":"P","tarife":[{"code":"` + strings.Join(codes, `"},{"code":"`) + `"}]}`)
	}
	ev := func(id, useCase string, receivedUs int64, payload json.RawMessage) envelope.Event {
		return envelope.Event{EventID: id, OrgID: "org", IntegrationID: "int", UseCaseID: useCase, Format: "json", Payload: payload, ReceivedAtUs: receivedUs}
	}
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		ev("first", "tariffs-mirror", 1000, tariffs("T-1", "T-2")),
		ev("newer", "tariffs-add", 3000, tariffs("T-3")),
		ev("late", "tariffs-mirror", 2000, tariffs("T-1")),
	})
	for id, m := range monitoring {
		if m.Level != envelope.LevelSuccess {
			t.Fatalf("%s: %s %s", id, m.Code, m.Message)
		}
	}
	code := map[string]string{}
	for _, c := range []string{"T-1", "T-2", "T-3"} {
		u := mapping.EntityUpdate{EntitySlug: "tariff", UniqueIdentifiers: mapping.Attributes{{Name: "code", Value: c}}}
		code[u.EntityID("org")] = c
	}
	deleted := map[string]bool{}
	for _, w := range writes {
		if w.Op == envelope.OpDelete {
			deleted[code[w.EntityID]] = true
		}
	}
	if !deleted["T-2"] || deleted["T-3"] || deleted["T-1"] {
		t.Fatalf("deleted %v, want T-2 only (T-3 was written by a newer event)", deleted)
	}
}
