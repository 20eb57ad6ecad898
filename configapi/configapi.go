// Package configapi serves the configuration surface of the ERP Integration API: integrations
// and their use cases. It validates on write (an inbound mapping must compile) and stores through
// the registry, whose compacted Kafka topic every service materializes.
package configapi

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/secrets"
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
	// CheckURL refuses destinations saved in configuration (webhook URLs) whose scheme is not
	// http(s) or whose literal address the egress rules block (egress.Client.CheckLiteral).
	CheckURL func(string) error
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
	r.PUT("/v1/integrations/:integrationId", write, a.patchIntegration)
	r.DELETE("/v1/integrations/:integrationId", write, a.deleteIntegration)
	r.GET("/v2/integrations", read, a.listIntegrations(true))
	r.POST("/v2/integrations", write, a.createIntegration(true))
	r.GET("/v2/integrations/:integrationId", read, a.getIntegration(true))
	r.PUT("/v2/integrations/:integrationId", write, a.replaceIntegration)
	r.POST("/v1/integrations/:integrationId/generate-types-preview", read, a.typesPreview)
	r.POST("/v1/integrations/:integrationId/generate-types", read, a.generateTypes)
	r.POST("/v1/integrations/:integrationId/commit-types", write, a.commitTypes)
	r.DELETE("/v2/integrations/:integrationId", write, a.deleteIntegration)
	r.GET("/v1/integrations/:integrationId/use-cases/:useCaseId/history", read, a.listHistory)

	a.registerSimulation(r)

	r.GET("/v1/environment", read, a.listEnv)
	r.PUT("/v1/environment/:key", write, a.putEnv)
	r.DELETE("/v1/environment/:key", write, a.deleteEnv)

	a.registerWebhooks(r, read, write)

	r.PUT("/v1/integrations/:integrationId/app-mapping", write, a.setAppMapping)
	r.DELETE("/v1/integrations/:integrationId/app-mapping", write, a.deleteAppMapping)

	r.GET("/v1/integrations/:integrationId/use-cases", read, a.listUseCases)
	r.POST("/v1/integrations/:integrationId/use-cases", write, a.createUseCase)
	r.GET("/v1/integrations/:integrationId/use-cases/:useCaseId", read, a.getUseCase)
	r.PUT("/v1/integrations/:integrationId/use-cases/:useCaseId", write, a.updateUseCase)
	r.DELETE("/v1/integrations/:integrationId/use-cases/:useCaseId", write, a.deleteUseCase)
}

func unavailable(c *gin.Context, err error) {
	c.Header("Retry-After", "5")
	httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "configuration store unavailable: "+err.Error())
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
