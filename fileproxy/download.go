package fileproxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/connector"
	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/secrets"
	"github.com/erpstream/erpstream/secureproxy"
)

// Monitoring codes of the file_proxy lane (and the error codes of the route).
const (
	CodeOK                 = "FILE_PROXY_OK"
	CodeSignature          = "SIGNATURE_VERIFICATION_FAILED"
	CodeTokenFailure       = "OAUTH2_TOKEN_FAILURE"
	CodeExtractionFailed   = "FILE_EXTRACTION_FAILED"
	CodeMissingParam       = "MISSING_REQUIRED_PARAM"
	CodeTooLarge           = "FILE_TOO_LARGE"
	CodeTimeout            = "FILE_PROXY_TIMEOUT"
	CodeBlocked            = "SSRF_BLOCKED"
	CodeRateLimited        = "RATE_LIMITED"
	DefaultMaxFileBytes    = 50 << 20
	DefaultDownloadTimeout = 60 * time.Second
	// DefaultLinkRequestsPerMinute bounds how often one client fetches one link.
	DefaultLinkRequestsPerMinute = 60
)

// Producer writes monitoring rows without blocking the download.
type Producer interface {
	TryProduce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

// Service serves the download route.
type Service struct {
	Registry *registry.Registry
	Secrets  *secrets.Box
	Signer   *Signer
	Egress   *egress.Client
	Auth     *connector.Authorizer
	Proxies  secureproxy.Proxies
	Producer Producer
	Topics   kafkax.Topics
	// MaxFileBytes caps one file (default 50 MB); Timeout bounds one download (default 60 s).
	MaxFileBytes int64
	Timeout      time.Duration
	// LinkRequestsPerMinute bounds the requests of one client for one link (default 60).
	LinkRequestsPerMinute int
	Now                   func() time.Time
	Log                   *slog.Logger

	mu       sync.Mutex
	configs  map[string]*Config
	limiter  linkLimiter
	initOnce sync.Once
}

func (s *Service) init() {
	s.initOnce.Do(func() {
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.MaxFileBytes <= 0 {
			s.MaxFileBytes = DefaultMaxFileBytes
		}
		if s.Timeout <= 0 {
			s.Timeout = DefaultDownloadTimeout
		}
		if s.LinkRequestsPerMinute <= 0 {
			s.LinkRequestsPerMinute = DefaultLinkRequestsPerMinute
		}
		s.configs = map[string]*Config{}
		s.limiter = linkLimiter{now: s.Now, seen: map[string]*linkWindow{}}
	})
}

// Register mounts GET /download on a router without authentication: the signed link is the
// capability.
func (s *Service) Register(r gin.IRouter) {
	s.init()
	r.GET("/download", s.download)
}

// reserved are the link's own parameters; every other one is a param of the use case.
var reserved = map[string]bool{"orgId": true, "integrationId": true, "useCaseSlug": true, "useCaseId": true,
	paramSignature: true, paramKeyID: true, paramExpires: true}

func (s *Service) download(c *gin.Context) {
	q := c.Request.URL.Query()
	// Per link and client, and per client over all links (a client varying the signature must not
	// escape the limit, nor fill a lane with refused attempts).
	if !s.limiter.allow(q.Get(paramSignature)+"|"+c.ClientIP(), s.LinkRequestsPerMinute) ||
		!s.limiter.allow("client|"+c.ClientIP(), 10*s.LinkRequestsPerMinute) {
		c.Header("Retry-After", "60")
		httpapi.Abort(c, http.StatusTooManyRequests, CodeRateLimited, fmt.Sprintf("at most %d requests a minute for one link", s.LinkRequestsPerMinute))
		return
	}
	org, integrationID, slug, useCaseID := q.Get("orgId"), q.Get("integrationId"), q.Get("useCaseSlug"), q.Get("useCaseId")
	snap := s.Registry.Snapshot()
	integ, _ := snap.Integration(org, integrationID)
	var uc *registry.UseCase
	if integ != nil {
		if slug != "" {
			uc, _ = snap.UseCaseBySlug(org, integ.ID, slug)
		} else if u, ok := snap.UseCase(org, useCaseID); ok && u.IntegrationID == integ.ID {
			uc = u
		}
	}
	d := s.newDownload(integ, uc)
	if err := s.Signer.Verify(q); err != nil {
		// A row only where the link names a real use case: unsigned noise cannot fill a lane.
		d.fail(c, http.StatusForbidden, CodeSignature, "the download link's signature is missing, wrong or expired", 0)
		return
	}
	if org == "" || integrationID == "" || (slug == "") == (useCaseID == "") {
		httpapi.Abort(c, http.StatusBadRequest, CodeMissingParam, "orgId, integrationId and one of useCaseSlug and useCaseId are required")
		return
	}
	switch {
	case integ == nil || uc == nil:
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeUseCaseNotFound, "no such file_proxy use case")
		return
	case uc.Type != registry.TypeFileProxy:
		httpapi.Abort(c, http.StatusBadRequest, "USE_CASE_INVALID_TYPE", "use case "+uc.Slug+" is not a file_proxy use case")
		return
	case !uc.Enabled:
		d.fail(c, http.StatusForbidden, "USE_CASE_DISABLED", "use case "+uc.Slug+" is disabled", 0)
		return
	}
	cfg, err := s.config(uc)
	if err != nil {
		d.fail(c, http.StatusBadRequest, "USE_CASE_MISSING_CONFIG", err.Error(), 0)
		return
	}
	params := map[string]any{}
	for k, v := range q {
		if !reserved[k] && len(v) > 0 {
			params[k] = v[0]
		}
	}
	for _, p := range cfg.Params {
		if _, ok := params[p.Name]; p.Required && !ok {
			d.fail(c, http.StatusBadRequest, CodeMissingParam, "the link lacks the required param "+p.Name, 0)
			return
		}
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), s.Timeout)
	defer cancel()
	s.run(ctx, c, d, snap, integ, cfg, params)
}

func (s *Service) config(uc *registry.UseCase) (*Config, error) {
	key := fmt.Sprintf("%s/%s/%d/%d", uc.OrgID, uc.ID, uc.Version, uc.UpdatedAt.UnixNano())
	s.mu.Lock()
	cfg, ok := s.configs[key]
	s.mu.Unlock()
	if ok {
		return cfg, nil
	}
	cfg, err := Compile(uc.Configuration)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.configs) > 10_000 {
		s.configs = map[string]*Config{}
	}
	s.configs[key] = cfg
	s.mu.Unlock()
	return cfg, nil
}

// run executes the steps and streams the file.
func (s *Service) run(ctx context.Context, c *gin.Context, d *download, snap *registry.Snapshot, integ *registry.Integration, cfg *Config, params map[string]any) {
	env := connector.NewEnv(snap, s.Secrets, integ.OrgID)
	policy := egress.Policy{Purpose: "file_proxy"}
	if cfg.SecureProxy != nil && cfg.SecureProxy.UseCaseSlug != "" {
		sp, ok := snap.UseCaseBySlug(integ.OrgID, integ.ID, cfg.SecureProxy.UseCaseSlug)
		if !ok || sp.Type != registry.TypeSecureProxy || !sp.Enabled {
			d.fail(c, http.StatusBadRequest, "USE_CASE_MISSING_CONFIG", "secure_proxy.use_case_slug names no enabled secure_proxy use case", 0)
			return
		}
		route, err := secureproxy.ParseRoute(sp, s.Proxies)
		if err != nil {
			d.fail(c, http.StatusBadRequest, "USE_CASE_MISSING_CONFIG", err.Error(), 0)
			return
		}
		d.route, policy = route, route.Policy("file_proxy")
	}
	tctx := map[string]any{"params": params, "steps": []any{}}
	bearer := ""
	if cfg.Auth != nil {
		token, ok := s.token(ctx, c, d, env, integ, cfg.Auth, tctx)
		if !ok {
			return
		}
		bearer = token
	}
	steps := []any{}
	for i, st := range cfg.Steps {
		tctx["steps"] = steps
		req, ok := s.stepRequest(ctx, c, d, env, i, st, tctx, bearer)
		if !ok {
			return
		}
		last := i == len(cfg.Steps)-1
		if last && st.ResponseType == "binary" {
			s.streamBinary(ctx, c, d, env, cfg, req, policy, i, tctx, steps)
			return
		}
		resp, err := s.Egress.Do(ctx, req, policy)
		if err != nil {
			s.transportFailed(c, d, err, req.URL.Hostname(), i)
			return
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			d.fail(c, http.StatusBadGateway, CodeExtractionFailed, fmt.Sprintf("step %d: the archive answered %d", i, resp.StatusCode), i)
			return
		}
		var body any = string(resp.Body)
		if st.ResponseType == "json" {
			if err := json.Unmarshal(resp.Body, &body); err != nil {
				d.fail(c, http.StatusBadGateway, CodeExtractionFailed, fmt.Sprintf("step %d: the archive's answer is not JSON", i), i)
				return
			}
		} else {
			body = base64.StdEncoding.EncodeToString(resp.Body) // a binary answer of an earlier step, for the templates
		}
		steps = append(steps, map[string]any{"body": body, "headers": flat(resp.Header), "statusCode": resp.StatusCode})
	}
	tctx["steps"] = steps
	s.extract(ctx, c, d, env, cfg, tctx)
}

func (s *Service) token(ctx context.Context, c *gin.Context, d *download, env *connector.Env, integ *registry.Integration, a *Auth, tctx map[string]any) (string, bool) {
	tc := templateContext(tctx).(map[string]any)
	fields := []*string{&a.TokenURL, &a.ClientID, &a.ClientSecret, &a.Scope, &a.Audience, &a.Resource, &a.Username, &a.Password}
	vals := make([]string, len(fields))
	for i, f := range fields {
		v, err := render(*f, tc, env)
		if err != nil {
			d.fail(c, http.StatusBadGateway, CodeTokenFailure, "auth: "+err.Error(), -1)
			return "", false
		}
		vals[i] = v
	}
	maps := make([]map[string]string, 3)
	for i, m := range []map[string]string{a.BodyParams, a.Headers, a.QueryParams} {
		maps[i] = map[string]string{}
		for k, tmpl := range m {
			v, err := render(tmpl, tc, env)
			if err != nil {
				d.fail(c, http.StatusBadGateway, CodeTokenFailure, "auth."+k+": "+err.Error(), -1)
				return "", false
			}
			maps[i][k] = v
		}
	}
	r := connector.TokenRequest{TokenURL: vals[0], ClientID: vals[1], ClientSecret: vals[2], Scope: vals[3], Audience: vals[4],
		Resource: vals[5], BodyParams: maps[0], Headers: maps[1], QueryParams: maps[2]}
	if a.Type == "oauth2_password" {
		r.Username, r.Password = vals[6], vals[7]
	}
	token, err := s.Auth.Token(ctx, connector.Scope{OrgID: integ.OrgID, IntegrationID: integ.ID}, r)
	if err != nil {
		d.fail(c, http.StatusBadGateway, CodeTokenFailure, err.Error(), -1)
		return "", false
	}
	return token, true
}

func (s *Service) stepRequest(ctx context.Context, c *gin.Context, d *download, env *connector.Env, i int, st Step, tctx map[string]any, bearer string) (*http.Request, bool) {
	tc := templateContext(tctx).(map[string]any)
	fail := func(what string, err error) (*http.Request, bool) {
		d.fail(c, http.StatusBadGateway, CodeExtractionFailed, fmt.Sprintf("step %d %s: %v", i, what, err), i)
		return nil, false
	}
	target, err := render(st.URL, tc, env)
	if err != nil {
		return fail("url", err)
	}
	var body []byte
	if st.Method == http.MethodPost && st.Body != "" {
		b, err := render(st.Body, tc, env)
		if err != nil {
			return fail("body", err)
		}
		body = []byte(b)
	}
	req, err := http.NewRequestWithContext(ctx, st.Method, target, bytes.NewReader(body))
	if err != nil {
		d.fail(c, http.StatusBadRequest, CodeBlocked, fmt.Sprintf("step %d: the url is not a valid http or https URL", i), i)
		return nil, false
	}
	if d.route != nil && !d.route.HostAllowed(req.URL.Hostname()) {
		d.fail(c, http.StatusForbidden, secureproxy.CodeDomainNotAllowed, fmt.Sprintf("step %d: the host is not in the secure proxy's allowed_domains", i), i)
		return nil, false
	}
	if len(body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for k, tmpl := range st.Headers {
		v, err := render(tmpl, tc, env)
		if err != nil {
			return fail("headers."+k, err)
		}
		req.Header.Set(k, v)
	}
	if bearer != "" && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return req, true
}

func (s *Service) transportFailed(c *gin.Context, d *download, err error, host string, step int) {
	s.Log.Info("file proxy step failed", "org", d.m.OrgID, "use_case_id", d.m.UseCaseID, "step", step, "host", host, "err", err)
	switch egress.KindOf(err) {
	case egress.KindBlocked, egress.KindInvalidURL, egress.KindNotAllowed:
		d.fail(c, http.StatusBadRequest, CodeBlocked, fmt.Sprintf("step %d: %s is or resolves to an address the file proxy may not reach", step, host), step)
	case egress.KindTimeout:
		d.fail(c, http.StatusGatewayTimeout, CodeTimeout, fmt.Sprintf("step %d: %s did not answer in time", step, host), step)
	case egress.KindTooLarge:
		d.fail(c, http.StatusBadGateway, CodeTooLarge, fmt.Sprintf("step %d: the answer exceeds the cap", step), step)
	default:
		d.fail(c, http.StatusBadGateway, CodeExtractionFailed, fmt.Sprintf("step %d: could not connect to %s", step, host), step)
	}
}

// extract evaluates response.body over the steps' answers, decodes it, and sends the file.
func (s *Service) extract(ctx context.Context, c *gin.Context, d *download, env *connector.Env, cfg *Config, tctx map[string]any) {
	input, err := valueOf(tctx)
	if err != nil {
		d.fail(c, http.StatusBadGateway, CodeExtractionFailed, "the steps' answers cannot be read: "+err.Error(), -1)
		return
	}
	v, err := cfg.body.Eval(ctx, input, &jsonata.Env{Now: s.Now()})
	text, isString := v.(string)
	if err != nil || !isString {
		msg := "response.body did not give a string"
		if err != nil {
			msg = "response.body: " + err.Error()
		}
		d.fail(c, http.StatusBadGateway, CodeExtractionFailed, msg, -1)
		return
	}
	data := []byte(text)
	if cfg.Output.Encoding == "base64" {
		if data, err = base64.StdEncoding.DecodeString(strings.TrimSpace(text)); err != nil {
			d.fail(c, http.StatusBadGateway, CodeExtractionFailed, "response.body is not base64", -1)
			return
		}
	}
	if int64(len(data)) > s.MaxFileBytes {
		d.fail(c, http.StatusBadGateway, CodeTooLarge, fmt.Sprintf("the file exceeds %d bytes", s.MaxFileBytes), -1)
		return
	}
	filename, contentType := s.names(ctx, env, cfg, input)
	s.sendHeaders(c, filename, contentType, int64(len(data)))
	_, _ = c.Writer.Write(data)
	d.ok(int64(len(data)))
}

// streamBinary sends the last step's binary answer as the file, without holding it in memory.
func (s *Service) streamBinary(ctx context.Context, c *gin.Context, d *download, env *connector.Env, cfg *Config, req *http.Request,
	policy egress.Policy, step int, tctx map[string]any, steps []any) {
	stream, err := s.Egress.Open(ctx, req, policy, s.MaxFileBytes)
	if err != nil {
		s.transportFailed(c, d, err, req.URL.Hostname(), step)
		return
	}
	defer stream.Body.Close()
	if stream.StatusCode < 200 || stream.StatusCode > 299 {
		d.fail(c, http.StatusBadGateway, CodeExtractionFailed, fmt.Sprintf("step %d: the archive answered %d", step, stream.StatusCode), step)
		return
	}
	tctx["steps"] = append(steps, map[string]any{"body": nil, "headers": flat(stream.Header), "statusCode": stream.StatusCode})
	input, _ := valueOf(tctx)
	filename, contentType := s.names(ctx, env, cfg, input)
	if contentType == "application/octet-stream" {
		if upstream := stream.Header.Get("Content-Type"); upstream != "" && cfg.contentType == nil {
			contentType = upstream
		}
	}
	size := int64(-1)
	if n := stream.Header.Get("Content-Length"); n != "" {
		_, _ = fmt.Sscan(n, &size)
		if size > s.MaxFileBytes {
			d.fail(c, http.StatusBadGateway, CodeTooLarge, fmt.Sprintf("the file exceeds %d bytes", s.MaxFileBytes), step)
			return
		}
	}
	s.sendHeaders(c, filename, contentType, size)
	n, err := io.Copy(c.Writer, stream.Body)
	if err != nil {
		// The status is sent; the client sees a cut-off body. The lane says why.
		code := CodeExtractionFailed
		if errors.Is(err, context.DeadlineExceeded) || egress.KindOf(err) == egress.KindTimeout {
			code = CodeTimeout
		} else if egress.KindOf(err) == egress.KindTooLarge {
			code = CodeTooLarge
		}
		d.write(code, fmt.Sprintf("step %d: the transfer stopped after %d bytes", step, n), step, n)
		// The 200 is sent: close the connection without ending the body, so the client sees a
		// broken transfer instead of a short file.
		panic(http.ErrAbortHandler)
	}
	d.ok(n)
}

func (s *Service) names(ctx context.Context, env *connector.Env, cfg *Config, input any) (string, string) {
	eval := func(x jsonata.Expression, def string) string {
		if x == nil {
			return def
		}
		v, err := x.Eval(ctx, input, &jsonata.Env{Now: s.Now()})
		str, ok := v.(string)
		if err != nil || !ok || str == "" {
			return def
		}
		if resolved, err := env.Resolve(str); err == nil {
			return resolved
		}
		return def
	}
	return eval(cfg.filename, "download"), eval(cfg.contentType, "application/octet-stream")
}

func (s *Service) sendHeaders(c *gin.Context, filename, contentType string, size int64) {
	if _, _, err := mime.ParseMediaType(contentType); err != nil {
		contentType = "application/octet-stream"
	}
	h := c.Writer.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": safeFilename(filename)}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "private, no-store")
	if size >= 0 {
		h.Set("Content-Length", fmt.Sprint(size))
	}
	c.Status(http.StatusOK)
}

// safeFilename keeps a name that cannot break the header or walk a path.
func safeFilename(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' || r == '"' {
			return '_'
		}
		return r
	}, name)
	if len(name) > 255 {
		name = name[:255]
	}
	if strings.Trim(name, "._ ") == "" {
		return "download"
	}
	return name
}

func flat(h http.Header) map[string]any {
	out := make(map[string]any, len(h))
	for k, v := range h {
		out[strings.ToLower(k)] = strings.Join(v, ", ")
	}
	return out
}

// valueOf turns the template context into the JSONata value model.
func valueOf(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return jsonata.DecodeJSON(b)
}
