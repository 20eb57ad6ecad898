// Package console is the operator console served at /console: server-rendered pages (Go
// templates, SVG charts drawn on the server, one small script and one stylesheet, all embedded)
// over erpstream's own API, called in the process with the signed-in operator's token.
package console

import (
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/httpapi"
)

// Prefix is where the console is served.
const Prefix = "/console"

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Authenticator resolves the token an operator signs in with (the API's own chain).
type Authenticator interface {
	Authenticate(token string) (*auth.Principal, error)
}

// Config of the console.
type Config struct {
	// API is the process's router: every page's data and every action is one of its routes.
	API http.Handler
	// Auth resolves tokens, to show the operator who they are and which actions they hold.
	Auth Authenticator
	// Key (32 bytes) seals the session cookie; instances sharing it share sessions.
	Key []byte
	Log *slog.Logger
	Now func() time.Time
}

// Handler serves the console.
type Handler struct {
	cfg    Config
	sealer *sealer
	pages  map[string]*template.Template
	jobs   *jobs
	log    *slog.Logger
	now    func() time.Time
}

// New parses the templates and returns the console.
func New(cfg Config) (*Handler, error) {
	s, err := newSealer(cfg.Key)
	if err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{cfg: cfg, sealer: s, jobs: newJobs(), log: cfg.Log.With("component", "console"), now: cfg.Now}
	if h.pages, err = parsePages(); err != nil {
		return nil, err
	}
	return h, nil
}

func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFiles, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", name)
		if err != nil {
			return nil, err
		}
		pages[base] = t
	}
	return pages, nil
}

// contentSecurityPolicy admits only the console's own script, stylesheet and forms: no inline
// script or style, no other origin, no framing. A payload that slipped past escaping could
// still not run.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	c.Next()
}

// Register mounts the console on the process's router, outside the API's bearer-token group:
// the console authenticates by its session cookie and calls the API with the token inside it.
func (h *Handler) Register(r gin.IRouter) {
	g := r.Group(Prefix, securityHeaders)
	static, _ := fs.Sub(staticFiles, "static")
	g.GET("/static/*file", func(c *gin.Context) {
		c.Header("Cache-Control", "public, max-age=3600")
		c.FileFromFS(c.Param("file"), http.FS(static))
	})
	g.GET("/login", h.loginPage)
	g.POST("/login", h.login)
	g.POST("/logout", h.logout)

	home := func(c *gin.Context) { c.Redirect(http.StatusSeeOther, Prefix+"/integrations") }
	g.GET("", home)
	in := g.Group("/", h.signedIn)
	in.GET("", home)
	in.GET("/integrations", h.integrationsPage)
	in.GET("/integrations/:integrationId", h.integrationPage)
	in.GET("/integrations/:integrationId/events/:eventId", h.eventPage)
	in.GET("/integrations/:integrationId/use-cases/:useCaseId", h.useCasePage)
	in.GET("/integrations/:integrationId/simulate", h.simulatePage)
	in.GET("/jobs/:jobId", h.jobPage)
	in.GET("/jobs/:jobId/progress", h.jobProgress)

	in.POST("/integrations/:integrationId/simulate", h.checkCSRF, h.simulate)
	act := in.Group("/", h.checkCSRF, h.confirmFirst)
	act.POST("/integrations/:integrationId/replay", h.replay)
	act.POST("/integrations/:integrationId/replay-failed", h.replayFailed)
	act.POST("/integrations/:integrationId/use-cases/:useCaseId/enabled", h.setEnabled)
	act.POST("/integrations/:integrationId/redeliver", h.redeliver)
}

const (
	sessionKey   = "console.session"
	principalKey = "console.principal"
)

// signedIn admits requests with a live session whose token the API still accepts; others are
// sent to sign in (pages) or refused (actions).
func (h *Handler) signedIn(c *gin.Context) {
	s, ok := h.currentSession(c)
	var p *auth.Principal
	if ok {
		var err error
		if p, err = h.cfg.Auth.Authenticate(s.Token); err != nil {
			ok = false
		}
	}
	if !ok {
		if c.Request.Method == http.MethodGet {
			c.Redirect(http.StatusSeeOther, Prefix+"/login?next="+url.QueryEscape(c.Request.URL.RequestURI()))
		} else {
			h.render(c, http.StatusUnauthorized, "message", &view{Title: "Signed out",
				Message: "Your session ended. Sign in again and repeat the action."})
		}
		c.Abort()
		return
	}
	c.Set(sessionKey, s)
	c.Set(principalKey, p)
	c.Next()
}

func (h *Handler) checkCSRF(c *gin.Context) {
	if !validCSRF(c, sessionOf(c)) {
		h.render(c, http.StatusForbidden, "message", &view{Title: "Refused",
			Message: "The form was not sent from this console page (CSRF check). Reload the page and try again."})
		c.Abort()
		return
	}
	c.Next()
}

func sessionOf(c *gin.Context) *session { v, _ := c.Get(sessionKey); s, _ := v.(*session); return s }

func principalOf(c *gin.Context) *auth.Principal {
	v, _ := c.Get(principalKey)
	p, _ := v.(*auth.Principal)
	return p
}

// callerOf is the signed-in operator as the API sees them.
func callerOf(c *gin.Context) caller {
	return caller{token: sessionOf(c).Token, remoteAddr: c.Request.RemoteAddr, requestID: c.Writer.Header().Get("X-Request-Id"),
		userAgent: c.Request.UserAgent(), calls: new(atomic.Int32)}
}

// view is what every page template gets; Data is the page's own.
type view struct {
	Title   string
	Org     string
	Perms   perms
	CSRF    string
	Message string
	Crumbs  []crumb
	Data    any
}

type crumb struct{ Label, Href string }

// perms say which actions the operator's token holds, so pages show only those; the API checks
// them again on every action.
type perms struct {
	Monitoring, Read, Write, Events bool
}

func (h *Handler) viewFor(c *gin.Context, title string, data any, crumbs ...crumb) *view {
	v := &view{Title: title, Data: data, Crumbs: crumbs}
	if p := principalOf(c); p != nil {
		v.Org = p.OrgID
		v.Perms = perms{Monitoring: p.Has(auth.PermMonitoring), Read: p.Has(auth.PermRead), Write: p.Has(auth.PermWrite),
			Events: p.Has(auth.PermEvents)}
	}
	if s := sessionOf(c); s != nil {
		v.CSRF = s.CSRF
	}
	return v
}

func (h *Handler) render(c *gin.Context, status int, page string, v *view) {
	t, ok := h.pages[page]
	if !ok {
		httpapi.Abort(c, http.StatusInternalServerError, httpapi.CodeInternal, "console: no page "+page)
		return
	}
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(status)
	if err := t.Execute(c.Writer, v); err != nil {
		h.log.Warn("console page not rendered", "page", page, "err", err)
	}
}

// failed shows an API answer that was not a success: a 404 (not this org's, or gone) as the
// not-found page, others with the API's message.
func (h *Handler) failed(c *gin.Context, a *answer) {
	switch {
	case a.Status == http.StatusNotFound && strings.Contains(a.Problem(), "no such route"):
		h.render(c, http.StatusNotImplemented, "message", h.viewFor(c, "Not served here", nil).withMessage(
			"This page needs a service this erpstream process does not run; open the console on a process that serves the whole API."))
	case a.Status == http.StatusNotFound:
		h.render(c, http.StatusNotFound, "message", h.viewFor(c, "Not found",
			nil).withMessage("There is no such integration, event or use case in your organization."))
	case a.Status == http.StatusForbidden:
		h.render(c, http.StatusForbidden, "message", h.viewFor(c, "Not permitted", nil).withMessage(
			"Your token does not hold the permission this page needs: "+a.Problem()))
	default:
		status := a.Status
		if status < 400 {
			status = http.StatusBadGateway
		}
		h.render(c, status, "message", h.viewFor(c, "Could not load", nil).withMessage(a.Problem()))
	}
}

func (v *view) withMessage(m string) *view { v.Message = m; return v }
