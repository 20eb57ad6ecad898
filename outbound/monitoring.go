package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/ids"
)

var errOrgBusy = errors.New("the org has too many open outbound requests")

// Outbound monitoring codes (use_case_type "outbound").
const (
	CodeDelivered      = "WEBHOOK_DELIVERED"
	CodeRetrying       = "WEBHOOK_RETRYING"
	CodeFailed         = "WEBHOOK_FAILED"
	CodeDisabled       = "WEBHOOK_DISABLED"
	CodeMappingFailed  = "MAPPING_EXPRESSION_FAILED"
	CodeAckPending     = "ACK_PENDING"
	CodeAckConfirmed   = "ACK_CONFIRMED"
	CodeAckTimeout     = "ACK_TIMEOUT"
	CodeAckUntracked   = "ACK_TRACKING_SKIPPED"
	maxRecordedPayload = 16 << 10
)

// row is one monitoring row about a delivery.
type row struct {
	level   envelope.Level
	code    string
	message string
	detail  map[string]any
	// key tells the row apart from the delivery's other rows (its id derives from it).
	key string
}

func baseDetail(d *Delivery) map[string]any {
	det := map[string]any{
		"delivery_id": d.ID, "event_name": d.EventName, "mapping_id": d.MappingID, "mapping_name": d.MappingName,
		"webhook_config_id": d.WebhookID, "entity_id": d.EntityID, "entity_schema": d.EntitySchema,
		"source": d.Source, "attempt": d.Attempts, "http_method": "POST",
	}
	if d.AckID != "" {
		det["ack_tracking"] = true
	}
	if d.Redelivery > 0 {
		det["redelivery"] = d.Redelivery
	}
	if len(d.Payload) > 0 {
		if len(d.Payload) <= maxRecordedPayload {
			det["payload"] = json.RawMessage(d.Payload)
		} else {
			det["payload_truncated"] = true
			det["payload_bytes"] = len(d.Payload)
		}
	}
	return det
}

func withResponse(det map[string]any, o *outcome) map[string]any {
	if o.url != "" {
		det["url"] = o.url
	}
	if o.webhookID != "" {
		det["webhook_config_id"] = o.webhookID
	}
	if o.status > 0 {
		resp := map[string]any{"status_code": o.status}
		if len(o.respBody) > 0 {
			resp["message"] = string(o.respBody)
		}
		det["http_response"] = resp
		det["latency_ms"] = o.latency.Milliseconds()
	}
	if o.err != nil {
		det["error"] = o.err.Error()
	}
	return det
}

func attemptKey(d *Delivery, code string) string {
	return code + "/" + strconv.Itoa(d.Redelivery) + "/" + strconv.Itoa(d.Attempts)
}

func rowDelivered(d *Delivery, o *outcome) row {
	return row{level: envelope.LevelSuccess, code: CodeDelivered, key: attemptKey(d, CodeDelivered),
		message: "delivered to " + o.url + " (HTTP " + strconv.Itoa(o.status) + ", attempt " + strconv.Itoa(d.Attempts) + ")",
		detail:  withResponse(baseDetail(d), o)}
}

func rowRetrying(d *Delivery, o *outcome, wait time.Duration) row {
	det := withResponse(baseDetail(d), o)
	det["next_attempt_at"] = time.UnixMilli(d.DueMs).UTC().Format(time.RFC3339)
	return row{level: envelope.LevelWarning, code: CodeRetrying, key: attemptKey(d, CodeRetrying),
		message: "attempt " + strconv.Itoa(d.Attempts) + " failed (" + o.err.Error() + "); next in " + wait.Round(time.Second).String(),
		detail:  det}
}

func rowFailed(d *Delivery, o *outcome, dead bool) row {
	det := withResponse(baseDetail(d), o)
	msg := "delivery failed after " + strconv.Itoa(d.Attempts) + " attempt(s): " + o.err.Error()
	if dead {
		det["dead_lettered"] = true
		msg += "; dead-lettered (redeliver with POST /v1/integrations/{id}/outbound/redeliver)"
	}
	return row{level: envelope.LevelError, code: CodeFailed, key: attemptKey(d, CodeFailed), message: msg, detail: det}
}

func rowDisabled(d *Delivery, o *outcome) row {
	return row{level: envelope.LevelSkipped, code: CodeDisabled, key: attemptKey(d, CodeDisabled),
		message: o.err.Error() + ": not delivered", detail: withResponse(baseDetail(d), o)}
}

func rowMappingFailed(d *Delivery, err error) row {
	det := baseDetail(d)
	det["error"] = err.Error()
	return row{level: envelope.LevelError, code: CodeMappingFailed, key: CodeMappingFailed,
		message: "outbound use case " + d.UseCaseID + ", mapping " + mappingLabel(d) + ": " + err.Error(), detail: det}
}

func rowAckPending(d *Delivery) row {
	return row{level: envelope.LevelInfo, code: CodeAckPending, key: CodeAckPending + "/" + d.AckID,
		message: "waiting for the acknowledgement of " + d.ID, detail: baseDetail(d)}
}

func mappingLabel(d *Delivery) string {
	if d.MappingName != "" {
		return d.MappingName + " (" + d.MappingID + ")"
	}
	return d.MappingID
}

// record writes monitoring rows about d; their ids derive from the delivery and the attempt, so
// a row written again after a crash names the same row.
func (s *Service) record(ctx context.Context, d *Delivery, rows ...row) {
	for _, r := range rows {
		s.emit(ctx, d, r)
	}
}

func (s *Service) emit(ctx context.Context, d *Delivery, r row) {
	b, _ := json.Marshal(r.detail)
	m := &envelope.MonitoringEvent{
		ID: ids.NameUUID("monitoring", d.OrgID, d.ID, "outbound", r.key), OrgID: d.OrgID, IntegrationID: d.IntegrationID,
		EventID: d.ID, CorrelationID: d.CorrelationID, UseCaseID: d.UseCaseID, UseCaseType: "outbound",
		Level: r.level, Code: r.code, Message: r.message, Detail: b, CreatedAtMs: s.now().UnixMilli(),
	}
	rec := envelope.CallRecord(s.cfg.Topics.Monitoring, m)
	// Not the caller's context: a trigger's request may end before the row is flushed.
	s.cfg.Producer.Produce(context.WithoutCancel(ctx), rec, func(_ *kgo.Record, err error) {
		if err != nil {
			s.log.Warn("outbound monitoring row not stored", "code", r.code, "err", err)
		}
	})
}
