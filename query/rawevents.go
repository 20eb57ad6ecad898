package query

import (
	"encoding/json"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
)

// Received events (raw, with payloads) of the last 14 days.

// RawRetention is how long raw payloads are kept.
const RawRetention = 14 * 24 * time.Hour

func rawView(e envelope.Event) gin.H {
	var payload any = json.RawMessage(e.Payload)
	out := gin.H{"event_id": e.EventID, "event_type": e.EventType, "object_type": firstNonEmpty(e.EventName, e.UseCaseSlug),
		"use_case_slug": e.UseCaseSlug, "use_case_id": e.UseCaseID, "timestamp": e.Timestamp, "format": e.Format, "payload": payload,
		"correlation_id": e.CorrelationID, "received_at": time.UnixMicro(e.ReceivedAtUs).UTC().Format(time.RFC3339Nano)}
	if e.DeduplicationID != "" {
		out["deduplication_id"] = e.DeduplicationID
	}
	if e.Replay {
		out["replay"] = true
	}
	return out
}

type queryEventsRequest struct {
	EventID       string          `json:"event_id"`
	EventType     string          `json:"event_type"`
	CorrelationID string          `json:"correlation_id"`
	ObjectType    string          `json:"object_type"`
	EventName     string          `json:"event_name"`
	Limit         *int            `json:"limit"`
	Cursor        json.RawMessage `json:"cursor"`
}

// queryEvents searches the received events of the last 14 days, newest first.
func (s *Service) queryEvents(c *gin.Context) {
	var req queryEventsRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	integ, ok := s.integration(c, c.Param("integrationId"))
	if !ok {
		return
	}
	switch req.EventType {
	case "", "CREATE", "UPDATE", "DELETE":
	default:
		bad(c, "event_type: CREATE, UPDATE or DELETE")
		return
	}
	limit, after, ok := pageOf(c, req.Limit, req.Cursor, 25, 25)
	if !ok {
		return
	}
	var rawAfter *RawCursor
	if after != nil {
		rawAfter = &RawCursor{ReceivedAtUs: after.CreatedAtMs, EventID: after.ID}
	}
	now := s.Now().UTC()
	rows, err := s.Store.RawEvents(c, RawFilter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: now.Add(-RawRetention), To: now,
		EventID: req.EventID, EventType: req.EventType, CorrelationID: req.CorrelationID, EventName: firstNonEmpty(req.ObjectType, req.EventName)},
		limit+1, rawAfter)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	writePage(c, rows, limit, rawView, func(last envelope.Event) any {
		return cursorObject("event_time", "event_id", Cursor{CreatedAtMs: last.ReceivedAtUs, ID: last.EventID})
	})
}
