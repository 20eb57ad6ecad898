package query

import (
	"bufio"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/registry"
)

// --- the seed's calls: integration_id, from, to and status[] in the body -------------------------

type seedRequest struct {
	IntegrationID string          `json:"integration_id"`
	From          string          `json:"from"`
	To            string          `json:"to"`
	Status        []string        `json:"status"`
	Limit         *int            `json:"limit"`
	Cursor        json.RawMessage `json:"cursor"`
}

func (s *Service) seedFilter(c *gin.Context) (*seedRequest, Filter, bool) {
	var req seedRequest
	if !httpapi.BindJSON(c, &req) {
		return nil, Filter{}, false
	}
	integ, ok := s.integration(c, req.IntegrationID)
	if !ok {
		return nil, Filter{}, false
	}
	from, to, ok := s.timeRange(c, "from", req.From, "to", req.To)
	if !ok {
		return nil, Filter{}, false
	}
	levels, ok := levelsFor(c, "status", req.Status...)
	if !ok {
		return nil, Filter{}, false
	}
	return &req, Filter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to, Levels: levels}, true
}

func (s *Service) seedStats(c *gin.Context) {
	_, f, ok := s.seedFilter(c)
	if !ok {
		return
	}
	st, err := s.Store.StatsBy(c, f, "")
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, statsView(st, ""))
}

func (s *Service) seedEvents(c *gin.Context) {
	req, f, ok := s.seedFilter(c)
	if !ok {
		return
	}
	s.eventsPage(c, f, req.Limit, req.Cursor, func(cur Cursor) any { return encodeCursor(cur) })
}

// eventsPage answers a page of monitoring events with the keyset cursor.
func (s *Service) eventsPage(c *gin.Context, f Filter, limitIn *int, rawCursor json.RawMessage, cursorOut func(Cursor) any) {
	limit, ok := limitOf(c, limitIn, defaultLimit, maxLimit)
	if !ok {
		return
	}
	after, err := decodeCursor(rawCursor)
	if err != nil {
		bad(c, "cursor: %v", err)
		return
	}
	rows, err := s.Store.Events(c, f, limit+1, after)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	writePage(c, rows, limit, eventView, func(last envelope.MonitoringEvent) any {
		return cursorOut(Cursor{CreatedAtMs: last.CreatedAtMs, ID: last.ID})
	})
}

// scoped binds the body into req, resolves the path's integration in the caller's org and parses
// the from_date/to_date the body carried (fromDate and toDate point into req).
func (s *Service) scoped(c *gin.Context, req any, fromDate, toDate *string) (*registry.Integration, time.Time, time.Time, bool) {
	if !httpapi.BindJSON(c, req) {
		return nil, time.Time{}, time.Time{}, false
	}
	integ, ok := s.integration(c, c.Param("integrationId"))
	if !ok {
		return nil, time.Time{}, time.Time{}, false
	}
	from, to, ok := s.timeRange(c, "from_date", *fromDate, "to_date", *toDate)
	return integ, from, to, ok
}

// --- v2: the unified monitoring stream -----------------------------------------------------------

type v2EventsRequest struct {
	UseCaseID     *string         `json:"use_case_id"`
	UseCaseType   string          `json:"use_case_type"`
	Level         string          `json:"level"`
	Code          string          `json:"code"`
	EventID       string          `json:"event_id"`
	CorrelationID string          `json:"correlation_id"`
	FromDate      string          `json:"from_date"`
	ToDate        string          `json:"to_date"`
	Limit         *int            `json:"limit"`
	Cursor        json.RawMessage `json:"cursor"`
	GroupBy       string          `json:"group_by"`
	Interval      string          `json:"interval"`
}

func (s *Service) v2Filter(c *gin.Context, req *v2EventsRequest) (Filter, bool) {
	integ, ok := s.integration(c, c.Param("integrationId"))
	if !ok {
		return Filter{}, false
	}
	from, to, ok := s.timeRange(c, "from_date", req.FromDate, "to_date", req.ToDate)
	if !ok {
		return Filter{}, false
	}
	if req.UseCaseType != "" && !useCaseTypes[req.UseCaseType] {
		bad(c, "use_case_type: one of inbound, outbound, file_proxy, managed_call, secure_proxy")
		return Filter{}, false
	}
	levels, ok := levelsFor(c, "level", req.Level)
	if !ok {
		return Filter{}, false
	}
	return Filter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to, Levels: levels, UseCaseType: req.UseCaseType,
		UseCaseID: req.UseCaseID, Code: req.Code, EventID: req.EventID, CorrelationID: req.CorrelationID}, true
}

func (s *Service) v2Events(c *gin.Context) {
	var req v2EventsRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	f, ok := s.v2Filter(c, &req)
	if !ok {
		return
	}
	s.eventsPage(c, f, req.Limit, req.Cursor, func(cur Cursor) any { return cursorObject("created_at", "id", cur) })
}

var v2GroupBy = map[string]bool{"": true, "use_case_id": true, "use_case_type": true, "level": true, "code": true, "date": true}

func (s *Service) v2Stats(c *gin.Context) {
	var req v2EventsRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if !v2GroupBy[req.GroupBy] {
		bad(c, "group_by: one of use_case_id, use_case_type, level, code, date")
		return
	}
	f, ok := s.v2Filter(c, &req)
	if !ok {
		return
	}
	st, err := s.Store.StatsBy(c, f, req.GroupBy)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	if req.GroupBy == "level" { // info shows as skipped
		st.Breakdown = mergeInfo(st.Breakdown)
	}
	c.JSON(http.StatusOK, statsView(st, req.GroupBy))
}

func mergeInfo(groups []Group) []Group {
	var out []Group
	var skipped *Group
	for _, g := range groups {
		if g.Key == "info" || g.Key == "skipped" {
			if skipped == nil {
				g.Key = "skipped"
				out = append(out, g)
				skipped = &out[len(out)-1]
				continue
			}
			skipped.Total += g.Total
			skipped.Skipped += g.Skipped
			continue
		}
		out = append(out, g)
	}
	return out
}

func (s *Service) v2TimeSeries(c *gin.Context) {
	var req v2EventsRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if req.FromDate == "" {
		bad(c, "from_date: required")
		return
	}
	f, ok := s.v2Filter(c, &req)
	if !ok {
		return
	}
	buckets, ok := s.series(c, f, req.Interval)
	if !ok {
		return
	}
	out := make([]gin.H, 0, len(buckets))
	for _, b := range buckets {
		v := counts(b.Stats)
		v["timestamp"] = b.Start.Format(time.RFC3339)
		out = append(out, v)
	}
	c.JSON(http.StatusOK, gin.H{"interval": req.Interval, "from_date": f.From.Format(time.RFC3339Nano), "to_date": f.To.Format(time.RFC3339Nano), "buckets": out})
}

func (s *Service) associated(c *gin.Context) {
	integ, ok := s.integration(c, c.Param("integrationId"))
	if !ok {
		return
	}
	rows, raw, err := s.Store.Trace(c, integ.OrgID, integ.ID, c.Param("eventId"))
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	events := make([]gin.H, 0, len(rows))
	for _, m := range rows {
		events = append(events, eventView(m))
	}
	var inbound any
	if raw != nil {
		inbound = rawView(*raw)
	}
	c.JSON(http.StatusOK, gin.H{"monitoring_events": events, "inbound_event": inbound})
}

// --- v1: the inbound/outbound split --------------------------------------------------------------

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
	limit, ok := limitOf(c, req.Limit, defaultLimit, maxLimit)
	if !ok {
		return
	}
	after, err := decodeCursor(req.Cursor)
	if err != nil {
		bad(c, "cursor: %v", err)
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

// v1OutboundEvents lists the outbound lane (webhook deliveries); erpstream records none until
// outbound delivery exists, so the list is empty in the documented shape.
func (s *Service) v1OutboundEvents(c *gin.Context) {
	var req v2EventsRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if _, ok := s.integration(c, c.Param("integrationId")); !ok {
		return
	}
	if _, _, ok := s.timeRange(c, "from_date", req.FromDate, "to_date", req.ToDate); !ok {
		return
	}
	c.JSON(http.StatusOK, gin.H{"data": []any{}, "next_cursor": nil, "has_more": false})
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
	outbound := gin.H{"total_events": 0, "success_count": 0, "error_count": 0, "pending_count": 0, "success_rate": 0.0, "breakdown": []any{}}
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
	out := make([]gin.H, 0, len(buckets))
	for _, b := range buckets {
		row := gin.H{"timestamp": b.Start.Format(time.RFC3339), "inbound": nil, "outbound": nil}
		if req.Direction != "outbound" {
			row["inbound"] = counts(b.Stats)
		}
		if req.Direction != "inbound" {
			row["outbound"] = gin.H{"success_count": 0, "error_count": 0, "pending_count": 0, "total_count": 0}
		}
		out = append(out, row)
	}
	c.JSON(http.StatusOK, gin.H{"interval": req.Interval, "from_date": from.Format(time.RFC3339Nano), "to_date": to.Format(time.RFC3339Nano), "buckets": out})
}

// --- access logs ---------------------------------------------------------------------------------

type accessRequest struct {
	TokenID  string          `json:"token_id"`
	Service  string          `json:"service"`
	Method   string          `json:"method"`
	Path     string          `json:"path"`
	Status   int             `json:"status"`
	FromDate string          `json:"from_date"`
	ToDate   string          `json:"to_date"`
	Limit    *int            `json:"limit"`
	Cursor   json.RawMessage `json:"cursor"`
}

// accessLogs lists the API calls made with the integration's access tokens (access_token_ids).
func (s *Service) accessLogs(c *gin.Context) {
	var req accessRequest
	integ, from, to, ok := s.scoped(c, &req, &req.FromDate, &req.ToDate)
	if !ok {
		return
	}
	var tokenIDs []string
	_ = json.Unmarshal(integ.Fields["access_token_ids"], &tokenIDs)
	if req.TokenID != "" {
		found := false
		for _, t := range tokenIDs {
			found = found || t == req.TokenID
		}
		if !found {
			bad(c, "token_id: %s is not one of the integration's access_token_ids", req.TokenID)
			return
		}
	}
	if tokenIDs == nil {
		tokenIDs = []string{}
	}
	limit, ok := limitOf(c, req.Limit, defaultLimit, maxLimit)
	if !ok {
		return
	}
	after, err := decodeCursor(req.Cursor)
	if err != nil {
		bad(c, "cursor: %v", err)
		return
	}
	rows, err := s.Store.AccessLogs(c, AccessFilter{OrgID: integ.OrgID, TokenID: req.TokenID, TokenIDs: tokenIDs, Service: req.Service,
		Method: strings.ToUpper(req.Method), Path: req.Path, Status: req.Status, From: from, To: to}, limit+1, after)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	view := func(a envelope.AccessLog) gin.H {
		return gin.H{"timestamp": time.UnixMilli(a.AtMs).UTC().Format(time.RFC3339Nano), "service": a.Service,
			"request_id": a.RequestID, "method": a.Method, "path": a.Path, "status": a.Status, "response_latency_ms": a.LatencyMs,
			"token_id": a.TokenID, "org_id": a.OrgID}
	}
	writePage(c, rows, limit, view, func(last envelope.AccessLog) any {
		return cursorObject("timestamp", "request_id", Cursor{CreatedAtMs: last.AtMs, ID: last.RequestID})
	})
}

// --- received events and replay ------------------------------------------------------------------

// RawRetention is how long raw payloads are kept (NOTES.md §1).
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
	limit, ok := limitOf(c, req.Limit, 25, 25)
	if !ok {
		return
	}
	after, err := decodeCursor(req.Cursor)
	if err != nil {
		bad(c, "cursor: %v", err)
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

type replayResult struct {
	EventID    string `json:"event_id"`
	Status     string `json:"status"`
	NewEventID string `json:"new_event_id,omitempty"`
	Message    string `json:"message,omitempty"`
}

// replayRecord rebuilds a stored event for the current configuration; nil with a result when it
// cannot be replayed.
func (s *Service) replayRecord(snap *registry.Snapshot, e envelope.Event) (*kgo.Record, replayResult) {
	return s.replayRecordIn(snap, e, "")
}

// replayRecordIn is replayRecord within a bulk replay run: the new event's id and deduplication
// id follow from the run and the original event, so replaying it again in the same run is a
// duplicate, not a second mapping.
func (s *Service) replayRecordIn(snap *registry.Snapshot, e envelope.Event, run string) (*kgo.Record, replayResult) {
	res := replayResult{EventID: e.EventID}
	uc, ok := snap.UseCase(e.OrgID, e.UseCaseID)
	if !ok && e.UseCaseSlug != "" {
		uc, ok = snap.UseCaseBySlug(e.OrgID, e.IntegrationID, e.UseCaseSlug)
	}
	switch {
	case !ok:
		res.Status, res.Message = "ignored", "the event's use case no longer exists"
		return nil, res
	case !uc.Enabled:
		res.Status, res.Message = "ignored", "use case "+uc.Slug+" is disabled"
		return nil, res
	}
	ev := e
	ev.EventID = ids.EventID(s.Now())
	ev.UseCaseID, ev.UseCaseSlug = uc.ID, uc.Slug
	ev.Replay = true // deduplication does not apply; the original receive time keeps $now() and ordering
	if run != "" {
		ev.ReplayRun, ev.DeduplicationID, ev.ReplayedAtMs = run, "replay-"+run+"-"+e.EventID, s.Now().UnixMilli()
	}
	if !strings.HasPrefix(ev.CorrelationID, "replay_") {
		ev.CorrelationID = "replay_" + ev.CorrelationID
	}
	value, _ := json.Marshal(&ev)
	res.Status, res.NewEventID = "queued", ev.EventID
	return &kgo.Record{Topic: s.Topics.Events, Key: envelope.RecordKey(&ev), Value: value, Headers: []kgo.RecordHeader{
		{Key: envelope.HeaderOrg, Value: []byte(ev.OrgID)}, {Key: envelope.HeaderCorrelationID, Value: []byte(ev.CorrelationID)}}}, res
}

// replay re-enqueues up to 100 stored events (14-day horizon) with new ids and replay_ correlation
// ids; always 200 with a result per id in request order.
func (s *Service) replay(c *gin.Context) {
	var req struct {
		EventIDs []string `json:"event_ids"`
	}
	if !httpapi.BindJSON(c, &req) {
		return
	}
	integ, ok := s.integration(c, c.Param("integrationId"))
	if !ok {
		return
	}
	if len(req.EventIDs) < 1 || len(req.EventIDs) > 100 {
		bad(c, "event_ids: 1 to 100 ids")
		return
	}
	if s.Producer == nil {
		httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "replay is not available in this process")
		return
	}
	found, err := s.Store.RawEventsByID(c, integ.OrgID, integ.ID, req.EventIDs)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	snap := s.Registry.Snapshot()
	results := make([]replayResult, len(req.EventIDs))
	var records []*kgo.Record
	for i, id := range req.EventIDs {
		e, ok := found[id]
		if !ok {
			results[i] = replayResult{EventID: id, Status: "not_found", Message: "no stored event with this id in the last 14 days"}
			continue
		}
		rec, res := s.replayRecord(snap, e)
		results[i] = res
		if rec != nil {
			records = append(records, rec)
		}
	}
	if len(records) > 0 {
		if err := s.Producer.ProduceSync(c, records...).FirstErr(); err != nil {
			c.Header("Retry-After", "5")
			httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "replayed events could not be stored; retry")
			return
		}
	}
	newIDs := []string{}
	for _, r := range results {
		if r.NewEventID != "" {
			newIDs = append(newIDs, r.NewEventID)
		}
	}
	c.JSON(http.StatusOK, gin.H{"replayed": len(records), "results": results, "event_ids": newIDs})
}

// replayBulk replays every stored event of a time range (beyond the spec, for reprocessing after a
// mapping fix): POST …/events/replay/bulk {"from_date", "to_date", "correlation_id"?, "event_name"?}.
// The response streams NDJSON progress lines ({"replayed": n, "ignored": m}) every 1,000 events
// and a final {"done": true, …}.
func (s *Service) replayBulk(c *gin.Context) {
	var req bulkReplayRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	integ, ok := s.integration(c, c.Param("integrationId"))
	if !ok {
		return
	}
	var resume *bulkReplayCursor
	if req.Cursor != "" {
		cur, err := decodeBulkReplayCursor(req.Cursor, integ.OrgID, integ.ID)
		if err != nil {
			bad(c, "cursor: %v", err)
			return
		}
		resume = cur
		req.FromDate, req.ToDate, req.CorrelationID, req.EventName = cur.From, cur.To, cur.CorrelationID, cur.EventName
	}
	if req.FromDate == "" {
		bad(c, "from_date: required")
		return
	}
	from, to, ok := s.timeRange(c, "from_date", req.FromDate, "to_date", req.ToDate)
	if !ok {
		return
	}
	if s.Producer == nil {
		httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "replay is not available in this process")
		return
	}
	run := ids.NewUUID()
	var after *RawCursor
	if resume != nil {
		run = resume.Run
		if resume.AfterUs > 0 { // a cursor at no event resumes the run from its start
			after = &RawCursor{ReceivedAtUs: resume.AfterUs, EventID: resume.AfterEventID}
		}
	}
	c.Header("Content-Type", "application/x-ndjson")
	c.Status(http.StatusOK)
	out := bufio.NewWriter(c.Writer)
	enc := json.NewEncoder(out)
	progress := map[string]any{"replayed": 0, "ignored": 0, "failed": 0}
	var failed error
	snap := s.Registry.Snapshot()
	for {
		httpapi.StreamProgress(c)
		rows, err := s.Store.RawEvents(c, RawFilter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to,
			CorrelationID: req.CorrelationID, EventName: req.EventName}, 1000, after)
		if err != nil {
			failed = err
			break
		}
		if len(rows) == 0 {
			break
		}
		var records []*kgo.Record
		for _, e := range rows {
			if e.Replay {
				continue // replays of replays would multiply
			}
			rec, _ := s.replayRecordIn(snap, e, run)
			if rec == nil {
				progress["ignored"] = progress["ignored"].(int) + 1
				continue
			}
			records = append(records, rec)
		}
		if s.Budgets != nil && len(records) > 0 {
			// A bulk replay spends the org's event budget like ingestion does, waiting for it.
			var bytes int64
			for _, r := range records {
				bytes += int64(len(r.Key) + len(r.Value))
			}
			if err := s.Budgets.TakeWait(c, integ.OrgID, len(records), bytes); err != nil {
				failed = err
				break
			}
		}
		if err := s.Producer.ProduceSync(c, records...).FirstErr(); err != nil {
			failed = err
			break
		}
		progress["replayed"] = progress["replayed"].(int) + len(records)
		last := rows[len(rows)-1]
		after = &RawCursor{ReceivedAtUs: last.ReceivedAtUs, EventID: last.EventID}
		progress["cursor"] = bulkReplayCursor{Run: run, OrgID: integ.OrgID, IntegrationID: integ.ID, From: req.FromDate, To: req.ToDate,
			CorrelationID: req.CorrelationID, EventName: req.EventName, AfterUs: after.ReceivedAtUs, AfterEventID: after.EventID}.encode()
		_ = enc.Encode(progress)
		_ = out.Flush()
		c.Writer.Flush()
	}
	progress["done"] = failed == nil
	if failed != nil {
		progress["error"] = "stopped: " + failed.Error() + "; send the last progress line's cursor to resume"
	}
	_ = enc.Encode(progress)
	_ = out.Flush()
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// writePage answers a keyset page: rows holds up to limit+1 rows (the extra one only says there is
// more), each rendered with view; next_cursor is the cursor of the last row shown.
func writePage[T any](c *gin.Context, rows []T, limit int, view func(T) gin.H, cursor func(last T) any) {
	hasMore := len(rows) > limit
	if hasMore {
		rows = rows[:limit]
	}
	data := make([]gin.H, 0, len(rows))
	for _, r := range rows {
		data = append(data, view(r))
	}
	var next any
	if hasMore {
		next = cursor(rows[len(rows)-1])
	}
	c.JSON(http.StatusOK, gin.H{"data": data, "next_cursor": next, "has_more": hasMore})
}
