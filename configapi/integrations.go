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
		if err := a.Registry.PutIntegration(c, integ); err != nil {
			unavailable(c, err)
			return
		}
		for _, uc := range ucs {
			if err := a.Registry.PutUseCase(c, uc); err != nil {
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
	id := c.Param("integrationId")
	integ, ok := a.Registry.Snapshot().Integration(httpapi.Principal(c).OrgID, id)
	if !ok {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeIntegrationNotFound, "integration "+id+" not found")
		return nil, false
	}
	return integ, true
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
	if err := a.Registry.DeleteIntegration(c, integ.OrgID, integ.ID); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "integration deleted"})
}

// updateIntegration is PUT v1 (partial: absent keys unchanged, null clears) and PUT v2 (name
// required; use_cases is the desired state when present: matched by id are updated, the others
// created, unlisted ones deleted; omitted leaves them untouched).
func (a *API) updateIntegration(v2 bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		var raw map[string]json.RawMessage
		if !httpapi.BindJSON(c, &raw) {
			return
		}
		if raw == nil {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "body must be a JSON object")
			return
		}
		a.writeMu.Lock()
		defer a.writeMu.Unlock()
		cur, ok := a.integration(c)
		if !ok || protectedIntegration(c, cur) {
			return
		}
		next := *cur
		next.Fields = map[string]json.RawMessage{}
		if !v2 {
			for k, v := range cur.Fields {
				next.Fields[k] = v
			}
		}
		var useCases []useCaseRequest
		hasUseCases := false
		for k, v := range raw {
			switch k {
			case "id", "orgId", "created_at", "updated_at":
			case "use_cases":
				if !v2 {
					continue
				}
				hasUseCases = true
				if err := json.Unmarshal(v, &useCases); err != nil {
					httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "use_cases: must be an array of use cases: "+err.Error())
					return
				}
			default:
				if string(v) == "null" {
					delete(next.Fields, k)
				} else {
					next.Fields[k] = v
				}
			}
		}
		if v2 && next.Fields["name"] == nil {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "name: required")
			return
		}
		if n, ok := next.Fields["name"]; ok {
			var name string
			if json.Unmarshal(n, &name) != nil || name == "" || utf8.RuneCountInString(name) > 255 {
				httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "name: string of 1 to 255 characters")
				return
			}
			next.Name = name
		}
		fields, _ := json.Marshal(next.Fields)
		if msg := validateAgainst("IntegrationEditableFields", "integration", fields); msg != "" {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, msg)
			return
		}
		if msg := checkSecretReferences(next.Fields["connector_config"]); msg != "" {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, msg)
			return
		}
		now := a.Now().UTC()
		next.UpdatedAt = now
		// Plan the use-case changes completely before writing anything.
		type change struct {
			put     *registry.UseCase
			prev    *registry.UseCase
			deleted *registry.UseCase
		}
		var changes []change
		if hasUseCases {
			snap := a.Registry.Snapshot()
			keep := map[string]bool{}
			slugs := map[string]string{}
			for i := range useCases {
				r := &useCases[i]
				var existing *registry.UseCase
				if r.ID != nil {
					if u, ok := snap.UseCase(cur.OrgID, *r.ID); ok && u.IntegrationID == cur.ID {
						existing = u
					}
				}
				if existing == nil {
					uc, status, code, msg := a.buildUseCase(cur.OrgID, cur.ID, r, now)
					if uc == nil {
						httpapi.Abort(c, status, code, fmt.Sprintf("use_cases[%d].%s", i, msg))
						return
					}
					if other, taken := snap.UseCase(cur.OrgID, uc.ID); taken && other.IntegrationID != cur.ID {
						httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("use_cases[%d].id: %s belongs to another integration", i, uc.ID))
						return
					}
					changes = append(changes, change{put: uc})
					keep[uc.ID] = true
					if uc.Slug != "" {
						if prev, dup := slugs[uc.Slug]; dup && prev != uc.ID {
							httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("use_cases[%d].slug: %q is used twice", i, uc.Slug))
							return
						}
						slugs[uc.Slug] = uc.ID
					}
					continue
				}
				updated, status, code, msg := a.applyUseCaseUpdate(existing, r, now)
				if updated == nil {
					httpapi.Abort(c, status, code, fmt.Sprintf("use_cases[%d].%s", i, msg))
					return
				}
				changes = append(changes, change{put: updated, prev: existing})
				keep[existing.ID] = true
				if updated.Slug != "" {
					if prev, dup := slugs[updated.Slug]; dup && prev != updated.ID {
						httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("use_cases[%d].slug: %q is used twice", i, updated.Slug))
						return
					}
					slugs[updated.Slug] = updated.ID
				}
			}
			for _, u := range snap.UseCases(cur.OrgID, cur.ID) {
				if !keep[u.ID] {
					changes = append(changes, change{deleted: u})
				}
			}
		}
		// The use cases as they will be must fit the schemas the integration declares.
		after := a.Registry.Snapshot().UseCases(cur.OrgID, cur.ID)
		if hasUseCases {
			after = nil
			for _, ch := range changes {
				if ch.put != nil {
					after = append(after, ch.put)
				}
			}
		}
		for _, uc := range after {
			if msg := a.undeclaredSchema(next.Fields["settings"], uc); msg != "" {
				httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "use case "+uc.Name+": "+msg)
				return
			}
		}
		if err := a.Registry.PutIntegration(c, &next); err != nil {
			unavailable(c, err)
			return
		}
		for _, ch := range changes {
			var err error
			switch {
			case ch.deleted != nil:
				err = a.Registry.DeleteUseCase(c, ch.deleted.OrgID, ch.deleted.ID)
			case ch.prev != nil:
				if err = a.Registry.PutHistory(c, historyOf(ch.prev, "update", changedBy(c), now)); err == nil {
					err = a.Registry.PutUseCase(c, ch.put)
				}
			default:
				err = a.Registry.PutUseCase(c, ch.put)
			}
			if err != nil {
				unavailable(c, err)
				return
			}
		}
		if v2 {
			c.JSON(http.StatusOK, a.withUseCases(&next))
			return
		}
		c.JSON(http.StatusOK, next.APIView())
	}
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
