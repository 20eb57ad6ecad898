package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/auth"
)

func TestRateLimitPerOrg(t *testing.T) {
	now := time.Unix(1000, 0)
	l := &RateLimiter{PerMinute: 3, Now: func() time.Time { return now }}
	tokens := &auth.StaticTokens{}
	tokens.Add("a", auth.Principal{OrgID: "org-a"})
	tokens.Add("b", auth.Principal{OrgID: "org-b"})
	e := NewEngine(nil)
	e.GET("/x", RequireAuth(tokens), l.Middleware(), func(c *gin.Context) { c.Status(http.StatusNoContent) })
	call := func(tok string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	for i := 0; i < 3; i++ {
		if rec := call("a"); rec.Code != http.StatusNoContent {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
	}
	rec := call("a")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "20" {
		t.Fatalf("4th request: %d, Retry-After %q; want 429 and 20 s", rec.Code, rec.Header().Get("Retry-After"))
	}
	if rec := call("b"); rec.Code != http.StatusNoContent {
		t.Fatalf("another org is limited too: %d", rec.Code)
	}
	now = now.Add(20 * time.Second)
	if rec := call("a"); rec.Code != http.StatusNoContent {
		t.Fatalf("after 20 s: %d", rec.Code)
	}
}
