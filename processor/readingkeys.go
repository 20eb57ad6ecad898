package processor

// Meter readings are matched by their counter's group and external id, or under strict-date by
// group, Europe/Berlin day and direction. The store indexes both as lookup keys derived from the
// reading's state (indexDiff), so a match reads the readings with that key, not the whole group,
// and states written by any version are indexed when they are stored or read from the changelog.

// readingKeyOrg stands where an org is in an attribute's lookup key: readings are keyed by their
// group (meter and counter ids, which derive from the org), and a state read for a key is checked
// against the reading it must be, so a colliding key costs a read, never a wrong match.
const readingKeyOrg = "\x00reading"

func readingExternalKey(group, externalID string) lookupKey {
	return keyOf(readingKeyOrg, group, "external_id", externalID)
}

func readingDayKey(group, day, direction string) lookupKey {
	return keyOf(readingKeyOrg, group, "day", day+"\x00"+direction)
}

// readingKeys are the keys a live reading is found by.
func readingKeys(r *readingState) []lookupKey {
	keys := []lookupKey{readingExternalKey(r.Group, r.ExternalID)}
	if r.Day != "" {
		keys = append(keys, readingDayKey(r.Group, r.Day, r.Direction))
	}
	return keys
}

// liveReading is st when it is a live reading of group.
func liveReading(st *entityState, group string) *readingState {
	if st == nil || st.Deleted || st.Reading == nil || st.Reading.Group != group {
		return nil
	}
	return st.Reading
}

// readingsWithKey returns the live readings of group under key k that match, from the committed
// states, the open transaction's and the running event's (eventIDs: the readings it wrote under k;
// overlay: its changes, which win over the store's).
func (s *entityStore) readingsWithKey(k lookupKey, group string, eventIDs []string, overlay map[string]*entityState,
	match func(*readingState) bool) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	seen := map[string]bool{}
	var out []string
	consider := func(id string) bool {
		if !seen[id] {
			seen[id] = true
			if r := liveReading(s.currentLocked(id, overlay), group); r != nil && match(r) {
				out = append(out, id)
			}
		}
		return true
	}
	for _, id := range eventIDs {
		consider(id)
	}
	s.stagedByKey[k].eachWhile(consider)
	s.committed.eachWithKey(k, consider)
	return out
}
