package configapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/fileproxy"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/mapping"
)

// Use cases: create, read, update (recording history) and delete, and their validation on save.

// useCaseRequest is CreateUseCaseRequest / EmbeddedUseCaseRequest / UpdateUseCaseRequest.
type useCaseRequest struct {
	ID                *string         `json:"id"`
	Name              *string         `json:"name"`
	Slug              *string         `json:"slug"`
	Type              *string         `json:"type"`
	Enabled           *bool           `json:"enabled"`
	Configuration     json.RawMessage `json:"configuration"`
	ChangeDescription *string         `json:"change_description"`
	TypeAnnotations   json.RawMessage `json:"type_annotations"`
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
	if annotations, msg := checkTypeAnnotations(uc.Type, r.TypeAnnotations); msg != "" {
		return bad(msg)
	} else if annotations != nil {
		uc.TypeAnnotations = annotations
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
	if typ == registry.TypeFileProxy {
		// The runtime's own validation: auth, templates, steps, the response's JSONata.
		if _, err := fileproxy.Compile(raw); err != nil {
			return err.Error()
		}
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
	if err := a.Registry.PutUseCase(c.Request.Context(), uc); err != nil {
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
	if err := a.Registry.PutHistory(c.Request.Context(), historyOf(cur, "update", changedBy(c), now)); err != nil {
		unavailable(c, err)
		return
	}
	if err := a.Registry.PutUseCase(c.Request.Context(), next); err != nil {
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
		if next.TypesLocked && !jsonEqual(cur.Configuration, cfg) {
			// Editing a locked configuration is allowed: it unlocks the types, and the next
			// preview shows what changed against the committed version.
			next.TypesLocked = false
		}
		next.Configuration = cfg
	}
	if annotations, msg := checkTypeAnnotations(cur.Type, req.TypeAnnotations); msg != "" {
		return bad(msg)
	} else if annotations != nil {
		next.TypeAnnotations = annotations
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
	if err := a.Registry.DeleteUseCase(c.Request.Context(), uc.OrgID, uc.ID); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "use case deleted"})
}

// compileExpressions compiles the JSONata of outbound, managed-call and file-proxy configurations,
// so that an expression that cannot run is refused when it is saved, not when it is first used.
func (a *API) compileExpressions(typ string, raw json.RawMessage) string {
	var cfg struct {
		Mappings []struct {
			JSONataExpression string `json:"jsonata_expression"`
			Delivery          struct {
				WebhookURL string `json:"webhook_url"`
			} `json:"delivery"`
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
			if m.Delivery.WebhookURL != "" {
				if msg := a.checkDestination(fmt.Sprintf("configuration.mappings[%d].delivery.webhook_url", i), m.Delivery.WebhookURL); msg != "" {
					return msg
				}
			}
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

// maxTypeAnnotations bounds the annotations of one use case.
const maxTypeAnnotations = 1000

// checkTypeAnnotations validates type_annotations ({request, response}: dot path → type name);
// it returns the value to store (nil: absent) or the message to answer.
func checkTypeAnnotations(typ string, raw json.RawMessage) (json.RawMessage, string) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, ""
	}
	if typ != registry.TypeManagedCall {
		return nil, "type_annotations: only managed_call use cases have types"
	}
	var a struct {
		Request  map[string]string `json:"request"`
		Response map[string]string `json:"response"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return nil, "type_annotations: an object of request and response maps from a dot path to a type name"
	}
	if len(a.Request)+len(a.Response) > maxTypeAnnotations {
		return nil, fmt.Sprintf("type_annotations: at most %d entries", maxTypeAnnotations)
	}
	for _, m := range []map[string]string{a.Request, a.Response} {
		for k, v := range m {
			if len(k) > 512 || len(v) > 64 {
				return nil, "type_annotations: paths of at most 512 and type names of at most 64 characters"
			}
		}
	}
	return raw, ""
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	return reflect.DeepEqual(x, y)
}
