package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// RelationRefsConfig is the spec's RelationRefsConfig.
type RelationRefsConfig struct {
	Operation         string                  `json:"operation"`
	Items             []RelationRefItemConfig `json:"items"`
	JSONataExpression string                  `json:"jsonataExpression"`
}

// RelationRefItemConfig is the spec's RelationRefItemConfig.
type RelationRefItemConfig struct {
	EntitySchema string                   `json:"entity_schema"`
	UniqueIDs    []RelationUniqueIDConfig `json:"unique_ids"`
	Path         string                   `json:"path"`
	Value        *RelationRefValueConfig  `json:"value"`
}

// RelationRefValueConfig is the spec's RelationRefValueConfig.
type RelationRefValueConfig struct {
	Attribute         string          `json:"attribute"`
	Operation         string          `json:"operation"`
	Field             string          `json:"field"`
	JSONataExpression string          `json:"jsonataExpression"`
	Constant          json.RawMessage `json:"constant"`
}

type compiledRelationRefs struct {
	operation string
	expr      jsonata.Expression // items from JSONata, or
	items     []compiledRelationRefItem
}

type compiledRelationRefItem struct {
	related   compiledRelationItem
	path      string
	attribute string
	operation string
	value     *compiledField
}

// RelationRef is an extracted relation_refs attribute: per item the related entity by unique ids,
// the attribute of it that holds the referenced element, and the element. It marshals as the
// simulation shows it: {"$relation_ref": {"_set": [{"$entity_unique_ids": {…}, "_schema", "path",
// "value": {"attribute", "operation", "value"}}]}}.
type RelationRef struct {
	Operation string
	Items     []RelationRefItem
}

// RelationRefItem is one reference before the lookup.
type RelationRefItem struct {
	Related   RelationItem
	Path      string
	Attribute string // value.attribute: where the element is written (= Path, checked on save)
	Operation string // value.operation: _set, _append (default) or _append_all
	Value     any    // nil: the value was undefined (RELATION_REF_VALUE_UNDEFINED)
}

// MarshalJSON writes the unresolved envelope.
func (r *RelationRef) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	op, _ := json.Marshal(r.Operation)
	b.WriteString(`{"$relation_ref":{`)
	b.Write(op)
	b.WriteString(":[")
	for i, it := range r.Items {
		if i > 0 {
			b.WriteByte(',')
		}
		uids, err := it.Related.UniqueIDs.MarshalJSON()
		if err != nil {
			return nil, err
		}
		head, _ := json.Marshal(map[string]string{"_schema": it.Related.Schema, "path": it.Path})
		b.WriteString(`{"$entity_unique_ids":`)
		b.Write(uids)
		b.WriteByte(',')
		b.Write(head[1 : len(head)-1])
		value := Attributes{{Name: "attribute", Value: it.Attribute}, {Name: "operation", Value: it.Operation}}
		if it.Value != nil {
			value = append(value, Attribute{Name: "value", Value: it.Value})
		}
		vb, err := value.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b.WriteString(`,"value":`)
		b.Write(vb)
		b.WriteByte('}')
	}
	b.WriteString("]}}")
	return b.Bytes(), nil
}

// RelationRefEntry is one resolved reference: {"entity_id", "path", "_id"}.
type RelationRefEntry struct {
	EntityID string `json:"entity_id"`
	Path     string `json:"path"`
	ID       string `json:"_id"`
}

// ResolvedRelationRef is what the pipeline writes: {"$relation_ref": [{"entity_id", "path", "_id"}]}.
type ResolvedRelationRef struct {
	Items []RelationRefEntry
}

// MarshalJSON writes the resolved envelope.
func (r *ResolvedRelationRef) MarshalJSON() ([]byte, error) {
	items := r.Items
	if items == nil {
		items = []RelationRefEntry{}
	}
	return json.Marshal(map[string]any{"$relation_ref": items})
}

// MergeRelationRefs applies the relation_refs operation to the entity's current references:
// _append adds references whose (entity_id, _id) is new; _append_all adds all; _set replaces.
func MergeRelationRefs(operation string, current, incoming []RelationRefEntry) []RelationRefEntry {
	switch operation {
	case "_append":
		out := append([]RelationRefEntry(nil), current...)
		seen := map[RelationRefEntry]bool{}
		for _, e := range current {
			seen[RelationRefEntry{EntityID: e.EntityID, ID: e.ID}] = true
		}
		for _, e := range incoming {
			k := RelationRefEntry{EntityID: e.EntityID, ID: e.ID}
			if !seen[k] {
				seen[k] = true
				out = append(out, e)
			}
		}
		return out
	case "_append_all":
		return append(append([]RelationRefEntry(nil), current...), incoming...)
	}
	return incoming
}

func compileRelationRefs(path string, raw json.RawMessage, eng jsonata.Engine) (*compiledRelationRefs, error) {
	var rc RelationRefsConfig
	if err := json.Unmarshal(raw, &rc); err != nil {
		return nil, &ConfigError{Path: path, Msg: "not a relation_refs configuration: " + err.Error()}
	}
	if !relationOperations[rc.Operation] {
		return nil, &ConfigError{Path: path + ".operation", Msg: "one of _set, _append, _append_all"}
	}
	cr := &compiledRelationRefs{operation: rc.Operation}
	switch {
	case rc.JSONataExpression != "" && len(rc.Items) > 0:
		return nil, &ConfigError{Path: path, Msg: "items and jsonataExpression exclude each other"}
	case rc.JSONataExpression != "":
		var err error
		cr.expr, err = compileExpr(eng, path+".jsonataExpression", rc.JSONataExpression)
		return cr, err
	case len(rc.Items) == 0:
		return nil, &ConfigError{Path: path, Msg: "items or jsonataExpression is required"}
	}
	for i, it := range rc.Items {
		ipath := fmt.Sprintf("%s.items[%d]", path, i)
		related, err := compileRelationItem(ipath, it.EntitySchema, it.UniqueIDs, nil, eng)
		if err != nil {
			return nil, err
		}
		if it.Path == "" {
			return nil, &ConfigError{Path: ipath + ".path", Msg: "required"}
		}
		if it.Value == nil || it.Value.Attribute == "" {
			return nil, &ConfigError{Path: ipath + ".value.attribute", Msg: "required"}
		}
		// A value written elsewhere than the path is refused.
		if it.Value.Attribute != it.Path {
			return nil, &ConfigError{Path: ipath + ".value.attribute", Msg: fmt.Sprintf("must equal path %q (the reference points into the attribute the value is written to)", it.Path)}
		}
		op := it.Value.Operation
		if op == "" {
			op = "_append"
		}
		if !relationOperations[op] {
			return nil, &ConfigError{Path: ipath + ".value.operation", Msg: "one of _set, _append, _append_all"}
		}
		value, err := compileField(ipath+".value", FieldConfig{Attribute: it.Value.Attribute, Field: it.Value.Field,
			JSONataExpression: it.Value.JSONataExpression, Constant: it.Value.Constant}, eng)
		if err != nil {
			return nil, err
		}
		cr.items = append(cr.items, compiledRelationRefItem{related: *related, path: it.Path, attribute: it.Value.Attribute, operation: op, value: value})
	}
	return cr, nil
}

func (cr *compiledRelationRefs) extract(ctx context.Context, path string, item any, env *jsonata.Env) (*RelationRef, *Error) {
	ref := &RelationRef{Operation: cr.operation, Items: []RelationRefItem{}}
	if cr.expr != nil {
		var err *Error
		ref.Items, err = dynamicItems(ctx, cr.expr, path, item, env, dynamicRelationRefItem)
		return ref, err
	}
	for i := range cr.items {
		ci := &cr.items[i]
		ipath := fmt.Sprintf("%s.items[%d]", path, i)
		related, err := ci.related.extract(ctx, ipath, item, env)
		if err != nil {
			return nil, err
		}
		ri := RelationRefItem{Related: related, Path: ci.path, Attribute: ci.attribute, Operation: ci.operation}
		v, ok, err := ci.value.value(ctx, ipath+".value", item, env)
		if err != nil {
			return nil, err
		}
		if ok {
			ri.Value = v
		}
		ref.Items = append(ref.Items, ri)
	}
	return ref, nil
}

// dynamicRelationRefItem reads one element a relation_refs jsonataExpression returned, shaped like
// RelationRefItemConfig with value.constant (or value.field, a key of the current item).
func dynamicRelationRefItem(el, item any) (RelationRefItem, error) {
	related, err := dynamicRelationItem(el, item)
	if err != nil {
		return RelationRefItem{}, err
	}
	obj := el.(*jsonata.Object)
	ri := RelationRefItem{Related: related, Operation: "_append"}
	p, _ := obj.Get("path")
	if ri.Path, _ = p.(string); ri.Path == "" {
		return RelationRefItem{}, fmt.Errorf("path: a non-empty string is required")
	}
	vo, _ := obj.Get("value")
	value, ok := vo.(*jsonata.Object)
	if !ok {
		return RelationRefItem{}, fmt.Errorf("value: an object {attribute, operation?, constant | field} is required")
	}
	a, _ := value.Get("attribute")
	if ri.Attribute, _ = a.(string); ri.Attribute != ri.Path {
		return RelationRefItem{}, fmt.Errorf("value.attribute must equal path %q", ri.Path)
	}
	if o, present := value.Get("operation"); present {
		if ri.Operation, _ = o.(string); !relationOperations[ri.Operation] {
			return RelationRefItem{}, fmt.Errorf("value.operation: one of _set, _append, _append_all")
		}
	}
	if c, present := value.Get("constant"); present {
		ri.Value = c
	} else if f, present := value.Get("field"); present {
		key, _ := f.(string)
		if io, ok := item.(*jsonata.Object); ok {
			if v, ok := io.Get(key); ok && v != nil {
				ri.Value = v
			}
		}
	}
	return ri, nil
}
