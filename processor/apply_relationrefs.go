package processor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/erpstream/erpstream/internal/jsonata"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/mapping"
)

// Relation references point at one element of a repeatable attribute of another
// entity (typically an address) by the element's _id. The processor keeps the elements of every
// attribute relation_refs write into, with their _ids, in the entity state: a write of such an
// attribute (by the entity's own mapping or by a reference) matches incoming elements to stored
// ones by deep equality ignoring _id, keeps their _ids and gives new elements new ones.

// refElement is one stored element: its _id and its canonical JSON without the _id.
type refElement struct {
	ID   string `json:"i"`
	Body string `json:"b"`
}

// canonicalElement is an element's JSON without _id, keys sorted, numbers as written; ok is false
// for anything but an object.
func canonicalElement(v any) (body, id string, ok bool) {
	var raw []byte
	var err error
	if m, isMarshaler := v.(json.Marshaler); isMarshaler {
		raw, err = m.MarshalJSON()
	} else {
		raw, err = jsonata.MarshalValue(v)
	}
	if err != nil {
		return "", "", false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var obj map[string]any
	if dec.Decode(&obj) != nil || obj == nil {
		return "", "", false
	}
	id, _ = obj["_id"].(string)
	delete(obj, "_id")
	b, err := json.Marshal(obj)
	if err != nil {
		return "", "", false
	}
	return string(b), id, true
}

// newElementID is deterministic, so a replay gives an element the _id it had.
func newElementID(entityID, attribute, body string, occurrence int) string {
	return ids.NameUUID("element", entityID, attribute, body, strconv.Itoa(occurrence))
}

// elementsJSON writes elements as [{"_id": …, …}].
func elementsJSON(elems []refElement) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range elems {
		if i > 0 {
			b.WriteByte(',')
		}
		id, _ := json.Marshal(e.ID)
		b.WriteString(`{"_id":`)
		b.Write(id)
		if e.Body != "{}" {
			b.WriteByte(',')
			b.WriteString(e.Body[1:])
		} else {
			b.WriteByte('}')
		}
	}
	b.WriteByte(']')
	return b.Bytes()
}

// assignIDs gives a written array its elements' _ids: an element that carries one keeps it, one
// equal to a stored element takes that element's, others get new ones. ok is false when the
// value is not an object or an array of objects (it is then written as it is).
func assignIDs(entityID, attribute string, stored []refElement, value any) (out []refElement, ok bool) {
	items := []any{value}
	if arr, isArray := value.(*jsonata.Array); isArray {
		items = arr.Items
	}
	used := map[int]bool{}
	seen := map[string]int{}
	for _, el := range items {
		body, id, isObject := canonicalElement(el)
		if !isObject {
			return nil, false
		}
		if id == "" {
			for j, s := range stored {
				if !used[j] && s.Body == body {
					used[j], id = true, s.ID
					break
				}
			}
		}
		if id == "" {
			id = newElementID(entityID, attribute, body, seen[body])
		}
		seen[body]++
		out = append(out, refElement{ID: id, Body: body})
	}
	return out, true
}

// writeRefValue applies a reference's value operation to the stored elements: _set makes the
// value the only element, _append adds it unless an equal element exists, _append_all always
// adds it. target is the _id of the element the reference points at.
func writeRefValue(operation, entityID, attribute string, stored []refElement, value any) (out []refElement, target string, ok bool) {
	body, id, isObject := canonicalElement(value)
	if !isObject {
		return nil, "", false
	}
	equal := -1
	occurrences := 0
	for j, s := range stored {
		if s.Body == body {
			if equal < 0 {
				equal = j
			}
			occurrences++
		}
	}
	switch {
	case operation == "_set" && equal >= 0:
		return []refElement{stored[equal]}, stored[equal].ID, true
	case operation == "_append" && equal >= 0:
		return stored, stored[equal].ID, true
	}
	if id == "" {
		id = newElementID(entityID, attribute, body, occurrences)
	}
	e := refElement{ID: id, Body: body}
	if operation == "_set" {
		return []refElement{e}, id, true
	}
	return append(append([]refElement(nil), stored...), e), id, true
}

// withElementIDs gives the update's attributes that references point into their _ids (assignIDs),
// recording the elements in next.
func (a *application) withElementIDs(schema, id string, attrs mapping.Attributes, next *entityState) {
	targets := a.p.orgAttributes(a.ev.OrgID).refTargets[schema]
	if len(targets) == 0 {
		return
	}
	for i, at := range attrs {
		if !targets[at.Name] {
			continue
		}
		if next.Arrays == nil {
			next.Arrays = map[string][]refElement{}
		}
		elems, ok := assignIDs(id, at.Name, next.Arrays[at.Name], at.Value)
		if !ok {
			delete(next.Arrays, at.Name)
			continue
		}
		attrs[i].Value = elementsJSON(elems)
		next.Arrays[at.Name] = elems
	}
}

// relationRefs resolves one relation_refs attribute: per item, find (or create
// as a placeholder) the related entity, write the value into its attribute with the value's
// operation, and refer to the element's _id.
func (a *application) relationRefs(owner mapping.EntityUpdate, attribute string, ref *mapping.RelationRef) ([]mapping.RelationRefEntry, *failure) {
	out := []mapping.RelationRefEntry{}
	for _, it := range ref.Items {
		rel := it.Related
		if it.Value == nil {
			a.warn("RELATION_REF_VALUE_UNDEFINED", fmt.Sprintf("%s.%s: the value for %s %s is undefined; reference skipped",
				owner.EntitySlug, attribute, rel.Schema, mustJSON(rel.UniqueIDs)))
			continue
		}
		relID, _, err := a.findOrDerive(rel.Schema, rel.UniqueIDs)
		if err != nil {
			return nil, a.fail("UNIQUE_ID_MULTIPLE_MATCHES", "entity %s %s, attribute %s: %v", owner.EntitySlug, uniqueIDsText(owner), attribute, err)
		}
		stub := mapping.RelationStub(rel)
		cur := a.state(relID)
		var stored []refElement
		if cur.findable() {
			stored = cur.Arrays[it.Attribute]
		}
		elems, target, ok := writeRefValue(it.Operation, relID, it.Attribute, stored, it.Value)
		if !ok {
			a.warn("RELATION_REF_ITEM_NOT_FOUND", fmt.Sprintf("%s.%s: the value for %s %s is not an object; reference skipped",
				owner.EntitySlug, attribute, rel.Schema, mustJSON(rel.UniqueIDs)))
			continue
		}
		if cur.findable() && slices.Equal(stored, elems) { // the element is there already
			out = append(out, mapping.RelationRefEntry{EntityID: relID, Path: it.Path, ID: target})
			continue
		}
		// A placeholder's writes stay below any real write's version, as placeholders do.
		next := &entityState{Schema: rel.Schema, Placeholder: true, Version: stubVersion}
		if cur.findable() {
			copied := *cur
			copied.raw = nil // encoded afresh by finish
			next = &copied
			next.Arrays = maps.Clone(cur.Arrays)
			next.Version = max(a.version, cur.Version+1)
			if cur.Placeholder {
				next.Version = cur.Version + 1
			}
		}
		if next.Arrays == nil {
			next.Arrays = map[string][]refElement{}
		}
		next.Arrays[it.Attribute] = elems
		next.LastWrite = 0 // this write changed the entity: its own mapping's next upsert is no no-op
		attrs := mapping.Attributes{{Name: it.Attribute, Value: elementsJSON(elems)}}
		if next.Placeholder {
			// A placeholder also holds the unique ids it was found by; an entity that exists keeps
			// its own (a repeatable one may hold more elements than the one it was found by).
			attrs = append(append(mapping.Attributes{}, stub.Attributes...), attrs...)
			next.Keys = a.keysFor(rel.Schema, next.Keys, stub.Attributes)
		}
		if err := a.write(rel.Schema, relID, rel.UniqueIDs, attrs, envelope.OpUpsert, next.Version); err != nil {
			return nil, a.fail("ATTRIBUTE_TYPE_MISMATCH", "entity %s, attribute %s: %v", rel.Schema, it.Attribute, err)
		}
		a.setChanged(relID, next)
		out = append(out, mapping.RelationRefEntry{EntityID: relID, Path: it.Path, ID: target})
	}
	return out, nil
}
