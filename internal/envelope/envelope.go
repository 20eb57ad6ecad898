// Package envelope holds the records that travel between the services over Kafka:
// received events, entity writes and monitoring events. Every record carries its org.
package envelope

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// Header names set on every record so that operators can inspect topics without decoding values.
const (
	HeaderOrg           = "erp-org"
	HeaderIntegration   = "erp-integration"
	HeaderUseCase       = "erp-use-case"
	HeaderCorrelationID = "erp-correlation-id"
	HeaderSchema        = "erp-schema-version"
)

// SchemaVersion of the JSON values below; bump when a change is not additive.
const SchemaVersion = "1"

// Event is one accepted ERP event as ingest stored it in the events topic.
type Event struct {
	EventID       string `json:"event_id"`
	OrgID         string `json:"org_id"`
	IntegrationID string `json:"integration_id"`
	UseCaseID     string `json:"use_case_id"`
	UseCaseSlug   string `json:"use_case_slug,omitempty"`
	EventName     string `json:"event_name,omitempty"`
	EventType     string `json:"event_type,omitempty"`
	Timestamp     string `json:"timestamp"`
	Format        string `json:"format"`
	// Payload is the payload as it arrived: a JSON string literal (JSON or XML text) or a JSON
	// object. Document returns the text to parse.
	Payload         json.RawMessage `json:"payload"`
	DeduplicationID string          `json:"deduplication_id,omitempty"`
	CorrelationID   string          `json:"correlation_id"`
	ReceivedAtUs    int64           `json:"received_at_us"`
	// Replay marks an event re-enqueued from the stored raw events: deduplication is bypassed,
	// except within one bulk replay run (ReplayRun), whose events carry a deduplication id of
	// the run and the original event, so a run resumed from an older cursor maps nothing twice.
	Replay    bool   `json:"replay,omitempty"`
	ReplayRun string `json:"replay_run,omitempty"`
	// ReplayedAtMs is when a run's event was replayed: its deduplication window counts from
	// then (the original receive time may be days old).
	ReplayedAtMs int64 `json:"replayed_at_ms,omitempty"`
	// ConfigPosition is the configuration log position the event was accepted under: the
	// processor maps it with configuration at least that new (a use case created just before
	// is found, even by a processor whose registry lags).
	ConfigPosition int64 `json:"config_position,omitempty"`
	// Mapped is a spread org's event mapped by the processor instance that polled it, for the
	// instance holding the org's partition to apply (processor: the mapping's outcome and
	// extraction); only on the processor's copies in the events topic.
	Mapped json.RawMessage `json:"mapped,omitempty"`
}

// ReceivedAt is when ingest accepted the event; mapping treats it as "now" so replays map alike.
func (e *Event) ReceivedAt() time.Time { return time.UnixMicro(e.ReceivedAtUs).UTC() }

// EntityOp is what an entity write does to the entity's latest state.
type EntityOp string

const (
	OpUpsert EntityOp = "upsert"
	OpDelete EntityOp = "delete" // soft: the row is marked deleted and keeps its attributes
	OpPurge  EntityOp = "purge"  // hard: marked deleted with its attributes dropped; a later upsert starts afresh
)

// EntityWrite is one planned change of one entity, produced by the processor.
type EntityWrite struct {
	OrgID             string          `json:"org_id"`
	EntitySchema      string          `json:"entity_schema"`
	EntityID          string          `json:"entity_id"`
	Op                EntityOp        `json:"op"`
	UniqueIdentifiers json.RawMessage `json:"unique_identifiers"`
	Attributes        json.RawMessage `json:"attributes"`
	// Version orders writes of one entity: the event's receive time in microseconds, so the
	// latest received event wins whatever order partitions are processed in.
	Version       uint64 `json:"version"`
	IntegrationID string `json:"integration_id"`
	UseCaseID     string `json:"use_case_id"`
	EventID       string `json:"event_id"`
	CorrelationID string `json:"correlation_id"`
	WrittenAtMs   int64  `json:"written_at_ms"`
	// Change is what the write does to the entity as the API sees it (ChangeCreated, ChangeUpdated,
	// ChangeDeleted), empty when it changes nothing visible (a delete of an unknown entity, a
	// placeholder for a related entity): each non-empty one is a catalog event for outbound.
	Change string `json:"change,omitempty"`
	// AttributeVersions is the projector's bookkeeping stored with the row (not sent on Kafka).
	AttributeVersions json.RawMessage `json:"-"`
}

// Changes an entity write makes, named as the catalog events "<schema>.created" etc.
const (
	ChangeCreated = "created"
	ChangeUpdated = "updated"
	ChangeDeleted = "deleted"
)

// CatalogEvent names the catalog event of a change: "contract.created".
func (w *EntityWrite) CatalogEvent() string {
	if w.Change == "" {
		return ""
	}
	return w.EntitySchema + "." + w.Change
}

// Level of a monitoring event. Stored as is; the 0.58.0 API has no "info" and shows it as "skipped".
type Level string

const (
	LevelSuccess Level = "success"
	LevelError   Level = "error"
	LevelWarning Level = "warning"
	LevelSkipped Level = "skipped"
	LevelInfo    Level = "info"
)

// Levels lists every level in the order the store's enum declares them.
var Levels = []Level{LevelSuccess, LevelError, LevelWarning, LevelSkipped, LevelInfo}

// ValidLevel reports whether s names a level.
func ValidLevel(s string) bool {
	for _, l := range Levels {
		if string(l) == s {
			return true
		}
	}
	return false
}

// MonitoringEvent is one row of the monitoring trail (MonitoringEventV2 in the API).
type MonitoringEvent struct {
	// ID is derived from the event id and the stage that produced the row, so a reprocessed
	// event yields the same id and the store collapses the duplicate.
	ID            string          `json:"id"`
	OrgID         string          `json:"org_id"`
	IntegrationID string          `json:"integration_id"`
	EventID       string          `json:"event_id"`
	CorrelationID string          `json:"correlation_id"`
	UseCaseID     string          `json:"use_case_id"`
	UseCaseType   string          `json:"use_case_type"`
	Level         Level           `json:"level"`
	Code          string          `json:"code"`
	Message       string          `json:"message"`
	Detail        json.RawMessage `json:"detail,omitempty"`
	CreatedAtMs   int64           `json:"created_at_ms"`
}

// Document returns the payload text: the content of a string payload, or the object itself.
func (e *Event) Document() ([]byte, error) {
	p := bytes.TrimSpace(e.Payload)
	if len(p) > 0 && p[0] == '"' {
		var s string
		if err := json.Unmarshal(p, &s); err != nil {
			return nil, err
		}
		return []byte(s), nil
	}
	return p, nil
}

// StringPayload makes a string payload (the usual form) from its text.
func StringPayload(text string) json.RawMessage {
	b, _ := json.Marshal(text)
	return b
}

// AccessLog is one API call (AccessLogEntry in the API): never the token, only its id.
type AccessLog struct {
	OrgID         string `json:"org_id"`
	RequestID     string `json:"request_id"`
	TokenID       string `json:"token_id"`
	Service       string `json:"service"`
	Method        string `json:"method"`
	Path          string `json:"path"`
	Route         string `json:"route"`
	Status        int    `json:"status"`
	LatencyMs     int64  `json:"latency_ms"`
	IntegrationID string `json:"integration_id,omitempty"`
	AtMs          int64  `json:"at_ms"`
}

// AppendJSON appends w as JSON, the same document json.Marshal writes, without reflection and
// without validating the raw fields again: the processor writes one per entity update, and
// encoding/json spent most of its time re-compacting the attributes the mapping had just encoded.
// UniqueIdentifiers and Attributes must be valid JSON.
func (w *EntityWrite) AppendJSON(b []byte) []byte {
	str := func(b []byte, key, v string) []byte {
		return AppendJSONString(append(b, key...), v)
	}
	raw := func(b []byte, key string, v json.RawMessage) []byte {
		b = append(b, key...)
		if len(v) == 0 {
			return append(b, "null"...)
		}
		return append(b, v...)
	}
	b = str(b, `{"org_id":`, w.OrgID)
	b = str(b, `,"entity_schema":`, w.EntitySchema)
	b = str(b, `,"entity_id":`, w.EntityID)
	b = str(b, `,"op":`, string(w.Op))
	b = raw(b, `,"unique_identifiers":`, w.UniqueIdentifiers)
	b = raw(b, `,"attributes":`, w.Attributes)
	b = strconv.AppendUint(append(b, `,"version":`...), w.Version, 10)
	b = str(b, `,"integration_id":`, w.IntegrationID)
	b = str(b, `,"use_case_id":`, w.UseCaseID)
	b = str(b, `,"event_id":`, w.EventID)
	b = str(b, `,"correlation_id":`, w.CorrelationID)
	b = strconv.AppendInt(append(b, `,"written_at_ms":`...), w.WrittenAtMs, 10)
	if w.Change != "" {
		b = str(b, `,"change":`, w.Change)
	}
	return append(b, '}')
}

// AppendJSON appends m as JSON, the document json.Marshal writes but for its HTML escaping,
// without reflection: the processor writes one per event. Detail must be valid JSON (erpstream
// encodes it itself).
func (m *MonitoringEvent) AppendJSON(b []byte) []byte {
	str := func(b []byte, key, v string) []byte {
		return AppendJSONString(append(b, key...), v)
	}
	b = str(b, `{"id":`, m.ID)
	b = str(b, `,"org_id":`, m.OrgID)
	b = str(b, `,"integration_id":`, m.IntegrationID)
	b = str(b, `,"event_id":`, m.EventID)
	b = str(b, `,"correlation_id":`, m.CorrelationID)
	b = str(b, `,"use_case_id":`, m.UseCaseID)
	b = str(b, `,"use_case_type":`, m.UseCaseType)
	b = str(b, `,"level":`, string(m.Level))
	b = str(b, `,"code":`, m.Code)
	b = str(b, `,"message":`, m.Message)
	if len(m.Detail) > 0 {
		b = append(append(b, `,"detail":`...), m.Detail...)
	}
	b = strconv.AppendInt(append(b, `,"created_at_ms":`...), m.CreatedAtMs, 10)
	return append(b, '}')
}

// AppendJSONString appends v as a JSON string; invalid UTF-8 becomes U+FFFD, as encoding/json
// does (which also escapes <, > and &; decoders read both alike).
func AppendJSONString(b []byte, v string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(v); {
		c := v[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, v[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// RecordKey is an event's record key on the events topic: by deduplication id when it has one,
// so that every copy lands in one partition, where that partition's deduplication state is;
// else by event id.
func RecordKey(e *Event) []byte {
	if e.DeduplicationID != "" {
		return []byte(e.OrgID + "/" + e.IntegrationID + "/dedup/" + e.DeduplicationID)
	}
	return []byte(e.OrgID + "/" + e.IntegrationID + "/" + e.UseCaseID + "/" + e.EventID)
}
