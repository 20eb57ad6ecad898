package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/jsonata"
)

// Mapping is a compiled inbound configuration, safe for concurrent use.
type Mapping struct {
	engine        jsonata.Engine
	entities      []*compiledEntity
	meterReadings []*compiledMeterReading
}

type compiledEntity struct {
	path       string   // in mapping errors: entities[i]
	fieldPaths []string // entities[i].fields[j]
	schema     string
	uniqueIDs  []string
	mode       string
	expr       jsonata.Expression
	enabled    *enabledRule
	fields     []*compiledField
	scope      *compiledScope // upsert-prune-scope modes
	pricing    *compiledPricing
}

type valueSource int

const (
	sourceConstant valueSource = iota
	sourceExpr
	sourceKey
	sourceRelation
	sourceFileProxy
	sourceRelationRef
)

type compiledField struct {
	attribute string
	source    valueSource
	constant  any
	expr      jsonata.Expression
	key       string
	enabled   *enabledRule
	// repeatable is the field's _type (email, phone): values become [{"email": v}].
	repeatable   string
	relation     *compiledRelation
	fileProxy    *compiledFileProxy
	relationRefs *compiledRelationRefs
	uidOnly      bool
}

type compiledRelation struct {
	operation string
	expr      jsonata.Expression // items from JSONata, or
	items     []compiledRelationItem
}

type compiledRelationItem struct {
	schema    string
	tags      []string
	uniqueIDs []*compiledField
}

type enabledRule struct {
	never bool
	expr  jsonata.Expression
}

// EntityUpdate is one planned change of one entity.
type EntityUpdate struct {
	EntitySlug        string     `json:"entity_slug"`
	UniqueIdentifiers Attributes `json:"unique_identifiers"`
	Attributes        Attributes `json:"attributes"`
	Mode              string     `json:"mode"`
	// UniqueIdentifiersMetadata says which unique ids come from repeatable (_type) attributes.
	UniqueIdentifiersMetadata map[string]UniqueIDMetadata `json:"unique_identifiers_metadata,omitempty"`
	// Pricing is the entity's pricing input, priced by the apply stage.
	Pricing *PricingInput `json:"pricing,omitempty"`
}

// UniqueIDMetadata: the unique id is element Index of a repeatable attribute of FieldType.
type UniqueIDMetadata struct {
	FieldType string `json:"fieldType"`
	Index     int    `json:"index"`
}

// EntityID is the entity's stable identity: derived from org, schema and unique-id values alone,
// so every event, restart and replay that names the same entity arrives at the same id.
func (u *EntityUpdate) EntityID(org string) string {
	canon := make([]string, 0, 2*len(u.UniqueIdentifiers))
	sorted := append(Attributes(nil), u.UniqueIdentifiers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	for _, a := range sorted {
		b, _ := jsonata.MarshalValue(a.Value)
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
	b.Grow(2 + 32*len(as))
	b.WriteByte('{')
	for i, a := range as {
		if i > 0 {
			b.WriteByte(',')
		}
		jsonata.WriteString(&b, a.Name)
		b.WriteByte(':')
		if m, ok := a.Value.(json.Marshaler); ok {
			v, err := m.MarshalJSON()
			if err != nil {
				return nil, fmt.Errorf("attribute %s: %w", a.Name, err)
			}
			b.Write(v)
			continue
		}
		if err := jsonata.WriteValue(&b, a.Value); err != nil {
			return nil, fmt.Errorf("attribute %s: %w", a.Name, err)
		}
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
	Code   string // MAPPING_EXPRESSION_FAILED, MISSING_UNIQUE_IDENTIFIERS, MAPPING_TIMEOUT, MAPPING_LIMIT_EXCEEDED, …
	Path   string // configuration path, e.g. entities[0].fields[2]
	Msg    string
	Entity string // the entity schema being mapped, when there is one
}

func (e *Error) Error() string {
	msg := e.Msg
	if e.Path != "" {
		msg = e.Path + ": " + msg
	}
	if e.Entity != "" {
		msg = "entity " + e.Entity + ", " + msg
	}
	return msg
}

// DefaultMaxUpdates is how many entity updates and meter readings one event may map to.
const DefaultMaxUpdates = 10_000

// Limits bound one event's extraction. The time limit is the context's deadline.
type Limits struct {
	MaxUpdates int // entity updates plus meter readings; default DefaultMaxUpdates
}

// deadlineSlack is how early an expression may give up on the event's deadline: a regular
// expression's match timeout is capped by the time left, and the regex engine's coarse clock
// fires up to a few milliseconds before the deadline itself.
const deadlineSlack = 20 * time.Millisecond

// bounded turns an error of an extraction whose deadline passed (or was about to) into
// MAPPING_TIMEOUT: whichever expression was running when time ran out, the event failed for its
// time limit.
func bounded(ctx context.Context, err *Error) *Error {
	if err != nil && (expired(ctx) || nearDeadline(ctx)) && err.Code != "MAPPING_TIMEOUT" {
		return &Error{Code: "MAPPING_TIMEOUT", Path: err.Path, Entity: err.Entity,
			Msg: "the event's mapping exceeded its time limit (" + err.Msg + ")"}
	}
	return err
}

// expired: the context ended, or its deadline passed (the engine sees that a moment before the
// context's timer fires).
func expired(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func nearDeadline(ctx context.Context) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) < deadlineSlack
}

func timeout(ctx context.Context, path, entity string) *Error {
	if !expired(ctx) {
		return nil
	}
	return &Error{Code: "MAPPING_TIMEOUT", Path: path, Entity: entity, Msg: "the event's mapping exceeded its time limit"}
}

// Map runs the extraction stage for one parsed payload. Per-item expressions see the item as
// input and the payload as $$ and $payload.
func (m *Mapping) Map(ctx context.Context, payload any, env *jsonata.Env) ([]EntityUpdate, error) {
	r, err := m.Extract(ctx, payload, env)
	if err != nil {
		return nil, err
	}
	return r.Entities, nil
}

// Extraction is everything one payload maps to: entity updates, prune-scope
// plans, then meter readings.
type Extraction struct {
	Entities      []EntityUpdate
	Prunes        []PruneScopeUpdate
	MeterReadings []MeterReadingUpdate
	// ReadingPrunes are the upsert-prune-scope plans of meter readings.
	ReadingPrunes []ReadingPrune
	// Warnings are extraction notes that do not fail the event.
	Warnings []Warning
}

// Extract runs the extraction stage: pure, no lookups; the pipeline and the simulation share it.
func (m *Mapping) Extract(ctx context.Context, payload any, env *jsonata.Env) (*Extraction, error) {
	return m.ExtractWithin(ctx, payload, env, Limits{})
}

// ExtractWithin is Extract within limits: past ctx's deadline it fails with MAPPING_TIMEOUT
// (checked between items and fields as well as inside every expression), and past
// lim.MaxUpdates updates with MAPPING_LIMIT_EXCEEDED.
func (m *Mapping) ExtractWithin(ctx context.Context, payload any, env *jsonata.Env, lim Limits) (*Extraction, error) {
	if lim.MaxUpdates <= 0 {
		lim.MaxUpdates = DefaultMaxUpdates
	}
	res, err := m.extract(ctx, payload, env, lim)
	if me, ok := err.(*Error); ok {
		return nil, bounded(ctx, me)
	}
	return res, err
}

func (m *Mapping) extract(ctx context.Context, payload any, env *jsonata.Env, lim Limits) (*Extraction, error) {
	if env == nil {
		env = &jsonata.Env{}
	}
	bindings := make(map[string]any, len(env.Bindings)+1)
	for k, v := range env.Bindings {
		bindings[k] = v
	}
	bindings["payload"] = payload
	itemEnv := &jsonata.Env{Now: env.Now, Bindings: bindings, Root: payload}
	res := &Extraction{}
	for _, ce := range m.entities {
		path := ce.path
		data := payload
		if ce.expr != nil {
			v, err := ce.expr.Eval(ctx, payload, itemEnv)
			if err != nil {
				return nil, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: path + ".jsonataExpression", Msg: err.Error()}
			}
			data = v
		}
		on, err := ce.enabled.eval(ctx, data, itemEnv)
		if err != nil {
			return nil, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: path + ".enabled", Msg: err.Error()}
		}
		if !on {
			continue
		}
		first := len(res.Entities)
		items := itemsOf(data)
		if len(res.Entities)+len(items) > lim.MaxUpdates {
			return nil, &Error{Code: "MAPPING_LIMIT_EXCEEDED", Path: path, Entity: ce.schema,
				Msg: fmt.Sprintf("the event maps to more than %d entity updates (this entry alone to %d)", lim.MaxUpdates, len(items))}
		}
		for n, item := range items {
			upd, err := ce.mapItem(ctx, path, item, itemEnv)
			if err == nil {
				err = timeout(ctx, path, ce.schema)
			}
			if err != nil {
				if _, many := data.(*jsonata.Array); many {
					err.Path = fmt.Sprintf("%s (item %d)", err.Path, n)
				}
				if err.Entity == "" {
					err.Entity = ce.schema
				}
				return nil, err
			}
			res.Entities = append(res.Entities, upd)
		}
		if ce.pruneMode() {
			pu, err := ce.plan(ctx, path, payload, itemEnv, res.Entities[first:])
			if err != nil {
				return nil, err
			}
			res.Prunes = append(res.Prunes, pu)
		}
	}
	for i, cm := range m.meterReadings {
		rs, prunes, warnings, err := cm.extract(ctx, fmt.Sprintf("meter_readings[%d]", i), payload, itemEnv)
		if err != nil {
			return nil, err
		}
		for k := range rs {
			rs[k].Entry = i
		}
		for k := range prunes {
			prunes[k].Entry = i
		}
		if len(res.Entities)+len(res.MeterReadings)+len(rs) > lim.MaxUpdates {
			return nil, &Error{Code: "MAPPING_LIMIT_EXCEEDED", Path: fmt.Sprintf("meter_readings[%d]", i), Entity: "meter_reading",
				Msg: fmt.Sprintf("the event maps to more than %d entity updates and meter readings", lim.MaxUpdates)}
		}
		res.MeterReadings = append(res.MeterReadings, rs...)
		res.ReadingPrunes = append(res.ReadingPrunes, prunes...)
		res.Warnings = append(res.Warnings, warnings...)
	}
	return res, nil
}

// itemsOf: an array is many items, undefined none, anything else one.
func itemsOf(data any) []any {
	switch d := data.(type) {
	case *jsonata.Array:
		return d.Items
	default:
		if d == jsonata.Undefined {
			return nil
		}
		return []any{d}
	}
}

// value resolves one field against item: constant > jsonataExpression > field (§4.2). ok is
// false when the attribute is to be omitted (disabled, undefined, missing key, empty repeatable).
func (f *compiledField) value(ctx context.Context, fpath string, item any, env *jsonata.Env) (v any, ok bool, _ *Error) {
	on, err := f.enabled.eval(ctx, item, env)
	if err != nil {
		return nil, false, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: fpath + ".enabled", Msg: err.Error()}
	}
	if !on {
		return nil, false, nil
	}
	switch f.source {
	case sourceConstant:
		v = f.constant
	case sourceKey:
		obj, isObj := item.(*jsonata.Object)
		if !isObj {
			return nil, false, nil
		}
		var present bool
		if v, present = obj.Get(f.key); !present || v == nil {
			return nil, false, nil
		}
	case sourceExpr:
		if v, err = f.expr.Eval(ctx, item, env); err != nil {
			return nil, false, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: fpath + " (" + f.attribute + ")", Msg: err.Error()}
		}
		if v == jsonata.Undefined {
			return nil, false, nil // undefined drops the attribute
		}
	case sourceRelation:
		rel, err := f.relation.extract(ctx, fpath+".relations", item, env)
		if err != nil {
			return nil, false, err
		}
		return rel, true, nil
	case sourceRelationRef:
		ref, err := f.relationRefs.extract(ctx, fpath+".relation_refs", item, env)
		if err != nil {
			return nil, false, err
		}
		return ref, true, nil
	case sourceFileProxy:
		fp, err := f.fileProxy.extract(ctx, fpath+".file_proxy_url", item, env)
		if err != nil {
			return nil, false, err
		}
		return fp, true, nil
	}
	if f.repeatable != "" {
		rv, err := repeatable(v, f.repeatable)
		if err != nil {
			return nil, false, &Error{Code: "ATTRIBUTE_TYPE_MISMATCH", Path: fpath + " (" + f.attribute + ")", Msg: err.Error()}
		}
		if rv == nil {
			return nil, false, nil
		}
		v = rv
	}
	return v, true, nil
}

func (ce *compiledEntity) mapItem(ctx context.Context, path string, item any, env *jsonata.Env) (EntityUpdate, *Error) {
	attrs := make(Attributes, 0, len(ce.fields))
	var uidOnly Attributes
	var repeatables map[string]string
	for j, f := range ce.fields {
		if expired(ctx) { // the path is built only then: every field of every item passes here
			return EntityUpdate{}, timeout(ctx, ce.fieldPaths[j]+" ("+f.attribute+")", ce.schema)
		}
		v, ok, err := f.value(ctx, ce.fieldPaths[j], item, env)
		if err != nil {
			return EntityUpdate{}, err
		}
		if !ok {
			continue
		}
		if f.uidOnly {
			uidOnly.set(f.attribute, v)
			continue
		}
		attrs.set(f.attribute, v)
		if f.repeatable != "" {
			if repeatables == nil {
				repeatables = map[string]string{}
			}
			repeatables[f.attribute] = f.repeatable
		}
	}
	uids := make(Attributes, 0, len(ce.uniqueIDs))
	var meta map[string]UniqueIDMetadata
	var missing []string
	for _, name := range ce.uniqueIDs {
		v, found := uidOnly.get(name)
		if !found {
			v, _ = attrs.get(name)
		}
		if typ := repeatables[name]; typ != "" && v != nil {
			// The identifier is the scalar of the first element: [{"email": "a@b.de"}] → "a@b.de".
			v = firstRepeatable(v, typ)
			if meta == nil {
				meta = map[string]UniqueIDMetadata{}
			}
			meta[name] = UniqueIDMetadata{FieldType: typ, Index: 0}
		}
		if isEmpty(v) {
			missing = append(missing, name)
			continue
		}
		uids = append(uids, Attribute{Name: name, Value: v})
	}
	if len(missing) > 0 {
		return EntityUpdate{}, &Error{Code: "MISSING_UNIQUE_IDENTIFIERS", Path: path + ".unique_ids",
			Msg: fmt.Sprintf("%s: no value for unique id attribute(s) %v", ce.schema, missing)}
	}
	upd := EntityUpdate{EntitySlug: ce.schema, UniqueIdentifiers: uids, Attributes: attrs, Mode: ce.mode, UniqueIdentifiersMetadata: meta}
	if ce.pricing != nil {
		upd.Pricing = ce.pricing.extract(ctx, path+".pricing", item, env)
	}
	return upd, nil
}

func isEmpty(v any) bool { return v == nil || v == jsonata.Null || v == "" || v == jsonata.Undefined }

// repeatable converts a value for a _type field: a scalar becomes [{typ: v}], an
// array one object per element, elements already shaped {typ: …} stay as they are (extra keys such
// as _tags kept); "" and null are dropped, and nothing left means the attribute is omitted (nil).
func repeatable(v any, typ string) (any, error) {
	var in []any
	if a, ok := v.(*jsonata.Array); ok {
		in = a.Items
	} else {
		in = []any{v}
	}
	out := make([]any, 0, len(in))
	for _, el := range in {
		switch e := el.(type) {
		case *jsonata.Object:
			if _, shaped := e.Get(typ); !shaped {
				return nil, fmt.Errorf("_type %s: an object without the %q key", typ, typ)
			}
			out = append(out, e)
		case *jsonata.Array:
			return nil, fmt.Errorf("_type %s: nested arrays cannot be converted", typ)
		default:
			if isEmpty(e) {
				continue
			}
			o := jsonata.NewObject()
			o.Set(typ, e)
			out = append(out, o)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return jsonata.NewArray(out...), nil
}

func firstRepeatable(v any, typ string) any {
	if a, ok := v.(*jsonata.Array); ok && len(a.Items) > 0 {
		if o, ok := a.Items[0].(*jsonata.Object); ok {
			s, _ := o.Get(typ)
			return s
		}
	}
	return v
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
	return jsonata.Truthy(v)
}
