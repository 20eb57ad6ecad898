package processor

import (
	"fmt"
	"slices"
	"sort"
	"time"
	_ "time/tzdata" // Europe/Berlin on machines without a zoneinfo database

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/mapping"
)

// readingState is what matching and pruning need of a stored meter reading.
type readingState struct {
	Group      string `json:"g"` // meter id "/" counter id (empty without a counter)
	ExternalID string `json:"e,omitempty"`
	Day        string `json:"t,omitempty"` // Europe/Berlin calendar day of the timestamp
	Direction  string `json:"dir,omitempty"`
	Source     string `json:"src,omitempty"`
}

// berlin is the time zone whose calendar days strict-date matching compares.
var berlin = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		panic(err) // time/tzdata is embedded
	}
	return loc
}()

// berlinDay is the Europe/Berlin calendar day of a validated reading timestamp; one without an
// offset is read as UTC, like the date-only form (made midnight UTC by extraction).
func berlinDay(ts string) string {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, ts); err == nil {
			return t.In(berlin).Format(time.DateOnly)
		}
	}
	return ""
}

// text is the string form of a reading attribute: strings as they are, other values as JSON.
func text(attrs mapping.Attributes, name string) string {
	for _, a := range attrs {
		if a.Name == name {
			if s, ok := a.Value.(string); ok {
				return s
			}
			return mustJSON(a.Value)
		}
	}
	return ""
}

// readingGroup looks a reading's meter (and counter) up: both must exist, readings never create
// them. The group key names the pair.
func (a *application) readingGroup(meter mapping.EntityRef, counter *mapping.EntityRef) (group string, ids mapping.Attributes, _ *failure) {
	meterID, f := a.existing("meter", meter.UniqueIDs)
	if f != nil {
		return "", nil, f
	}
	ids = mapping.Attributes{{Name: "meter_id", Value: meterID}}
	group = meterID + "/"
	if counter != nil {
		counterID, f := a.existing("meter_counter", counter.UniqueIDs)
		if f != nil {
			return "", nil, f
		}
		ids = append(ids, mapping.Attribute{Name: "counter_id", Value: counterID})
		group += counterID
	}
	return group, ids, nil
}

func (a *application) existing(schema string, uniqueIDs mapping.Attributes) (string, *failure) {
	id, err := a.find(schema, uniqueIDs)
	if err != nil {
		return "", a.fail("METER_READING_GROUP_FAILED", "%v", err)
	}
	if !a.state(id).live() {
		return "", a.fail("METER_READING_GROUP_FAILED", "%s %s not found; readings never create meters or counters", schema, mustJSON(uniqueIDs))
	}
	return id, nil
}

// readingView is one meter-reading group as the running event sees it: its live readings,
// indexed by external id and by Europe/Berlin day and direction. Every incoming reading is
// matched against its group, so the store is read once per group and event and the matches are
// map lookups (an event of 1,000 readings for a meter with 35,000 stored read 35 million states).
// Readings are applied after the event's entities and prunes, so only the reading writes below
// change a group after it is read, and they go through setReading.
type readingView struct {
	live       map[string]*entityState
	byExternal idIndex
	byDay      idIndex // day and direction
}

// idIndex holds, per value, the ids of the readings that have it (almost always one).
type idIndex map[string][]string

func (x idIndex) add(value, id string) { x[value] = append(x[value], id) }

func (x idIndex) remove(value, id string) {
	ids := x[value]
	for i, have := range ids {
		if have == id {
			ids = append(ids[:i:i], ids[i+1:]...)
			break
		}
	}
	if len(ids) == 0 {
		delete(x, value)
	} else {
		x[value] = ids
	}
}

func dayKey(r *readingState) string { return r.Day + "\x00" + r.Direction }

func (v *readingView) put(id string, st *entityState) {
	if old, ok := v.live[id]; ok {
		v.byExternal.remove(old.Reading.ExternalID, id)
		v.byDay.remove(dayKey(old.Reading), id)
		delete(v.live, id)
	}
	if st.Deleted || st.Reading == nil {
		return
	}
	v.live[id] = st
	v.byExternal.add(st.Reading.ExternalID, id)
	if st.Reading.Day != "" {
		v.byDay.add(dayKey(st.Reading), id)
	}
}

// groupReadings returns the event's view of a group, reading it from the store the first time.
func (a *application) groupReadings(group string) *readingView {
	if v, ok := a.readingGroups[group]; ok {
		return v
	}
	v := &readingView{live: map[string]*entityState{}, byExternal: idIndex{}, byDay: idIndex{}}
	for id, st := range a.p.entities.readingsIn(group, a.changed) {
		v.put(id, st)
	}
	if a.readingGroups == nil {
		a.readingGroups = map[string]*readingView{}
	}
	a.readingGroups[group] = v
	return v
}

// setReading records a reading's new state among the event's changes and in its group's view.
func (a *application) setReading(group, id string, st *entityState) {
	a.changed[id] = st
	if v, ok := a.readingGroups[group]; ok {
		v.put(id, st)
	}
}

// matchReading finds the stored reading an incoming one updates: the one with its external id,
// else, under strict-date, the one of the same direction on the same Europe/Berlin day. n > 1
// is an ambiguous day match.
func (a *application) matchReading(group, matching, externalID, day, direction string) (id string, n int) {
	v := a.groupReadings(group)
	if ids := v.byExternal[externalID]; len(ids) > 0 {
		return firstID(ids), 1
	}
	if matching != "strict-date" || day == "" {
		return "", 0
	}
	sameDay := v.byDay[day+"\x00"+direction]
	if len(sameDay) == 1 {
		return firstID(sameDay), 1
	}
	return "", len(sameDay)
}

// firstID is the least of some ids: a stable choice.
func firstID(ids []string) string { return slices.Min(ids) }

// meterReadings applies the readings after the entities, then the
// prune plans of upsert-prune-scope entries.
func (a *application) meterReadings(readings []mapping.MeterReadingUpdate, prunes []mapping.ReadingPrune) *failure {
	org := a.ev.OrgID
	skippedEntries := map[int]bool{}
	for _, r := range readings {
		group, groupIDs, f := a.readingGroup(r.Meter, r.MeterCounter)
		if f != nil {
			return f
		}
		externalID := text(r.Attributes, "external_id")
		a.externalIDs = append(a.externalIDs, externalIDValue(r.Attributes))
		day := berlinDay(text(r.Attributes, "timestamp"))
		direction := text(r.Attributes, "direction")
		id, n := a.matchReading(group, r.Matching, externalID, day, direction)
		if n > 1 {
			a.warn("METER_READING_MULTIPLE_MATCHES", fmt.Sprintf("reading %s: %d stored readings of its counter on %s (Europe/Berlin) match; skipped", externalID, n, day))
			skippedEntries[r.Entry] = true
			continue
		}
		uniqueIDs := append(append(mapping.Attributes{}, groupIDs...), mapping.Attribute{Name: "external_id", Value: externalIDValue(r.Attributes)})
		if id == "" { // new: its id follows from meter, counter and external id
			id = (&mapping.EntityUpdate{EntitySlug: "meter_reading", UniqueIdentifiers: uniqueIDs}).EntityID(org)
		}
		cur := a.state(id)
		late := cur != nil && cur.Version > a.version
		if r.Mode == "delete" {
			// Deleting a reading is permanent (no recycle bin). The tombstone is written even for an
			// unknown one, so an older upsert still in flight cannot bring it back.
			if err := a.write("meter_reading", id, uniqueIDs, nil, envelope.OpPurge, a.version); err != nil {
				return a.fail("INVALID_METER_READING_ATTRIBUTES", "%v", err)
			}
			a.readingsDeleted++
			if !late {
				a.setReading(group, id, &entityState{Schema: "meter_reading", Deleted: true, Phantom: true, Version: a.version})
			}
			continue
		}
		attrs := append(mapping.Attributes{}, groupIDs...)
		for _, at := range r.Attributes {
			if at.Name != "meter_id" && at.Name != "counter_id" {
				attrs = append(attrs, at)
			}
		}
		if err := a.write("meter_reading", id, uniqueIDs, attrs, envelope.OpUpsert, a.version); err != nil {
			return a.fail("INVALID_METER_READING_ATTRIBUTES", "%v", err)
		}
		a.readingsUpserted++
		if !late {
			a.setReading(group, id, &entityState{Schema: "meter_reading", Version: a.version, Reading: &readingState{
				Group: group, ExternalID: externalID, Day: day, Direction: direction, Source: text(r.Attributes, "source")}})
		}
	}
	for _, pr := range prunes {
		if skippedEntries[pr.Entry] {
			a.warn("METER_READING_PRUNE_SKIPPED", fmt.Sprintf("meter_readings[%d]: a reading was skipped, so nothing of its scope is pruned", pr.Entry))
			continue
		}
		group, _, f := a.readingGroup(pr.Meter, pr.MeterCounter)
		if f != nil {
			a.warn("METER_READING_PRUNE_SKIPPED", f.message+"; nothing pruned")
			continue
		}
		keep := map[string]bool{}
		for _, v := range pr.KeepExternalIDs {
			if s, ok := v.(string); ok {
				keep[s] = true
			} else {
				keep[mustJSON(v)] = true
			}
		}
		inScope := a.groupReadings(group).live
		ids := make([]string, 0, len(inScope))
		for id := range inScope {
			ids = append(ids, id)
		}
		sort.Strings(ids) // writes in a stable order
		for _, id := range ids {
			st := inScope[id]
			if keep[st.Reading.ExternalID] || (pr.Source != "" && st.Reading.Source != pr.Source) {
				continue
			}
			_ = a.write("meter_reading", id, nil, nil, envelope.OpPurge, a.version)
			a.setReading(group, id, &entityState{Schema: "meter_reading", Deleted: true, Phantom: true, Version: a.version})
			a.readingsDeleted++
		}
	}
	return nil
}

func externalIDValue(attrs mapping.Attributes) any {
	for _, a := range attrs {
		if a.Name == "external_id" {
			return a.Value
		}
	}
	return nil
}
