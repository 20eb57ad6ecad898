// Package query serves monitoring from ClickHouse: the seed's /v1/monitoring/stats and
// /v1/monitoring/events. Every query is scoped to the caller's org and a bounded time range.
package query

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/registry"
)

// MaxRange caps a query's time range (monitoring is kept 90 days).
const MaxRange = 90 * 24 * time.Hour

// Filter selects monitoring events.
type Filter struct {
	OrgID, IntegrationID string
	From, To             time.Time
	Levels               []string
}

// Stats are counts per level.
type Stats struct {
	Total, Success, Error, Warning, Skipped, AckTimeouts uint64
	LastErrorAt                                          *time.Time
}

// Cursor is the keyset position of the last row of a page.
type Cursor struct {
	CreatedAtMs int64  `json:"created_at_ms"`
	ID          string `json:"id"`
}

// Store is what the query service reads from.
type Store interface {
	Stats(ctx context.Context, f Filter) (Stats, error)
	Events(ctx context.Context, f Filter, limit int, after *Cursor) ([]envelope.MonitoringEvent, error)
}

// Service is the monitoring query service.
type Service struct {
	Store    Store
	Registry *registry.Registry
	Now      func() time.Time
	Log      *slog.Logger
}

// Register mounts the routes on an authenticated router group.
func (s *Service) Register(r gin.IRouter) {
	if s.Now == nil {
		s.Now = time.Now
	}
	mon := httpapi.Require("erp:monitoring")
	r.POST("/v1/monitoring/stats", mon, s.stats)
	r.POST("/v1/monitoring/events", mon, s.events)
}

// seedRequest is the body of the seed's monitoring calls.
type seedRequest struct {
	IntegrationID string          `json:"integration_id"`
	From          string          `json:"from"`
	To            string          `json:"to"`
	Status        []string        `json:"status"`
	Limit         *int            `json:"limit"`
	Cursor        json.RawMessage `json:"cursor"`
}

func (s *Service) filter(c *gin.Context) (*seedRequest, Filter, bool) {
	var req seedRequest
	if !httpapi.BindJSON(c, &req) {
		return nil, Filter{}, false
	}
	if req.IntegrationID == "" {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "integration_id: required")
		return nil, Filter{}, false
	}
	org := httpapi.Principal(c).OrgID
	if _, ok := s.Registry.Snapshot().Integration(org, req.IntegrationID); !ok {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeIntegrationNotFound, "integration "+req.IntegrationID+" not found")
		return nil, Filter{}, false
	}
	now := s.Now().UTC()
	f := Filter{OrgID: org, IntegrationID: req.IntegrationID, From: now.Add(-24 * time.Hour), To: now}
	var err error
	if req.From != "" {
		if f.From, err = time.Parse(time.RFC3339Nano, req.From); err != nil {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "from: not an ISO 8601 date-time")
			return nil, Filter{}, false
		}
	}
	if req.To != "" {
		if f.To, err = time.Parse(time.RFC3339Nano, req.To); err != nil {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "to: not an ISO 8601 date-time")
			return nil, Filter{}, false
		}
	}
	if f.To.Before(f.From) {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "from: must not be after to")
		return nil, Filter{}, false
	}
	if f.To.Sub(f.From) > MaxRange {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "from/to: the range may span at most 90 days")
		return nil, Filter{}, false
	}
	for _, st := range req.Status {
		if !envelope.ValidLevel(st) || st == string(envelope.LevelInfo) {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, fmt.Sprintf("status: %q is not one of success, error, warning, skipped", st))
			return nil, Filter{}, false
		}
		f.Levels = append(f.Levels, st)
		if st == string(envelope.LevelSkipped) {
			f.Levels = append(f.Levels, string(envelope.LevelInfo))
		}
	}
	return &req, f, true
}

func (s *Service) stats(c *gin.Context) {
	_, f, ok := s.filter(c)
	if !ok {
		return
	}
	st, err := s.Store.Stats(c, f)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	resp := gin.H{
		"total_events":      st.Total,
		"success_count":     st.Success,
		"error_count":       st.Error,
		"warning_count":     st.Warning,
		"skipped_count":     st.Skipped,
		"ack_timeout_count": st.AckTimeouts,
		"success_rate":      successRate(st),
		"last_error_at":     nil,
		"breakdown":         []any{},
	}
	if st.LastErrorAt != nil {
		resp["last_error_at"] = st.LastErrorAt.Format(time.RFC3339Nano)
	}
	c.JSON(http.StatusOK, resp)
}

// successRate is success / (success + error + warning) × 100; skipped events do not count.
func successRate(st Stats) float64 {
	d := st.Success + st.Error + st.Warning
	if d == 0 {
		return 0
	}
	return float64(st.Success) * 100 / float64(d)
}

const (
	defaultLimit = 50
	maxLimit     = 100
)

func (s *Service) events(c *gin.Context) {
	req, f, ok := s.filter(c)
	if !ok {
		return
	}
	limit := defaultLimit
	if req.Limit != nil {
		if *req.Limit < 1 || *req.Limit > maxLimit {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, fmt.Sprintf("limit: must be between 1 and %d", maxLimit))
			return
		}
		limit = *req.Limit
	}
	var after *Cursor
	if len(req.Cursor) > 0 && string(req.Cursor) != "null" {
		cur, err := decodeCursor(req.Cursor)
		if err != nil {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "cursor: "+err.Error())
			return
		}
		after = cur
	}
	rows, err := s.Store.Events(c, f, limit+1, after)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	hasMore := len(rows) > limit
	if hasMore {
		rows = rows[:limit]
	}
	data := make([]gin.H, 0, len(rows))
	for _, m := range rows {
		level := string(m.Level)
		if m.Level == envelope.LevelInfo {
			level = string(envelope.LevelSkipped)
		}
		var detail any
		if len(m.Detail) > 0 {
			detail = m.Detail
		}
		data = append(data, gin.H{
			"id": m.ID, "org_id": m.OrgID, "integration_id": m.IntegrationID, "event_id": m.EventID,
			"correlation_id": m.CorrelationID, "use_case_id": m.UseCaseID, "use_case_type": m.UseCaseType,
			"level": level, "code": m.Code, "message": m.Message, "detail": detail,
			"created_at": time.UnixMilli(m.CreatedAtMs).UTC().Format(time.RFC3339Nano),
		})
	}
	var next any
	if hasMore && len(rows) > 0 {
		last := rows[len(rows)-1]
		next = encodeCursor(Cursor{CreatedAtMs: last.CreatedAtMs, ID: last.ID})
	}
	c.JSON(http.StatusOK, gin.H{"data": data, "next_cursor": next, "has_more": hasMore})
}

// Cursors are opaque to clients: base64url of the keyset position. A tampered cursor fails to
// decode or to validate and is answered 400.
func encodeCursor(cur Cursor) string {
	b, _ := json.Marshal(cur)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(raw json.RawMessage) (*Cursor, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, errors.New("must be the opaque string from next_cursor")
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("malformed")
	}
	var cur Cursor
	if err := json.Unmarshal(b, &cur); err != nil || cur.CreatedAtMs <= 0 || cur.ID == "" {
		return nil, errors.New("malformed")
	}
	return &cur, nil
}

func (s *Service) storeFailed(c *gin.Context, err error) {
	s.Log.Error("monitoring query failed", "err", err)
	c.Header("Retry-After", "5")
	httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "monitoring store unavailable")
}
