// Package mapping turns an event payload into entity updates with an inbound use case's v2
// configuration. Compile once per use-case version; Map per event. The extraction
// is pure: no datastore reads, so the pipeline and a simulation map identically.
package mapping

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// Configuration is InboundIntegrationEventConfiguration.
type Configuration struct {
	Entities      []EntityConfig    `json:"entities"`
	MeterReadings []json.RawMessage `json:"meter_readings"`
}

// EntityConfig is IntegrationEntity.
type EntityConfig struct {
	EntitySchema      string          `json:"entity_schema"`
	UniqueIDs         []string        `json:"unique_ids"`
	Fields            []FieldConfig   `json:"fields"`
	JSONataExpression string          `json:"jsonataExpression"`
	Enabled           json.RawMessage `json:"enabled"`
	Mode              string          `json:"mode"`
	Scope             json.RawMessage `json:"scope"`
	Pricing           json.RawMessage `json:"pricing"`
}

// FieldConfig is IntegrationEntityField.
type FieldConfig struct {
	Attribute         string          `json:"attribute"`
	Field             string          `json:"field"`
	JSONataExpression string          `json:"jsonataExpression"`
	Constant          json.RawMessage `json:"constant"` // present (even null) means "use the constant"
	Type              string          `json:"_type"`
	Enabled           json.RawMessage `json:"enabled"`
	Relations         json.RawMessage `json:"relations"`
	RelationRefs      json.RawMessage `json:"relation_refs"`
	FileProxyURL      json.RawMessage `json:"file_proxy_url"`
	// uidOnly marks a v1 {remote: local} unique id: it feeds the unique identifiers, not attributes.
	uidOnly bool
}

// ConfigError names the offending configuration path.
type ConfigError struct {
	Path string
	Msg  string
}

func (e *ConfigError) Error() string { return e.Path + ": " + e.Msg }

// Modes this version applies. The others of the spec are refused at save time instead of being
// applied half-way.
var supportedModes = map[string]bool{"": true, "upsert": true, "delete": true, "purge": true,
	"upsert-prune-scope-delete": true, "upsert-prune-scope-purge": true}

// Compile validates a configuration and compiles every expression in it.
func Compile(raw json.RawMessage, eng jsonata.Engine) (*Mapping, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, &ConfigError{Path: "configuration", Msg: "required for inbound use cases"}
	}
	var cfg Configuration
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	if err := dec.Decode(&cfg); err != nil {
		return nil, &ConfigError{Path: "configuration", Msg: "not a valid inbound configuration: " + err.Error()}
	}
	m := &Mapping{engine: eng}
	for i, raw := range cfg.MeterReadings {
		cm, err := compileMeterReading(fmt.Sprintf("configuration.meter_readings[%d]", i), raw, eng)
		if err != nil {
			return nil, err
		}
		m.meterReadings = append(m.meterReadings, cm)
	}
	for i, ec := range cfg.Entities {
		path := fmt.Sprintf("configuration.entities[%d]", i)
		ce, err := compileEntity(path, ec, eng)
		if err != nil {
			return nil, err
		}
		m.entities = append(m.entities, ce)
	}
	return m, nil
}

func compileEntity(path string, ec EntityConfig, eng jsonata.Engine) (*compiledEntity, error) {
	if ec.EntitySchema == "" {
		return nil, &ConfigError{Path: path + ".entity_schema", Msg: "required"}
	}
	if len(ec.UniqueIDs) == 0 {
		return nil, &ConfigError{Path: path + ".unique_ids", Msg: "at least one unique id attribute is required"}
	}
	if !supportedModes[ec.Mode] {
		return nil, &ConfigError{Path: path + ".mode", Msg: fmt.Sprintf("mode %q: one of upsert, delete, purge, upsert-prune-scope-delete, upsert-prune-scope-purge", ec.Mode)}
	}
	ce := &compiledEntity{schema: ec.EntitySchema, uniqueIDs: ec.UniqueIDs, mode: ec.Mode}
	if len(ec.Pricing) > 0 && string(ec.Pricing) != "null" {
		var err error
		if ce.pricing, err = compilePricing(path+".pricing", ec.Pricing, eng); err != nil {
			return nil, err
		}
	}
	if ce.mode == "" {
		ce.mode = "upsert"
	}
	if strings.HasPrefix(ce.mode, "upsert-prune-scope-") {
		var err error
		if ce.scope, err = compileScope(path+".scope", ec.Scope, eng); err != nil {
			return nil, err
		}
	} else if len(ec.Scope) > 0 && string(ec.Scope) != "null" {
		return nil, &ConfigError{Path: path + ".scope", Msg: "only for the upsert-prune-scope modes"}
	}
	var err error
	if ec.JSONataExpression != "" {
		if ce.expr, err = compileExpr(eng, path+".jsonataExpression", ec.JSONataExpression); err != nil {
			return nil, err
		}
	}
	if ce.enabled, err = compileEnabled(eng, path+".enabled", ec.Enabled); err != nil {
		return nil, err
	}
	mapped := map[string]bool{}
	for j, fc := range ec.Fields {
		fpath := fmt.Sprintf("%s.fields[%d]", path, j)
		cf, err := compileField(fpath, fc, eng)
		if err != nil {
			return nil, err
		}
		if cf.source == sourceFileProxy {
			for _, uid := range ec.UniqueIDs {
				if uid == fc.Attribute {
					return nil, &ConfigError{Path: fpath + ".file_proxy_url", Msg: "a file_proxy_url cannot be a unique id"}
				}
			}
		}
		mapped[fc.Attribute] = true
		ce.fields = append(ce.fields, cf)
	}
	// Runtime error paths are built once here, not per event.
	ce.path = strings.TrimPrefix(path, "configuration.")
	for j := range ce.fields {
		ce.fieldPaths = append(ce.fieldPaths, fmt.Sprintf("%s.fields[%d]", ce.path, j))
	}
	for k, uid := range ec.UniqueIDs {
		if !mapped[uid] {
			return nil, &ConfigError{Path: fmt.Sprintf("%s.unique_ids[%d]", path, k), Msg: fmt.Sprintf("attribute %q is not mapped by any field", uid)}
		}
	}
	return ce, nil
}

func compileField(path string, fc FieldConfig, eng jsonata.Engine) (*compiledField, error) {
	if fc.Attribute == "" {
		return nil, &ConfigError{Path: path + ".attribute", Msg: "required"}
	}
	if fc.Type != "" && fc.Type != "email" && fc.Type != "phone" {
		return nil, &ConfigError{Path: path + "._type", Msg: "one of email, phone"}
	}
	cf := &compiledField{attribute: fc.Attribute, repeatable: fc.Type, uidOnly: fc.uidOnly}
	var err error
	if len(fc.Relations) > 0 && string(fc.Relations) != "null" {
		if cf.relation, err = compileRelations(path+".relations", fc.Relations, eng); err != nil {
			return nil, err
		}
		cf.source = sourceRelation
		if cf.enabled, err = compileEnabled(eng, path+".enabled", fc.Enabled); err != nil {
			return nil, err
		}
		return cf, nil
	}
	if len(fc.RelationRefs) > 0 && string(fc.RelationRefs) != "null" {
		if len(fc.Relations) > 0 && string(fc.Relations) != "null" {
			return nil, &ConfigError{Path: path + ".relation_refs", Msg: "relations and relation_refs exclude each other"}
		}
		if cf.relationRefs, err = compileRelationRefs(path+".relation_refs", fc.RelationRefs, eng); err != nil {
			return nil, err
		}
		cf.source = sourceRelationRef
		if cf.enabled, err = compileEnabled(eng, path+".enabled", fc.Enabled); err != nil {
			return nil, err
		}
		return cf, nil
	}
	if len(fc.FileProxyURL) > 0 && string(fc.FileProxyURL) != "null" {
		if len(fc.Constant) > 0 || fc.JSONataExpression != "" || fc.Field != "" || fc.Type != "" {
			return nil, &ConfigError{Path: path + ".file_proxy_url", Msg: "file_proxy_url builds the value: remove constant, jsonataExpression, field and _type"}
		}
		if cf.fileProxy, err = compileFileProxy(path+".file_proxy_url", fc.FileProxyURL, eng); err != nil {
			return nil, err
		}
		cf.source = sourceFileProxy
		if cf.enabled, err = compileEnabled(eng, path+".enabled", fc.Enabled); err != nil {
			return nil, err
		}
		return cf, nil
	}
	switch {
	case len(fc.Constant) > 0:
		v, err := jsonata.DecodeJSON(fc.Constant)
		if err != nil {
			return nil, &ConfigError{Path: path + ".constant", Msg: err.Error()}
		}
		cf.source, cf.constant = sourceConstant, v
	case fc.JSONataExpression != "":
		cf.source = sourceExpr
		if cf.expr, err = compileExpr(eng, path+".jsonataExpression", fc.JSONataExpression); err != nil {
			return nil, err
		}
	case strings.HasPrefix(fc.Field, "$"):
		cf.source = sourceExpr
		if cf.expr, err = compileExpr(eng, path+".field", fc.Field); err != nil {
			return nil, err
		}
	case fc.Field != "":
		cf.source, cf.key = sourceKey, fc.Field
	default:
		return nil, &ConfigError{Path: path, Msg: "one of constant, jsonataExpression or field is required"}
	}
	if cf.enabled, err = compileEnabled(eng, path+".enabled", fc.Enabled); err != nil {
		return nil, err
	}
	return cf, nil
}

func compileExpr(eng jsonata.Engine, path, src string) (jsonata.Expression, error) {
	e, err := eng.Compile(src)
	if err != nil {
		return nil, &ConfigError{Path: path, Msg: "JSONata does not compile: " + err.Error()}
	}
	return e, nil
}

// compileEnabled reads `enabled`: absent or true → always, false → never, string → JSONata.
func compileEnabled(eng jsonata.Engine, path string, raw json.RawMessage) (*enabledRule, error) {
	if len(raw) == 0 || string(raw) == "null" || string(raw) == "true" {
		return nil, nil
	}
	if string(raw) == "false" {
		return &enabledRule{never: true}, nil
	}
	var src string
	if err := json.Unmarshal(raw, &src); err != nil {
		return nil, &ConfigError{Path: path, Msg: "must be a boolean or a JSONata string"}
	}
	e, err := compileExpr(eng, path, src)
	if err != nil {
		return nil, err
	}
	return &enabledRule{expr: e}, nil
}

// RelationConfig is the spec's RelationConfig.
type RelationConfig struct {
	Operation         string               `json:"operation"`
	Items             []RelationItemConfig `json:"items"`
	JSONataExpression string               `json:"jsonataExpression"`
}

// RelationItemConfig is the spec's RelationItemConfig.
type RelationItemConfig struct {
	EntitySchema string                   `json:"entity_schema"`
	Tags         []string                 `json:"_tags"`
	UniqueIDs    []RelationUniqueIDConfig `json:"unique_ids"`
}

// RelationUniqueIDConfig is the spec's RelationUniqueIdField.
type RelationUniqueIDConfig struct {
	Attribute         string          `json:"attribute"`
	Type              string          `json:"_type"`
	Field             string          `json:"field"`
	JSONataExpression string          `json:"jsonataExpression"`
	Constant          json.RawMessage `json:"constant"`
}

var relationOperations = map[string]bool{"_set": true, "_append": true, "_append_all": true}

func compileRelations(path string, raw json.RawMessage, eng jsonata.Engine) (*compiledRelation, error) {
	var rc RelationConfig
	if err := json.Unmarshal(raw, &rc); err != nil {
		return nil, &ConfigError{Path: path, Msg: "not a relation configuration: " + err.Error()}
	}
	if !relationOperations[rc.Operation] {
		return nil, &ConfigError{Path: path + ".operation", Msg: "one of _set, _append, _append_all"}
	}
	cr := &compiledRelation{operation: rc.Operation}
	switch {
	case rc.JSONataExpression != "" && len(rc.Items) > 0:
		return nil, &ConfigError{Path: path, Msg: "items and jsonataExpression exclude each other"}
	case rc.JSONataExpression != "":
		var err error
		if cr.expr, err = compileExpr(eng, path+".jsonataExpression", rc.JSONataExpression); err != nil {
			return nil, err
		}
		return cr, nil
	case len(rc.Items) == 0:
		return nil, &ConfigError{Path: path, Msg: "items or jsonataExpression is required"}
	}
	for i, it := range rc.Items {
		ci, err := compileRelationItem(fmt.Sprintf("%s.items[%d]", path, i), it.EntitySchema, it.UniqueIDs, it.Tags, eng)
		if err != nil {
			return nil, err
		}
		cr.items = append(cr.items, *ci)
	}
	return cr, nil
}

func compileRelationItem(ipath, schema string, uids []RelationUniqueIDConfig, tags []string, eng jsonata.Engine) (*compiledRelationItem, error) {
	if schema == "" {
		return nil, &ConfigError{Path: ipath + ".entity_schema", Msg: "required"}
	}
	if len(uids) == 0 {
		return nil, &ConfigError{Path: ipath + ".unique_ids", Msg: "at least one unique id is required"}
	}
	ci := &compiledRelationItem{schema: schema, tags: tags}
	for k, u := range uids {
		upath := fmt.Sprintf("%s.unique_ids[%d]", ipath, k)
		if u.Attribute == "" {
			return nil, &ConfigError{Path: upath + ".attribute", Msg: "required"}
		}
		if u.Type != "" && u.Type != "email" && u.Type != "phone" {
			return nil, &ConfigError{Path: upath + "._type", Msg: "one of email, phone"}
		}
		f, err := compileField(upath, FieldConfig{Attribute: u.Attribute, Field: u.Field, JSONataExpression: u.JSONataExpression, Constant: u.Constant}, eng)
		if err != nil {
			return nil, err
		}
		f.repeatable = u.Type
		ci.uniqueIDs = append(ci.uniqueIDs, f)
	}
	return ci, nil
}

// ObjectV1 is IntegrationObjectV1: one object type mapped onto several entities.
type ObjectV1 struct {
	UniqueIDs map[string]json.RawMessage `json:"unique_ids"`
	Fields    []struct {
		Entity            string `json:"entity"`
		Attribute         string `json:"attribute"`
		Field             string `json:"field"`
		JSONataExpression string `json:"jsonataExpression"`
	} `json:"fields"`
}

// CompileV1 compiles a v1 object mapping: one entity update per distinct entity
// of its fields, in order of first appearance. unique_ids per entity is either a list of mapped
// attributes or {remote key: attribute}, whose values come from the payload's remote keys.
func CompileV1(raw json.RawMessage, eng jsonata.Engine) (*Mapping, error) {
	var obj ObjectV1
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, &ConfigError{Path: "mapping_configuration", Msg: "not a v1 object mapping: " + err.Error()}
	}
	var order []string
	byEntity := map[string]*EntityConfig{}
	for i, f := range obj.Fields {
		if f.Entity == "" {
			return nil, &ConfigError{Path: fmt.Sprintf("fields[%d].entity", i), Msg: "required"}
		}
		if f.Field != "" && f.JSONataExpression != "" {
			return nil, &ConfigError{Path: fmt.Sprintf("fields[%d]", i), Msg: "field and jsonataExpression exclude each other in v1"}
		}
		ec := byEntity[f.Entity]
		if ec == nil {
			ec = &EntityConfig{EntitySchema: f.Entity}
			byEntity[f.Entity] = ec
			order = append(order, f.Entity)
		}
		ec.Fields = append(ec.Fields, FieldConfig{Attribute: f.Attribute, Field: f.Field, JSONataExpression: f.JSONataExpression})
	}
	m := &Mapping{engine: eng}
	for i, name := range order {
		ec := byEntity[name]
		raw, ok := obj.UniqueIDs[name]
		if !ok {
			return nil, &ConfigError{Path: "unique_ids." + name, Msg: "every entity of fields needs its unique ids"}
		}
		var list []string
		var remote map[string]string
		switch {
		case json.Unmarshal(raw, &list) == nil:
			ec.UniqueIDs = list
		case json.Unmarshal(raw, &remote) == nil:
			keys := make([]string, 0, len(remote))
			for k := range remote {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				ec.UniqueIDs = append(ec.UniqueIDs, remote[k])
				ec.Fields = append(ec.Fields, FieldConfig{Attribute: remote[k], Field: k, uidOnly: true})
			}
		default:
			return nil, &ConfigError{Path: "unique_ids." + name, Msg: "a list of attributes or an object of remote key to attribute"}
		}
		ce, err := compileEntity(fmt.Sprintf("entities[%d]", i), *ec, eng)
		if err != nil {
			return nil, err
		}
		m.entities = append(m.entities, ce)
	}
	return m, nil
}

// CompileWrapped compiles the v1 simulation's mapping_configuration: {"version": "1.0", "mapping":
// {"objects": {…}}} or {"version": "2.0", "mapping": {"events": {…}}}, picking objectType.
func CompileWrapped(raw json.RawMessage, objectType string, eng jsonata.Engine) (*Mapping, error) {
	var wrapper struct {
		Version string `json:"version"`
		Mapping struct {
			Objects map[string]json.RawMessage `json:"objects"`
			Events  map[string]json.RawMessage `json:"events"`
		} `json:"mapping"`
	}
	if err := json.Unmarshal(raw, &wrapper); err != nil {
		return nil, &ConfigError{Path: "mapping_configuration", Msg: "an object {version, mapping} is required"}
	}
	pick := func(where string, m map[string]json.RawMessage) (json.RawMessage, error) {
		if cfg, ok := m[objectType]; ok {
			return cfg, nil
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, &ConfigError{Path: "object_type", Msg: fmt.Sprintf("%q is not a key of %s (keys: %s)", objectType, where, strings.Join(names, ", "))}
	}
	switch wrapper.Version {
	case "2.0":
		cfg, err := pick("mapping_configuration.mapping.events", wrapper.Mapping.Events)
		if err != nil {
			return nil, err
		}
		return Compile(cfg, eng)
	case "1.0", "":
		cfg, err := pick("mapping_configuration.mapping.objects", wrapper.Mapping.Objects)
		if err != nil {
			return nil, err
		}
		return CompileV1(cfg, eng)
	}
	return nil, &ConfigError{Path: "mapping_configuration.version", Msg: "1.0 or 2.0"}
}
