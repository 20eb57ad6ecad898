package configapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/secrets"
)

// Integrations: create, list, read, update (v1 partial, v2 declarative with embedded use
// cases) and delete.

// integrationRequest carries IntegrationEditableFields plus v2's embedded use cases.
type integrationRequest struct {
	Fields   map[string]json.RawMessage
	Name     string
	UseCases []useCaseRequest
	HasUCs   bool
}

func (a *API) parseIntegration(c *gin.Context, allowUseCases bool) (*integrationRequest, bool) {
	var raw map[string]json.RawMessage
	if !httpapi.BindJSON(c, &raw) {
		return nil, false
	}
	if raw == nil {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "body must be a JSON object")
		return nil, false
	}
	req := &integrationRequest{Fields: map[string]json.RawMessage{}}
	for k, v := range raw {
		switch k {
		case "id", "orgId", "created_at", "updated_at": // read-only: ignored on write
		case "use_cases":
			if !allowUseCases {
				continue
			}
			req.HasUCs = true
			if err := json.Unmarshal(v, &req.UseCases); err != nil {
				httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "use_cases: must be an array of use cases: "+err.Error())
				return nil, false
			}
		default:
			req.Fields[k] = v
		}
	}
	if err := json.Unmarshal(raw["name"], &req.Name); err != nil || req.Name == "" || utf8.RuneCountInString(req.Name) > 255 {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "name: required string of 1 to 255 characters")
		return nil, false
	}
	if d, ok := raw["description"]; ok {
		var s string
		if err := json.Unmarshal(d, &s); err != nil || utf8.RuneCountInString(s) > 1000 {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "description: string of at most 1000 characters")
			return nil, false
		}
	}
	fields, _ := json.Marshal(req.Fields)
	if msg := validateAgainst("IntegrationEditableFields", "integration", fields); msg != "" {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, msg)
		return nil, false
	}
	if msg := checkSecretReferences(req.Fields["connector_config"]); msg != "" {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, msg)
		return nil, false
	}
	return req, true
}

// checkSecretReferences enforces that connector secrets are {{env.KEY}} references, never values.
func checkSecretReferences(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var cc struct {
		Auth map[string]json.RawMessage `json:"auth"`
	}
	if err := json.Unmarshal(raw, &cc); err != nil {
		return "connector_config: must be an object"
	}
	for _, field := range []string{"client_secret", "api_key", "token"} {
		v, ok := cc.Auth[field]
		if !ok {
			continue
		}
		var s string
		if json.Unmarshal(v, &s) != nil || !secrets.IsReference(s) {
			return "connector_config.auth." + field + ": must be an {{env.KEY}} reference; secrets are never stored in the integration"
		}
	}
	return ""
}

func (a *API) createIntegration(withUseCases bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		org := httpapi.Principal(c).OrgID
		req, ok := a.parseIntegration(c, withUseCases)
		if !ok {
			return
		}
		now := a.Now().UTC()
		integ := &registry.Integration{ID: ids.NewUUID(), OrgID: org, Name: req.Name, Fields: req.Fields, CreatedAt: now, UpdatedAt: now}
		keepTypeVersions(&registry.Integration{}, integ) // a new integration has committed no types
		// Validate every embedded use case before writing anything.
		var ucs []*registry.UseCase
		slugs := map[string]bool{}
		for i := range req.UseCases {
			uc, status, code, msg := a.buildUseCase(org, integ.ID, &req.UseCases[i], now)
			if uc == nil {
				httpapi.Abort(c, status, code, fmt.Sprintf("use_cases[%d].%s", i, msg))
				return
			}
			if msg := a.undeclaredSchema(req.Fields["settings"], uc); msg != "" {
				httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, fmt.Sprintf("use_cases[%d].%s", i, msg))
				return
			}
			if uc.Slug != "" && slugs[uc.Slug] {
				httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("use_cases[%d].slug: %q is used twice", i, uc.Slug))
				return
			}
			slugs[uc.Slug] = true
			ucs = append(ucs, uc)
		}
		a.writeMu.Lock()
		defer a.writeMu.Unlock()
		// An embedded use case never takes the id of an existing one: that would move it out of
		// its integration (perhaps a protected one) without a trace.
		snap := a.Registry.Snapshot()
		for i, uc := range ucs {
			if other, exists := snap.UseCase(org, uc.ID); exists {
				httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict,
					fmt.Sprintf("use_cases[%d].id: use case %s exists in integration %s; a use case never changes integration", i, uc.ID, other.IntegrationID))
				return
			}
		}
		if err := a.Registry.PutIntegration(c.Request.Context(), integ); err != nil {
			unavailable(c, err)
			return
		}
		for _, uc := range ucs {
			if err := a.Registry.PutUseCase(c.Request.Context(), uc); err != nil {
				unavailable(c, err)
				return
			}
		}
		if withUseCases {
			c.JSON(http.StatusCreated, a.withUseCases(integ))
			return
		}
		c.JSON(http.StatusCreated, integ.APIView())
	}
}

func (a *API) withUseCases(integ *registry.Integration) map[string]any {
	v := integ.APIView()
	list := []any{}
	for _, uc := range a.Registry.Snapshot().UseCases(integ.OrgID, integ.ID) {
		list = append(list, uc.APIView())
	}
	v["use_cases"] = list
	return v
}

func (a *API) listIntegrations(withUseCases bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		org := httpapi.Principal(c).OrgID
		list := []any{}
		for _, i := range a.Registry.Snapshot().Integrations(org) {
			if withUseCases {
				list = append(list, a.withUseCases(i))
			} else {
				list = append(list, i.APIView())
			}
		}
		c.JSON(http.StatusOK, gin.H{"integrations": list})
	}
}

func (a *API) integration(c *gin.Context) (*registry.Integration, bool) {
	return httpapi.OrgIntegration(c, a.Registry.Snapshot(), c.Param("integrationId"))
}

func (a *API) getIntegration(withUseCases bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		integ, ok := a.integration(c)
		if !ok {
			return
		}
		if withUseCases {
			c.JSON(http.StatusOK, a.withUseCases(integ))
			return
		}
		c.JSON(http.StatusOK, integ.APIView())
	}
}

func (a *API) deleteIntegration(c *gin.Context) {
	integ, ok := a.integration(c)
	if !ok {
		return
	}
	var protected bool
	_ = json.Unmarshal(integ.Fields["protected"], &protected)
	if protected {
		httpapi.Abort(c, http.StatusForbidden, "INTEGRATION_PROTECTED", "integration "+integ.ID+" is protected: unset protected (as an admin) before deleting it")
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if err := a.Registry.DeleteIntegration(c.Request.Context(), integ.OrgID, integ.ID); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "integration deleted"})
}

func (a *API) listSecureProxies(c *gin.Context) {
	org := httpapi.Principal(c).OrgID
	snap := a.Registry.Snapshot()
	list := []any{}
	for _, integ := range snap.Integrations(org) {
		for _, u := range snap.UseCases(org, integ.ID) {
			if u.Type != registry.TypeSecureProxy {
				continue
			}
			var cfg struct {
				VPCMode        string   `json:"vpc_mode"`
				AllowedDomains []string `json:"allowed_domains"`
				AllowedIPs     []string `json:"allowed_ips"`
			}
			_ = json.Unmarshal(u.Configuration, &cfg)
			list = append(list, gin.H{"id": u.ID, "name": u.Name, "slug": u.Slug, "enabled": u.Enabled, "vpc_mode": cfg.VPCMode,
				"allowed_domains": nonNil(cfg.AllowedDomains), "allowed_ips": nonNil(cfg.AllowedIPs),
				"integration_id": integ.ID, "integration_name": integ.Name})
		}
	}
	c.JSON(http.StatusOK, gin.H{"secure_proxies": list})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
