package processor

import (
	"encoding/json"
	"sync"

	"github.com/erpstream/erpstream/internal/registry"
)

// What the processor reads of an org's configurations, cached per registry snapshot: the attributes
// entities are looked up by, and each integration's settings.

// orgAttributes are, per schema, the attributes an org's inbound configurations look entities up
// by, and those relation_refs write elements into.
type orgAttributes struct {
	lookup     map[string]map[string]bool
	refTargets map[string]map[string]bool
}

// lookupAttributes caches orgAttributes per org, and integrations' settings; rebuilt when the
// registry changes.
type lookupAttributes struct {
	mu       sync.Mutex
	snap     *registry.Snapshot
	byOrg    map[string]*orgAttributes
	settings map[[2]string]*integrationSettings
}

// integrationSettings are what the processor reads of an integration's settings.
type integrationSettings struct {
	// honorEventType applies event_type (mapping.ApplyEventType): DELETE deletes, CREATE of an
	// existing entity fails. On unless settings.honor_event_type is false.
	honorEventType bool
	// schemas, when the integration declares settings.entity_schemas, are the only schemas its
	// mappings may write or relate to.
	schemas map[string]bool
}

func (p *Processor) integrationSettings(org, integrationID string) *integrationSettings {
	snap := p.cfg.Registry.Snapshot()
	la := &p.lookupAttrs
	la.mu.Lock()
	defer la.mu.Unlock()
	la.resetLocked(snap)
	key := [2]string{org, integrationID}
	if s, ok := la.settings[key]; ok {
		return s
	}
	s := &integrationSettings{honorEventType: true}
	if integ, ok := snap.Integration(org, integrationID); ok {
		var raw struct {
			HonorEventType *bool    `json:"honor_event_type"`
			EntitySchemas  []string `json:"entity_schemas"`
		}
		if json.Unmarshal(integ.Fields["settings"], &raw) == nil {
			s.honorEventType = raw.HonorEventType == nil || *raw.HonorEventType
			if len(raw.EntitySchemas) > 0 {
				s.schemas = map[string]bool{}
				for _, schema := range raw.EntitySchemas {
					s.schemas[schema] = true
				}
			}
		}
	}
	la.settings[key] = s
	return s
}

func (la *lookupAttributes) resetLocked(snap *registry.Snapshot) {
	if la.snap != snap {
		la.snap, la.byOrg, la.settings = snap, map[string]*orgAttributes{}, map[[2]string]*integrationSettings{}
	}
}

func (p *Processor) orgAttributes(org string) *orgAttributes {
	snap := p.cfg.Registry.Snapshot()
	la := &p.lookupAttrs
	la.mu.Lock()
	defer la.mu.Unlock()
	la.resetLocked(snap)
	if attrs, ok := la.byOrg[org]; ok {
		return attrs
	}
	attrs := &orgAttributes{lookup: map[string]map[string]bool{}, refTargets: map[string]map[string]bool{}}
	adder := func(into map[string]map[string]bool) func(schema, attr string) {
		return func(schema, attr string) {
			if into[schema] == nil {
				into[schema] = map[string]bool{}
			}
			into[schema][attr] = true
		}
	}
	for _, integ := range snap.Integrations(org) {
		for _, uc := range snap.UseCases(org, integ.ID) {
			if uc.Type != registry.TypeInbound {
				continue
			}
			m, err := p.compiled(uc)
			if err != nil {
				continue
			}
			m.LookupAttributes(adder(attrs.lookup))
			m.RefTargets(adder(attrs.refTargets))
		}
	}
	la.byOrg[org] = attrs
	return attrs
}
