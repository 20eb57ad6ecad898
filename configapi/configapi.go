// Package configapi serves the configuration surface of the ERP Integration API: integrations
// and their use cases. It validates on write (an inbound mapping must compile) and stores through
// the registry, whose compacted Kafka topic every service materializes.
package configapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/secrets"
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
	// Secrets seals SecretString environment values; without it secrets cannot be stored.
	Secrets *secrets.Box
	Now     func() time.Time
	// writeMu serializes this process's writes so that uniqueness checks and the write they
	// guard are not interleaved. Several writer processes are resolved by the registry (first
	// slug claim wins), see the README.
	writeMu sync.Mutex
	// simulations bounds the mapping simulations running at once (simlimits.go).
	simulations simulationSlots
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
	// The literal route wins over /v1/integrations/:integrationId in gin's router.
	r.GET("/v1/integrations/secure-proxies", read, a.listSecureProxies)
	r.GET("/v1/integrations/:integrationId", read, a.getIntegration(false))
	r.PUT("/v1/integrations/:integrationId", write, a.updateIntegration(false))
	r.DELETE("/v1/integrations/:integrationId", write, a.deleteIntegration)
	r.GET("/v2/integrations", read, a.listIntegrations(true))
	r.POST("/v2/integrations", write, a.createIntegration(true))
	r.GET("/v2/integrations/:integrationId", read, a.getIntegration(true))
	r.PUT("/v2/integrations/:integrationId", write, a.updateIntegration(true))
	r.DELETE("/v2/integrations/:integrationId", write, a.deleteIntegration)
	r.GET("/v1/integrations/:integrationId/use-cases/:useCaseId/history", read, a.listHistory)

	a.registerSimulation(r)

	r.GET("/v1/environment", read, a.listEnv)
	r.PUT("/v1/environment/:key", write, a.putEnv)
	r.DELETE("/v1/environment/:key", write, a.deleteEnv)

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
		cfg := r.Configuration
		if uc.Type == registry.TypeSecureProxy {
			var err error
			if cfg, err = keepSecureProxyReadOnly(nil, cfg); err != nil {
				return bad(err.Error())
			}
		}
		if msg := a.checkConfiguration(uc.Type, cfg); msg != "" {
			return bad(msg)
		}
		uc.Configuration = cfg
	} else if uc.Type == registry.TypeSecureProxy {
		return bad("configuration.vpc_mode: required for secure_proxy use cases")
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

// checkConfiguration validates type-specific configuration against the spec's schema; inbound
// mappings must also compile.
func (a *API) checkConfiguration(typ string, raw json.RawMessage) string {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return "configuration: must be a JSON object"
	}
	if msg := validateAgainst(configurationSchema[typ], "configuration", raw); msg != "" {
		return msg
	}
	if msg := a.compileExpressions(typ, raw); msg != "" {
		return msg
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
	if !ok || protectedIntegration(c, integ) {
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
	if msg := a.undeclaredSchema(integ.Fields["settings"], uc); msg != "" {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, msg)
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

// updateUseCase applies a partial update (absent key = unchanged) and records the previous
// version in the use case's history.
func (a *API) updateUseCase(c *gin.Context) {
	var req useCaseRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	integ, ok := a.integration(c)
	if !ok || protectedIntegration(c, integ) {
		return
	}
	cur, ok := a.useCase(c)
	if !ok {
		return
	}
	now := a.Now().UTC()
	next, status, code, msg := a.applyUseCaseUpdate(cur, &req, now)
	if next == nil {
		httpapi.Abort(c, status, code, msg)
		return
	}
	if msg := a.undeclaredSchema(integ.Fields["settings"], next); msg != "" {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, msg)
		return
	}
	if err := a.Registry.PutHistory(c, historyOf(cur, "update", changedBy(c), now)); err != nil {
		unavailable(c, err)
		return
	}
	if err := a.Registry.PutUseCase(c, next); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, next.APIView())
}

// applyUseCaseUpdate computes the updated use case; nil means rejected with status, code, message.
func (a *API) applyUseCaseUpdate(cur *registry.UseCase, req *useCaseRequest, now time.Time) (*registry.UseCase, int, string, string) {
	bad := func(msg string) (*registry.UseCase, int, string, string) {
		return nil, http.StatusBadRequest, httpapi.CodeValidation, msg
	}
	next := *cur
	if req.Type != nil && *req.Type != cur.Type {
		return bad("type: cannot be changed after creation")
	}
	if req.Name != nil {
		if *req.Name == "" || utf8.RuneCountInString(*req.Name) > 255 {
			return bad("name: string of 1 to 255 characters")
		}
		next.Name = *req.Name
	}
	if req.Slug != nil && *req.Slug != cur.Slug {
		if cur.Slug != "" {
			return bad("slug: immutable once set")
		}
		if msg := checkSlug(*req.Slug); msg != "" {
			return bad(msg)
		}
		if _, taken := a.Registry.Snapshot().UseCaseBySlug(cur.OrgID, cur.IntegrationID, *req.Slug); taken {
			return nil, http.StatusConflict, httpapi.CodeConflict, "slug " + *req.Slug + " is already used in this integration"
		}
		next.Slug = *req.Slug
	}
	if req.Enabled != nil {
		next.Enabled = *req.Enabled
	}
	if req.ChangeDescription != nil {
		if utf8.RuneCountInString(*req.ChangeDescription) > 2000 {
			return bad("change_description: at most 2000 characters")
		}
		next.ChangeDescription = *req.ChangeDescription
	}
	if len(req.Configuration) > 0 && string(req.Configuration) != "null" {
		cfg := req.Configuration
		if cur.Type == registry.TypeSecureProxy {
			var err error
			if cfg, err = keepSecureProxyReadOnly(cur.Configuration, cfg); err != nil {
				return bad(err.Error())
			}
		}
		if msg := a.checkConfiguration(cur.Type, cfg); msg != "" {
			return bad(msg)
		}
		next.Configuration = cfg
	}
	next.Version = cur.Version + 1
	next.UpdatedAt = now
	return &next, 0, "", ""
}

// keepSecureProxyReadOnly enforces the secure proxy's read-only fields: vpc_mode cannot change
// after creation, and allowed_domains / allowed_ips keep their stored values (they are changed by
// `erpstream admin secure-proxy` only).
func keepSecureProxyReadOnly(current, incoming json.RawMessage) (json.RawMessage, error) {
	var cur, in map[string]json.RawMessage
	_ = json.Unmarshal(current, &cur)
	if err := json.Unmarshal(incoming, &in); err != nil {
		return nil, errors.New("configuration: must be a JSON object")
	}
	if v, ok := in["vpc_mode"]; ok && cur != nil && string(v) != string(cur["vpc_mode"]) {
		return nil, errors.New("configuration.vpc_mode: cannot be changed after creation")
	}
	if cur != nil {
		in["vpc_mode"] = cur["vpc_mode"]
	}
	delete(in, "allowed_domains")
	delete(in, "allowed_ips")
	for _, k := range []string{"allowed_domains", "allowed_ips"} {
		if v, ok := cur[k]; ok {
			in[k] = v
		}
	}
	return json.Marshal(in)
}

func (a *API) deleteUseCase(c *gin.Context) {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	integ, ok := a.integration(c)
	if !ok || protectedIntegration(c, integ) {
		return
	}
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
	if !ok || protectedIntegration(c, integ) {
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	snap := a.Registry.Snapshot()
	if cur, exists := snap.AppMapping(integ.OrgID, req.AppID, req.ComponentID); exists && cur.IntegrationID != integ.ID {
		if !req.Overwrite {
			httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, "app "+req.AppID+" / component "+req.ComponentID+" is mapped to another integration; send overwrite: true to move it")
			return
		}
		// Moving a binding away changes the integration it leaves as well.
		if from, ok := snap.Integration(integ.OrgID, cur.IntegrationID); ok && protectedIntegration(c, from) {
			return
		}
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
	if !ok || protectedIntegration(c, integ) {
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

// protectedIntegration reports whether a write to integ must be refused: protected integrations are
// changed by admins only (erp:admin), and never deleted while protected.
func protectedIntegration(c *gin.Context, integ *registry.Integration) bool {
	var protected bool
	_ = json.Unmarshal(integ.Fields["protected"], &protected)
	if protected && !httpapi.Principal(c).Has(auth.PermAdmin) {
		httpapi.Abort(c, http.StatusForbidden, "INTEGRATION_PROTECTED", "integration "+integ.ID+" is protected: only admins (erp:admin) may change it")
		return true
	}
	return false
}

func changedBy(c *gin.Context) string { return httpapi.Principal(c).TokenID }

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

func historyOf(u *registry.UseCase, change, by string, at time.Time) *registry.HistoryEntry {
	return &registry.HistoryEntry{ID: ids.NewUUID(), OrgID: u.OrgID, UseCaseID: u.ID, IntegrationID: u.IntegrationID, Type: u.Type,
		Name: u.Name, Slug: u.Slug, Enabled: u.Enabled, Configuration: u.Configuration, ChangeDescription: u.ChangeDescription,
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, HistoryCreatedAt: at, ChangedBy: by, Change: change}
}

// historyPageSize is the history page length (NOTES.md §4 proposes 20).
const historyPageSize = 20

type historyCursor struct {
	At int64  `json:"t"`
	ID string `json:"id"`
}

func (a *API) listHistory(c *gin.Context) {
	uc, ok := a.useCase(c)
	if !ok {
		return
	}
	entries := a.Registry.Snapshot().History(uc.OrgID, uc.ID)
	start := 0
	if raw := c.Query("cursor"); raw != "" {
		b, err := base64.RawURLEncoding.DecodeString(raw)
		var cur historyCursor
		if err != nil || json.Unmarshal(b, &cur) != nil || cur.ID == "" {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "cursor: malformed; pass next_cursor as it was returned")
			return
		}
		start = len(entries)
		for i, h := range entries {
			t := h.HistoryCreatedAt.UnixNano()
			if t < cur.At || t == cur.At && h.ID > cur.ID {
				start = i
				break
			}
		}
	}
	end := min(start+historyPageSize, len(entries))
	page := entries[start:end]
	configs, err := a.Registry.HistoryConfigurations(c, page)
	if err != nil {
		unavailable(c, err)
		return
	}
	list := make([]any, 0, len(page))
	for _, h := range page {
		shown := *h
		shown.Configuration = configs[h.ID]
		list = append(list, shown.APIView())
	}
	resp := gin.H{"history": list}
	if end < len(entries) {
		last := entries[end-1]
		b, _ := json.Marshal(historyCursor{At: last.HistoryCreatedAt.UnixNano(), ID: last.ID})
		resp["next_cursor"] = base64.RawURLEncoding.EncodeToString(b)
	}
	c.JSON(http.StatusOK, resp)
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

// compileExpressions compiles the JSONata of outbound, managed-call and file-proxy configurations,
// so that an expression that cannot run is refused when it is saved, not when it is first used.
func (a *API) compileExpressions(typ string, raw json.RawMessage) string {
	var cfg struct {
		Mappings []struct {
			JSONataExpression string `json:"jsonata_expression"`
		} `json:"mappings"`
		RequestMapping  string `json:"request_mapping"`
		ResponseMapping string `json:"response_mapping"`
		Response        struct {
			Body string `json:"body"`
		} `json:"response"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return ""
	}
	check := func(path, src string) string {
		if src == "" {
			return ""
		}
		if _, err := a.Engine.Compile(src); err != nil {
			return path + ": JSONata does not compile: " + err.Error()
		}
		return ""
	}
	var exprs [][2]string
	switch typ {
	case registry.TypeOutbound:
		for i, m := range cfg.Mappings {
			exprs = append(exprs, [2]string{fmt.Sprintf("configuration.mappings[%d].jsonata_expression", i), m.JSONataExpression})
		}
	case registry.TypeManagedCall:
		exprs = append(exprs, [2]string{"configuration.request_mapping", cfg.RequestMapping}, [2]string{"configuration.response_mapping", cfg.ResponseMapping})
	case registry.TypeFileProxy:
		exprs = append(exprs, [2]string{"configuration.response.body", cfg.Response.Body})
	}
	for _, e := range exprs {
		if msg := check(e[0], e[1]); msg != "" {
			return msg
		}
	}
	return ""
}

// undeclaredSchema names the first schema an inbound use case's configuration writes or relates
// to that the integration's settings.entity_schemas leaves out; "" when the integration declares
// none (erpstream has no schema registry: declaring is how an integration gets typos refused).
func (a *API) undeclaredSchema(settings json.RawMessage, uc *registry.UseCase) string {
	var declared struct {
		EntitySchemas []string `json:"entity_schemas"`
	}
	if uc.Type != registry.TypeInbound || json.Unmarshal(settings, &declared) != nil || len(declared.EntitySchemas) == 0 {
		return ""
	}
	m, err := mapping.Compile(uc.Configuration, a.Engine)
	if err != nil {
		return ""
	}
	known := map[string]bool{}
	for _, s := range declared.EntitySchemas {
		known[s] = true
	}
	msg := ""
	m.Schemas(func(path, schema string) {
		if msg == "" && !known[schema] {
			msg = fmt.Sprintf("%s: schema %q is not in the integration's settings.entity_schemas", path, schema)
		}
	})
	return msg
}
