package httpapi

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/auth"
)

type refusing struct{}

func (refusing) Authenticate(string) (*auth.Principal, error) {
	return nil, errors.New("invalid token: token has invalid claims: token is expired")
}

// Why a token was refused is in the log, never in the answer, and the token is in neither.
func TestRefusedTokensAreExplainedInTheLogOnly(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	e := gin.New()
	e.GET("/x", RequireAuth(refusing{}, log), func(c *gin.Context) { c.Status(http.StatusOK) })
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set("Authorization", "Bearer eyJ.secret-token.sig")
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	if w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "expired") {
		t.Errorf("answer %d %s", w.Code, w.Body)
	}
	if !strings.Contains(logs.String(), "token is expired") || strings.Contains(logs.String(), "secret-token") {
		t.Errorf("log %s", logs.String())
	}
}
