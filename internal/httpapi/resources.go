package httpapi

import (
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/registry"
)

// BadRequest answers 400 VALIDATION_ERROR with a message naming the field at fault.
func BadRequest(c *gin.Context, format string, args ...any) {
	Abort(c, http.StatusBadRequest, CodeValidation, fmt.Sprintf(format, args...))
}

// OrgIntegration resolves an integration id within the caller's org. An id of another org is
// answered exactly like an unknown one (404), so ids reveal nothing across tenants.
func OrgIntegration(c *gin.Context, snap *registry.Snapshot, id string) (*registry.Integration, bool) {
	if id == "" {
		BadRequest(c, "integration_id: required")
		return nil, false
	}
	integ, ok := snap.Integration(Principal(c).OrgID, id)
	if !ok {
		Abort(c, http.StatusNotFound, CodeIntegrationNotFound, "integration "+id+" not found")
		return nil, false
	}
	return integ, true
}
