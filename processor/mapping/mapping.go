package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"

	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/jsonata"
	engine "github.com/erpstream/erpstream/jsonata"
)

// Mapping is a compiled inbound configuration, safe for concurrent use.
type Mapping struct {
	engine   jsonata.Engine
	entities []*compiledEntity
}

type compiledEntity struct {
	schema    string
	uniqueIDs []string
	mode      string
	expr      jsonata.Expression
	enabled   *enabledRule
	fields    []*compiledField
}

type valueSource int

const (
	sourceConstant valueSource = iota
	sourceExpr
	sourceKey
)

type compiledField struct {
	attribute string
	source    valueSource
	constant  any
	expr      jsonata.Expression
	key       string
	enabled   *enabledRule
}

type enabledRule struct {
	never bool
	expr  jsonata.Expression
}

// EntityUpdate is one planned change of one entity (MAPPING.md §3).
type EntityUpdate struct {
	EntitySlug        string     `json:"entity_slug"`
	UniqueIdentifiers Attributes `json:"unique_identifiers"`
	Attributes        Attributes `json:"attributes"`
	Mode              string     `json:"mode"`
}

// EntityID is the entity's stable identity: derived from org, schema and unique-id values alone,
// so every event, restart and replay that names the same entity arrives at the same id.
func (u *EntityUpdate) EntityID(org string) string {
	canon := make([]string, 0, 2*len(u.UniqueIdentifiers))
	sorted := append(Attributes(nil), u.UniqueIdentifiers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, a := range sorted {
		b, _ := engine.MarshalValue(a.Value)
		canon = append(canon, a.Name, string(b))
	}
	return ids.NameUUID(append([]string{"entity", org, u.EntitySlug}, canon...)...)
}

// Attribute is one mapped attribute.
type Attribute struct {
	Name  string
	Value any
}

// Attributes keep the order of the configuration's fields when marshalled.
type Attributes []Attribute

// MarshalJSON writes an object in field order.
func (as Attributes) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, a := range as {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(a.Name)
		b.Write(k)
		b.WriteByte(':')
		v, err := engine.MarshalValue(a.Value)
		if err != nil {
			return nil, fmt.Errorf("attribute %s: %w", a.Name, err)
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func (as *Attributes) set(name string, v any) {
	for i := range *as {
		if (*as)[i].Name == name {
			(*as)[i].Value = v // a later field with the same attribute wins
			return
		}
	}
	*as = append(*as, Attribute{Name: name, Value: v})
}

func (as Attributes) get(name string) (any, bool) {
	for _, a := range as {
		if a.Name == name {
			return a.Value, true
		}
	}
	return nil, false
}

// Error is a mapping failure of one event, with the monitoring code it is reported under.
type Error struct {
	Code string // MAPPING_EXPRESSION_FAILED, MISSING_UNIQUE_IDENTIFIERS, MALFORMED_PAYLOAD
	Path string // configuration path, e.g. entities[0].fields[2]
	Msg  string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Map runs the extraction stage for one parsed payload.
func (m *Mapping) Map(ctx context.Context, payload any, env *jsonata.Env) ([]EntityUpdate, error) {
	var out []EntityUpdate
	for i, ce := range m.entities {
		path := fmt.Sprintf("entities[%d]", i)
		data := payload
		if ce.expr != nil {
			v, err := ce.expr.Eval(ctx, payload, env)
			if err != nil {
				return nil, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: path + ".jsonataExpression", Msg: err.Error()}
			}
			data = v
		}
		on, err := ce.enabled.eval(ctx, data, env)
		if err != nil {
			return nil, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: path + ".enabled", Msg: err.Error()}
		}
		if !on {
			continue
		}
		var items []any
		switch d := data.(type) {
		case *engine.Array:
			items = d.Items
		default:
			if d != jsonata.Undefined {
				items = []any{d}
			}
		}
		for n, item := range items {
			upd, err := ce.mapItem(ctx, path, item, env)
			if err != nil {
				if len(items) > 1 {
					err.Path = fmt.Sprintf("%s (item %d)", err.Path, n)
				}
				return nil, err
			}
			out = append(out, upd)
		}
	}
	return out, nil
}

func (ce *compiledEntity) mapItem(ctx context.Context, path string, item any, env *jsonata.Env) (EntityUpdate, *Error) {
	attrs := make(Attributes, 0, len(ce.fields))
	for j, f := range ce.fields {
		fpath := fmt.Sprintf("%s.fields[%d]", path, j)
		on, err := f.enabled.eval(ctx, item, env)
		if err != nil {
			return EntityUpdate{}, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: fpath + ".enabled", Msg: err.Error()}
		}
		if !on {
			continue
		}
		var v any
		switch f.source {
		case sourceConstant:
			v = f.constant
		case sourceKey:
			obj, ok := item.(*engine.Object)
			if !ok {
				continue
			}
			var present bool
			if v, present = obj.Get(f.key); !present || v == nil {
				continue
			}
		case sourceExpr:
			if v, err = f.expr.Eval(ctx, item, env); err != nil {
				return EntityUpdate{}, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: fpath + " (" + f.attribute + ")", Msg: err.Error()}
			}
			if v == jsonata.Undefined {
				continue // undefined drops the attribute
			}
		}
		attrs.set(f.attribute, v)
	}
	uids := make(Attributes, 0, len(ce.uniqueIDs))
	var missing []string
	for _, name := range ce.uniqueIDs {
		v, ok := attrs.get(name)
		if !ok || v == nil || v == engine.Null || v == "" {
			missing = append(missing, name)
			continue
		}
		uids = append(uids, Attribute{Name: name, Value: v})
	}
	if len(missing) > 0 {
		return EntityUpdate{}, &Error{Code: "MISSING_UNIQUE_IDENTIFIERS", Path: path + ".unique_ids",
			Msg: fmt.Sprintf("%s: no value for unique id attribute(s) %v", ce.schema, missing)}
	}
	return EntityUpdate{EntitySlug: ce.schema, UniqueIdentifiers: uids, Attributes: attrs, Mode: ce.mode}, nil
}

func (r *enabledRule) eval(ctx context.Context, input any, env *jsonata.Env) (bool, error) {
	if r == nil {
		return true, nil
	}
	if r.never {
		return false, nil
	}
	v, err := r.expr.Eval(ctx, input, env)
	if err != nil {
		return false, err
	}
	return truthy(v), nil
}

// truthy casts with JSONata's $boolean rules.
func truthy(v any) bool {
	if v == jsonata.Undefined {
		return false
	}
	return engine.Boolean(v)
}
