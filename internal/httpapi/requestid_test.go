package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/logctx"
)

func TestRequestIDIsKeptOrMade(t *testing.T) {
	e := NewEngine(nil)
	e.GET("/x", func(c *gin.Context) { c.String(http.StatusOK, logctx.RequestID(c.Request.Context())) })
	for in, keep := range map[string]bool{"": false, "edge-7f3a:1": true, "has space": false, strings.Repeat("a", 129): false} {
		req := httptest.NewRequest("GET", "/x", nil)
		if in != "" {
			req.Header.Set("X-Request-Id", in)
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		got := w.Header().Get("X-Request-Id")
		if got != w.Body.String() || (keep && got != in) || (!keep && !strings.HasPrefix(got, "req_")) {
			t.Errorf("X-Request-Id %q: answered %q, handler saw %q", in, got, w.Body.String())
		}
	}
}
