package configapi

import (
	"net/http"
	"regexp"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/registry"
)

// The environment: per-org variables that configurations reference as {{env.KEY}}. Secret values
// are sealed with the process's key (ERPSTREAM_SECRETS_KEY) and never returned: reads give
// metadata only.
//
//	GET    /v1/environment          list (String values shown, SecretString values never)
//	PUT    /v1/environment/{key}    {"value": "...", "type": "String"|"SecretString", "description": "..."}
//	DELETE /v1/environment/{key}

var envKeyPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$`)

func envView(v *registry.EnvVar) gin.H {
	out := gin.H{"key": v.Key, "type": v.Type, "updated_at": v.UpdatedAt}
	if v.Description != "" {
		out["description"] = v.Description
	}
	if v.Type == "String" {
		out["value"] = v.Value
	}
	return out
}

func (a *API) listEnv(c *gin.Context) {
	list := []any{}
	for _, v := range a.Registry.Snapshot().EnvVars(httpapi.Principal(c).OrgID) {
		list = append(list, envView(v))
	}
	c.JSON(http.StatusOK, gin.H{"variables": list})
}

func (a *API) putEnv(c *gin.Context) {
	key := c.Param("key")
	if !envKeyPattern.MatchString(key) {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "key: must match ^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
		return
	}
	var req struct {
		Value       *string `json:"value"`
		Type        string  `json:"type"`
		Description string  `json:"description"`
	}
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if req.Value == nil {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "value: required string")
		return
	}
	if req.Type == "" {
		req.Type = "String"
	}
	if req.Type != "String" && req.Type != "SecretString" {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "type: String or SecretString")
		return
	}
	if utf8.RuneCountInString(req.Description) > 1000 || len(*req.Value) > 64<<10 {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "description: at most 1000 characters; value: at most 64 KB")
		return
	}
	org := httpapi.Principal(c).OrgID
	v := &registry.EnvVar{OrgID: org, Key: key, Type: req.Type, Description: req.Description, UpdatedAt: a.Now().UTC(), UpdatedBy: changedBy(c)}
	if req.Type == "SecretString" {
		sealed, err := a.Secrets.Seal(*req.Value, org+"/"+key)
		if err != nil {
			httpapi.Abort(c, http.StatusBadRequest, "SECRETS_UNAVAILABLE", "secrets cannot be stored: "+err.Error())
			return
		}
		v.Sealed = sealed
	} else {
		v.Value = *req.Value
	}
	if err := a.Registry.PutEnvVar(c.Request.Context(), v); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, envView(v))
}

func (a *API) deleteEnv(c *gin.Context) {
	org := httpapi.Principal(c).OrgID
	key := c.Param("key")
	if _, ok := a.Registry.Snapshot().EnvVar(org, key); !ok {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeNotFound, "environment variable "+key+" not found")
		return
	}
	if err := a.Registry.DeleteEnvVar(c.Request.Context(), org, key); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "environment variable deleted"})
}
