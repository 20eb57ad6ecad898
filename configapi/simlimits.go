package configapi

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
)

// Simulations compile and run untrusted configurations on request, so each is bounded in time
// and memory (the engine's limits, the 4 MB body) and in number: at most SimulationsPerOrg of an
// org and SimulationsTotal in all run at once in one process; more are answered 429.
const (
	SimulationsPerOrg = 2
	SimulationsTotal  = 8
)

// SimulationTimeout bounds one simulation, compile and mapping together.
var SimulationTimeout = 5 * time.Second

// simulationSlots counts running simulations per org and in all.
type simulationSlots struct {
	mu    sync.Mutex
	total int
	byOrg map[string]int
}

func (s *simulationSlots) acquire(org string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byOrg == nil {
		s.byOrg = map[string]int{}
	}
	if s.total >= SimulationsTotal || s.byOrg[org] >= SimulationsPerOrg {
		return false
	}
	s.total++
	s.byOrg[org]++
	return true
}

func (s *simulationSlots) release(org string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.byOrg[org]--; s.byOrg[org] <= 0 {
		delete(s.byOrg, org)
	}
}

// boundSimulation admits a simulation into a slot, under SimulationTimeout.
func (a *API) boundSimulation(c *gin.Context) {
	org := httpapi.Principal(c).OrgID
	if !a.simulations.acquire(org) {
		c.Header("Retry-After", "1")
		httpapi.Abort(c, http.StatusTooManyRequests, "SIMULATIONS_BUSY",
			"at most "+strconv.Itoa(SimulationsPerOrg)+" mapping simulations of an org run at once; retry when one has finished")
		return
	}
	defer a.simulations.release(org)
	ctx, cancel := context.WithTimeout(c.Request.Context(), SimulationTimeout)
	defer cancel()
	c.Request = c.Request.WithContext(ctx)
	c.Next()
}
