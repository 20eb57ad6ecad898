package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/secrets"
)

// A signed-in operator is a sealed cookie: the API token they signed in with, a CSRF token
// and an expiry, encrypted and authenticated with the console's key (AES-256-GCM). Nothing is
// kept on the server, so any instance with the same key serves the session, and a restart with
// a random key simply signs everyone out.

const (
	cookieName = "erpstream_console"
	// SessionLifetime is how long a sign-in lasts; the token's own expiry (a JWT's exp) ends it
	// sooner, since every page authenticates the token again.
	SessionLifetime = 8 * time.Hour
	csrfField       = "csrf"
)

type session struct {
	Token     string `json:"t"`
	CSRF      string `json:"c"`
	ExpiresMs int64  `json:"e"`
}

// sealer seals sessions with the secrets package's AES-256-GCM box, bound to the cookie's name.
type sealer struct{ box *secrets.Box }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, errors.New("console: the session key must be 32 bytes")
	}
	box, err := secrets.NewBox(base64.StdEncoding.EncodeToString(key))
	if err != nil {
		return nil, err
	}
	return &sealer{box: box}, nil
}

func (s *sealer) seal(v session) string {
	plain, _ := json.Marshal(v)
	sealed, _ := s.box.Seal(string(plain), cookieName)
	return sealed
}

func (s *sealer) open(raw string, now time.Time) (*session, bool) {
	plain, err := s.box.Open(raw, cookieName)
	if err != nil {
		return nil, false
	}
	var v session
	if json.Unmarshal([]byte(plain), &v) != nil || v.Token == "" || now.UnixMilli() > v.ExpiresMs {
		return nil, false
	}
	return &v, true
}

func randomToken() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// setSession writes the cookie: HttpOnly (no script reads the token), SameSite=Strict (no other
// site's page sends it), Secure behind TLS, scoped to the console's paths.
func (h *Handler) setSession(c *gin.Context, v *session) {
	maxAge := -1
	value := ""
	if v != nil {
		value = h.sealer.seal(*v)
		maxAge = int(time.Until(time.UnixMilli(v.ExpiresMs)).Seconds())
	}
	http.SetCookie(c.Writer, &http.Cookie{Name: cookieName, Value: value, Path: Prefix, MaxAge: maxAge, HttpOnly: true,
		Secure: secureRequest(c), SameSite: http.SameSiteStrictMode})
}

func secureRequest(c *gin.Context) bool {
	return c.Request.TLS != nil || c.GetHeader("X-Forwarded-Proto") == "https"
}

func (h *Handler) currentSession(c *gin.Context) (*session, bool) {
	// Not gin's c.Cookie: it query-unescapes the value, and a sealed session holds '+'.
	cookie, err := c.Request.Cookie(cookieName)
	if err != nil || cookie.Value == "" {
		return nil, false
	}
	return h.sealer.open(cookie.Value, h.now())
}

// validCSRF checks a state-changing request: the form's token must be the session's, and a
// browser's Origin (or, without one, Sec-Fetch-Site) must say the request comes from this site.
func validCSRF(c *gin.Context, s *session) bool {
	if !sameOrigin(c) {
		return false
	}
	got := c.PostForm(csrfField)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) == 1
}

func sameOrigin(c *gin.Context) bool {
	if origin := c.GetHeader("Origin"); origin != "" && origin != "null" {
		u, err := url.Parse(origin)
		return err == nil && u.Host == c.Request.Host
	}
	if site := c.GetHeader("Sec-Fetch-Site"); site != "" {
		return site == "same-origin" || site == "none"
	}
	return c.GetHeader("Origin") != "null"
}

// loginPage asks for a token of the API's own kinds (static, API token, JWT).
func (h *Handler) loginPage(c *gin.Context) {
	h.render(c, http.StatusOK, "login", &view{Title: "Sign in", Data: gin.H{"Next": safeNext(c.Query("next"))}})
}

// login checks the token with the API's authenticator and seals it into the session cookie.
func (h *Handler) login(c *gin.Context) {
	next := safeNext(c.PostForm("next"))
	if !sameOrigin(c) {
		h.render(c, http.StatusForbidden, "login", &view{Title: "Sign in", Message: "Sign in from this console's own page.",
			Data: gin.H{"Next": next}})
		return
	}
	token := strings.TrimSpace(c.PostForm("token"))
	if len(token) > 16<<10 {
		token = ""
	}
	p, err := h.cfg.Auth.Authenticate(token)
	if token == "" || err != nil {
		h.log.Info("console sign-in refused", "client", c.ClientIP())
		h.render(c, http.StatusUnauthorized, "login", &view{Title: "Sign in", Message: "This token is not valid.",
			Data: gin.H{"Next": next}})
		return
	}
	h.setSession(c, &session{Token: token, CSRF: randomToken(), ExpiresMs: h.now().Add(SessionLifetime).UnixMilli()})
	h.log.Info("console sign-in", "org_id", p.OrgID, "token_id", p.TokenID, "client", c.ClientIP())
	c.Redirect(http.StatusSeeOther, next)
}

func (h *Handler) logout(c *gin.Context) {
	if s, ok := h.currentSession(c); ok && validCSRF(c, s) {
		h.setSession(c, nil)
	}
	c.Redirect(http.StatusSeeOther, Prefix+"/login")
}

// safeNext keeps a post-sign-in redirect inside the console (no open redirect).
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "/integrations"
	}
	return next
}
