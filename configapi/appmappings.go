package configapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/registry"
)

// App mappings bind (app_id, component_id) to an integration for the v1 event route.

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
	if err := a.Registry.PutAppMapping(c.Request.Context(), m); err != nil {
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
	if err := a.Registry.DeleteAppMapping(c.Request.Context(), integ.OrgID, req.AppID, req.ComponentID); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"message": "app mapping deleted"})
}
