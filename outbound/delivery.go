// Package outbound delivers entity changes to ERP webhooks: it matches each change to the enabled
// outbound use cases of its org, maps it with each enabled mapping's JSONata, and POSTs the
// result, signed the Standard Webhooks way, through the egress client. Failed attempts are
// retried through delay topics (never by sleeping in a consumer), dead-lettered after the last,
// and every attempt and outcome is a row in the outbound monitoring lane. Acknowledgements
// (_ack_id) are tracked in a compacted topic. See docs/outbound.md.
package outbound

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"time"
)

// Sources of a delivery (the payload's _event_source).
const (
	SourceChange  = "entity_change" // an entity write matched an outbound use case
	SourceTrigger = "automation"    // POST /v1/erp/trigger
)

// Delivery is one payload for one webhook: what a retry topic and the dead-letter topic hold.
// The payload is mapped once, at the first attempt; retries send the same bytes.
type Delivery struct {
	// ID is the webhook-id header: derived from the change and the mapping, so every attempt and
	// every redelivery of it carries the same id and receivers can drop repeats.
	ID            string `json:"id"`
	OrgID         string `json:"org_id"`
	IntegrationID string `json:"integration_id"` // of the outbound use case
	UseCaseID     string `json:"use_case_id"`
	MappingID     string `json:"mapping_id"`
	MappingName   string `json:"mapping_name,omitempty"`
	WebhookID     string `json:"webhook_id,omitempty"`
	WebhookURL    string `json:"webhook_url,omitempty"` // the mapping's delivery.webhook_url
	EventName     string `json:"event_name"`
	Source        string `json:"source"`
	// The change (or trigger) the delivery is about.
	EntitySchema  string `json:"entity_schema,omitempty"`
	EntityID      string `json:"entity_id,omitempty"`
	Version       uint64 `json:"version,omitempty"`
	EventID       string `json:"event_id,omitempty"` // the inbound event that caused the change
	CorrelationID string `json:"correlation_id,omitempty"`
	AckID         string `json:"ack_id,omitempty"`
	// Payload is the JSON body sent.
	Payload json.RawMessage `json:"payload"`
	// Attempts made so far; FirstAttemptMs is when the first was made.
	Attempts       int   `json:"attempts"`
	FirstAttemptMs int64 `json:"first_attempt_ms,omitempty"`
	// DueMs is when the next attempt may be made (retry topics).
	DueMs int64 `json:"due_ms,omitempty"`
	// Redelivery counts manual redeliveries of a dead letter.
	Redelivery int `json:"redelivery,omitempty"`
	// LastError is the last attempt's outcome (dead letters).
	LastError string `json:"last_error,omitempty"`
	// TraceParent is the W3C trace context of the entity write (from the request that caused
	// the change): every attempt, retries included, is a span of that trace.
	TraceParent string `json:"traceparent,omitempty"`
}

// Due is when the next attempt may be made.
func (d *Delivery) Due() time.Time { return time.UnixMilli(d.DueMs) }

// DeliveryID is the stable webhook-id of a change delivered through one mapping:
// "msg_" and 32 hex digits of a hash of org, use case, mapping, entity and version.
func DeliveryID(org, useCaseID, mappingID, entityID string, version uint64, eventID string) string {
	h := sha256.New()
	for _, part := range []string{org, useCaseID, mappingID, entityID, eventID} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	var v [8]byte
	for i := range v {
		v[i] = byte(version >> (8 * i))
	}
	h.Write(v[:])
	return "msg_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// recordKey keys a delivery's records (retry, dead letter): by org and entity, like the change.
func (d *Delivery) recordKey() []byte { return []byte(d.OrgID + "/" + d.EntityID) }
