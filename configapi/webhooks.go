package configapi

import (
	"encoding/json"
	"net/http"
	"regexp"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/connector"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/registry"
)

// Webhook definitions: where outbound mappings deliver (delivery.webhook_id), erpstream's stand-in
// for the hosted product's webhook service (docs/outbound.md).
//
//	GET    /v1/webhooks               list
//	GET    /v1/webhooks/{webhookId}
//	PUT    /v1/webhooks/{webhookId}   {"url", "name", "enabled", "headers", "auth", "signing_secret": "{{env.KEY}}"}
//	DELETE /v1/webhooks/{webhookId}

// Bounds of webhook definitions.
const (
	MaxWebhooksPerOrg  = 1000
	maxWebhookHeaders  = 32
	maxWebhookValueLen = 4 << 10
)

var (
	webhookIDPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$`)
	headerNamePattern = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]{1,128}$`)
	envRefPattern     = regexp.MustCompile(`^\{\{\s*env\.[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}\s*\}\}$`)
)

func (a *API) registerWebhooks(r gin.IRouter, read, write gin.HandlerFunc) {
	r.GET("/v1/webhooks", read, a.listWebhooks)
	r.GET("/v1/webhooks/:webhookId", read, a.getWebhook)
	r.PUT("/v1/webhooks/:webhookId", write, a.putWebhook)
	r.DELETE("/v1/webhooks/:webhookId", write, a.deleteWebhook)
}

// webhookView shows a definition; of its auth only the type (auth may hold literal credentials).
func webhookView(w *registry.Webhook) gin.H {
	out := gin.H{"id": w.ID, "name": w.Name, "url": w.URL, "enabled": w.Enabled, "headers": w.Headers,
		"signing_secret": w.SigningSecret, "created_at": w.CreatedAt, "updated_at": w.UpdatedAt}
	if w.Headers == nil {
		out["headers"] = map[string]string{}
	}
	if len(w.Auth) > 0 {
		var auth struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(w.Auth, &auth)
		out["auth"] = gin.H{"type": auth.Type}
	}
	return out
}

func (a *API) listWebhooks(c *gin.Context) {
	list := []gin.H{}
	for _, w := range a.Registry.Snapshot().Webhooks(httpapi.Principal(c).OrgID) {
		list = append(list, webhookView(w))
	}
	c.JSON(http.StatusOK, gin.H{"webhooks": list})
}

func (a *API) getWebhook(c *gin.Context) {
	w, ok := a.Registry.Snapshot().Webhook(httpapi.Principal(c).OrgID, c.Param("webhookId"))
	if !ok {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeNotFound, "webhook "+c.Param("webhookId")+" not found")
		return
	}
	c.JSON(http.StatusOK, webhookView(w))
}

func (a *API) putWebhook(c *gin.Context) {
	id := c.Param("webhookId")
	if !webhookIDPattern.MatchString(id) {
		httpapi.BadRequest(c, "webhookId: must match %s", webhookIDPattern)
		return
	}
	var req struct {
		Name          string            `json:"name"`
		URL           string            `json:"url"`
		Enabled       *bool             `json:"enabled"`
		Headers       map[string]string `json:"headers"`
		Auth          json.RawMessage   `json:"auth"`
		SigningSecret string            `json:"signing_secret"`
	}
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if msg := a.checkWebhook(req.URL, req.Name, req.Headers, req.SigningSecret); msg != "" {
		httpapi.BadRequest(c, "%s", msg)
		return
	}
	if len(req.Auth) > 0 && string(req.Auth) != "null" {
		if _, err := connector.ParseAuth([]byte(`{"auth":` + string(req.Auth) + `}`)); err != nil {
			httpapi.BadRequest(c, "auth: %v", err)
			return
		}
	} else {
		req.Auth = nil
	}
	org := httpapi.Principal(c).OrgID
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	snap := a.Registry.Snapshot()
	now := a.Now().UTC()
	w := &registry.Webhook{ID: id, OrgID: org, Name: req.Name, URL: req.URL, Enabled: req.Enabled == nil || *req.Enabled,
		Headers: req.Headers, Auth: req.Auth, SigningSecret: req.SigningSecret, CreatedAt: now, UpdatedAt: now}
	status := http.StatusCreated
	if old, ok := snap.Webhook(org, id); ok {
		w.CreatedAt, status = old.CreatedAt, http.StatusOK
	} else if len(snap.Webhooks(org)) >= MaxWebhooksPerOrg {
		httpapi.Abort(c, http.StatusUnprocessableEntity, "LIMIT_EXCEEDED", "an org has at most 1000 webhooks")
		return
	}
	if err := a.Registry.PutWebhook(c.Request.Context(), w); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(status, webhookView(w))
}

// checkWebhook validates a definition; "" when it is fine.
func (a *API) checkWebhook(url, name string, headers map[string]string, secret string) string {
	if url == "" {
		return "url: required"
	}
	if len(url) > 2048 || len(name) > 256 {
		return "url: at most 2048 characters; name: at most 256"
	}
	if msg := a.checkDestination("url", url); msg != "" {
		return msg
	}
	if len(headers) > maxWebhookHeaders {
		return "headers: at most 32"
	}
	for k, v := range headers {
		if !headerNamePattern.MatchString(k) || len(v) > maxWebhookValueLen {
			return "headers: " + k + ": a header name and a value of at most 4 KB"
		}
	}
	if secret != "" && !envRefPattern.MatchString(secret) {
		return "signing_secret: must be an environment reference such as {{env.WEBHOOK_SECRET}} (secrets are not stored in configuration)"
	}
	return ""
}

// checkDestination refuses a URL whose scheme is not http(s) or whose literal address is blocked.
func (a *API) checkDestination(field, url string) string {
	if a.CheckURL == nil {
		return ""
	}
	if err := a.CheckURL(url); err != nil {
		return field + ": " + err.Error()
	}
	return ""
}

func (a *API) deleteWebhook(c *gin.Context) {
	org := httpapi.Principal(c).OrgID
	if _, ok := a.Registry.Snapshot().Webhook(org, c.Param("webhookId")); !ok {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeNotFound, "webhook "+c.Param("webhookId")+" not found")
		return
	}
	if err := a.Registry.DeleteWebhook(c.Request.Context(), org, c.Param("webhookId")); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "webhook deleted"})
}
