package outbound

import (
	"encoding/json"
	"strconv"
	"sync"

	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/registry"
)

// useCaseConfig is an outbound use case's configuration (OutboundIntegrationEventConfiguration)
// with erpstream's addition ack_tracking ("on" or "off", also true/false; default on).
type useCaseConfig struct {
	EventCatalogEvent string          `json:"event_catalog_event"`
	AckTracking       json.RawMessage `json:"ack_tracking"`
	Mappings          []mappingConfig `json:"mappings"`
}

type mappingConfig struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	JSONataExpression string `json:"jsonata_expression"`
	Enabled           *bool  `json:"enabled"`
	Delivery          struct {
		Type        string `json:"type"`
		WebhookID   string `json:"webhook_id"`
		WebhookName string `json:"webhook_name"`
		WebhookURL  string `json:"webhook_url"`
	} `json:"delivery"`
}

// ackTracking reads ack_tracking: on unless "off" or false.
func (c *useCaseConfig) ackTracking() bool {
	switch string(c.AckTracking) {
	case `"off"`, `false`:
		return false
	}
	return true
}

// mappingID is a mapping's id, or its position when it has none: webhook-ids derive from it,
// so mappings without ids keep their deliveries' ids only while the list keeps its order.
func (m *mappingConfig) mappingID(i int) string {
	if m.ID != "" {
		return m.ID
	}
	return "mapping-" + strconv.Itoa(i)
}

func (m *mappingConfig) enabled() bool { return m.Enabled == nil || *m.Enabled }

// compiledUseCase is an outbound use case ready to map changes.
type compiledUseCase struct {
	uc       *registry.UseCase
	cfg      useCaseConfig
	mappings []compiledMapping
	err      error // the configuration does not parse
}

type compiledMapping struct {
	cfg  mappingConfig
	id   string
	expr jsonata.Expression
	err  error // the expression does not compile (refused on save; kept for older configurations)
}

// matcher finds the outbound use cases subscribed to a catalog event. Its index follows the
// registry snapshot; compiled expressions are kept per use case version.
type matcher struct {
	mu       sync.Mutex
	snap     *registry.Snapshot
	byEvent  map[string][]*compiledUseCase // org + "/" + event name -> enabled use cases
	orgs     map[string]bool               // orgs with any enabled outbound use case
	compiled map[string]*compiledUseCase   // use case id + "@" + version
}

func newMatcher() *matcher {
	return &matcher{compiled: map[string]*compiledUseCase{}}
}

// match returns the enabled outbound use cases of org subscribed to event.
func (m *matcher) match(snap *registry.Snapshot, org, event string) []*compiledUseCase {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.snap != snap {
		m.reindex(snap)
	}
	return m.byEvent[org+"/"+event]
}

// anyFor reports whether org has an enabled outbound use case: the writes of the others are not
// even decoded.
func (m *matcher) anyFor(snap *registry.Snapshot, org string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.snap != snap {
		m.reindex(snap)
	}
	return m.orgs[org]
}

// useCase compiles one use case (trigger and status read disabled ones too).
func (m *matcher) useCase(uc *registry.UseCase) *compiledUseCase {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.compile(uc)
}

func (m *matcher) reindex(snap *registry.Snapshot) {
	m.snap = snap
	m.byEvent = map[string][]*compiledUseCase{}
	m.orgs = map[string]bool{}
	live := map[string]*compiledUseCase{}
	for _, uc := range snap.AllOutboundUseCases() {
		c := m.compile(uc)
		live[uc.ID+"@"+strconv.FormatInt(uc.Version, 10)] = c
		if !uc.Enabled || c.err != nil || c.cfg.EventCatalogEvent == "" {
			continue
		}
		key := uc.OrgID + "/" + c.cfg.EventCatalogEvent
		m.byEvent[key] = append(m.byEvent[key], c)
		m.orgs[uc.OrgID] = true
	}
	m.compiled = live // versions no longer configured are dropped
}

func (m *matcher) compile(uc *registry.UseCase) *compiledUseCase {
	key := uc.ID + "@" + strconv.FormatInt(uc.Version, 10)
	if c, ok := m.compiled[key]; ok {
		return c
	}
	c := &compiledUseCase{uc: uc}
	if err := json.Unmarshal(uc.Configuration, &c.cfg); err != nil {
		c.err = err
	}
	for i, mc := range c.cfg.Mappings {
		cm := compiledMapping{cfg: mc, id: mc.mappingID(i)}
		cm.expr, cm.err = jsonata.Default.Compile(mc.JSONataExpression)
		c.mappings = append(c.mappings, cm)
	}
	m.compiled[key] = c
	return c
}
