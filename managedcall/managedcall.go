// Package managedcall serves POST /v1/managed-call/{slug}/execute: a synchronous call to a
// partner API defined by a managed_call use case (operation, JSONata request and response
// mappings) on a connector integration (base_url, auth). Secrets are resolved at the moment of
// the call, the request goes through package egress (optionally through a secure_proxy use case's
// route), the raw answer can be queued as an inbound event, and every call leaves a monitoring row
// in the managed_call lane.
package managedcall

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/connector"
	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/quota"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/secrets"
	"github.com/erpstream/erpstream/secureproxy"
)

// Producer queues inbound events (synchronously: acknowledged before the answer) and monitoring
// rows (without blocking the answer).
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
	TryProduce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// Service serves managed calls.
type Service struct {
	Registry *registry.Registry
	Secrets  *secrets.Box
	Egress   *egress.Client
	Auth     *connector.Authorizer
	Proxies  secureproxy.Proxies
	Producer Producer
	Topics   kafkax.Topics
	// Outbound caps each org's open outbound calls (nil: uncapped).
	Outbound *quota.Concurrency
	Now      func() time.Time
	Log      *slog.Logger

	ops operations
}

// Register mounts the route on an authenticated router group.
func (s *Service) Register(r gin.IRouter) {
	if s.Now == nil {
		s.Now = time.Now
	}
	r.POST("/v1/managed-call/:slug/execute", httpapi.Require("erp:events"), s.execute)
}

var slugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// maxErrorBody bounds the upstream body an EXTERNAL_API_ERROR carries back.
const maxErrorBody = 2048

type executeRequest struct {
	IntegrationID string          `json:"integration_id"`
	Payload       json.RawMessage `json:"payload"`
	CorrelationID string          `json:"correlation_id"`
}

func (s *Service) execute(c *gin.Context) {
	var req executeRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	slug := c.Param("slug")
	if !slugPattern.MatchString(slug) {
		fail(c, http.StatusBadRequest, httpapi.CodeValidation, "slug: lower-case letters, digits, - and _", nil)
		return
	}
	snap := s.Registry.Snapshot()
	integ, ok := httpapi.OrgIntegration(c, snap, req.IntegrationID)
	if !ok {
		return
	}
	payload, payloadValue, ok := decodePayload(c, req.Payload)
	if !ok {
		return
	}
	p, ok := s.plan(c, snap, integ, slug)
	if !ok {
		return
	}
	call := s.newCall(integ, p.useCase, req.CorrelationID)
	env := connector.NewEnv(snap, s.Secrets, integ.OrgID)
	out, ok := s.request(c, call, p, env, payload, payloadValue, req.Payload)
	if !ok {
		return
	}
	release, ok := s.Outbound.Acquire(integ.OrgID)
	if !ok {
		c.Header("Retry-After", "1")
		fail(c, http.StatusTooManyRequests, "OUTBOUND_CONCURRENCY_EXCEEDED",
			fmt.Sprintf("the org has %d outbound calls open; retry when one finishes", s.Outbound.PerOrg()), nil)
		return
	}
	defer release()
	retry, err := s.Auth.Apply(c, out, env, connector.Scope{OrgID: integ.OrgID, IntegrationID: integ.ID}, p.auth)
	if err != nil {
		call.authFailed(c, err)
		return
	}
	resp, err := s.send(c.Request.Context(), out, call.policy)
	if err == nil && resp.StatusCode == http.StatusUnauthorized && retry != nil {
		// The partner refused the token: fetch a fresh one and try once more.
		if err = retry(c); err != nil {
			call.authFailed(c, err)
			return
		}
		resp, err = s.send(c.Request.Context(), out, call.policy)
	}
	host := env.Scrub(out.URL.Hostname())
	if err != nil {
		call.transportFailed(c, err, host)
		return
	}
	call.status = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body := env.Scrub(string(resp.Body[:min(len(resp.Body), maxErrorBody)]))
		call.warn(fmt.Sprintf("HTTP_%d", resp.StatusCode), fmt.Sprintf("partner answered %d", resp.StatusCode))
		fail(c, http.StatusBadGateway, "EXTERNAL_API_ERROR", fmt.Sprintf("%s answered %d", host, resp.StatusCode),
			map[string]any{"status_code": resp.StatusCode, "body": body})
		return
	}
	data, ok := s.mapResponse(c, call, p.op, resp.Body)
	if !ok {
		return
	}
	inboundID, queued := "", false
	if p.inbound != nil {
		if inboundID, ok = s.queueInbound(c, call, snap, integ, p.inbound, resp.Body); !ok {
			return
		}
		queued = true
		c.Header("X-Inbound-Event-Id", inboundID)
	}
	call.succeed(inboundID)
	var inboundField any
	if queued {
		inboundField = inboundID
	}
	c.JSON(http.StatusOK, gin.H{"success": true, "data": data, "inbound_queued": queued, "inbound_event_id": inboundField})
}

// decodePayload reads the payload object both ways: Go values for placeholders, the value model
// for the request mapping.
func decodePayload(c *gin.Context, raw json.RawMessage) (map[string]any, any, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		raw = json.RawMessage(`{}`)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var payload map[string]any
	if err := dec.Decode(&payload); err != nil {
		fail(c, http.StatusBadRequest, httpapi.CodeValidation, "payload: must be an object", nil)
		return nil, nil, false
	}
	value, err := jsonata.DecodeJSON(raw)
	if err != nil {
		fail(c, http.StatusBadRequest, httpapi.CodeValidation, "payload: "+err.Error(), nil)
		return nil, nil, false
	}
	return payload, value, true
}

// plan is what a call of this use case needs, resolved before anything is sent.
type plan struct {
	useCase *registry.UseCase
	op      *operation
	base    string
	auth    *connector.Auth
	route   *secureproxy.Route // nil: direct through egress
	inbound *registry.UseCase  // nil: the answer is not queued
}

// plan resolves the use case and its configuration in the documented order.
func (s *Service) plan(c *gin.Context, snap *registry.Snapshot, integ *registry.Integration, slug string) (*plan, bool) {
	uc, found := snap.UseCaseBySlug(integ.OrgID, integ.ID, slug)
	switch {
	case !found:
		fail(c, http.StatusNotFound, httpapi.CodeUseCaseNotFound, "no use case "+slug+" in this integration", nil)
		return nil, false
	case uc.Type != registry.TypeManagedCall:
		fail(c, http.StatusBadRequest, "USE_CASE_INVALID_TYPE", "use case "+slug+" is of type "+uc.Type+", not managed_call", nil)
		return nil, false
	case !uc.Enabled:
		fail(c, http.StatusForbidden, "USE_CASE_DISABLED", "use case "+slug+" is disabled", nil)
		return nil, false
	}
	missing := func(msg string) (*plan, bool) {
		fail(c, http.StatusBadRequest, "USE_CASE_MISSING_CONFIG", msg, nil)
		return nil, false
	}
	var cc struct {
		BaseURL string `json:"base_url"`
	}
	if raw := integ.Fields["connector_config"]; len(raw) > 0 {
		_ = json.Unmarshal(raw, &cc)
	}
	if cc.BaseURL == "" {
		return missing("the integration's connector_config.base_url is not set")
	}
	auth, err := connector.ParseAuth(integ.Fields["connector_config"])
	if err != nil {
		return missing(err.Error())
	}
	op, err := s.ops.get(uc)
	if err != nil {
		return missing(err.Error())
	}
	p := &plan{useCase: uc, op: op, base: cc.BaseURL, auth: auth}
	if op.SecureProxy != nil && op.SecureProxy.UseCaseSlug != "" {
		sp, ok := snap.UseCaseBySlug(integ.OrgID, integ.ID, op.SecureProxy.UseCaseSlug)
		if !ok || sp.Type != registry.TypeSecureProxy || !sp.Enabled {
			return missing("secure_proxy.use_case_slug " + op.SecureProxy.UseCaseSlug + " names no enabled secure_proxy use case of this integration")
		}
		if p.route, err = secureproxy.ParseRoute(sp, s.Proxies); err != nil {
			return missing(err.Error())
		}
	}
	if op.InboundUseCaseSlug != "" {
		in, ok := snap.UseCaseBySlug(integ.OrgID, integ.ID, op.InboundUseCaseSlug)
		if !ok || in.Type != registry.TypeInbound {
			return missing("inbound_use_case_slug " + op.InboundUseCaseSlug + " names no inbound use case of this integration")
		}
		p.inbound = in
	}
	return p, true
}

// request builds the partner request: URL, headers and body.
func (s *Service) request(c *gin.Context, call *call, p *plan, env *connector.Env, payload map[string]any, payloadValue any, rawPayload json.RawMessage) (*http.Request, bool) {
	base, err := env.Resolve(p.base)
	if err != nil {
		call.refuse(c, http.StatusBadRequest, "MISSING_ENVIRONMENT_VARIABLE", err.Error())
		return nil, false
	}
	target, err := p.op.target(base, payload)
	if err != nil {
		var mp *missingParam
		if errors.As(err, &mp) {
			call.refuse(c, http.StatusBadRequest, "MISSING_REQUIRED_PARAM", err.Error())
		} else {
			call.refuse(c, http.StatusBadRequest, "USE_CASE_MISSING_CONFIG", err.Error())
		}
		return nil, false
	}
	if target.Scheme != "http" && target.Scheme != "https" || target.User != nil || target.Hostname() == "" {
		call.refuse(c, http.StatusBadRequest, "SSRF_BLOCKED", "base_url must be an http or https URL without credentials")
		return nil, false
	}
	if p.route != nil && !p.route.HostAllowed(target.Hostname()) {
		call.refuse(c, http.StatusForbidden, secureproxy.CodeDomainNotAllowed, "host "+target.Hostname()+" is not in the secure proxy's allowed_domains")
		return nil, false
	}
	call.target(p.op.Operation.Method, target, env)
	var body []byte
	switch p.op.Operation.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		body = rawPayload
		if p.op.request != nil {
			v, err := p.op.request.Eval(c, payloadValue, &jsonata.Env{Now: s.Now()})
			if err != nil {
				call.refuse(c, http.StatusBadRequest, "MANAGED_CALL_EXECUTION_ERROR", "request_mapping: "+err.Error())
				return nil, false
			}
			body = nil
			if v != jsonata.Undefined {
				if body, err = jsonata.MarshalValue(v); err != nil {
					call.refuse(c, http.StatusBadRequest, "MANAGED_CALL_EXECUTION_ERROR", "request_mapping: "+err.Error())
					return nil, false
				}
			}
		}
	}
	out, err := http.NewRequestWithContext(c, p.op.Operation.Method, target.String(), bytes.NewReader(body))
	if err != nil {
		call.refuse(c, http.StatusBadRequest, "USE_CASE_MISSING_CONFIG", "the operation does not form a request")
		return nil, false
	}
	if len(body) == 0 {
		out.Body, out.ContentLength = http.NoBody, 0
	} else {
		out.Header.Set("Content-Type", "application/json")
	}
	out.Header.Set("Accept", "application/json")
	for k, tmpl := range p.op.Operation.Headers {
		v, err := fill(tmpl, payload, env, identity)
		if err != nil {
			var mp *missingParam
			if errors.As(err, &mp) {
				call.refuse(c, http.StatusBadRequest, "MISSING_REQUIRED_PARAM", err.Error())
			} else {
				call.refuse(c, http.StatusBadRequest, "MISSING_ENVIRONMENT_VARIABLE", err.Error())
			}
			return nil, false
		}
		out.Header.Set(k, v)
	}
	// The body is sent again on a retry after a 401.
	out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	call.policy = egress.Policy{Purpose: "managed_call"}
	if p.route != nil {
		call.policy = p.route.Policy("managed_call")
	}
	return out, true
}

// send makes one attempt; a retry sends a fresh copy of the body.
func (s *Service) send(ctx context.Context, req *http.Request, policy egress.Policy) (*egress.Response, error) {
	attempt := req.Clone(ctx)
	if req.GetBody != nil {
		attempt.Body, _ = req.GetBody()
	}
	return s.Egress.Do(ctx, attempt, policy)
}

// mapResponse parses the upstream body and applies response_mapping.
func (s *Service) mapResponse(c *gin.Context, call *call, op *operation, body []byte) (any, bool) {
	var parsed any
	if len(bytes.TrimSpace(body)) == 0 {
		parsed = jsonata.Null
	} else if v, err := jsonata.DecodeJSON(body); err == nil {
		parsed = v
	} else {
		parsed = string(body)
	}
	if op.response == nil {
		return valueJSON(parsed), true
	}
	v, err := op.response.Eval(c, parsed, &jsonata.Env{Now: s.Now()})
	if err != nil {
		call.fail(c, http.StatusBadGateway, "MANAGED_CALL_EXECUTION_ERROR", "response_mapping: "+err.Error())
		return nil, false
	}
	if v == jsonata.Undefined {
		return nil, true
	}
	return valueJSON(v), true
}

// valueJSON renders a value-model value for gin (ordered keys kept).
func valueJSON(v any) any {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := jsonata.MarshalValue(v)
	if err != nil {
		return nil
	}
	return json.RawMessage(b)
}
