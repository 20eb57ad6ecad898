package processor_test

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
)

// readingsConfig is worked example 6 with the given matching, mode and scope.
func readingsConfig(matching, mode, scope string) json.RawMessage {
	return json.RawMessage(`{"meter_readings":[{"jsonataExpression":"ablesungen","reading_matching":"` + matching + `","mode":"` + mode + `"` + scope + `,
		"meter":{"unique_ids":[{"attribute":"meter_number","field":"zaehler"}]},
		"meter_counter":{"unique_ids":[{"attribute":"obis_number","constant":"1-0:1.8.0"}]},
		"fields":[{"attribute":"external_id","jsonataExpression":"zaehler & '-' & datum"},{"attribute":"timestamp","field":"datum"},
			{"attribute":"value","jsonataExpression":"$number(stand)"},{"attribute":"source","constant":"ERP"}]}]}`)
}

// meter-reading matching (worked example 6) on the pipeline: strict-date matches ECP readings by Europe/Berlin
// day, by external id once matched; two on one day are skipped; pruning keeps other sources.
func TestMeterReadingsStrictDateAndPruneScope(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{
		"setup": json.RawMessage(`{"entities":[{"entity_schema":"meter","unique_ids":["meter_number"],"fields":[{"attribute":"meter_number","field":"nr"}]},
			{"entity_schema":"meter_counter","unique_ids":["obis_number"],"fields":[{"attribute":"obis_number","constant":"1-0:1.8.0"}]}]}`),
		"ecp": json.RawMessage(`{"meter_readings":[{"jsonataExpression":"readings",
			"meter":{"unique_ids":[{"attribute":"meter_number","constant":"Z-1"}]},
			"meter_counter":{"unique_ids":[{"attribute":"obis_number","constant":"1-0:1.8.0"}]},
			"fields":[{"attribute":"external_id","field":"id"},{"attribute":"timestamp","field":"ts"},{"attribute":"value","field":"v"},
				{"attribute":"source","constant":"ECP"}]}]}`),
		"erp":    readingsConfig("strict-date", "upsert", ""),
		"remove": readingsConfig("strict-date", "delete", ""),
		"mirror": readingsConfig("external_id", "upsert-prune-scope", `,"scope":{"source":"ERP"}`),
	})
	seq := &eventSeq{}
	ev := seq.ev
	erp := func(id, useCase string, days ...string) envelope.Event {
		var rs []string
		for _, d := range days {
			rs = append(rs, `{"zaehler":"Z-1","datum":"`+d+`","stand":"1"}`)
		}
		return ev(id, useCase, `{"zaehler":"Z-1","ablesungen":[`+strings.Join(rs, ",")+`]}`)
	}
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		ev("setup", "setup", `{"nr":"Z-1"}`),
		// 22:30Z is 23:30 in Berlin on 10 March; 23:30Z is 00:30 on 11 March.
		ev("ecp", "ecp", `{"readings":[{"id":"ecp-1","ts":"2025-03-10T22:30:00Z","v":1},{"id":"ecp-2","ts":"2025-03-10T23:30:00Z","v":2},
			{"id":"ecp-3","ts":"2025-03-12T08:00:00+01:00","v":3},{"id":"ecp-4","ts":"2025-03-12T18:00:00+01:00","v":4}]}`),
		erp("erp-10", "erp", "2025-03-10"),
		erp("erp-10-again", "erp", "2025-03-10"),
		erp("erp-12", "erp", "2025-03-12"),
		erp("erp-15", "erp", "2025-03-15"),
		erp("remove-11", "remove", "2025-03-11"),
		erp("mirror", "mirror", "2025-03-10", "2025-03-16"),
		erp("mirror-empty", "mirror"),
	})
	want := map[string]string{"setup": "ENTITY_CREATED", "ecp": "METER_READING_UPSERTED", "erp-10": "METER_READING_UPSERTED",
		"erp-10-again": "METER_READING_UPSERTED", "erp-12": "METER_READING_MULTIPLE_MATCHES", "erp-15": "METER_READING_UPSERTED",
		"remove-11": "METER_READING_DELETED", "mirror": "METER_READING_UPSERTED", "mirror-empty": "METER_READING_DELETED"}
	for id, code := range want {
		if m := monitoring[id]; m.Code != code {
			t.Errorf("%s: %s (%s), want %s", id, m.Code, m.Message, code)
		}
	}
	if m := monitoring["erp-12"]; m.Level != envelope.LevelWarning || !strings.Contains(m.Message, "2025-03-12") {
		t.Errorf("erp-12: %s %q, want a warning naming the day", m.Level, m.Message)
	}
	byEvent := map[string][]envelope.EntityWrite{}
	idOf := map[string]string{} // external id of the first write -> entity id
	for _, w := range writes {
		if w.EntitySchema != "meter_reading" {
			continue
		}
		byEvent[w.EventID] = append(byEvent[w.EventID], w)
		var attrs map[string]any
		must(t, json.Unmarshal(w.Attributes, &attrs))
		if x, ok := attrs["external_id"].(string); ok && w.EventID == "ecp" {
			idOf[x] = w.EntityID
		}
	}
	one := func(event string) envelope.EntityWrite {
		t.Helper()
		if len(byEvent[event]) != 1 {
			t.Fatalf("%s: %d reading writes, want 1", event, len(byEvent[event]))
		}
		return byEvent[event][0]
	}
	// The ERP's date-only reading of 10 March updates the ECP reading of that Berlin day in place.
	w := one("erp-10")
	if w.EntityID != idOf["ecp-1"] || w.Op != envelope.OpUpsert || !strings.Contains(string(w.Attributes), `"external_id":"Z-1-2025-03-10"`) {
		t.Errorf("erp-10 wrote %s %s %s, want ecp-1's reading (%s) with the ERP's external id", w.EntityID, w.Op, w.Attributes, idOf["ecp-1"])
	}
	if again := one("erp-10-again"); again.EntityID != idOf["ecp-1"] {
		t.Error("the ERP reading sent again is not matched by its external id")
	}
	if len(byEvent["erp-12"]) != 0 {
		t.Errorf("an ambiguous day match wrote %d readings", len(byEvent["erp-12"]))
	}
	created := one("erp-15").EntityID
	for _, id := range idOf {
		if id == created {
			t.Error("a reading with no match on its day reused an ECP reading")
		}
	}
	// Delete with strict-date falls back to the Berlin day: ecp-2 (00:30 on 11 March).
	if d := one("remove-11"); d.EntityID != idOf["ecp-2"] || d.Op != envelope.OpPurge {
		t.Errorf("remove-11 %s %s, want ecp-2 (%s) purged", d.EntityID, d.Op, idOf["ecp-2"])
	}
	// The mirror keeps 10 March, adds 16 March and prunes only ERP readings: 15 March.
	ops := map[string]envelope.EntityOp{}
	for _, w := range byEvent["mirror"] {
		ops[w.EntityID] = w.Op
	}
	if len(ops) != 3 || ops[idOf["ecp-1"]] != envelope.OpUpsert || ops[created] != envelope.OpPurge {
		t.Errorf("mirror writes %v, want ecp-1/10 March upserted, 16 March created, 15 March (%s) purged", ops, created)
	}
	// An empty list prunes every ERP reading of the counter named by the payload: 10 and 16 March.
	var purged []string
	for _, w := range byEvent["mirror-empty"] {
		if w.Op != envelope.OpPurge {
			t.Errorf("mirror-empty wrote %s", w.Op)
		}
		purged = append(purged, w.EntityID)
	}
	sort.Strings(purged)
	if len(purged) != 2 || (purged[0] != idOf["ecp-1"] && purged[1] != idOf["ecp-1"]) {
		t.Errorf("mirror-empty purged %v, want the two ERP readings (one of them %s)", purged, idOf["ecp-1"])
	}
}

// Readings of one event see each other: a strict-date reading matches one written earlier in the
// same event on its Berlin day, and a later event finds it by the external id it was given.
func TestMeterReadingsOfOneEventMatchEachOther(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{
		"setup": json.RawMessage(`{"entities":[{"entity_schema":"meter","unique_ids":["meter_number"],"fields":[{"attribute":"meter_number","field":"nr"}]},
			{"entity_schema":"meter_counter","unique_ids":["obis_number"],"fields":[{"attribute":"obis_number","constant":"1-0:1.8.0"}]}]}`),
		"strict": json.RawMessage(`{"meter_readings":[{"jsonataExpression":"readings","reading_matching":"strict-date",
			"meter":{"unique_ids":[{"attribute":"meter_number","constant":"Z-1"}]},
			"meter_counter":{"unique_ids":[{"attribute":"obis_number","constant":"1-0:1.8.0"}]},
			"fields":[{"attribute":"external_id","field":"id"},{"attribute":"timestamp","field":"ts"},{"attribute":"value","field":"v"},
				{"attribute":"source","constant":"ERP"}]}]}`),
	})
	seq := &eventSeq{}
	runPipeline(t, c, reg, []envelope.Event{
		seq.ev("setup", "setup", `{"nr":"Z-1"}`),
		seq.ev("one-event", "strict", `{"readings":[{"id":"r-1","ts":"2025-04-01T08:00:00+02:00","v":1},
			{"id":"r-2","ts":"2025-04-01T20:00:00+02:00","v":2},{"id":"r-3","ts":"2025-04-02T08:00:00+02:00","v":3}]}`),
	})
	// A processor started again finds the readings through the index its store kept (the
	// results are read from the topics: both runs').
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		seq.ev("later", "strict", `{"readings":[{"id":"r-2","ts":"2025-04-01T21:00:00+02:00","v":4}]}`),
		seq.ev("same-day", "strict", `{"readings":[{"id":"r-9","ts":"2025-04-02T23:00:00+02:00","v":5}]}`),
	})
	byEvent := map[string][]string{}
	for _, w := range writes {
		if w.EntitySchema == "meter_reading" {
			byEvent[w.EventID] = append(byEvent[w.EventID], w.EntityID)
		}
	}
	for _, id := range []string{"one-event", "later", "same-day"} {
		if m := monitoring[id]; m.Code != "METER_READING_UPSERTED" {
			t.Fatalf("%s: %s %s", id, m.Code, m.Message)
		}
	}
	got := byEvent["one-event"]
	if len(got) != 3 || got[0] != got[1] || got[2] == got[0] {
		t.Fatalf("one event's readings wrote %v, want r-2 on r-1's reading (same Berlin day) and r-3 on one of its own", got)
	}
	if later := byEvent["later"]; len(later) != 1 || later[0] != got[0] {
		t.Errorf("the later event wrote %v, want the reading r-2 was matched to (%s)", later, got[0])
	}
	if sameDay := byEvent["same-day"]; len(sameDay) != 1 || sameDay[0] != got[2] {
		t.Errorf("a reading on r-3's Berlin day wrote %v, want r-3's reading (%s)", sameDay, got[2])
	}
}
