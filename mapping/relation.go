package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// Relation is an extracted relation attribute: the operation and the related
// entities by unique ids, not yet resolved to entity ids. It marshals as the simulation shows it:
// {"$relation": {"_set": [{"$entity_unique_ids": {…}, "_schema": "contact", "_tags": […]}]}}.
type Relation struct {
	Operation string
	Items     []RelationItem
}

// RelationItem is one related entity.
type RelationItem struct {
	Schema    string
	UniqueIDs Attributes
	Tags      []string
	// Types are the _type of repeatable unique ids, for the stub created when the entity is missing.
	Types map[string]string
}

// MarshalJSON writes the unresolved envelope.
func (r *Relation) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"$relation":{`)
	op, _ := json.Marshal(r.Operation)
	b.Write(op)
	b.WriteString(":[")
	for i, it := range r.Items {
		if i > 0 {
			b.WriteByte(',')
		}
		uids, err := it.UniqueIDs.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b.WriteString(`{"$entity_unique_ids":`)
		b.Write(uids)
		schema, _ := json.Marshal(it.Schema)
		b.WriteString(`,"_schema":`)
		b.Write(schema)
		if it.Tags != nil {
			tags, _ := json.Marshal(it.Tags)
			b.WriteString(`,"_tags":`)
			b.Write(tags)
		}
		b.WriteByte('}')
	}
	b.WriteString("]}}")
	return b.Bytes(), nil
}

// ResolvedRelation is a relation whose entities have ids:
// {"$relation": [{"entity_id": "…", "_schema": "contact", "_tags": […]}]}.
type ResolvedRelation struct {
	Items []ResolvedRelationItem
}

// ResolvedRelationItem is one related entity by id.
type ResolvedRelationItem struct {
	EntityID string   `json:"entity_id"`
	Schema   string   `json:"_schema"`
	Tags     []string `json:"_tags,omitempty"`
}

// MarshalJSON writes the resolved envelope.
func (r *ResolvedRelation) MarshalJSON() ([]byte, error) {
	items := r.Items
	if items == nil {
		items = []ResolvedRelationItem{}
	}
	return json.Marshal(map[string]any{"$relation": items})
}

func (cr *compiledRelation) extract(ctx context.Context, path string, item any, env *jsonata.Env) (*Relation, *Error) {
	rel := &Relation{Operation: cr.operation, Items: []RelationItem{}}
	if cr.expr != nil {
		var err *Error
		rel.Items, err = dynamicItems(ctx, cr.expr, path, item, env, dynamicRelationItem)
		return rel, err
	}
	for i := range cr.items {
		ri, err := cr.items[i].extract(ctx, fmt.Sprintf("%s.items[%d]", path, i), item, env)
		if err != nil {
			return nil, err
		}
		rel.Items = append(rel.Items, ri)
	}
	return rel, nil
}

// extract resolves a configured related entity's unique ids against the item.
func (ci *compiledRelationItem) extract(ctx context.Context, ipath string, item any, env *jsonata.Env) (RelationItem, *Error) {
	ri := RelationItem{Schema: ci.schema, Tags: ci.tags}
	var missing []string
	for k, u := range ci.uniqueIDs {
		v, ok, err := u.value(ctx, fmt.Sprintf("%s.unique_ids[%d]", ipath, k), item, env)
		if err != nil {
			return RelationItem{}, err
		}
		if ok && u.repeatable != "" {
			v = firstRepeatable(v, u.repeatable)
			if ri.Types == nil {
				ri.Types = map[string]string{}
			}
			ri.Types[u.attribute] = u.repeatable
		}
		if !ok || isEmpty(v) {
			missing = append(missing, u.attribute)
			continue
		}
		ri.UniqueIDs = append(ri.UniqueIDs, Attribute{Name: u.attribute, Value: v})
	}
	if len(missing) > 0 {
		return RelationItem{}, &Error{Code: "MISSING_UNIQUE_IDENTIFIERS", Path: ipath + ".unique_ids",
			Msg: fmt.Sprintf("related %s: no value for unique id attribute(s) %v (guard the field with enabled)", ci.schema, missing)}
	}
	return ri, nil
}

// dynamicItems evaluates a relation's (or reference's) jsonataExpression and reads each element
// of the result with read.
func dynamicItems[T any](ctx context.Context, expr jsonata.Expression, path string, item any, env *jsonata.Env,
	read func(el, item any) (T, error)) ([]T, *Error) {
	v, err := expr.Eval(ctx, item, env)
	if err != nil {
		return nil, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: path + ".jsonataExpression", Msg: err.Error()}
	}
	out := []T{}
	for n, el := range itemsOf(v) {
		x, err := read(el, item)
		if err != nil {
			return nil, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: fmt.Sprintf("%s.jsonataExpression (item %d)", path, n), Msg: err.Error()}
		}
		out = append(out, x)
	}
	return out, nil
}

// dynamicRelationItem reads one element a relation's jsonataExpression returned, shaped like
// RelationItemConfig; its unique ids take constant or field (a key of the current item).
func dynamicRelationItem(el, item any) (RelationItem, error) {
	obj, ok := el.(*jsonata.Object)
	if !ok {
		return RelationItem{}, fmt.Errorf("each relation item must be an object with entity_schema and unique_ids")
	}
	schema, _ := obj.Get("entity_schema")
	ri := RelationItem{}
	if ri.Schema, ok = schema.(string); !ok || ri.Schema == "" {
		return RelationItem{}, fmt.Errorf("entity_schema: a non-empty string is required")
	}
	if tags, present := obj.Get("_tags"); present {
		arr, ok := tags.(*jsonata.Array)
		if !ok {
			return RelationItem{}, fmt.Errorf("_tags: an array of strings is required")
		}
		ri.Tags = []string{}
		for _, t := range arr.Items {
			s, ok := t.(string)
			if !ok {
				return RelationItem{}, fmt.Errorf("_tags: an array of strings is required")
			}
			ri.Tags = append(ri.Tags, s)
		}
	}
	uids, _ := obj.Get("unique_ids")
	list, ok := uids.(*jsonata.Array)
	if !ok || len(list.Items) == 0 {
		return RelationItem{}, fmt.Errorf("unique_ids: a non-empty array is required")
	}
	for _, u := range list.Items {
		uo, ok := u.(*jsonata.Object)
		if !ok {
			return RelationItem{}, fmt.Errorf("unique_ids: objects with attribute and constant or field are required")
		}
		attr, _ := uo.Get("attribute")
		name, ok := attr.(string)
		if !ok || name == "" {
			return RelationItem{}, fmt.Errorf("unique_ids: attribute is required")
		}
		var v any
		if c, present := uo.Get("constant"); present {
			v = c
		} else if _, present := uo.Get("jsonataExpression"); present {
			return RelationItem{}, fmt.Errorf("unique_ids[%s]: jsonataExpression is not evaluated inside relation items built by JSONata; compute the value and return it as constant", name)
		} else if f, present := uo.Get("field"); present {
			key, _ := f.(string)
			if io, ok := item.(*jsonata.Object); ok {
				v, _ = io.Get(key)
			}
		}
		if typ, present := uo.Get("_type"); present {
			t, _ := typ.(string)
			if t != "email" && t != "phone" {
				return RelationItem{}, fmt.Errorf("unique_ids[%s]._type: one of email, phone", name)
			}
			if ri.Types == nil {
				ri.Types = map[string]string{}
			}
			ri.Types[name] = t
		}
		if isEmpty(v) {
			return RelationItem{}, fmt.Errorf("related %s: no value for unique id attribute %s", ri.Schema, name)
		}
		ri.UniqueIDs = append(ri.UniqueIDs, Attribute{Name: name, Value: v})
	}
	return ri, nil
}

// Finder looks an entity of schema up by unique-id values: its id and found, or
// the id the values derive and not found. An error (several match) fails the update.
type Finder func(schema string, uniqueIDs Attributes) (id string, found bool, err error)

// Resolve prepares an update for writing in org: relation attributes get the related entities'
// ids. find looks each related entity up; one not found gets the id derived from its unique ids
// (as every entity's is, so an entity that arrives later gets the same id), and stubs lists an
// update for it holding only its unique-id attributes: the pipeline writes each as a placeholder
// that any real write of that entity supersedes. A nil find
// finds nothing.
func (u *EntityUpdate) Resolve(org string, find Finder) (attrs Attributes, stubs []EntityUpdate, _ error) {
	attrs = make(Attributes, len(u.Attributes))
	for i, a := range u.Attributes {
		rel, ok := a.Value.(*Relation)
		if !ok {
			attrs[i] = a
			continue
		}
		res := &ResolvedRelation{Items: make([]ResolvedRelationItem, 0, len(rel.Items))}
		for _, it := range rel.Items {
			var id string
			found := false
			if find != nil {
				var err error
				if id, found, err = find(it.Schema, it.UniqueIDs); err != nil {
					return nil, nil, fmt.Errorf("attribute %s: %w", a.Name, err)
				}
			}
			if !found {
				stub := RelationStub(it)
				if id == "" {
					id = stub.EntityID(org)
				}
				stubs = append(stubs, stub)
			}
			res.Items = append(res.Items, ResolvedRelationItem{EntityID: id, Schema: it.Schema, Tags: it.Tags})
		}
		attrs[i] = Attribute{Name: a.Name, Value: res}
	}
	return attrs, stubs, nil
}

// Schemas calls add for every schema the configuration names, with its path: the entities' and
// those of relation items, references and scopes written in it (not those JSONata builds).
func (m *Mapping) Schemas(add func(path, schema string)) {
	for _, ce := range m.entities {
		add("configuration."+ce.path+".entity_schema", ce.schema)
		for j, f := range ce.fields {
			if f.relation != nil {
				for k, it := range f.relation.items {
					add(fmt.Sprintf("configuration.%s.relations.items[%d].entity_schema", ce.fieldPaths[j], k), it.schema)
				}
			}
			if f.relationRefs != nil {
				for k, it := range f.relationRefs.items {
					add(fmt.Sprintf("configuration.%s.relation_refs.items[%d].entity_schema", ce.fieldPaths[j], k), it.related.schema)
				}
			}
		}
		if ce.scope != nil && ce.scope.schema != "" {
			add("configuration."+ce.path+".scope.schema", ce.scope.schema)
		}
	}
}

// RefTargets calls add for every (schema, attribute) this mapping's relation_refs items (those
// named in the configuration) write elements into: the pipeline keeps those attributes' elements
// with their _ids, so references keep pointing at the same element.
func (m *Mapping) RefTargets(add func(schema, attribute string)) {
	for _, ce := range m.entities {
		for _, f := range ce.fields {
			if f.relationRefs == nil {
				continue
			}
			for _, it := range f.relationRefs.items {
				add(it.related.schema, it.attribute)
			}
		}
	}
}

// RelationStub is the placeholder update of a related entity: only its unique-id attributes
// (repeatable ones in their array form).
func RelationStub(it RelationItem) EntityUpdate {
	stub := EntityUpdate{EntitySlug: it.Schema, UniqueIdentifiers: it.UniqueIDs, Mode: "upsert"}
	for _, uid := range it.UniqueIDs {
		v := uid.Value
		if typ := it.Types[uid.Name]; typ != "" {
			v, _ = repeatable(v, typ)
		}
		stub.Attributes = append(stub.Attributes, Attribute{Name: uid.Name, Value: v})
	}
	return stub
}

// LookupAttributes calls add for every (schema, attribute) this mapping looks entities up by:
// entities' unique ids, the unique ids of relation items named in the
// configuration (not those a relation's JSONata builds), scopes, meters and counters. The
// pipeline indexes these attributes' values so a lookup finds an entity whichever mapping wrote it.
func (m *Mapping) LookupAttributes(add func(schema, attribute string)) {
	for _, ce := range m.entities {
		for _, u := range ce.uniqueIDs {
			add(ce.schema, u)
		}
		for _, f := range ce.fields {
			if f.relation != nil {
				for _, it := range f.relation.items {
					for _, u := range it.uniqueIDs {
						add(it.schema, u.attribute)
					}
				}
			}
			if f.relationRefs != nil {
				for _, it := range f.relationRefs.items {
					for _, u := range it.related.uniqueIDs {
						add(it.related.schema, u.attribute)
					}
				}
			}
		}
		if ce.pricing != nil {
			for _, it := range ce.pricing.items {
				for _, ref := range []*compiledRelationItem{it.product, it.price} {
					if ref != nil {
						for _, u := range ref.uniqueIDs {
							add(ref.schema, u.attribute)
						}
					}
				}
			}
		}
		if ce.scope != nil {
			for _, u := range ce.scope.uniqueIDs {
				add(ce.scope.schema, u.attribute)
			}
			for _, q := range ce.scope.query {
				add(ce.schema, q.attribute)
			}
		}
	}
	for _, cm := range m.meterReadings {
		for _, u := range cm.meter {
			add("meter", u.attribute)
		}
		for _, u := range cm.counter {
			add("meter_counter", u.attribute)
		}
	}
}

// MergeRelation applies a relation operation to an entity's current relation items (
// Ex 3): _set replaces; _append adds items whose entity is not related yet (existing entries keep
// their tags and order); _append_all adds every item.
func MergeRelation(operation string, current, incoming []ResolvedRelationItem) []ResolvedRelationItem {
	switch operation {
	case "_append":
		out := append([]ResolvedRelationItem(nil), current...)
		seen := map[string]bool{}
		for _, it := range current {
			seen[it.EntityID] = true
		}
		for _, it := range incoming {
			if !seen[it.EntityID] {
				seen[it.EntityID] = true
				out = append(out, it)
			}
		}
		return out
	case "_append_all":
		return append(append([]ResolvedRelationItem(nil), current...), incoming...)
	}
	return incoming
}
