package envelope

import (
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Headers are the headers of every record about an event (the event itself, its monitoring
// rows): who it belongs to, readable without decoding the value.
func Headers(e *Event) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: HeaderOrg, Value: []byte(e.OrgID)},
		{Key: HeaderIntegration, Value: []byte(e.IntegrationID)},
		{Key: HeaderUseCase, Value: []byte(e.UseCaseID)},
		{Key: HeaderCorrelationID, Value: []byte(e.CorrelationID)},
		{Key: HeaderSchema, Value: []byte(SchemaVersion)},
	}
}

// EventRecord is an event's record on the events topic. Ingestion and replay both write through
// it, so a replayed event is on the wire exactly what a received one is.
func EventRecord(topic string, e *Event) *kgo.Record {
	value := e.AppendJSON(make([]byte, 0, len(e.Payload)+512))
	return &kgo.Record{Topic: topic, Key: RecordKey(e), Value: value, Headers: Headers(e)}
}

// MonitoringRecord is a monitoring row's record on the monitoring topic, keyed and headed by the
// event it is about.
func MonitoringRecord(topic string, e *Event, m *MonitoringEvent) *kgo.Record {
	value := m.AppendJSON(make([]byte, 0, 256+len(m.Message)+len(m.Detail)))
	return &kgo.Record{Topic: topic, Key: MonitoringKey(e), Value: value, Headers: Headers(e)}
}

// CallRecord is the monitoring record of an outbound call (a managed call, a proxied request):
// the call stands in for the event, so it is keyed and headed like one.
func CallRecord(topic string, m *MonitoringEvent) *kgo.Record {
	e := Event{EventID: m.EventID, OrgID: m.OrgID, IntegrationID: m.IntegrationID, UseCaseID: m.UseCaseID, CorrelationID: m.CorrelationID}
	return MonitoringRecord(topic, &e, m)
}

// MonitoringKey is the record key of an event's monitoring rows.
func MonitoringKey(e *Event) []byte { return []byte(e.OrgID + "/" + e.EventID) }

// AppendJSON appends the event's JSON encoding (as encoding/json would write it) without
// reflection: ingest's hot path. The payload is copied as the raw literal it is.
func (e *Event) AppendJSON(b []byte) []byte {
	first := true
	field := func(name, v string, omitEmpty bool) {
		if omitEmpty && v == "" {
			return
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
		b = AppendJSONString(b, v)
	}
	b = append(b, '{')
	field("event_id", e.EventID, false)
	field("org_id", e.OrgID, false)
	field("integration_id", e.IntegrationID, false)
	field("use_case_id", e.UseCaseID, false)
	field("use_case_slug", e.UseCaseSlug, true)
	field("event_name", e.EventName, true)
	field("event_type", e.EventType, true)
	field("timestamp", e.Timestamp, false)
	field("format", e.Format, false)
	b = append(b, `,"payload":`...)
	if len(e.Payload) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Payload...)
	}
	field("deduplication_id", e.DeduplicationID, true)
	field("correlation_id", e.CorrelationID, false)
	b = strconv.AppendInt(append(b, `,"received_at_us":`...), e.ReceivedAtUs, 10)
	if e.Replay {
		b = append(b, `,"replay":true`...)
	}
	field("replay_run", e.ReplayRun, true)
	if e.ReplayedAtMs != 0 {
		b = strconv.AppendInt(append(b, `,"replayed_at_ms":`...), e.ReplayedAtMs, 10)
	}
	if e.ConfigPosition != 0 {
		b = strconv.AppendInt(append(b, `,"config_position":`...), e.ConfigPosition, 10)
	}
	if len(e.Mapped) > 0 {
		b = append(append(b, `,"mapped":`...), e.Mapped...)
	}
	return append(b, '}')
}
