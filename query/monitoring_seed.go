package query

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/registry"
)

// The seed monitoring calls (/v1/monitoring/*): integration_id, from, to and status[] in the body.

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
	limit, after, ok := pageOf(c, limitIn, rawCursor, defaultLimit, maxLimit)
	if !ok {
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
