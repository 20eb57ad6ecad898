package query

import (
	"encoding/json"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/registry"
)

// The outbound lane in the v1 API: one row per delivery attempt or outcome (docs/outbound.md).
// succeeded = WEBHOOK_DELIVERED; pending = WEBHOOK_RETRYING (an attempt failed, another follows);
// failed = WEBHOOK_FAILED (the last attempt, or an answer not worth retrying), WEBHOOK_DISABLED
// and MAPPING_EXPRESSION_FAILED. Acknowledgement rows (ACK_*) are in the v2 events.

var outboundStatusCodes = map[string][]string{
	"succeeded": {"WEBHOOK_DELIVERED"},
	"pending":   {"WEBHOOK_RETRYING"},
	"failed":    {"WEBHOOK_FAILED", "WEBHOOK_DISABLED", "MAPPING_EXPRESSION_FAILED"},
}

func outboundDeliveryCodes() []string {
	var out []string
	for _, st := range []string{"succeeded", "pending", "failed"} {
		out = append(out, outboundStatusCodes[st]...)
	}
	return out
}

func outboundStatusOf(code string) string {
	for st, codes := range outboundStatusCodes {
		for _, c := range codes {
			if c == code {
				return st
			}
		}
	}
	return "pending"
}

type v1OutboundRequest struct {
	EventName       string          `json:"event_name"`
	Status          string          `json:"status"`
	WebhookConfigID string          `json:"webhook_config_id"`
	FromDate        string          `json:"from_date"`
	ToDate          string          `json:"to_date"`
	Limit           *int            `json:"limit"`
	Cursor          json.RawMessage `json:"cursor"`
}

// v1OutboundEvents lists webhook delivery attempts and outcomes, newest first.
func (s *Service) v1OutboundEvents(c *gin.Context) {
	var req v1OutboundRequest
	integ, from, to, ok := s.scoped(c, &req, &req.FromDate, &req.ToDate)
	if !ok {
		return
	}
	codes := outboundDeliveryCodes()
	if req.Status != "" {
		var known bool
		if codes, known = outboundStatusCodes[req.Status]; !known {
			bad(c, "status: one of succeeded, failed, pending")
			return
		}
	}
	f := Filter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to, UseCaseType: registry.TypeOutbound, Codes: codes,
		Detail: map[string]string{}}
	if req.EventName != "" {
		f.Detail["event_name"] = req.EventName
	}
	if req.WebhookConfigID != "" {
		f.Detail["webhook_config_id"] = req.WebhookConfigID
	}
	limit, after, ok := pageOf(c, req.Limit, req.Cursor, 50, 100)
	if !ok {
		return
	}
	rows, err := s.Store.Events(c, f, limit+1, after)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	writePage(c, rows, limit, outboundView, func(last envelope.MonitoringEvent) any {
		return cursorObject("created_at", "event_id", Cursor{CreatedAtMs: last.CreatedAtMs, ID: last.ID})
	})
}

// outboundView renders a row as an OutboundMonitoringEvent.
func outboundView(m envelope.MonitoringEvent) gin.H {
	var d struct {
		DeliveryID      string          `json:"delivery_id"`
		EventName       string          `json:"event_name"`
		URL             string          `json:"url"`
		HTTPMethod      string          `json:"http_method"`
		HTTPResponse    json.RawMessage `json:"http_response"`
		WebhookConfigID string          `json:"webhook_config_id"`
		Payload         json.RawMessage `json:"payload"`
		MappingID       string          `json:"mapping_id"`
		MappingName     string          `json:"mapping_name"`
		Attempt         int             `json:"attempt"`
		EntityID        string          `json:"entity_id"`
		EntitySchema    string          `json:"entity_schema"`
		Source          string          `json:"source"`
		LatencyMs       *int64          `json:"latency_ms"`
		NextAttemptAt   string          `json:"next_attempt_at"`
		Error           string          `json:"error"`
	}
	_ = json.Unmarshal(m.Detail, &d)
	at := time.UnixMilli(m.CreatedAtMs).UTC().Format(time.RFC3339Nano)
	metadata := gin.H{"webhook_id": d.WebhookConfigID, "correlation_id": m.CorrelationID, "use_case_id": m.UseCaseID,
		"mapping_id": d.MappingID, "mapping_name": d.MappingName, "attempt": d.Attempt, "code": m.Code, "message": m.Message,
		"entity_id": d.EntityID, "entity_schema": d.EntitySchema, "source": d.Source, "monitoring_id": m.ID}
	if d.LatencyMs != nil {
		metadata["latency_ms"] = *d.LatencyMs
	}
	if d.NextAttemptAt != "" {
		metadata["next_attempt_at"] = d.NextAttemptAt
	}
	if d.Error != "" {
		metadata["error"] = d.Error
	}
	row := gin.H{"org_id": m.OrgID, "event_id": firstNonEmpty(d.DeliveryID, m.EventID), "event_name": d.EventName,
		"status": outboundStatusOf(m.Code), "url": d.URL, "http_method": firstNonEmpty(d.HTTPMethod, "POST"),
		"webhook_config_id": d.WebhookConfigID, "metadata": metadata, "execution_context": gin.H{},
		"created_at": at, "updated_at": at}
	if len(d.HTTPResponse) > 0 {
		row["http_response"] = d.HTTPResponse
	}
	if len(d.Payload) > 0 {
		row["payload"] = d.Payload
	}
	return row
}

// outboundStats counts the outbound lane for the v1 stats: attempts delivered (success),
// failed for good (error) and failed with another attempt to come (pending).
func (s *Service) outboundStats(c *gin.Context, integ *registry.Integration, from, to time.Time, groupBy []string) (gin.H, bool) {
	if len(groupBy) > 1 {
		bad(c, "outbound_group_by: one field at a time")
		return nil, false
	}
	group, apiKey := "", ""
	if len(groupBy) == 1 {
		apiKey = groupBy[0]
		switch apiKey {
		case "use_case_id", "event_name":
			group = "use_case_id"
		case "status":
			group = "code"
		case "date":
			group = "date"
		default:
			bad(c, "outbound_group_by: one of use_case_id, event_name, status, date")
			return nil, false
		}
	}
	f := Filter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to, UseCaseType: registry.TypeOutbound,
		Codes: outboundDeliveryCodes()}
	st, err := s.Store.StatsBy(c, f, group)
	if err != nil {
		s.storeFailed(c, err)
		return nil, false
	}
	acks, err := s.Store.StatsBy(c, Filter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to,
		UseCaseType: registry.TypeOutbound, Code: "ACK_TIMEOUT"}, "")
	if err != nil {
		s.storeFailed(c, err)
		return nil, false
	}
	snap := s.Registry.Snapshot()
	switch apiKey {
	case "status":
		st.Breakdown = foldGroups(st.Breakdown, outboundStatusOf)
	case "event_name":
		st.Breakdown = foldGroups(st.Breakdown, func(id string) string {
			if uc, ok := snap.UseCase(integ.OrgID, id); ok {
				var cfg struct {
					Event string `json:"event_catalog_event"`
				}
				_ = json.Unmarshal(uc.Configuration, &cfg)
				return cfg.Event
			}
			return id
		})
	}
	view := func(st Stats) gin.H {
		rate := 0.0
		if done := st.Success + st.Error; done > 0 {
			rate = float64(st.Success) * 100 / float64(done)
		}
		return gin.H{"total_events": st.Total, "success_count": st.Success, "error_count": st.Error + st.Skipped,
			"pending_count": st.Warning, "success_rate": rate}
	}
	out := view(st)
	out["ack_timeout_count"] = acks.Total
	breakdown := []gin.H{}
	for _, g := range st.Breakdown {
		b := view(g.Stats)
		b[apiKey] = g.Key
		breakdown = append(breakdown, b)
	}
	out["breakdown"] = breakdown
	return out, true
}
