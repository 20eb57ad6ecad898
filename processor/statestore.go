package processor

import "maps"

// The committed entity states and their indexes live in a committedStates: in memory (the
// default), or on disk (Pebble, statestore_pebble.go) when the processor has a state directory.
// The entity store keeps the open transaction's changes in front of either.

// committedStates is the committed part of the entity store.
type committedStates interface {
	// get returns an entity's state, nil when it has none. The state is shared: callers copy
	// before changing it (the apply stage always builds a new state).
	get(id string) *entityState
	// apply writes the states in order, each unless the held version is newer, with their index
	// changes, and records the changelog positions they bring the store to; all at once. A cache
	// in front keeps the states only when keep is set (this instance's commits); changelog reads
	// (catch-ups, standby rounds) refresh what it holds and add nothing, so they do not push out
	// the states the instance's own events use.
	apply(changes []stateChange, positions map[int32]int64, keep bool) error
	// eachWithKey calls fn for the entities indexed under a lookup key (possibly stale) until
	// it returns false.
	eachWithKey(k lookupKey, fn func(id string) bool)
	// countWithKey counts them, stopping at limit.
	countWithKey(k lookupKey, limit int) int
	// eachRelating calls fn for the entities whose relations point at id (possibly stale) until
	// it returns false.
	eachRelating(id string, fn func(id string) bool)
	// eachReading calls fn for the readings of a group (possibly stale) until it returns false.
	eachReading(group string, fn func(id string) bool)
	size() int
	// positions is where to resume reading each changelog partition (absent: from the start).
	positions() map[int32]int64
	close() error
}

type stateChange struct {
	id string
	st *entityState
}

// indexChanges is what replacing cur by next changes in the indexes.
type indexChanges struct {
	dropKeys, addKeys     []lookupKey
	dropRelated           []string // related ids whose back-index loses this entity
	addRelated            []string
	dropGroup, addGroup   string
	hadGroup, hasNewGroup bool
}

func indexDiff(cur, next *entityState) indexChanges {
	var c indexChanges
	if cur != nil {
		for _, items := range cur.Relations {
			for _, it := range items {
				c.dropRelated = append(c.dropRelated, it.EntityID)
			}
		}
		for _, k := range cur.Keys {
			c.dropKeys = append(c.dropKeys, k.Key)
		}
		if cur.Reading != nil {
			c.dropGroup, c.hadGroup = cur.Reading.Group, true
			c.dropKeys = append(c.dropKeys, readingKeys(cur.Reading)...)
		}
	}
	if next.Reading != nil && !next.Deleted {
		c.addGroup, c.hasNewGroup = next.Reading.Group, true
		c.addKeys = append(c.addKeys, readingKeys(next.Reading)...)
	}
	if next.findable() {
		for _, k := range next.Keys {
			c.addKeys = append(c.addKeys, k.Key)
		}
	}
	for _, items := range next.Relations {
		for _, it := range items {
			c.addRelated = append(c.addRelated, it.EntityID)
		}
	}
	return c
}

// memStates keeps everything in maps: fast, restored from the whole changelog at every start.
type memStates struct {
	m map[string]*entityState
	// relatedFrom indexes m's relations backwards: related entity id -> ids relating to it.
	relatedFrom map[string]map[string]bool
	// readings indexes live meter readings by group (meter id / counter id).
	readings map[string]map[string]bool
	byKey    map[lookupKey]idSet
	// at is how far each changelog partition has been read or written (this process's lifetime).
	at map[int32]int64
}

func newMemStates() *memStates {
	return &memStates{m: map[string]*entityState{}, relatedFrom: map[string]map[string]bool{},
		readings: map[string]map[string]bool{}, byKey: map[lookupKey]idSet{}, at: map[int32]int64{}}
}

func (s *memStates) get(id string) *entityState { return s.m[id] }

func (s *memStates) apply(changes []stateChange, positions map[int32]int64, _ bool) error {
	for p, at := range positions {
		s.at[p] = at
	}
	for _, ch := range changes {
		cur := s.m[ch.id]
		if cur != nil && cur.Version > ch.st.Version {
			continue
		}
		d := indexDiff(cur, ch.st)
		for _, rel := range d.dropRelated {
			delete(s.relatedFrom[rel], ch.id)
		}
		for _, k := range d.dropKeys {
			if set := s.byKey[k].remove(ch.id); set.len() == 0 {
				delete(s.byKey, k)
			} else {
				s.byKey[k] = set
			}
		}
		if d.hadGroup {
			if group := s.readings[d.dropGroup]; group != nil {
				delete(group, ch.id)
				if len(group) == 0 {
					delete(s.readings, d.dropGroup)
				}
			}
		}
		if d.hasNewGroup {
			addToSet(s.readings, d.addGroup, ch.id)
		}
		for _, k := range d.addKeys {
			s.byKey[k] = s.byKey[k].add(ch.id)
		}
		for _, rel := range d.addRelated {
			addToSet(s.relatedFrom, rel, ch.id)
		}
		s.m[ch.id] = ch.st
	}
	return nil
}

func (s *memStates) eachWithKey(k lookupKey, fn func(id string) bool) { s.byKey[k].eachWhile(fn) }

func (s *memStates) countWithKey(k lookupKey, _ int) int { return s.byKey[k].len() }

func (s *memStates) eachRelating(id string, fn func(id string) bool) {
	for rel := range s.relatedFrom[id] {
		if !fn(rel) {
			return
		}
	}
}

func (s *memStates) eachReading(group string, fn func(id string) bool) {
	for id := range s.readings[group] {
		if !fn(id) {
			return
		}
	}
}

func (s *memStates) size() int                  { return len(s.m) }
func (s *memStates) positions() map[int32]int64 { return maps.Clone(s.at) }
func (s *memStates) close() error               { return nil }
