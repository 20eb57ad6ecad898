package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/jsonata"
)

// MaxPayloadBytes caps a mapped payload: retry and dead-letter records carry it.
const MaxPayloadBytes = 1 << 20

// change is one catalog event with the entity as stored after it: what a mapping reads.
type change struct {
	write  envelope.EntityWrite
	entity StoredEntity
}

// StoredEntity is an entity's stored row as outbound reads it.
type StoredEntity struct {
	Version           uint64
	Deleted           bool
	Attributes        json.RawMessage
	UniqueIdentifiers json.RawMessage
}

// input builds the document an outbound mapping is evaluated over (docs/outbound.md):
//
//	{"_ack_id", "_event_source", "_event_version",
//	 "event": {name, org_id, entity_schema, entity_id, operation, version, occurred_at,
//	           source_integration_id, source_use_case_id, inbound_event_id, correlation_id},
//	 "entity": {"_id", "_schema", "_org", "_deleted", ...attributes},
//	 "changes": {attributes this change set},
//	 "unique_identifiers": {...}}
func input(ch *change, ackID, source string) (any, error) {
	w := &ch.write
	doc := jsonata.NewObject()
	if ackID != "" {
		doc.Set("_ack_id", ackID)
	}
	doc.Set("_event_source", source)
	doc.Set("_event_version", float64(w.Version))
	ev := jsonata.NewObject()
	ev.Set("name", w.CatalogEvent())
	ev.Set("org_id", w.OrgID)
	ev.Set("entity_schema", w.EntitySchema)
	ev.Set("entity_id", w.EntityID)
	ev.Set("operation", w.Change)
	ev.Set("version", float64(w.Version))
	ev.Set("occurred_at", time.UnixMicro(int64(w.Version)).UTC().Format(time.RFC3339Nano))
	ev.Set("source_integration_id", w.IntegrationID)
	ev.Set("source_use_case_id", w.UseCaseID)
	ev.Set("inbound_event_id", w.EventID)
	ev.Set("correlation_id", w.CorrelationID)
	doc.Set("event", ev)

	entity := jsonata.NewObject()
	entity.Set("_id", w.EntityID)
	entity.Set("_schema", w.EntitySchema)
	entity.Set("_org", w.OrgID)
	entity.Set("_deleted", ch.entity.Deleted)
	attrs, err := objectOf(ch.entity.Attributes)
	if err != nil {
		return nil, fmt.Errorf("stored attributes: %w", err)
	}
	for _, k := range attrs.Keys() {
		v, _ := attrs.Get(k)
		entity.Set(k, v)
	}
	doc.Set("entity", entity)
	changes, err := objectOf(w.Attributes)
	if err != nil {
		return nil, fmt.Errorf("change attributes: %w", err)
	}
	doc.Set("changes", changes)
	uids := ch.entity.UniqueIdentifiers
	if len(uids) == 0 {
		uids = w.UniqueIdentifiers
	}
	u, err := objectOf(uids)
	if err != nil {
		return nil, fmt.Errorf("unique identifiers: %w", err)
	}
	doc.Set("unique_identifiers", u)
	return doc, nil
}

// errMapping is a mapping that failed or produced no object: MAPPING_EXPRESSION_FAILED.
var errMapping = errors.New("outbound mapping failed")

// payload evaluates a mapping over doc and returns the body to send: the mapping's object with
// _ack_id, _event_source and _event_version added when the mapping did not copy them.
func payload(ctx context.Context, m *compiledMapping, doc any, now time.Time) ([]byte, error) {
	if m.err != nil {
		return nil, fmt.Errorf("%w: does not compile: %v", errMapping, m.err)
	}
	v, err := m.expr.Eval(ctx, doc, &jsonata.Env{Now: now})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMapping, err)
	}
	out, ok := v.(*jsonata.Object)
	switch {
	case v == jsonata.Undefined:
		return nil, fmt.Errorf("%w: the expression returned undefined", errMapping)
	case !ok:
		return nil, fmt.Errorf("%w: the expression must return an object", errMapping)
	}
	in := doc.(*jsonata.Object)
	for _, k := range []string{"_ack_id", "_event_source", "_event_version"} {
		if _, has := out.Get(k); !has {
			if x, ok := in.Get(k); ok {
				out.Set(k, x)
			}
		}
	}
	b, err := jsonata.MarshalValue(out)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMapping, err)
	}
	if len(b) > MaxPayloadBytes {
		return nil, fmt.Errorf("%w: the payload is %d bytes, over the %d byte limit", errMapping, len(b), MaxPayloadBytes)
	}
	return b, nil
}

// objectOf reads attributes as an object; a write without any (a delete) has null.
func objectOf(raw json.RawMessage) (*jsonata.Object, error) {
	if string(raw) == "null" {
		return jsonata.NewObject(), nil
	}
	return jsonata.DecodeObject(raw)
}
