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

// lookup returns the findable entities of schema that have every key, at most limit of them
// (0: all); overlay holds the running event's changes, which win over the store's, and
// overlayByKey indexes them by key (it may hold stale ids: the current state decides). Many entities
// can share a key (an empty or shared e-mail address), so the candidates are those of the rarest
// key, each checked as it is read, and the scan ends once limit entities matched: a lookup that
// only needs to know whether one entity matches reads two of them, not all.
func (s *entityStore) lookup(org, schema string, keys []lookupKey, overlay map[string]*entityState,
	overlayByKey map[lookupKey][]string, limit int) []string {
	if len(keys) == 0 {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	first := s.rarestKeyLocked(keys)
	seen := map[string]bool{}
	var out []string
	more := true
	consider := func(id string) bool {
		if seen[id] {
			return true
		}
		seen[id] = true
		st := s.currentLocked(id, overlay)
		if st.findable() && st.Schema == schema && (st.Org == "" || st.Org == org) && st.Keys.hasAll(keys) {
			out = append(out, id)
		}
		more = limit <= 0 || len(out) < limit
		return more
	}
	for _, id := range overlayByKey[first] {
		if more {
			consider(id)
		}
	}
	if more {
		s.stagedByKey[first].eachWhile(consider)
	}
	if more {
		s.committed.eachWithKey(first, consider)
	}
	sort.Strings(out)
	return out
}

// rarestKeyLocked is the key of keys fewest entities are indexed under. Counts on disk are scans,
// so every key is counted up to a limit that grows until one count stays below it: the work is a
// few times the rarest key's entities, however many share the others.
func (s *entityStore) rarestKeyLocked(keys []lookupKey) lookupKey {
	if len(keys) == 1 {
		return keys[0]
	}
	for limit := 64; ; limit *= 8 {
		rarest, least := keys[0], -1
		for _, k := range keys {
			if n := s.committed.countWithKey(k, limit) + s.stagedByKey[k].len(); least < 0 || n < least {
				rarest, least = k, n
			}
		}
		if least < limit || limit >= 1<<30 {
			return rarest
		}
	}
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
	ids := a.search(schema, uniqueIDs, 2)
	switch {
	case len(ids) > 1:
		return "", false, fmt.Errorf("%w: at least 2 %s entities have %s (%s and %s)", errMultipleMatches, schema, mustJSON(uniqueIDs), ids[0], ids[1])
	case len(ids) == 1:
		return ids[0], true, nil
	}
	return derived, false, nil
}

// search returns the findable entities of schema whose indexed attributes hold all the values,
// at most limit of them (0: all); none when an attribute is not indexed for the schema.
func (a *application) search(schema string, values mapping.Attributes, limit int) []string {
	indexed := a.p.orgAttributes(a.ev.OrgID).lookup[schema]
	keys := make([]lookupKey, 0, len(values))
	for _, v := range values {
		if !indexed[v.Name] {
			return nil // no configuration looks this schema up by it: only the derived id finds
		}
		keys = append(keys, keyOf(a.ev.OrgID, schema, v.Name, lookupValue(v.Value)))
	}
	return a.p.entities.lookup(a.ev.OrgID, schema, keys, a.changed, a.changedByKey, limit)
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
