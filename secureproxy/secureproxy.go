// Package secureproxy serves POST /v1/secure-proxy: one HTTP request forwarded to a partner
// through a secure_proxy use case's route (static_ip: full address protection, optionally through
// the deployment's fixed-address proxy; secure_link: only the use case's allowed_domains and
// allowed_ips, optionally through the VPN-side proxy). Every request goes through package egress
// and leaves a monitoring row in the secure_proxy lane.
package secureproxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/quota"
	"github.com/erpstream/erpstream/internal/registry"
)

// Error codes of the secure proxy.
const (
	CodeNotFound          = "SECURE_PROXY_NOT_FOUND"
	CodeInvalidType       = "SECURE_PROXY_INVALID_TYPE"
	CodeDisabled          = "SECURE_PROXY_DISABLED"
	CodeInvalidConfig     = "SECURE_PROXY_INVALID_CONFIG"
	CodeInvalidURL        = "SECURE_PROXY_INVALID_URL"
	CodeDomainNotAllowed  = "SECURE_PROXY_DOMAIN_NOT_ALLOWED"
	CodeIPBlocked         = "SECURE_PROXY_IP_BLOCKED"
	CodeIPNotAllowed      = "SECURE_PROXY_IP_NOT_ALLOWED"
	CodeUnavailable       = "SECURE_PROXY_UNAVAILABLE"
	CodeUpstreamError     = "SECURE_PROXY_UPSTREAM_ERROR"
	CodeTimeout           = "SECURE_PROXY_TIMEOUT"
	CodeTooManyOutbound   = "OUTBOUND_CONCURRENCY_EXCEEDED"
	maxRequestHeaders     = 64
	maxRequestHeaderBytes = 32 << 10
)

// Producer writes monitoring rows without blocking the answer (a full buffer drops the row and
// logs it; the call itself is done).
type Producer interface {
	TryProduce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// Service serves the secure proxy.
type Service struct {
	Registry *registry.Registry
	Egress   *egress.Client
	Proxies  Proxies
	Producer Producer
	Topics   kafkax.Topics
	// Outbound caps each org's open outbound calls (nil: uncapped).
	Outbound *quota.Concurrency
	Now      func() time.Time
	Log      *slog.Logger
}

// Register mounts the route on an authenticated router group.
func (s *Service) Register(r gin.IRouter) {
	if s.Now == nil {
		s.Now = time.Now
	}
	r.POST("/v1/secure-proxy", httpapi.Require("erp:events"), s.proxy)
}

type proxyRequest struct {
	IntegrationID string            `json:"integration_id"`
	UseCaseID     string            `json:"use_case_id"`
	UseCaseSlug   string            `json:"use_case_slug"`
	URL           string            `json:"url"`
	Method        string            `json:"method"`
	Headers       map[string]string `json:"headers"`
	Body          json.RawMessage   `json:"body"`
	ResponseType  string            `json:"response_type"`
}

var methods = map[string]bool{"GET": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true}

func (s *Service) proxy(c *gin.Context) {
	var req proxyRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	snap := s.Registry.Snapshot()
	integ, ok := httpapi.OrgIntegration(c, snap, req.IntegrationID)
	if !ok {
		return
	}
	uc, route, ok := s.useCase(c, snap, integ, req.UseCaseID, req.UseCaseSlug)
	if !ok {
		return
	}
	if !methods[req.Method] {
		httpapi.BadRequest(c, "method: one of GET, POST, PUT, PATCH, DELETE")
		return
	}
	switch req.ResponseType {
	case "":
		req.ResponseType = "json"
	case "json", "binary":
	default:
		httpapi.BadRequest(c, "response_type: json or binary")
		return
	}
	target, err := url.Parse(req.URL)
	if err != nil || !target.IsAbs() || (target.Scheme != "http" && target.Scheme != "https") || target.User != nil || target.Hostname() == "" {
		httpapi.Abort(c, http.StatusBadRequest, CodeInvalidURL, "url: an absolute http or https URL without credentials")
		return
	}
	if len(req.Headers) > maxRequestHeaders {
		httpapi.BadRequest(c, "headers: at most %d", maxRequestHeaders)
		return
	}
	call := newCall(s, integ, uc, target, req.Method, c.GetHeader("X-Correlation-Id"))
	if !route.HostAllowed(target.Hostname()) {
		call.refuse(c, http.StatusForbidden, CodeDomainNotAllowed, "host "+target.Hostname()+" is not in the use case's allowed_domains")
		return
	}
	out, err := s.outboundRequest(c, &req, target)
	if err != nil {
		httpapi.BadRequest(c, "%s", err.Error())
		return
	}
	release, ok := s.Outbound.Acquire(integ.OrgID)
	if !ok {
		c.Header("Retry-After", "1")
		httpapi.Abort(c, http.StatusTooManyRequests, CodeTooManyOutbound,
			fmt.Sprintf("the org has %d outbound calls open; retry when one finishes", s.Outbound.PerOrg()))
		return
	}
	defer release()
	resp, err := s.Egress.Do(c.Request.Context(), out, route.Policy("secure_proxy"))
	if err != nil {
		status, code, msg := transportFailure(err, route, target.Hostname())
		s.Log.Info("secure proxy request failed", "org", integ.OrgID, "use_case_id", uc.ID, "host", target.Hostname(), "code", code, "err", err)
		call.refuse(c, status, code, msg)
		return
	}
	call.answered(resp.StatusCode)
	c.JSON(http.StatusOK, gin.H{"status_code": resp.StatusCode, "headers": flatHeaders(resp.Header),
		"body": responseBody(resp.Body, req.ResponseType)})
}

// useCase resolves the secure_proxy use case by id or slug within the integration, in the
// documented order: exists, type, enabled, configuration.
func (s *Service) useCase(c *gin.Context, snap *registry.Snapshot, integ *registry.Integration, id, slug string) (*registry.UseCase, *Route, bool) {
	var uc *registry.UseCase
	var found bool
	switch {
	case id != "":
		uc, found = snap.UseCase(integ.OrgID, id)
		found = found && uc.IntegrationID == integ.ID
	case slug != "":
		uc, found = snap.UseCaseBySlug(integ.OrgID, integ.ID, slug)
	default:
		httpapi.BadRequest(c, "use_case_id or use_case_slug: required")
		return nil, nil, false
	}
	switch {
	case !found:
		httpapi.Abort(c, http.StatusNotFound, CodeNotFound, "no secure_proxy use case "+id+slug+" in this integration")
		return nil, nil, false
	case uc.Type != registry.TypeSecureProxy:
		httpapi.Abort(c, http.StatusBadRequest, CodeInvalidType, "use case "+uc.Slug+" is of type "+uc.Type+", not secure_proxy")
		return nil, nil, false
	case !uc.Enabled:
		httpapi.Abort(c, http.StatusForbidden, CodeDisabled, "use case "+uc.Slug+" is disabled")
		return nil, nil, false
	}
	route, err := ParseRoute(uc, s.Proxies)
	if err != nil {
		httpapi.Abort(c, http.StatusBadRequest, CodeInvalidConfig, err.Error())
		return nil, nil, false
	}
	return uc, route, true
}

// outboundRequest builds the partner request from the caller's fields only: the caller's own
// Authorization (erpstream's token) is never forwarded.
func (s *Service) outboundRequest(c *gin.Context, req *proxyRequest, target *url.URL) (*http.Request, error) {
	var body []byte
	contentType := ""
	if len(req.Body) > 0 && string(req.Body) != "null" && req.Method != http.MethodGet {
		var text string
		if json.Unmarshal(req.Body, &text) == nil {
			body = []byte(text)
		} else {
			body, contentType = req.Body, "application/json"
		}
	}
	out, err := http.NewRequestWithContext(c.Request.Context(), req.Method, target.String(), bytes.NewReader(body))
	if err != nil {
		return nil, errors.New("url: not a valid request target")
	}
	size := 0
	for k, v := range req.Headers {
		size += len(k) + len(v)
		if size > maxRequestHeaderBytes {
			return nil, fmt.Errorf("headers: at most %d bytes", maxRequestHeaderBytes)
		}
		if strings.EqualFold(k, "Host") {
			out.Host = v
			continue
		}
		out.Header.Set(k, v)
	}
	if contentType != "" && out.Header.Get("Content-Type") == "" {
		out.Header.Set("Content-Type", contentType)
	}
	if len(body) == 0 {
		out.Body, out.ContentLength = http.NoBody, 0
	}
	return out, nil
}

// transportFailure maps an egress failure onto the route's status, code and an answer that names
// the host but not what it resolved to (internal addresses are not the caller's to learn).
func transportFailure(err error, route *Route, host string) (int, string, string) {
	switch egress.KindOf(err) {
	case egress.KindBlocked, egress.KindInvalidURL:
		return http.StatusForbidden, CodeIPBlocked, host + " is or resolves to a private, loopback, link-local or reserved address"
	case egress.KindNotAllowed:
		return http.StatusForbidden, CodeIPNotAllowed, host + " resolves to an address outside the use case's allowed_ips"
	case egress.KindTooLarge:
		return http.StatusRequestEntityTooLarge, httpapi.CodePayloadTooLarge, "the request or the upstream answer exceeds 4 MB"
	case egress.KindTimeout:
		return http.StatusGatewayTimeout, CodeTimeout, host + " did not answer in time (25 s)"
	case egress.KindProxyUnavailable:
		return http.StatusServiceUnavailable, CodeUnavailable, "the " + route.Mode + " egress is not available"
	}
	return http.StatusBadGateway, CodeUpstreamError, "could not connect to " + host + " (connection or TLS failure)"
}

func flatHeaders(h http.Header) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		out[k] = strings.Join(v, ", ")
	}
	return out
}

// responseBody is the upstream body as JSON when asked for and valid, else text; binary is base64.
func responseBody(b []byte, responseType string) any {
	if responseType == "binary" {
		return base64.StdEncoding.EncodeToString(b)
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	return string(b)
}

// call records one proxied request in the secure_proxy monitoring lane.
type call struct {
	s       *Service
	m       envelope.MonitoringEvent
	started time.Time
	detail  map[string]any
}

func newCall(s *Service, integ *registry.Integration, uc *registry.UseCase, target *url.URL, method, correlation string) *call {
	now := s.Now()
	id := ids.EventID(now)
	if correlation == "" || len(correlation) > 128 {
		correlation = id
	}
	return &call{s: s, started: now,
		m: envelope.MonitoringEvent{ID: ids.NameUUID("monitoring", integ.OrgID, id, "secure_proxy"), OrgID: integ.OrgID, IntegrationID: integ.ID,
			EventID: id, CorrelationID: correlation, UseCaseID: uc.ID, UseCaseType: registry.TypeSecureProxy},
		// host and path only: a query string may carry credentials
		detail: map[string]any{"method": method, "host": target.Host, "path": target.EscapedPath()}}
}

func (cl *call) answered(status int) {
	level, code := envelope.LevelSuccess, fmt.Sprintf("HTTP_%d", status)
	if status >= 400 {
		level = envelope.LevelWarning // the proxy worked; the partner refused
	}
	cl.detail["status_code"] = status
	cl.write(level, code, fmt.Sprintf("upstream answered %d", status))
}

func (cl *call) refuse(c *gin.Context, status int, code, message string) {
	cl.write(envelope.LevelError, code, message)
	httpapi.Abort(c, status, code, message)
}

func (cl *call) write(level envelope.Level, code, message string) {
	now := cl.s.Now()
	cl.detail["latency_ms"] = now.Sub(cl.started).Milliseconds()
	cl.m.Level, cl.m.Code, cl.m.Message, cl.m.CreatedAtMs = level, code, message, now.UnixMilli()
	cl.m.Detail, _ = json.Marshal(cl.detail)
	if cl.s.Producer == nil {
		return
	}
	cl.s.Producer.TryProduce(context.Background(), envelope.CallRecord(cl.s.Topics.Monitoring, &cl.m), func(_ *kgo.Record, err error) {
		if err != nil {
			cl.s.Log.Warn("secure proxy monitoring row not stored", "err", err)
		}
	})
}
