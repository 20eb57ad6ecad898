package processor

import (
	"errors"
	"fmt"
	"sort"

	"github.com/erpstream/erpstream/mapping"
)

// Entity lookup: an entity is found by the values of the attributes a mapping
// names as unique ids, whichever mapping wrote it. Every entity has an id derived from its own
// unique ids (found without an index); besides, the entity state keeps a 128-bit key per value
// of each attribute some configuration of the org looks its schema up by, and the store indexes
// them. Values compare as strings (numbers coerced), case-sensitive; a repeatable attribute
// (_type email/phone) is found by any element.

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
	if len(keys) > 1 {
		// Counting stops at the rarest key so far: on disk a count is a scan.
		least := s.committed.countWithKey(first, 1<<30) + s.stagedByKey[first].len()
		for _, k := range keys[1:] {
			if n := s.committed.countWithKey(k, least) + s.stagedByKey[k].len(); n < least {
				first, least = k, n
			}
		}
	}
	candidates := map[string]bool{}
	mark := func(id string) { candidates[id] = true }
	s.committed.eachWithKey(first, mark)
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
