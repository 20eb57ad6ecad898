package console

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/httpapi"
)

// fakeAPI answers the few routes the pages under test call, behind the real authentication
// middleware, and records what the console sent.
type fakeAPI struct {
	engine *gin.Engine
	tokens auth.StaticTokens
	calls  []string
}

const hostile = `<script>alert(1)</script>`

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{engine: httpapi.NewEngine(nil)}
	if err := auth.ParseStaticTokens("admin-token=org-a,ro-token=org-a:erp:read+erp:monitoring,b-token=org-b", &f.tokens); err != nil {
		t.Fatal(err)
	}
	api := f.engine.Group("/", httpapi.RequireAuth(&f.tokens), func(c *gin.Context) {
		f.calls = append(f.calls, c.Request.Method+" "+c.Request.URL.Path+" "+c.GetHeader("X-Request-Id"))
	})
	api.GET("/v2/integrations", func(c *gin.Context) {
		if httpapi.Principal(c).OrgID != "org-a" {
			c.JSON(http.StatusOK, gin.H{"integrations": []any{}})
			return
		}
		c.JSON(http.StatusOK, gin.H{"integrations": []any{gin.H{"id": "i1", "name": "SAP " + hostile,
			"use_cases": []any{gin.H{"id": "u1", "name": "Customers", "type": "inbound", "enabled": true}}}}})
	})
	api.POST("/v2/integrations/:integrationId/monitoring/stats", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"total_events": 10, "success_count": 9, "error_count": 1, "success_rate": 90.0})
	})
	api.POST("/v2/integrations/:integrationId/monitoring/events", func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"data": []any{gin.H{"event_id": "evt_1", "level": "error", "code": "BOOM", "message": hostile,
			"created_at": "2026-12-01T10:00:00Z"}}, "has_more": false})
	})
	api.GET("/v2/integrations/:integrationId", func(c *gin.Context) {
		if httpapi.Principal(c).OrgID != "org-a" || c.Param("integrationId") != "i1" {
			httpapi.Abort(c, http.StatusNotFound, httpapi.CodeNotFound, "integration not found")
			return
		}
		c.JSON(http.StatusOK, gin.H{"id": "i1", "name": "SAP"})
	})
	api.POST("/v1/integrations/:integrationId/events/replay", httpapi.Require(auth.PermEvents), func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{"replayed": 1, "results": []any{gin.H{"event_id": "evt_1", "status": "queued", "new_event_id": "evt_2"}}})
	})
	return f
}

type harness struct {
	t       *testing.T
	api     *fakeAPI
	handler *Handler
	server  *gin.Engine
}

func newHarness(t *testing.T) *harness {
	f := newFakeAPI(t)
	h, err := New(Config{API: f.engine, Auth: &f.tokens, Key: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	h.Register(f.engine)
	return &harness{t: t, api: f, handler: h, server: f.engine}
}

func (h *harness) do(method, path, cookie string, form url.Values) *httptest.ResponseRecorder {
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://example.com")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
	}
	w := httptest.NewRecorder()
	h.server.ServeHTTP(w, req)
	return w
}

func (h *harness) signIn(token string) (cookie, csrf string) {
	w := h.do("POST", "/console/login", "", url.Values{"token": {token}, "next": {"/console/integrations"}})
	if w.Code != http.StatusSeeOther {
		h.t.Fatalf("sign in with %s: %d %s", token, w.Code, w.Body)
	}
	for _, c := range w.Result().Cookies() {
		if c.Name == cookieName {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != Prefix {
				h.t.Fatalf("session cookie attributes: %+v", c)
			}
			s, ok := h.handler.sealer.open(c.Value, time.Now())
			if !ok {
				h.t.Fatal("the session cookie does not open")
			}
			return c.Value, s.CSRF
		}
	}
	h.t.Fatal("no session cookie")
	return "", ""
}

func TestSignedOutVisitorsAreSentToSignIn(t *testing.T) {
	h := newHarness(t)
	w := h.do("GET", "/console/integrations/i1", "", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/console/login?next=%2Fconsole%2Fintegrations%2Fi1" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	if w := h.do("POST", "/console/login", "", url.Values{"token": {"wrong"}}); w.Code != http.StatusUnauthorized {
		t.Fatalf("a wrong token signs in: %d", w.Code)
	}
	if w := h.do("GET", "/console/integrations", "forged-cookie", nil); w.Code != http.StatusSeeOther {
		t.Fatalf("a forged cookie is accepted: %d", w.Code)
	}
}

func TestPagesEscapeWhatTheAPISaysAndCarryTheCSP(t *testing.T) {
	h := newHarness(t)
	cookie, _ := h.signIn("admin-token")
	w := h.do("GET", "/console/integrations", cookie, nil)
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, "SAP &lt;script&gt;alert(1)&lt;/script&gt;") || strings.Contains(body, hostile) {
		t.Fatalf("%d: hostile text not escaped:\n%s", w.Code, body)
	}
	if !strings.Contains(body, "90.0 %") {
		t.Fatalf("success rate not shown as 90.0 %%:\n%s", body)
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	// Each API call of one page has its own request id, derived from the page's.
	seen := map[string]bool{}
	for _, c := range h.api.calls {
		id := c[strings.LastIndexByte(c, ' ')+1:]
		if !strings.Contains(id, ".c") || seen[id] {
			t.Fatalf("API call request ids: %v", h.api.calls)
		}
		seen[id] = true
	}
}

func TestAnotherOrgsIntegrationIsNotFound(t *testing.T) {
	h := newHarness(t)
	cookie, _ := h.signIn("b-token")
	if w := h.do("GET", "/console/integrations/i1", cookie, nil); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "Not found") {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

func TestActionsNeedCSRFConfirmationAndThePermission(t *testing.T) {
	h := newHarness(t)
	cookie, csrf := h.signIn("admin-token")
	path := "/console/integrations/i1/replay"
	if w := h.do("POST", path, cookie, url.Values{"event_id": {"evt_1"}, "confirmed": {"yes"}}); w.Code != http.StatusForbidden {
		t.Fatalf("without the CSRF token: %d", w.Code)
	}
	// The first post only asks for confirmation; nothing reaches the API.
	h.api.calls = nil
	w := h.do("POST", path, cookie, url.Values{"event_id": {"evt_1"}, "csrf": {csrf}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Confirm: Replay 1 event") || len(h.api.calls) != 0 {
		t.Fatalf("%d %v %s", w.Code, h.api.calls, w.Body)
	}
	w = h.do("POST", path, cookie, url.Values{"event_id": {"evt_1"}, "csrf": {csrf}, "confirmed": {"yes"}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "evt_2") {
		t.Fatalf("confirmed replay: %d %s", w.Code, w.Body)
	}
	// Another site's form is refused even with the token.
	req := httptest.NewRequest("POST", path, strings.NewReader(url.Values{"event_id": {"evt_1"}, "csrf": {csrf}, "confirmed": {"yes"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.AddCookie(&http.Cookie{Name: cookieName, Value: cookie})
	rec := httptest.NewRecorder()
	h.server.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("cross-origin form: %d", rec.Code)
	}
	// A read-only token's replay is refused by the API's permission check.
	roCookie, roCSRF := h.signIn("ro-token")
	w = h.do("POST", path, roCookie, url.Values{"event_id": {"evt_1"}, "csrf": {roCSRF}, "confirmed": {"yes"}})
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "not done") {
		t.Fatalf("read-only replay: %d %s", w.Code, w.Body)
	}
}

func TestSessionCookiesCannotBeAlteredOrOutlive(t *testing.T) {
	s, _ := newSealer(make([]byte, 32))
	now := time.Now()
	sealed := s.seal(session{Token: "t", CSRF: "c", ExpiresMs: now.Add(time.Hour).UnixMilli()})
	if _, ok := s.open(sealed, now); !ok {
		t.Fatal("a fresh session does not open")
	}
	if _, ok := s.open(sealed, now.Add(2*time.Hour)); ok {
		t.Fatal("an expired session opens")
	}
	b := []byte(sealed)
	b[len(b)/2] ^= 1
	if _, ok := s.open(string(b), now); ok {
		t.Fatal("an altered session opens")
	}
	other, _ := newSealer([]byte("0123456789abcdef0123456789abcdef"))
	if _, ok := other.open(sealed, now); ok {
		t.Fatal("another key opens the session")
	}
}

func TestRedirectsStayInTheConsole(t *testing.T) {
	for in, want := range map[string]string{
		"/console/integrations/x": "/console/integrations/x", "https://evil.example/": "/console/integrations",
		"//evil.example/console/": "/console/integrations", "/console/\\evil": "/console/integrations", "": "/console/integrations",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLineDiff(t *testing.T) {
	got, _ := lineDiff("a\nb\nc", "a\nx\nc\nd")
	var ops []string
	for _, l := range got {
		ops = append(ops, l.Op+l.Text)
	}
	if strings.Join(ops, ",") != " a,-b,+x, c,+d" {
		t.Fatalf("%v", ops)
	}
	if _, problem := lineDiff(strings.Repeat("x\n", maxDiffLines+1), "x"); problem == "" {
		t.Fatal("an oversized diff is computed")
	}
}

func TestChartStacksLevelsPerBucket(t *testing.T) {
	ch := layout(chart{}, []bucket{{Timestamp: "2026-12-01T10:00:00Z", Success: 3, Error: 1}, {Timestamp: "2026-12-01T10:30:00Z"}})
	if ch.Max != 4 || ch.Total != 4 || len(ch.Bars) != 2 || len(ch.Bars[0].Segments) != 2 || len(ch.Bars[1].Segments) != 0 {
		t.Fatalf("%+v", ch)
	}
	s, e := ch.Bars[0].Segments[0], ch.Bars[0].Segments[1]
	if s.Level != "success" || e.Level != "error" || s.H != 3*e.H || e.Y+e.H != s.Y {
		t.Fatalf("segments %+v %+v", s, e)
	}
}

func TestJobsAreSeenOnlyByTheirOrg(t *testing.T) {
	js := newJobs()
	j := js.start("org-a", "replay", "/console/integrations/i1")
	if _, ok := js.get("org-b", j.ID); ok {
		t.Fatal("another org sees the job")
	}
	if got, ok := js.get("org-a", j.ID); !ok || got != j {
		t.Fatal("the org does not see its job")
	}
	for range maxJobsPerOrg - 1 {
		js.start("org-a", "replay", "")
	}
	if js.start("org-a", "replay", "") != nil {
		t.Fatal("an org runs more than maxJobsPerOrg jobs")
	}
	if js.start("org-b", "replay", "") == nil {
		t.Fatal("one org's jobs block another's")
	}
}
