package outbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/erpstream/erpstream/connector"
	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/internal/registry"
)

// DefaultSigningSecretVar is the org environment variable that signs deliveries to a bare
// webhook_url (no webhook definition): {{env.WEBHOOK_SIGNING_SECRET}}.
const DefaultSigningSecretVar = "WEBHOOK_SIGNING_SECRET"

// target is where a delivery goes, resolved at each attempt: a webhook changed or disabled
// since the change applies to its retries.
type target struct {
	webhookID string
	name      string
	url       string
	enabled   bool
	headers   map[string]string
	auth      *connector.Auth
	secret    string // a {{env.KEY}} reference, or "" (unsigned)
}

var errNoWebhook = errors.New("no webhook")

// resolveTarget finds the delivery's webhook: the org's definition named by webhook_id, else
// the mapping's webhook_url alone.
func resolveTarget(snap *registry.Snapshot, d *Delivery) (*target, error) {
	if d.WebhookID != "" {
		if w, ok := snap.Webhook(d.OrgID, d.WebhookID); ok {
			t := &target{webhookID: w.ID, name: w.Name, url: w.URL, enabled: w.Enabled, headers: w.Headers, secret: w.SigningSecret}
			if len(w.Auth) > 0 && string(w.Auth) != "null" {
				auth, err := connector.ParseAuth([]byte(`{"auth":` + string(w.Auth) + `}`))
				if err != nil {
					return nil, err
				}
				t.auth = auth
			}
			return t, nil
		}
	}
	if d.WebhookURL != "" {
		secret := ""
		if _, ok := snap.EnvVar(d.OrgID, DefaultSigningSecretVar); ok {
			secret = "{{env." + DefaultSigningSecretVar + "}}"
		}
		return &target{webhookID: d.WebhookID, url: d.WebhookURL, enabled: true, secret: secret}, nil
	}
	return nil, fmt.Errorf("%w: webhook %q is not defined and the mapping has no webhook_url", errNoWebhook, d.WebhookID)
}

// outcome of one attempt.
type outcome struct {
	status    int // HTTP status, 0 without an answer
	latency   time.Duration
	retry     bool          // worth another attempt
	after     time.Duration // the receiver's Retry-After
	err       error         // no 2xx: why, with secrets scrubbed
	respBody  []byte
	respHead  http.Header
	url       string // without query string
	webhookID string
	disabled  bool
}

func (o *outcome) ok() bool { return o.err == nil }

// attempt sends d once.
func (s *Service) attempt(ctx context.Context, d *Delivery) *outcome {
	snap := s.cfg.Registry.Snapshot()
	t, err := resolveTarget(snap, d)
	if err != nil {
		return &outcome{err: err, webhookID: d.WebhookID}
	}
	o := &outcome{url: redactURL(t.url), webhookID: t.webhookID}
	if !t.enabled {
		o.disabled, o.err = true, fmt.Errorf("webhook %s is disabled", t.webhookID)
		return o
	}
	env := connector.NewEnv(snap, s.cfg.Secrets, d.OrgID)
	scrub := func(err error) error { return errors.New(env.Scrub(err.Error())) }
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(d.Payload))
	if err != nil {
		o.err = fmt.Errorf("webhook URL: %v", scrub(err))
		return o
	}
	req.ContentLength = int64(len(d.Payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "erpstream-webhooks")
	for k, v := range t.headers {
		val, err := env.Resolve(v)
		if err != nil {
			o.err = scrub(err)
			return o
		}
		req.Header.Set(k, val)
	}
	secret := ""
	if t.secret != "" {
		if secret, err = env.Resolve(t.secret); err != nil {
			o.err = scrub(err)
			return o
		}
	}
	setSignature(req.Header, secret, d.ID, s.now(), d.Payload)
	// The receiver may continue the trace (traceparent) of the change it is told about.
	otel.GetTextMapPropagator().Inject(ctx, propagation.HeaderCarrier(req.Header))
	retryAuth, err := s.cfg.Auth.Apply(ctx, req, env, connector.Scope{OrgID: d.OrgID, IntegrationID: d.IntegrationID}, t.auth)
	if err != nil {
		o.err, o.retry = scrub(err), errors.Is(err, connector.ErrTokenFailure)
		return o
	}
	started := time.Now()
	resp, err := s.cfg.Egress.Do(ctx, req, egress.Policy{Purpose: "webhook"})
	if err == nil && resp.StatusCode == http.StatusUnauthorized && retryAuth != nil && retryAuth(ctx) == nil {
		// The cached OAuth2 token was refused: once more with a fresh one (retryAuth set it on req).
		again, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(d.Payload))
		again.Header, again.ContentLength = req.Header, int64(len(d.Payload))
		resp, err = s.cfg.Egress.Do(ctx, again, egress.Policy{Purpose: "webhook"})
	}
	o.latency = time.Since(started)
	if err != nil {
		kind := egress.KindOf(err)
		o.err = scrub(err)
		o.retry = kind == egress.KindTimeout || kind == egress.KindTransport || kind == egress.KindProxyUnavailable
		return o
	}
	o.status, o.respHead = resp.StatusCode, resp.Header
	// Scrubbed of the secrets this attempt used: a receiver echoing the request must not put
	// its Authorization or a header secret into monitoring.
	o.respBody = []byte(env.Scrub(string(resp.Body[:min(len(resp.Body), maxRecordedResponse)])))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return o
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		o.retry = true
		o.after = retryAfter(resp.Header.Get("Retry-After"), s.now())
	}
	o.err = fmt.Errorf("the webhook answered HTTP %d", resp.StatusCode)
	return o
}

// maxRecordedResponse bounds the response body kept in monitoring.
const maxRecordedResponse = 4 << 10

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 when absent or unreadable.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// redactURL drops a URL's query string and fragment (they may carry tokens) for monitoring.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	u.RawQuery, u.Fragment, u.User = "", "", nil
	return u.String()
}
