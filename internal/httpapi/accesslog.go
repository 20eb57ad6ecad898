package httpapi

import (
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/logctx"
)

const serviceKey = "erpstream.service"

// Service names the service a route group belongs to, for the access log.
func Service(name string) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Set(serviceKey, name)
		c.Next()
	}
}

// AccessLog records every authenticated call once it is answered: who (token id, never the token),
// what (method, path, route), the outcome and latency. It hands the entry to record, which must not
// block (the app produces it asynchronously to Kafka). The request id is answered in X-Request-Id
// so an operator can find the entry from a client's report.
func AccessLog(record func(envelope.AccessLog)) gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		requestID := logctx.RequestID(c.Request.Context())
		c.Next()
		p := Principal(c)
		record(envelope.AccessLog{
			OrgID: p.OrgID, RequestID: requestID, TokenID: p.TokenID, Service: c.GetString(serviceKey),
			Method: c.Request.Method, Path: c.Request.URL.Path, Route: c.FullPath(), Status: c.Writer.Status(),
			LatencyMs: time.Since(start).Milliseconds(), IntegrationID: c.Param("integrationId"), AtMs: start.UnixMilli(),
		})
	}
}
