package query

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/registry"
)

// v1 monitoring of one integration: inbound and outbound events, stats, time series.

// errorCategories folds codes into the v1 error categories.
var errorCategories = map[string][]string{
	"validation":     {"VALIDATION_ERROR", "ENTITY_ALREADY_EXISTS", "MALFORMED_PAYLOAD", "MISSING_UNIQUE_IDENTIFIERS", "MAPPING_EXPRESSION_FAILED", "ATTRIBUTE_TYPE_MISMATCH", "UNIQUE_ID_NOT_IN_SCHEMA", "INVALID_METER_READING_ATTRIBUTES", "RELATION_REF_VALUE_UNDEFINED"},
	"configuration":  {"USE_CASE_NOT_FOUND", "USE_CASE_DISABLED", "USE_CASE_MISSING_CONFIG", "EVENT_NOT_CONFIGURED", "INTEGRATION_NOT_FOUND"},
	"timeout":        {"TIMEOUT"},
	"downstream_api": {"METERING_API_ERROR", "EXTERNAL_API_ERROR", "OAUTH2_TOKEN_FAILURE"},
}

func categoryOf(code string) string {
	for cat, codes := range errorCategories {
		for _, c := range codes {
			if c == code {
				return cat
			}
		}
	}
	return "system"
}

type v1InboundRequest struct {
	UseCaseID     *string         `json:"use_case_id"`
	EventType     string          `json:"event_type"`
	SyncType      string          `json:"sync_type"`
	Status        string          `json:"status"`
	ErrorCategory string          `json:"error_category"`
	CorrelationID string          `json:"correlation_id"`
	ObjectType    string          `json:"object_type"`
	EventName     string          `json:"event_name"`
	EventID       string          `json:"event_id"`
	FromDate      string          `json:"from_date"`
	ToDate        string          `json:"to_date"`
	Limit         *int            `json:"limit"`
	Cursor        json.RawMessage `json:"cursor"`
}

func (s *Service) v1InboundEvents(c *gin.Context) {
	var req v1InboundRequest
	integ, from, to, ok := s.scoped(c, &req, &req.FromDate, &req.ToDate)
	if !ok {
		return
	}
	levels, ok := levelsFor(c, "status", req.Status)
	if !ok {
		return
	}
	f := Filter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to, Levels: levels, UseCaseType: registry.TypeInbound,
		UseCaseID: req.UseCaseID, EventID: req.EventID, CorrelationID: req.CorrelationID}
	if req.ErrorCategory != "" {
		codes, known := errorCategories[req.ErrorCategory]
		switch {
		case req.ErrorCategory == "system": // errors no other category covers
			f.Levels = []string{string(envelope.LevelError)}
			for _, cs := range errorCategories {
				f.ExcludeCodes = append(f.ExcludeCodes, cs...)
			}
		case !known:
			bad(c, "error_category: one of validation, configuration, downstream_api, timeout, system")
			return
		default:
			f.Codes = codes
		}
	}
	if name := firstNonEmpty(req.ObjectType, req.EventName); name != "" {
		uc, ok := s.Registry.Snapshot().UseCaseByName(integ.OrgID, integ.ID, name)
		if !ok {
			uc, ok = s.Registry.Snapshot().UseCaseBySlug(integ.OrgID, integ.ID, name)
		}
		if !ok {
			c.JSON(http.StatusOK, gin.H{"data": []any{}, "next_cursor": nil, "has_more": false})
			return
		}
		f.UseCaseID = &uc.ID
	}
	limit, after, ok := pageOf(c, req.Limit, req.Cursor, defaultLimit, maxLimit)
	if !ok {
		return
	}
	rows, err := s.Store.Events(c, f, limit+1, after)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	snap := s.Registry.Snapshot()
	view := func(m envelope.MonitoringEvent) gin.H {
		status := string(m.Level)
		if m.Level == envelope.LevelInfo {
			status = "skipped"
		}
		objectType := ""
		if uc, ok := snap.UseCase(m.OrgID, m.UseCaseID); ok {
			objectType = firstNonEmpty(uc.Slug, uc.Name)
		}
		completed := time.UnixMilli(m.CreatedAtMs).UTC()
		received := completed
		if at, ok := eventTime(m.EventID); ok {
			received = at
		}
		row := gin.H{"org_id": m.OrgID, "event_id": m.EventID, "correlation_id": m.CorrelationID, "integration_id": m.IntegrationID,
			"use_case_id": m.UseCaseID, "object_type": objectType, "sync_type": "entity", "status": status,
			"received_at": received.Format(time.RFC3339Nano), "completed_at": completed.Format(time.RFC3339Nano),
			"processing_duration_ms": completed.Sub(received).Milliseconds()}
		if m.Level == envelope.LevelError {
			row["error_code"], row["error_message"], row["error_category"] = m.Code, m.Message, categoryOf(m.Code)
		}
		return row
	}
	writePage(c, rows, limit, view, func(last envelope.MonitoringEvent) any {
		return cursorObject("completed_at", "event_id", Cursor{CreatedAtMs: last.CreatedAtMs, ID: last.ID})
	})
}

type v1StatsRequest struct {
	FromDate        string   `json:"from_date"`
	ToDate          string   `json:"to_date"`
	InboundGroupBy  []string `json:"inbound_group_by"`
	OutboundGroupBy []string `json:"outbound_group_by"`
}

var v1GroupBy = map[string]string{"use_case_id": "use_case_id", "status": "level", "date": "date", "error_category": "code",
	"object_type": "use_case_id", "event_name": "use_case_id", "sync_type": "use_case_type"}

func (s *Service) v1Stats(c *gin.Context) {
	var req v1StatsRequest
	integ, from, to, ok := s.scoped(c, &req, &req.FromDate, &req.ToDate)
	if !ok {
		return
	}
	if len(req.InboundGroupBy) > 1 {
		bad(c, "inbound_group_by: one field at a time")
		return
	}
	groupBy, apiKey := "", ""
	if len(req.InboundGroupBy) == 1 {
		apiKey = req.InboundGroupBy[0]
		var known bool
		if groupBy, known = v1GroupBy[apiKey]; !known {
			bad(c, "inbound_group_by: one of use_case_id, sync_type, status, error_category, object_type, event_name, date")
			return
		}
	}
	f := Filter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to, UseCaseType: registry.TypeInbound}
	st, err := s.Store.StatsBy(c, f, groupBy)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	snap := s.Registry.Snapshot()
	switch apiKey {
	case "status":
		st.Breakdown = mergeInfo(st.Breakdown)
	case "sync_type":
		st.Breakdown = foldGroups(st.Breakdown, func(string) string { return "entity" })
	case "error_category":
		st.Breakdown = foldGroups(st.Breakdown, categoryOf)
	case "object_type", "event_name":
		st.Breakdown = foldGroups(st.Breakdown, func(id string) string {
			if uc, ok := snap.UseCase(integ.OrgID, id); ok {
				if apiKey == "event_name" {
					return uc.Name
				}
				return firstNonEmpty(uc.Slug, uc.Name)
			}
			return id
		})
	}
	inbound := statsView(st, apiKey)
	delete(inbound, "ack_timeout_count")
	outbound, ok := s.outboundStats(c, integ, from, to, req.OutboundGroupBy)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, gin.H{"inbound": inbound, "outbound": outbound})
}

func foldGroups(groups []Group, key func(string) string) []Group {
	byKey := map[string]*Group{}
	var order []string
	for _, g := range groups {
		k := key(g.Key)
		if t, ok := byKey[k]; ok {
			t.Total += g.Total
			t.Success += g.Success
			t.Error += g.Error
			t.Warning += g.Warning
			t.Skipped += g.Skipped
			if g.LastErrorAt != nil && (t.LastErrorAt == nil || g.LastErrorAt.After(*t.LastErrorAt)) {
				t.LastErrorAt = g.LastErrorAt
			}
			continue
		}
		g.Key = k
		gg := g
		byKey[k] = &gg
		order = append(order, k)
	}
	sort.Strings(order)
	out := make([]Group, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out
}

type v1SeriesRequest struct {
	FromDate  string `json:"from_date"`
	ToDate    string `json:"to_date"`
	Interval  string `json:"interval"`
	Direction string `json:"direction"`
}

func (s *Service) v1TimeSeries(c *gin.Context) {
	var req v1SeriesRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if req.FromDate == "" {
		bad(c, "from_date: required")
		return
	}
	if req.Direction == "" {
		req.Direction = "both"
	}
	if req.Direction != "inbound" && req.Direction != "outbound" && req.Direction != "both" {
		bad(c, "direction: inbound, outbound or both")
		return
	}
	integ, ok := s.integration(c, c.Param("integrationId"))
	if !ok {
		return
	}
	from, to, ok := s.timeRange(c, "from_date", req.FromDate, "to_date", req.ToDate)
	if !ok {
		return
	}
	f := Filter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to, UseCaseType: registry.TypeInbound}
	buckets, ok := s.series(c, f, req.Interval)
	if !ok {
		return
	}
	var outBuckets []Bucket
	if req.Direction != "inbound" {
		of := Filter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to, UseCaseType: registry.TypeOutbound,
			Codes: outboundDeliveryCodes()}
		if outBuckets, ok = s.series(c, of, req.Interval); !ok {
			return
		}
	}
	out := make([]gin.H, 0, len(buckets))
	for i, b := range buckets {
		row := gin.H{"timestamp": b.Start.Format(time.RFC3339), "inbound": nil, "outbound": nil}
		if req.Direction != "outbound" {
			row["inbound"] = counts(b.Stats)
		}
		if req.Direction != "inbound" && i < len(outBuckets) {
			o := outBuckets[i].Stats
			row["outbound"] = gin.H{"success_count": o.Success, "error_count": o.Error + o.Skipped, "pending_count": o.Warning, "total_count": o.Total}
		}
		out = append(out, row)
	}
	c.JSON(http.StatusOK, gin.H{"interval": req.Interval, "from_date": from.Format(time.RFC3339Nano), "to_date": to.Format(time.RFC3339Nano), "buckets": out})
}
