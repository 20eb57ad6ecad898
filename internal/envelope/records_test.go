package envelope

import (
	"encoding/json"
	"reflect"
	"testing"
)

// The hand-written encoding of events (ingest's hot path, replay) decodes to the same event, and
// writes what encoding/json writes for strings without HTML characters.
func TestEventJSONRoundTrips(t *testing.T) {
	events := []Event{
		{EventID: "evt_1", OrgID: "org", IntegrationID: "int", UseCaseID: "uc", Timestamp: "2025-05-01T08:30:00Z", Format: "json",
			Payload: json.RawMessage(`"{\"a\":1}"`), CorrelationID: "c", ReceivedAtUs: 1},
		{EventID: "evt_2", OrgID: "org", IntegrationID: "int", UseCaseID: "uc", UseCaseSlug: "customer", EventName: "customer",
			EventType: "DELETE", Timestamp: "t", Format: "xml", Payload: json.RawMessage(`{"k":"Köln \"quoted\"\n"}`),
			DeduplicationID: "d-1", CorrelationID: "replay_c", ReceivedAtUs: 1700000000000000, Replay: true,
			ReplayRun: "run", ReplayedAtMs: 1700000001000, ConfigPosition: 42},
		{EventID: "evt_3", OrgID: "org", Format: "json", Payload: json.RawMessage(`{}`), CorrelationID: "bad utf-8 \xff"},
	}
	for _, e := range events {
		b := e.AppendJSON(nil)
		var back Event
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v\n%s", e.EventID, err, b)
		}
		want := e
		if e.EventID == "evt_3" {
			want.CorrelationID = "bad utf-8 \ufffd"
		}
		if !reflect.DeepEqual(back, want) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", e.EventID, back, want)
		}
		if e.EventID != "evt_3" {
			std, _ := json.Marshal(&e)
			if string(std) != string(b) {
				t.Errorf("%s: encoding differs from encoding/json\n got %s\nwant %s", e.EventID, b, std)
			}
		}
	}
}
