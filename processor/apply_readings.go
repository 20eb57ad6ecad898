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

// setReading records a reading's new state among the event's changes; a live one is indexed
// for the event's later readings (readingsWithKey reads the store's index for the others).
func (a *application) setReading(id string, st *entityState) {
	a.changed[id] = st
	if st.Reading == nil || st.Deleted {
		return
	}
	if a.eventReadings == nil {
		a.eventReadings = map[lookupKey][]string{}
	}
	for _, k := range readingKeys(st.Reading) {
		a.eventReadings[k] = append(a.eventReadings[k], id)
	}
}

// matchReading finds the stored reading an incoming one updates: the one with its external id,
// else, under strict-date, the one of the same direction on the same Europe/Berlin day. n > 1
// is an ambiguous day match. Both are index reads (readingkeys.go): a counter with years of
// readings costs a match what one with a day of them does.
func (a *application) matchReading(group, matching, externalID, day, direction string) (id string, n int) {
	byExternal := readingExternalKey(group, externalID)
	if ids := a.p.entities.readingsWithKey(byExternal, group, a.eventReadings[byExternal], a.changed,
		func(r *readingState) bool { return r.ExternalID == externalID }); len(ids) > 0 {
		return slices.Min(ids), 1
	}
	if matching != "strict-date" || day == "" {
		return "", 0
	}
	byDay := readingDayKey(group, day, direction)
	sameDay := a.p.entities.readingsWithKey(byDay, group, a.eventReadings[byDay], a.changed,
		func(r *readingState) bool { return r.Day == day && r.Direction == direction })
	if len(sameDay) == 1 {
		return sameDay[0], 1
	}
	return "", len(sameDay)
}

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
				a.setReading(id, &entityState{Schema: "meter_reading", Deleted: true, Phantom: true, Version: a.version})
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
			a.setReading(id, &entityState{Schema: "meter_reading", Version: a.version, Reading: &readingState{
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
		inScope, ok := a.p.entities.readingsIn(group, a.changed, a.p.cfg.MaxPruneScope)
		if !ok {
			return a.fail("MAPPING_LIMIT_EXCEEDED", "meter_readings[%d]: the counter holds more than %d readings to prune from; nothing of the event is written",
				pr.Entry, a.p.cfg.MaxPruneScope)
		}
		ids := make([]string, 0, len(inScope))
		for id := range inScope {
			ids = append(ids, id)
		}
		sort.Strings(ids) // writes in a stable order
		for _, id := range ids {
			st := inScope[id]
			// A reading written by a newer event is not a late event's to prune (as for entities).
			if keep[st.Reading.ExternalID] || (pr.Source != "" && st.Reading.Source != pr.Source) || st.Version > a.version {
				continue
			}
			_ = a.write("meter_reading", id, nil, nil, envelope.OpPurge, a.version)
			a.setReading(id, &entityState{Schema: "meter_reading", Deleted: true, Phantom: true, Version: a.version})
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
