package processor

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"sync"

	"github.com/erpstream/erpstream/internal/registry"
	engine "github.com/erpstream/erpstream/jsonata"
	"github.com/erpstream/erpstream/mapping"
)

// Entity lookup (MAPPING.md §6): an entity is found by the values of the attributes a mapping
// names as unique ids, whichever mapping wrote it. Every entity has an id derived from its own
// unique ids (found without an index); besides, the entity state keeps a 128-bit key per value
// of each attribute some configuration of the org looks its schema up by, and the store indexes
// them. Values compare as strings (numbers coerced), case-sensitive; a repeatable attribute
// (_type email/phone) is found by any element.

// lookupKey identifies one (org, schema, attribute, value).
type lookupKey [16]byte

func keyOf(org, schema, attribute, value string) lookupKey {
	h := fnv.New128a()
	for _, s := range []string{org, schema, attribute, value} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var k lookupKey
	copy(k[:], h.Sum(nil))
	return k
}

// attrKey is one indexed value of an entity's attribute.
type attrKey struct {
	Attr string
	Key  lookupKey
}

// attrKeys marshal as {"attribute": ["hex key", …]}.
type attrKeys []attrKey

func (ks attrKeys) MarshalJSON() ([]byte, error) {
	m := map[string][]string{}
	for _, k := range ks {
		m[k.Attr] = append(m[k.Attr], hex.EncodeToString(k.Key[:]))
	}
	return json.Marshal(m)
}

func (ks *attrKeys) UnmarshalJSON(b []byte) error {
	var m map[string][]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	out := make(attrKeys, 0, len(m))
	for attr, list := range m {
		for _, h := range list {
			var k attrKey
			if n, err := hex.Decode(k.Key[:], []byte(h)); err != nil || n != len(k.Key) {
				return fmt.Errorf("lookup key %q: not 32 hex digits", h)
			}
			k.Attr = attr
			out = append(out, k)
		}
	}
	*ks = out
	return nil
}

func (ks attrKeys) has(k lookupKey) bool {
	for _, x := range ks {
		if x.Key == k {
			return true
		}
	}
	return false
}

// lookupValues are the string forms a value is found by: a scalar's, or each element's of an
// array (the email/phone key of repeatable elements). Relations and null are not looked up.
func lookupValues(v any) []string {
	switch x := v.(type) {
	case nil, *mapping.Relation, *mapping.ResolvedRelation, *mapping.RelationRef, *mapping.ResolvedRelationRef, json.RawMessage:
		return nil
	case string:
		return []string{x}
	case *engine.Array:
		var out []string
		for _, el := range x.Items {
			if o, ok := el.(*engine.Object); ok {
				for _, typ := range []string{"email", "phone"} {
					if s, ok := o.Get(typ); ok {
						out = append(out, lookupValues(s)...)
					}
				}
				continue
			}
			out = append(out, lookupValues(el)...)
		}
		return out
	case *engine.Object:
		return nil
	}
	if v == engine.Null {
		return nil
	}
	b, err := engine.MarshalValue(v)
	if err != nil {
		return nil
	}
	return []string{string(b)}
}

// lookupValue is the single string form of a unique-id value.
func lookupValue(v any) string {
	if vs := lookupValues(v); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// idSet holds the entities of one lookup key: a few in a slice (most keys are one entity's
// unique id), many in a map, so that low-cardinality attributes (a query scope's supplier or
// market) do not make every add and remove a scan.
type idSet struct {
	few  []string
	many map[string]struct{}
}

const idSetSliceMax = 16

func (s idSet) len() int { return len(s.few) + len(s.many) }

func (s idSet) each(fn func(id string)) {
	for _, id := range s.few {
		fn(id)
	}
	for id := range s.many {
		fn(id)
	}
}

func (s idSet) add(id string) idSet {
	if s.many != nil {
		s.many[id] = struct{}{}
		return s
	}
	for _, x := range s.few {
		if x == id {
			return s
		}
	}
	if len(s.few) < idSetSliceMax {
		s.few = append(s.few, id)
		return s
	}
	s.many = make(map[string]struct{}, 2*idSetSliceMax)
	for _, x := range s.few {
		s.many[x] = struct{}{}
	}
	s.many[id], s.few = struct{}{}, nil
	return s
}

func (s idSet) remove(id string) idSet {
	if s.many != nil {
		delete(s.many, id)
		return s
	}
	for i, x := range s.few {
		if x == id {
			s.few = append(s.few[:i:i], s.few[i+1:]...)
			break
		}
	}
	return s
}

// indexKeysLocked adds (add) or removes an entity's keys from the index.
func (s *entityStore) indexKeysLocked(index map[lookupKey]idSet, id string, keys attrKeys, add bool) {
	for _, k := range keys {
		set := index[k.Key]
		if add {
			index[k.Key] = set.add(id)
			continue
		}
		if set = set.remove(id); set.len() == 0 {
			delete(index, k.Key)
		} else {
			index[k.Key] = set
		}
	}
}

// findable is an entity a lookup can return: written (or a placeholder), possibly soft-deleted,
// not purged.
func (st *entityState) findable() bool { return st != nil && !st.Phantom }

// lookup returns the findable entities of schema that have every key; overlay holds the running
// event's changes, which win over the store's.
func (s *entityStore) lookup(org, schema string, keys []lookupKey, overlay map[string]*entityState) []string {
	if len(keys) == 0 {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	// Candidates come from the rarest key.
	first := keys[0]
	for _, k := range keys[1:] {
		if s.byKey[k].len()+s.stagedByKey[k].len() < s.byKey[first].len()+s.stagedByKey[first].len() {
			first = k
		}
	}
	candidates := map[string]bool{}
	mark := func(id string) { candidates[id] = true }
	s.byKey[first].each(mark)
	s.stagedByKey[first].each(mark)
	for id, st := range overlay {
		if st.Keys.has(first) {
			candidates[id] = true
		}
	}
	var out []string
	for id := range candidates {
		st := s.currentLocked(id, overlay)
		if !st.findable() || st.Schema != schema || st.Org != "" && st.Org != org {
			continue
		}
		all := true
		for _, k := range keys {
			if !st.Keys.has(k) {
				all = false
				break
			}
		}
		if all {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

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

// errMultipleMatches is UNIQUE_ID_MULTIPLE_MATCHES.
var errMultipleMatches = errors.New("several entities match")

// find looks an entity of schema up by unique-id values: the entity with the id those values
// derive, else the one entity whose indexed attributes hold them all. "" is none.
func (a *application) find(schema string, uniqueIDs mapping.Attributes) (string, error) {
	id, found, err := a.findOrDerive(schema, uniqueIDs)
	if !found {
		id = ""
	}
	return id, err
}

// findOrDerive is find, also returning the id the values derive when nothing is found (the id a
// new entity gets), so that callers do not derive it again.
func (a *application) findOrDerive(schema string, uniqueIDs mapping.Attributes) (id string, found bool, _ error) {
	derived := (&mapping.EntityUpdate{EntitySlug: schema, UniqueIdentifiers: uniqueIDs}).EntityID(a.ev.OrgID)
	if st := a.state(derived); st != nil {
		// A purged entity is found by nothing and is recreated under the same id.
		return derived, st.findable(), nil
	}
	ids := a.search(schema, uniqueIDs)
	switch {
	case len(ids) > 1:
		return "", false, fmt.Errorf("%w: %d %s entities have %s", errMultipleMatches, len(ids), schema, mustJSON(uniqueIDs))
	case len(ids) == 1:
		return ids[0], true, nil
	}
	return derived, false, nil
}

// search returns every findable entity of schema whose indexed attributes hold all the values;
// none when an attribute is not indexed for the schema.
func (a *application) search(schema string, values mapping.Attributes) []string {
	indexed := a.p.orgAttributes(a.ev.OrgID).lookup[schema]
	keys := make([]lookupKey, 0, len(values))
	for _, v := range values {
		if !indexed[v.Name] {
			return nil // no configuration looks this schema up by it: only the derived id finds
		}
		keys = append(keys, keyOf(a.ev.OrgID, schema, v.Name, lookupValue(v.Value)))
	}
	return a.p.entities.lookup(a.ev.OrgID, schema, keys, a.changed)
}

// keysFor merges the indexed values of a write's attributes into the entity's current keys:
// an attribute the write names replaces its keys, others keep theirs (patch semantics).
func (a *application) keysFor(schema string, current attrKeys, attrs mapping.Attributes) attrKeys {
	indexed := a.p.orgAttributes(a.ev.OrgID).lookup[schema]
	if len(indexed) == 0 {
		return current
	}
	written := map[string]bool{}
	var out attrKeys
	for _, at := range attrs {
		if !indexed[at.Name] {
			continue
		}
		written[at.Name] = true
		for _, v := range lookupValues(at.Value) {
			out = append(out, attrKey{Attr: at.Name, Key: keyOf(a.ev.OrgID, schema, at.Name, v)})
		}
	}
	for _, k := range current {
		if !written[k.Attr] {
			out = append(out, k)
		}
	}
	return out
}
