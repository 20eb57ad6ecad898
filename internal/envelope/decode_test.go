package envelope_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
)

// sampleRecords are records as erpstream writes them, with the corners encoding/json accepts:
// invalid UTF-8 in a payload string, escapes, null and absent fields, large numbers.
func sampleRecords() map[string][]byte {
	ev := envelope.Event{EventID: "e1", OrgID: "o", IntegrationID: "i", UseCaseID: "u", UseCaseSlug: "s",
		DeduplicationID: "d", CorrelationID: "c", ReceivedAtUs: 1767261600000123, ConfigPosition: 42, Mapped: json.RawMessage(`{"extraction":[1,{"Entities":[]}]}`),
		Payload: json.RawMessage("{\"name\":\"K\xff\xfeln \\u00e4\",\"n\":12345678901234567890,\"list\":[1,null,{\"a\":true}]}")}
	w := envelope.EntityWrite{OrgID: "o", EntitySchema: "contact", EntityID: "x", Op: envelope.OpUpsert,
		UniqueIdentifiers: json.RawMessage(`{"customer_number":"K-1"}`), Attributes: json.RawMessage(`{"email":"a@b.c","tags":["x"]}`),
		Version: 1767261600000123, EventID: "e1", WrittenAtMs: 1767261600000, Change: envelope.ChangeCreated}
	m := envelope.MonitoringEvent{ID: "m1", EventID: "e1", OrgID: "o", Level: "error", Code: "MAPPING_FAILED",
		Message: "quote \" and \\ and \u2028", Detail: json.RawMessage(`{"entities":[]}`)}
	a := envelope.AccessLog{RequestID: "r1", OrgID: "o", Method: "POST", Path: "/v3/erp/updates/events", Status: 202}
	out := map[string][]byte{"event": ev.AppendJSON(nil), "entity write": w.AppendJSON(nil)}
	for name, v := range map[string]any{"monitoring": &m, "access log": &a, "event (encoding/json)": &ev, "entity write (encoding/json)": &w} {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		out[name] = b
	}
	out["repeated name"] = []byte(`{"event_id":"first","event_id":"last","org_id":"o"}`)
	out["null payload"] = []byte(`{"event_id":"e","payload":null}`)
	return out
}

func TestDecodeReadsWhatEncodingJSONReads(t *testing.T) {
	for name, b := range sampleRecords() {
		for _, mk := range []func() any{
			func() any { return &envelope.Event{} }, func() any { return &envelope.EntityWrite{} },
			func() any { return &envelope.MonitoringEvent{} }, func() any { return &envelope.AccessLog{} },
		} {
			want, got := mk(), mk()
			errWant := json.Unmarshal(b, want)
			errGot := envelope.Decode(b, got)
			if (errWant == nil) != (errGot == nil) {
				t.Errorf("%s into %T: encoding/json %v, Decode %v", name, want, errWant, errGot)
				continue
			}
			if !reflect.DeepEqual(want, got) {
				t.Errorf("%s into %T:\n encoding/json %+v\n Decode        %+v", name, want, want, got)
			}
		}
	}
}

func TestDecodeRefusesWhatIsNotJSON(t *testing.T) {
	for _, b := range []string{``, `{`, `{"event_id":}`, `[1,2]`, `{"received_at_us":"x"}`} {
		var ev envelope.Event
		if err := envelope.Decode([]byte(b), &ev); err == nil {
			t.Errorf("%q decoded without an error", b)
		}
	}
}

func BenchmarkDecodeEventRecord(b *testing.B) {
	rec := sampleRecords()["event"]
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			var ev envelope.Event
			_ = json.Unmarshal(rec, &ev)
		}
	})
	b.Run("Decode", func(b *testing.B) {
		for b.Loop() {
			var ev envelope.Event
			_ = envelope.Decode(rec, &ev)
		}
	})
}

// A monitoring row written by AppendJSON reads back as json.Marshal's document does, whatever its
// message holds.
func TestMonitoringAppendJSONReadsLikeJSONMarshal(t *testing.T) {
	for _, m := range []envelope.MonitoringEvent{
		{ID: "m1", OrgID: "o", IntegrationID: "i", EventID: "e", CorrelationID: "c", UseCaseID: "u", UseCaseType: "inbound",
			Level: envelope.LevelError, Code: "MAPPING_FAILED", Message: "quote \" backslash \\ tab \t <b>&</b> \u2028 K\xffln",
			Detail: json.RawMessage(`{"entities":[{"entity_schema":"contact"}],"n":1.5}`), CreatedAtMs: 1767261600123},
		{ID: "m2", Level: envelope.LevelSuccess, CreatedAtMs: -1},
		{},
	} {
		var fromAppend, fromMarshal envelope.MonitoringEvent
		if err := json.Unmarshal(m.AppendJSON(nil), &fromAppend); err != nil {
			t.Fatalf("%s: %v in %s", m.ID, err, m.AppendJSON(nil))
		}
		b, _ := json.Marshal(&m)
		_ = json.Unmarshal(b, &fromMarshal)
		if !reflect.DeepEqual(fromAppend, fromMarshal) {
			t.Errorf("AppendJSON reads back as %+v, json.Marshal's as %+v", fromAppend, fromMarshal)
		}
	}
}
