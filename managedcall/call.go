package managedcall

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/connector"
	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/registry"
)

// errorResponse is both the spec's ManagedCallErrorResponse ({"error": {code, message,
// details}}) and ErrorResponseBase ({code, message}), so clients reading either shape work.
type errorResponse struct {
	Code    string      `json:"code"`
	Message string      `json:"message"`
	Error   errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

func fail(c *gin.Context, status int, code, message string, details map[string]any) {
	c.AbortWithStatusJSON(status, errorResponse{Code: code, Message: message,
		Error: errorDetail{Code: code, Message: message, Details: details}})
}

// call records one managed call in the managed_call monitoring lane: method, host and path (no
// query string, headers or bodies), status, latency, outcome.
type call struct {
	s       *Service
	m       envelope.MonitoringEvent
	started time.Time
	detail  map[string]any
	status  int
	policy  egress.Policy
}

func (s *Service) newCall(integ *registry.Integration, uc *registry.UseCase, correlation string) *call {
	now := s.Now()
	id := ids.EventID(now)
	if correlation == "" || len(correlation) > 128 {
		correlation = id
	}
	return &call{s: s, started: now, detail: map[string]any{"slug": uc.Slug},
		m: envelope.MonitoringEvent{ID: ids.NameUUID("monitoring", integ.OrgID, id, "managed_call"), OrgID: integ.OrgID,
			IntegrationID: integ.ID, EventID: id, CorrelationID: correlation, UseCaseID: uc.ID, UseCaseType: registry.TypeManagedCall}}
}

// target notes where the call goes; a secret a base_url put into the host or path is redacted.
func (cl *call) target(method string, u *url.URL, env *connector.Env) {
	cl.detail["method"], cl.detail["host"], cl.detail["path"] = method, env.Scrub(u.Host), env.Scrub(u.EscapedPath())
}

// refuse answers a call that failed before or instead of reaching the partner.
func (cl *call) refuse(c *gin.Context, status int, code, message string) {
	cl.write(envelope.LevelError, code, message)
	fail(c, status, code, message, nil)
}

// fail answers a call that reached the partner but could not be completed.
func (cl *call) fail(c *gin.Context, status int, code, message string) {
	cl.refuse(c, status, code, message)
}

func (cl *call) warn(code, message string) { cl.write(envelope.LevelWarning, code, message) }

func (cl *call) succeed(inboundEventID string) {
	if inboundEventID != "" {
		cl.detail["inbound_event_id"] = inboundEventID
	}
	cl.write(envelope.LevelSuccess, "MANAGED_CALL_SUCCEEDED", "partner answered "+http.StatusText(cl.status))
}

func (cl *call) authFailed(c *gin.Context, err error) {
	switch {
	case errors.Is(err, connector.ErrMissingEnv):
		cl.refuse(c, http.StatusBadRequest, "MISSING_ENVIRONMENT_VARIABLE", err.Error())
	case errors.Is(err, connector.ErrInvalidAuth):
		cl.refuse(c, http.StatusBadRequest, "USE_CASE_MISSING_CONFIG", err.Error())
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		cl.refuse(c, http.StatusGatewayTimeout, "OAUTH2_TOKEN_FAILURE", "the token request did not finish in time")
	default:
		cl.refuse(c, http.StatusBadGateway, "OAUTH2_TOKEN_FAILURE", err.Error())
	}
}

// transportFailed maps an egress failure; answers name the host, never what it resolved to.
func (cl *call) transportFailed(c *gin.Context, err error, host string) {
	cl.s.Log.Info("managed call failed", "org", cl.m.OrgID, "use_case_id", cl.m.UseCaseID, "host", host, "err", err)
	switch egress.KindOf(err) {
	case egress.KindBlocked, egress.KindInvalidURL, egress.KindNotAllowed:
		cl.refuse(c, http.StatusBadRequest, "SSRF_BLOCKED", host+" is or resolves to an address managed calls may not reach")
	case egress.KindTimeout:
		cl.refuse(c, http.StatusGatewayTimeout, "EXTERNAL_API_TIMEOUT", host+" did not answer in time (25 s)")
	case egress.KindTooLarge:
		cl.refuse(c, http.StatusBadGateway, "EXTERNAL_API_ERROR", "the request or the partner's answer exceeds 4 MB")
	case egress.KindProxyUnavailable:
		cl.refuse(c, http.StatusServiceUnavailable, "SECURE_PROXY_UNAVAILABLE", "the secure proxy's egress is not available")
	default:
		cl.refuse(c, http.StatusBadGateway, "EXTERNAL_API_ERROR", "could not connect to "+host+" (connection or TLS failure)")
	}
}

func (cl *call) write(level envelope.Level, code, message string) {
	now := cl.s.Now()
	cl.detail["latency_ms"] = now.Sub(cl.started).Milliseconds()
	if cl.status != 0 {
		cl.detail["status_code"] = cl.status
	}
	cl.m.Level, cl.m.Code, cl.m.Message, cl.m.CreatedAtMs = level, code, message, now.UnixMilli()
	cl.m.Detail, _ = json.Marshal(cl.detail)
	if cl.s.Producer == nil {
		return
	}
	cl.s.Producer.TryProduce(context.Background(), envelope.CallRecord(cl.s.Topics.Monitoring, &cl.m), func(_ *kgo.Record, err error) {
		if err != nil {
			cl.s.Log.Warn("managed call monitoring row not stored", "err", err)
		}
	})
}
