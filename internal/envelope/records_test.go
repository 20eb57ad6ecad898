package envelope

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
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

// An event's records carry the org in key and headers, and decode back to what was written.
func TestEventAndMonitoringRecordsRoundTrip(t *testing.T) {
	e := Event{EventID: "evt_1", OrgID: "org-a", IntegrationID: "int", UseCaseID: "uc", Timestamp: "t", Format: "json",
		Payload: json.RawMessage(`{"a":1}`), CorrelationID: "c", ReceivedAtUs: 7}
	rec := EventRecord("events", &e)
	var back Event
	if err := json.Unmarshal(rec.Value, &back); err != nil || !reflect.DeepEqual(back, e) {
		t.Fatalf("event record decodes to %+v (%v), want %+v", back, err, e)
	}
	if rec.Topic != "events" || string(rec.Key) != "org-a/int/uc/evt_1" {
		t.Errorf("event record topic %q key %q", rec.Topic, rec.Key)
	}
	e.DeduplicationID = "d"
	if k := string(EventRecord("events", &e).Key); k != "org-a/int/dedup/d" {
		t.Errorf("key with a deduplication id: %q", k)
	}
	m := MonitoringEvent{ID: "m1", OrgID: "org-a", EventID: "evt_1", Level: LevelError, Code: "X", CreatedAtMs: 3}
	mrec := MonitoringRecord("monitoring", &e, &m)
	var mback MonitoringEvent
	if err := json.Unmarshal(mrec.Value, &mback); err != nil || !reflect.DeepEqual(mback, m) {
		t.Fatalf("monitoring record decodes to %+v (%v)", mback, err)
	}
	if string(mrec.Key) != "org-a/evt_1" {
		t.Errorf("monitoring key %q", mrec.Key)
	}
	for _, r := range [][]kgo.RecordHeader{rec.Headers, mrec.Headers} {
		if len(r) == 0 || r[0].Key != HeaderOrg || string(r[0].Value) != "org-a" {
			t.Errorf("headers %v: first must be the org", r)
		}
	}
}
