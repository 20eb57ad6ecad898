package query

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
)

// v2 monitoring of one integration: events, stats, time series, an event's trace.

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
