package processor

import (
	"fmt"
	"hash/fnv"
	"maps"
	"reflect"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/mapping"
)

// application is the apply stage of one event: it turns the extraction
// into entity writes against the entity state. Its state changes stay local until the event
// has mapped without error; later updates of the event see earlier ones.
type application struct {
	p        *Processor
	ev       *envelope.Event
	uc       *registry.UseCase
	now      int64  // written_at of the writes, ms
	version  uint64 // the event's receive time, µs: orders writes of one entity
	settings *integrationSettings
	// partition is the event's events partition: its state records go to the same partition of
	// the entity-state topic, which the instance owning the org's events restores.
	partition int32

	outs     []*kgo.Record
	written  []writtenEntity // the monitoring detail's list of writes
	changed  map[string]*entityState
	warnings []string
	warnCode string

	deleted, noops int
	unchanged      int // upserts that would have written what the entity's last write did
	// created and changedExisting count the event's writes by what they did to their entity:
	// an event whose every write created its entity is ENTITY_CREATED, not ENTITY_UPDATED.
	created, changedExisting int
	pruned                   []string
	readingsUpserted         int
	readingsDeleted          int
	externalIDs              []any
	// eventReadings indexes the meter readings the event wrote by their keys (readingKeys).
	eventReadings map[lookupKey][]string
	// changedByKey indexes changed's findable states by lookup key: a lookup reads the event's
	// own entities through it instead of every state the event changed (an event of 10,000 new
	// entities would otherwise check 50 million).
	changedByKey map[lookupKey][]string
}

// writtenEntity is one entry of a monitoring row's detail.entities.
type writtenEntity struct {
	Schema string            `json:"entity_schema"`
	ID     string            `json:"entity_id"`
	Op     envelope.EntityOp `json:"op"`
}

// stubVersion is below every real write's version (a receive time in µs): a placeholder for a
// related entity never overrides the entity's real state, whichever is projected first.
const stubVersion = 1

// failure ends an event as an error; nothing of it is written.
type failure struct{ code, message string }

func (a *application) fail(code, format string, args ...any) *failure {
	return &failure{code: code, message: "use case " + a.uc.Slug + ": " + fmt.Sprintf(format, args...)}
}

// setChanged records an entity's new state among the event's changes (which win over the
// store's) and indexes its lookup keys; every change of an entity goes through it.
func (a *application) setChanged(id string, st *entityState) {
	a.changed[id] = st
	if !st.findable() {
		return
	}
	if a.changedByKey == nil {
		a.changedByKey = map[lookupKey][]string{}
	}
	for _, k := range st.Keys {
		a.changedByKey[k.Key] = append(a.changedByKey[k.Key], id)
	}
}

func (a *application) state(id string) *entityState {
	if st, ok := a.changed[id]; ok {
		return st
	}
	return a.p.entities.get(id)
}

func (a *application) warn(code, msg string) {
	if a.warnCode == "" {
		a.warnCode = code
	}
	a.warnings = append(a.warnings, msg)
}

// change names what a write does to the entity, from its state before the write (callers stage
// the new state after writing): a placeholder, a delete of what is not there and a late write
// under a newer delete change nothing a catalog subscriber could see.
func (a *application) change(id string, op envelope.EntityOp, version uint64) string {
	if version == stubVersion {
		return ""
	}
	cur := a.state(id)
	late := cur != nil && cur.Version > version
	switch {
	case op != envelope.OpUpsert:
		if cur.live() && !late {
			return envelope.ChangeDeleted
		}
		return ""
	case cur.live():
		return envelope.ChangeUpdated
	case late:
		return ""
	default:
		return envelope.ChangeCreated
	}
}

// write emits one entity write.
func (a *application) write(schema, entityID string, uniqueIDs, attrs mapping.Attributes, op envelope.EntityOp, version uint64) error {
	ab, err := attrs.MarshalJSON()
	if err != nil {
		return err
	}
	return a.writeJSON(schema, entityID, uniqueIDs, ab, op, version)
}

func (a *application) writeJSON(schema, entityID string, uniqueIDs mapping.Attributes, ab []byte, op envelope.EntityOp, version uint64) error {
	uids, err := uniqueIDs.MarshalJSON()
	if err != nil {
		return err
	}
	ev := a.ev
	w := envelope.EntityWrite{
		OrgID: ev.OrgID, EntitySchema: schema, EntityID: entityID, Op: op,
		UniqueIdentifiers: uids, Attributes: ab, Version: version,
		IntegrationID: ev.IntegrationID, UseCaseID: ev.UseCaseID, EventID: ev.EventID,
		CorrelationID: ev.CorrelationID, WrittenAtMs: a.now, Change: a.change(entityID, op, version),
	}
	switch w.Change {
	case envelope.ChangeCreated:
		a.created++
	case envelope.ChangeUpdated, envelope.ChangeDeleted:
		a.changedExisting++
	}
	b := w.AppendJSON(make([]byte, 0, 384+len(ab)+len(uids)))
	a.outs = append(a.outs, &kgo.Record{Topic: a.p.cfg.Topics.Entities, Key: []byte(ev.OrgID + "/" + entityID), Value: b,
		Headers: envelope.Headers(ev)})
	a.written = append(a.written, writtenEntity{Schema: schema, ID: entityID, Op: op})
	return nil
}

func (a *application) emit(id string, u mapping.EntityUpdate, attrs mapping.Attributes, op envelope.EntityOp, version uint64) *failure {
	if err := a.write(u.EntitySlug, id, u.UniqueIdentifiers, attrs, op, version); err != nil {
		return a.fail("ATTRIBUTE_TYPE_MISMATCH", "entity %s: %v", u.EntitySlug, err)
	}
	return nil
}

// resolve looks an update's related entities up.
func (a *application) resolve(u mapping.EntityUpdate) (mapping.Attributes, []mapping.EntityUpdate, *failure) {
	attrs, stubs, err := u.Resolve(a.ev.OrgID, a.findOrDerive)
	if err != nil {
		return nil, nil, a.fail("UNIQUE_ID_MULTIPLE_MATCHES", "entity %s %s, related entity of %v", u.EntitySlug, uniqueIDsText(u), err)
	}
	return attrs, stubs, nil
}

// entities applies the entity updates in order: lookup, then delete, or upsert with relations.
func (a *application) entities(updates []mapping.EntityUpdate) *failure {
	org := a.ev.OrgID
	for _, u := range updates {
		if f := a.unknownSchemas(u); f != nil {
			return f
		}
		mapping.ResolveFileProxyURLs(u.Attributes, a.p.cfg.FileProxyBaseURL, org, a.ev.IntegrationID, a.p.cfg.SignLink)
		// A new entity's id follows from its unique ids.
		id, _, err := a.findOrDerive(u.EntitySlug, u.UniqueIdentifiers)
		if err != nil {
			return a.fail("UNIQUE_ID_MULTIPLE_MATCHES", "entity %s: %v", u.EntitySlug, err)
		}
		cur := a.state(id)
		// Events of one entity can sit in different partitions and be mapped out of order. A late
		// event (older than the state) is written as it is, and ClickHouse keeps the newer version;
		// it neither reads nor changes the state.
		late := cur != nil && cur.Version > a.version
		var f *failure
		switch {
		case u.Mode == "delete" || u.Mode == "purge":
			f = a.remove(u, id, cur, late)
		case late:
			f = a.lateUpsert(u, id, cur)
		default:
			f = a.upsert(u, id, cur)
		}
		if f != nil {
			return f
		}
	}
	return nil
}

// remove deletes (soft) or purges an entity.
func (a *application) remove(u mapping.EntityUpdate, id string, cur *entityState, late bool) *failure {
	op := envelope.OpDelete
	if u.Mode == "purge" {
		op = envelope.OpPurge
	}
	// The tombstone is written even when the entity is unknown or deleted already (then the
	// outcome is a no-op): an older upsert still in flight must not resurrect it.
	if f := a.emit(id, u, u.Attributes, op, a.version); f != nil {
		return f
	}
	if !late && !cur.live() {
		a.noops++
	} else {
		a.deleted++
	}
	if !late {
		// A purged entity is gone for good: matching it later is no restore.
		next := &entityState{Schema: u.EntitySlug, Deleted: true, Version: a.version,
			Phantom: op == envelope.OpPurge || (!cur.live() && !cur.softDeleted())}
		if cur != nil {
			next.Relations, next.RelRefs = cur.Relations, cur.RelRefs
			if !next.Phantom { // a soft-deleted entity is still found, and restorable
				next.Keys, next.Arrays = cur.Keys, cur.Arrays
			}
		}
		a.setChanged(id, next)
	}
	return nil
}

// lateUpsert writes an event older than the entity's state: as it is, without reading or
// changing the state (ClickHouse keeps the newer version).
func (a *application) lateUpsert(u mapping.EntityUpdate, id string, cur *entityState) *failure {
	attrs, stubs, f := a.resolve(u)
	if f != nil {
		return f
	}
	// Appends do not depend on order: a late event's appended items are merged into the entity's
	// current list and written as a write of their own above the state's version (in the late
	// write, the projector would rightly let the newer list win). References need the state the
	// late event cannot read: they are left out.
	next := *cur
	next.raw = nil // encoded afresh by finish
	next.Relations = maps.Clone(cur.Relations)
	var appended mapping.Attributes
	kept := attrs[:0]
	for i, at := range attrs {
		switch v := at.Value.(type) {
		case *mapping.RelationRef:
			continue
		case *mapping.ResolvedRelation:
			op := u.Attributes[i].Value.(*mapping.Relation).Operation
			if cur.live() && (op == "_append" || op == "_append_all") {
				merged := mapping.MergeRelation(op, cur.Relations[at.Name], v.Items)
				if !reflect.DeepEqual(merged, cur.Relations[at.Name]) {
					appended = append(appended, mapping.Attribute{Name: at.Name, Value: &mapping.ResolvedRelation{Items: merged}})
					next.Relations[at.Name] = merged
				}
				continue
			}
		}
		kept = append(kept, at)
	}
	if f := a.emit(id, u, kept, envelope.OpUpsert, a.version); f != nil {
		return f
	}
	if len(appended) > 0 {
		next.Version, next.LastWrite = cur.Version+1, 0
		if f := a.emit(id, u, appended, envelope.OpUpsert, next.Version); f != nil {
			return f
		}
		a.setChanged(id, &next)
	}
	a.placeholders(stubs)
	return nil
}

// placeholders writes a placeholder for each related entity not found (the deferred
// creation), unless one is there already.
func (a *application) placeholders(stubs []mapping.EntityUpdate) {
	org := a.ev.OrgID
	for _, st := range stubs {
		sid := st.EntityID(org)
		if a.state(sid) != nil {
			continue // a placeholder is there already
		}
		_ = a.emit(sid, st, st.Attributes, envelope.OpUpsert, stubVersion)
		a.setChanged(sid, &entityState{Schema: st.EntitySlug, Placeholder: true, Version: stubVersion,
			Keys: a.keysFor(st.EntitySlug, nil, st.Attributes)})
	}
}

// upsert creates or patches an entity: relations, references, pricing, element ids, lookup keys.
func (a *application) upsert(u mapping.EntityUpdate, id string, cur *entityState) *failure {
	if u.Mode == mapping.ModeCreate && cur.live() {
		return a.fail("ENTITY_ALREADY_EXISTS", "CREATE of %s %s, which exists", u.EntitySlug, uniqueIDsText(u))
	}
	if cur.softDeleted() {
		a.warn("SOFT_DELETED_ENTITY_MATCHED", fmt.Sprintf("%s %s was deleted; the upsert restores it", u.EntitySlug, uniqueIDsText(u)))
	}
	attrs, stubs, f := a.resolve(u)
	if f != nil {
		return f
	}
	if u.Pricing != nil {
		if attrs, f = a.pricing(u, attrs); f != nil {
			return f
		}
	}
	next := &entityState{Schema: u.EntitySlug, Version: a.version, Relations: map[string][]mapping.ResolvedRelationItem{}}
	var keys attrKeys
	if cur.findable() {
		keys = cur.Keys
		next.Arrays = maps.Clone(cur.Arrays)
	}
	next.Keys = a.keysFor(u.EntitySlug, keys, attrs)
	if u.EntitySlug == priceSchema {
		var facts *priceFacts
		if cur.findable() {
			facts = cur.Price
		}
		next.Price = capturePrice(facts, attrs)
	}
	a.withElementIDs(u.EntitySlug, id, attrs, next)
	if cur.live() {
		for k, v := range cur.Relations {
			next.Relations[k] = v
		}
		next.RelRefs = maps.Clone(cur.RelRefs)
	}
	for i, at := range u.Attributes {
		rel, ok := at.Value.(*mapping.Relation)
		if !ok {
			continue
		}
		items := attrs[i].Value.(*mapping.ResolvedRelation).Items
		if cur.live() { // on a new entity both appends are _set
			items = mapping.MergeRelation(rel.Operation, cur.Relations[at.Name], items)
		}
		attrs[i].Value = &mapping.ResolvedRelation{Items: items}
		next.Relations[at.Name] = items
	}
	for i, at := range u.Attributes {
		ref, ok := at.Value.(*mapping.RelationRef)
		if !ok {
			continue
		}
		entries, f := a.relationRefs(u, at.Name, ref)
		if f != nil {
			return f
		}
		if cur.live() { // on a new entity both appends are _set
			entries = mapping.MergeRelationRefs(ref.Operation, cur.RelRefs[at.Name], entries)
		}
		attrs[i].Value = &mapping.ResolvedRelationRef{Items: entries}
		if next.RelRefs == nil {
			next.RelRefs = map[string][]mapping.RelationRefEntry{}
		}
		next.RelRefs[at.Name] = entries
	}
	ab, err := attrs.MarshalJSON()
	if err != nil {
		return a.fail("ATTRIBUTE_TYPE_MISMATCH", "entity %s: %v", u.EntitySlug, err)
	}
	// An upsert that would write exactly what this use case last wrote to the entity changes
	// nothing: nightly full syncs re-send mostly unchanged
	// records. Replays always write: they are how operators repair what went wrong downstream.
	next.LastWrite = writeHash(a.ev.UseCaseID, ab)
	if cur.live() && cur.LastWrite == next.LastWrite && !a.ev.Replay && len(stubs) == 0 {
		a.unchanged++
		if !sameKeys(cur.Keys, next.Keys) { // a configuration made another attribute searchable
			next.Version = cur.Version
			a.setChanged(id, next)
		}
		return nil
	}
	if err := a.writeJSON(u.EntitySlug, id, u.UniqueIdentifiers, ab, envelope.OpUpsert, a.version); err != nil {
		return a.fail("ATTRIBUTE_TYPE_MISMATCH", "entity %s: %v", u.EntitySlug, err)
	}
	a.setChanged(id, next)
	a.placeholders(stubs)
	return nil
}

// knownSchema: with settings.entity_schemas the integration declares the schemas it writes and
// relates to (erpstream has no schema registry of its own); without, every schema is known.
func (a *application) knownSchema(schema string) bool {
	return a.settings.schemas == nil || a.settings.schemas[schema]
}

// unknownSchemas fails an update whose schema, or whose relations' or references' schemas, the
// integration does not declare: typically a typo in a relation's JSONata.
func (a *application) unknownSchemas(u mapping.EntityUpdate) *failure {
	if !a.knownSchema(u.EntitySlug) {
		return a.fail("ENTITY_SCHEMA_UNKNOWN", "entity %s %s: schema %q is not in the integration's settings.entity_schemas",
			u.EntitySlug, uniqueIDsText(u), u.EntitySlug)
	}
	for _, at := range u.Attributes {
		var related []string
		switch v := at.Value.(type) {
		case *mapping.Relation:
			for _, it := range v.Items {
				related = append(related, it.Schema)
			}
		case *mapping.RelationRef:
			for _, it := range v.Items {
				related = append(related, it.Related.Schema)
			}
		}
		for _, schema := range related {
			if !a.knownSchema(schema) {
				return a.fail("RELATION_SCHEMA_UNKNOWN", "entity %s %s, field %s: related schema %q is not in the integration's settings.entity_schemas",
					u.EntitySlug, uniqueIDsText(u), at.Name, schema)
			}
		}
	}
	return nil
}

// prunes applies the upsert-prune-scope plans, after the upserts: the entities
// of the scope that the entry did not upsert are deleted or purged. The scope is the entities
// related to the scope entity (either direction), or those whose attributes match the query.
func (a *application) prunes(plans []mapping.PruneScopeUpdate) *failure {
	for _, pu := range plans {
		var inScope []string
		if pu.Scope.ScopeMode == "query" {
			limit := a.p.cfg.MaxPruneScope
			found := a.search(pu.EntitySlug, pu.Scope.Query, limit+1)
			if len(found) > limit {
				return a.fail("MAPPING_LIMIT_EXCEEDED", "prune scope of %s: more than %d entities match %s; nothing of the event is written",
					pu.EntitySlug, limit, mustJSON(pu.Scope.Query))
			}
			for _, id := range found {
				if a.state(id).live() {
					inScope = append(inScope, id)
				}
			}
		} else {
			scopeID, err := a.find(pu.Scope.Schema, pu.Scope.UniqueIDs)
			if err != nil {
				return a.fail("UNIQUE_ID_MULTIPLE_MATCHES", "scope of %s: %v", pu.EntitySlug, err)
			}
			if !a.state(scopeID).live() {
				a.warn("PRUNE_SCOPE_PARTIAL_FAILURE", fmt.Sprintf("scope %s %s not found; nothing pruned", pu.Scope.Schema, mustJSON(pu.Scope.UniqueIDs)))
				continue
			}
			var ok bool
			if inScope, ok = a.p.entities.inScope(scopeID, pu.EntitySlug, a.changed, a.p.cfg.MaxPruneScope); !ok {
				return a.fail("MAPPING_LIMIT_EXCEEDED", "prune scope of %s: %s %s has more than %d related entities; nothing of the event is written",
					pu.EntitySlug, pu.Scope.Schema, mustJSON(pu.Scope.UniqueIDs), a.p.cfg.MaxPruneScope)
			}
		}
		keep := map[string]bool{}
		for _, uids := range pu.KeepUniqueIDs {
			id, _ := a.find(pu.EntitySlug, uids) // upserted just before: found
			keep[id] = true
		}
		op := envelope.OpDelete
		if pu.DeletionMode == "purge" {
			op = envelope.OpPurge
		}
		for _, id := range inScope {
			cur := a.state(id)
			// A member written by a newer event (this one is late: a spread org's, a replay) is
			// not this event's to prune; deleting it would also set its state back in time.
			if keep[id] || cur.Version > a.version {
				continue
			}
			_ = a.write(pu.EntitySlug, id, nil, nil, op, a.version)
			next := &entityState{Schema: pu.EntitySlug, Deleted: true, Version: a.version, Phantom: op == envelope.OpPurge, Relations: cur.Relations}
			if op == envelope.OpDelete {
				next.Keys = cur.Keys
			}
			a.setChanged(id, next)
			a.pruned = append(a.pruned, id)
		}
	}
	return nil
}

// writeHash identifies what a use case wrote to an entity.
func writeHash(useCaseID string, attrs []byte) uint64 {
	h := fnv.New64a()
	h.Write([]byte(useCaseID))
	h.Write([]byte{0})
	h.Write(attrs)
	return h.Sum64()
}

func sameKeys(a, b attrKeys) bool {
	if len(a) != len(b) {
		return false
	}
	for _, k := range a {
		if !b.has(k.Key) {
			return false
		}
	}
	return true
}

// finish stages the event's state changes and returns its monitoring outcome.
func (a *application) finish(res *mapping.Extraction) ([]*kgo.Record, outcome) {
	states := make(map[string]*entityState, len(a.changed))
	for id, st := range a.changed {
		st.Org = a.ev.OrgID
		b, err := st.appendJSON(make([]byte, 0, 256))
		if err != nil {
			return nil, outcome{useCaseType: a.uc.Type, level: envelope.LevelError, code: "ATTRIBUTE_TYPE_MISMATCH",
				message: fmt.Sprintf("use case %s: entity %s: state not encodable: %v", a.uc.Slug, id, err)}
		}
		st.raw = b
		a.outs = append(a.outs, &kgo.Record{Topic: a.p.cfg.Topics.EntityState, Partition: a.partition, Key: []byte(id), Value: b,
			Headers: a.p.entities.writtenBy(st.Version)})
		states[id] = st
	}
	// A record the broker would refuse would abort the transaction again and again and stall the
	// pipeline: the event fails instead, and nothing of it is written.
	for _, r := range a.outs {
		if n := len(r.Key) + len(r.Value); n > a.p.cfg.MaxRecordBytes {
			return nil, outcome{useCaseType: a.uc.Type, level: envelope.LevelError, code: "ENTITY_TOO_LARGE",
				message: fmt.Sprintf("use case %s: a %s record of %d bytes (key %.80s) is over the %d-byte limit; typically a relation list grown too long",
					a.uc.Slug, r.Topic, n, r.Key, a.p.cfg.MaxRecordBytes)}
		}
	}
	for id, st := range states {
		a.p.entities.stage(id, st)
	}
	for _, w := range res.Warnings {
		a.warn("METER_READING_PRUNE_SKIPPED", w.Message)
	}
	updates, readings := res.Entities, res.MeterReadings
	o := outcome{useCaseType: a.uc.Type, level: envelope.LevelSuccess}
	switch {
	case len(a.warnings) > 0:
		o.level, o.code, o.message = envelope.LevelWarning, a.warnCode, strings.Join(a.warnings, "; ")
	case len(updates) == 0 && len(readings)+len(res.ReadingPrunes) > 0 && a.readingsUpserted == 0:
		o.code, o.message = "METER_READING_DELETED", strconv.Itoa(a.readingsDeleted)+" meter reading(s) deleted"
	case len(updates) == 0 && len(readings) > 0:
		o.code, o.message = "METER_READING_UPSERTED", strconv.Itoa(a.readingsUpserted)+" meter reading(s) applied"
		if a.readingsDeleted > 0 {
			o.message += ", " + strconv.Itoa(a.readingsDeleted) + " pruned"
		}
	case len(res.Prunes) > 0:
		o.code = "PRUNE_SCOPE_COMPLETED"
		o.message = fmt.Sprintf("%d entity update(s) applied, %d entit(ies) pruned from the scope", len(updates)-a.noops-a.unchanged, len(a.pruned))
	case len(updates) == a.noops+a.unchanged:
		o.code, o.message = "ENTITY_NO_OP", "the mapping produced no entity updates"
		var parts []string
		if a.unchanged > 0 {
			parts = append(parts, strconv.Itoa(a.unchanged)+" upsert(s) identical to the entity's last write")
		}
		if a.noops > 0 {
			parts = append(parts, strconv.Itoa(a.noops)+" delete(s) of entities that did not exist or were deleted already")
		}
		if len(parts) > 0 {
			o.message = strings.Join(parts, "; ") + ": nothing written"
		}
	case a.deleted == len(updates)-a.noops-a.unchanged:
		o.code, o.message = "ENTITY_DELETED", strconv.Itoa(a.deleted)+" entity update(s) applied"
	case a.created > 0 && a.changedExisting == 0:
		o.code, o.message = "ENTITY_CREATED", strconv.Itoa(len(updates)-a.noops-a.unchanged)+" entity update(s) applied"
	default:
		o.code, o.message = "ENTITY_UPDATED", strconv.Itoa(len(updates)-a.noops-a.unchanged)+" entity update(s) applied"
	}
	// The monitoring row lists the writes, the first 1,000 of a large fan-out (a row must stay small).
	const listed = 1000
	o.detail = map[string]any{"entities": a.written[:min(len(a.written), listed)], "use_case_version": a.uc.Version}
	if len(a.written) > listed {
		o.detail["entities_total"] = len(a.written)
	}
	if len(readings)+len(res.ReadingPrunes) > 0 {
		o.detail["reading_count"], o.detail["external_ids"] = len(readings), a.externalIDs[:min(len(a.externalIDs), listed)]
	}
	if len(res.Prunes) > 0 {
		o.detail["pruned"] = a.pruned[:min(len(a.pruned), listed)]
		if len(a.pruned) > listed {
			o.detail["pruned_total"] = len(a.pruned)
		}
	}
	return a.outs, o
}
