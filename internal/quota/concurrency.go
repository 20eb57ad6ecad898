package quota

import "sync"

// Concurrency caps how many outbound calls (managed calls, proxied requests) each org has open at
// once in this process: a partner that answers slowly ties up that org's slots, not the others'.
type Concurrency struct {
	perOrg int
	mu     sync.Mutex
	open   map[string]int
}

// DefaultOutboundPerOrg is the default of ERPSTREAM_ORG_OUTBOUND_CONCURRENCY.
const DefaultOutboundPerOrg = 32

// NewConcurrency allows perOrg open calls per org (zero: the default; negative: unlimited).
func NewConcurrency(perOrg int) *Concurrency {
	if perOrg == 0 {
		perOrg = DefaultOutboundPerOrg
	}
	return &Concurrency{perOrg: perOrg, open: map[string]int{}}
}

// Acquire takes a slot of org's, reporting false when all are taken; release gives it back.
func (c *Concurrency) Acquire(org string) (release func(), ok bool) {
	if c == nil || c.perOrg < 0 {
		return func() {}, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[org] >= c.perOrg {
		return nil, false
	}
	c.open[org]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.open[org]--; c.open[org] <= 0 {
				delete(c.open, org)
			}
		})
	}, true
}

// PerOrg is the limit in force (negative: unlimited).
func (c *Concurrency) PerOrg() int { return c.perOrg }
