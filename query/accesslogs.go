package query

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/envelope"
)

// Access logs of the API calls made with an integration's tokens.

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
	limit, after, ok := pageOf(c, req.Limit, req.Cursor, defaultLimit, maxLimit)
	if !ok {
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
