// Package configapi serves the configuration surface of the ERP Integration API: integrations
// and their use cases. It validates on write (an inbound mapping must compile) and stores through
// the registry, whose compacted Kafka topic every service materializes.
package configapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/processor/mapping"
)

// SlugPattern is the use-case slug rule of the spec.
var SlugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

var useCaseTypes = map[string]bool{
	registry.TypeInbound: true, registry.TypeOutbound: true, registry.TypeFileProxy: true,
	registry.TypeManagedCall: true, registry.TypeSecureProxy: true,
}

// API is the configuration service.
type API struct {
	Registry *registry.Registry
	Engine   jsonata.Engine
	Now      func() time.Time
	// writeMu serializes this process's writes so that uniqueness checks and the write they
	// guard are not interleaved. Several writer processes are resolved by the registry (first
	// slug claim wins), see the README.
	writeMu sync.Mutex
}

// Register mounts the routes on an authenticated router group.
func (a *API) Register(r gin.IRouter) {
	if a.Now == nil {
		a.Now = time.Now
	}
	if a.Engine == nil {
		a.Engine = jsonata.Default
	}
	read, write := httpapi.Require("erp:read"), httpapi.Require("erp:write")
	r.GET("/v1/integrations", read, a.listIntegrations(false))
	r.POST("/v1/integrations", write, a.createIntegration(false))
	r.GET("/v1/integrations/:integrationId", read, a.getIntegration(false))
	r.DELETE("/v1/integrations/:integrationId", write, a.deleteIntegration)
	r.GET("/v2/integrations", read, a.listIntegrations(true))
	r.POST("/v2/integrations", write, a.createIntegration(true))
	r.GET("/v2/integrations/:integrationId", read, a.getIntegration(true))
	r.DELETE("/v2/integrations/:integrationId", write, a.deleteIntegration)

	r.PUT("/v1/integrations/:integrationId/app-mapping", write, a.setAppMapping)
	r.DELETE("/v1/integrations/:integrationId/app-mapping", write, a.deleteAppMapping)

	r.GET("/v1/integrations/:integrationId/use-cases", read, a.listUseCases)
	r.POST("/v1/integrations/:integrationId/use-cases", write, a.createUseCase)
	r.GET("/v1/integrations/:integrationId/use-cases/:useCaseId", read, a.getUseCase)
	r.PUT("/v1/integrations/:integrationId/use-cases/:useCaseId", write, a.updateUseCase)
	r.DELETE("/v1/integrations/:integrationId/use-cases/:useCaseId", write, a.deleteUseCase)
}

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
	if t, ok := raw["integration_type"]; ok {
		var s string
		if err := json.Unmarshal(t, &s); err != nil || (s != "erp" && s != "connector") {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "integration_type: must be erp or connector")
			return nil, false
		}
	}
	return req, true
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
			if uc.Slug != "" && slugs[uc.Slug] {
				httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("use_cases[%d].slug: %q is used twice", i, uc.Slug))
				return
			}
			slugs[uc.Slug] = true
			ucs = append(ucs, uc)
		}
		a.writeMu.Lock()
		defer a.writeMu.Unlock()
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
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if err := a.Registry.DeleteIntegration(c, integ.OrgID, integ.ID); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "integration deleted"})
}

// useCaseRequest is CreateUseCaseRequest / EmbeddedUseCaseRequest / UpdateUseCaseRequest.
type useCaseRequest struct {
	ID                *string         `json:"id"`
	Name              *string         `json:"name"`
	Slug              *string         `json:"slug"`
	Type              *string         `json:"type"`
	Enabled           *bool           `json:"enabled"`
	Configuration     json.RawMessage `json:"configuration"`
	ChangeDescription *string         `json:"change_description"`
}

// buildUseCase validates a create request; on failure it returns nil and the error to answer.
func (a *API) buildUseCase(org, integrationID string, r *useCaseRequest, now time.Time) (*registry.UseCase, int, string, string) {
	bad := func(msg string) (*registry.UseCase, int, string, string) {
		return nil, http.StatusBadRequest, httpapi.CodeValidation, msg
	}
	if r.Name == nil || *r.Name == "" || utf8.RuneCountInString(*r.Name) > 255 {
		return bad("name: required string of 1 to 255 characters")
	}
	if r.Type == nil || !useCaseTypes[*r.Type] {
		return bad("type: required, one of inbound, outbound, file_proxy, managed_call, secure_proxy")
	}
	if r.Enabled == nil {
		return bad("enabled: required boolean")
	}
	uc := &registry.UseCase{ID: ids.NewUUID(), OrgID: org, IntegrationID: integrationID, Name: *r.Name,
		Type: *r.Type, Enabled: *r.Enabled, Version: 1, CreatedAt: now, UpdatedAt: now}
	if r.ID != nil && *r.ID != "" {
		if !ids.ValidUUID(*r.ID) {
			return bad("id: must be a UUID")
		}
		uc.ID = *r.ID
	}
	if r.Slug != nil {
		if msg := checkSlug(*r.Slug); msg != "" {
			return bad(msg)
		}
		uc.Slug = *r.Slug
	}
	if r.ChangeDescription != nil {
		if utf8.RuneCountInString(*r.ChangeDescription) > 2000 {
			return bad("change_description: at most 2000 characters")
		}
		uc.ChangeDescription = *r.ChangeDescription
	}
	if len(r.Configuration) > 0 && string(r.Configuration) != "null" {
		if msg := a.checkConfiguration(uc.Type, r.Configuration); msg != "" {
			return bad(msg)
		}
		uc.Configuration = r.Configuration
	} else if uc.Type == registry.TypeInbound {
		return bad("configuration: required for inbound use cases")
	}
	return uc, 0, "", ""
}

func checkSlug(s string) string {
	if len(s) == 0 || len(s) > 255 || !SlugPattern.MatchString(s) {
		return fmt.Sprintf("slug: %q must match ^[a-z0-9][a-z0-9_-]*$ and be 1 to 255 characters", s)
	}
	return ""
}

// checkConfiguration validates type-specific configuration; inbound mappings must compile.
func (a *API) checkConfiguration(typ string, raw json.RawMessage) string {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "configuration: must be a JSON object"
	}
	if typ == registry.TypeInbound {
		if _, err := mapping.Compile(raw, a.Engine); err != nil {
			var ce *mapping.ConfigError
			if errors.As(err, &ce) {
				return ce.Error()
			}
			return "configuration: " + err.Error()
		}
	}
	return ""
}

func (a *API) createUseCase(c *gin.Context) {
	integ, ok := a.integration(c)
	if !ok {
		return
	}
	var req useCaseRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	uc, status, code, msg := a.buildUseCase(integ.OrgID, integ.ID, &req, a.Now().UTC())
	if uc == nil {
		httpapi.Abort(c, status, code, msg)
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	snap := a.Registry.Snapshot()
	if uc.Slug != "" {
		if _, taken := snap.UseCaseBySlug(integ.OrgID, integ.ID, uc.Slug); taken {
			httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, "slug "+uc.Slug+" is already used in this integration")
			return
		}
	}
	if _, exists := snap.UseCase(integ.OrgID, uc.ID); exists {
		httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, "use case id "+uc.ID+" already exists")
		return
	}
	if err := a.Registry.PutUseCase(c, uc); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusCreated, uc.APIView())
}

func (a *API) listUseCases(c *gin.Context) {
	integ, ok := a.integration(c)
	if !ok {
		return
	}
	list := []any{}
	for _, uc := range a.Registry.Snapshot().UseCases(integ.OrgID, integ.ID) {
		list = append(list, uc.APIView())
	}
	c.JSON(http.StatusOK, gin.H{"use_cases": list})
}

func (a *API) useCase(c *gin.Context) (*registry.UseCase, bool) {
	integ, ok := a.integration(c)
	if !ok {
		return nil, false
	}
	id := c.Param("useCaseId")
	uc, ok := a.Registry.Snapshot().UseCase(integ.OrgID, id)
	if !ok || uc.IntegrationID != integ.ID {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeUseCaseNotFound, "use case "+id+" not found")
		return nil, false
	}
	return uc, true
}

func (a *API) getUseCase(c *gin.Context) {
	if uc, ok := a.useCase(c); ok {
		c.JSON(http.StatusOK, uc.APIView())
	}
}

// updateUseCase applies a partial update (absent key = unchanged).
func (a *API) updateUseCase(c *gin.Context) {
	var req useCaseRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	cur, ok := a.useCase(c)
	if !ok {
		return
	}
	next := *cur
	if req.Type != nil && *req.Type != cur.Type {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "type: cannot be changed after creation")
		return
	}
	if req.Name != nil {
		if *req.Name == "" || utf8.RuneCountInString(*req.Name) > 255 {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "name: string of 1 to 255 characters")
			return
		}
		next.Name = *req.Name
	}
	if req.Slug != nil && *req.Slug != cur.Slug {
		if cur.Slug != "" {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "slug: immutable once set")
			return
		}
		if msg := checkSlug(*req.Slug); msg != "" {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, msg)
			return
		}
		if _, taken := a.Registry.Snapshot().UseCaseBySlug(cur.OrgID, cur.IntegrationID, *req.Slug); taken {
			httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, "slug "+*req.Slug+" is already used in this integration")
			return
		}
		next.Slug = *req.Slug
	}
	if req.Enabled != nil {
		next.Enabled = *req.Enabled
	}
	if req.ChangeDescription != nil {
		next.ChangeDescription = *req.ChangeDescription
	}
	if len(req.Configuration) > 0 && string(req.Configuration) != "null" {
		if msg := a.checkConfiguration(cur.Type, req.Configuration); msg != "" {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, msg)
			return
		}
		next.Configuration = req.Configuration
	}
	next.Version = cur.Version + 1
	next.UpdatedAt = a.Now().UTC()
	if err := a.Registry.PutUseCase(c, &next); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, next.APIView())
}

func (a *API) deleteUseCase(c *gin.Context) {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	uc, ok := a.useCase(c)
	if !ok {
		return
	}
	if err := a.Registry.DeleteUseCase(c, uc.OrgID, uc.ID); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "use case deleted"})
}

func unavailable(c *gin.Context, err error) {
	c.Header("Retry-After", "5")
	httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "configuration store unavailable: "+err.Error())
}

type appMappingRequest struct {
	AppID       string `json:"app_id"`
	ComponentID string `json:"component_id"`
	Overwrite   bool   `json:"overwrite"`
}

func (a *API) parseAppMapping(c *gin.Context) (*registry.Integration, *appMappingRequest, bool) {
	integ, ok := a.integration(c)
	if !ok {
		return nil, nil, false
	}
	var req appMappingRequest
	if !httpapi.BindJSON(c, &req) {
		return nil, nil, false
	}
	if req.AppID == "" || req.ComponentID == "" {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "app_id and component_id are required")
		return nil, nil, false
	}
	if !ids.ValidUUID(req.ComponentID) {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "component_id: must be a UUID")
		return nil, nil, false
	}
	return integ, &req, true
}

// setAppMapping binds (app_id, component_id) to this integration; an existing binding is 409
// unless overwrite is true.
func (a *API) setAppMapping(c *gin.Context) {
	integ, req, ok := a.parseAppMapping(c)
	if !ok {
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if cur, exists := a.Registry.Snapshot().AppMapping(integ.OrgID, req.AppID, req.ComponentID); exists && !req.Overwrite && cur.IntegrationID != integ.ID {
		httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, "app "+req.AppID+" / component "+req.ComponentID+" is mapped to another integration; send overwrite: true to move it")
		return
	}
	m := &registry.AppMapping{OrgID: integ.OrgID, AppID: req.AppID, ComponentID: req.ComponentID, IntegrationID: integ.ID}
	if err := a.Registry.PutAppMapping(c, m); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"integration_id": integ.ID})
}

func (a *API) deleteAppMapping(c *gin.Context) {
	integ, req, ok := a.parseAppMapping(c)
	if !ok {
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	cur, exists := a.Registry.Snapshot().AppMapping(integ.OrgID, req.AppID, req.ComponentID)
	if !exists || cur.IntegrationID != integ.ID {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeNotFound, "no app mapping for app "+req.AppID+" / component "+req.ComponentID+" on this integration")
		return
	}
	if err := a.Registry.DeleteAppMapping(c, integ.OrgID, req.AppID, req.ComponentID); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "app mapping deleted"})
}
