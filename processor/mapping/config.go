// Package mapping turns an event payload into entity updates with an inbound use case's v2
// configuration (MAPPING.md). Compile once per use-case version; Map per event. The extraction
// is pure: no datastore reads, so the pipeline and a simulation map identically.
package mapping

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/erpstream/erpstream/internal/jsonata"
	engine "github.com/erpstream/erpstream/jsonata"
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
}

// ConfigError names the offending configuration path.
type ConfigError struct {
	Path string
	Msg  string
}

func (e *ConfigError) Error() string { return e.Path + ": " + e.Msg }

// Modes this version applies. The others of the spec are refused at save time instead of being
// applied half-way.
var supportedModes = map[string]bool{"": true, "upsert": true, "delete": true}

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
	if len(cfg.MeterReadings) > 0 {
		return nil, &ConfigError{Path: "configuration.meter_readings", Msg: "meter readings are not supported by this version"}
	}
	m := &Mapping{engine: eng}
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
		return nil, &ConfigError{Path: path + ".mode", Msg: fmt.Sprintf("mode %q is not supported by this version (supported: upsert, delete)", ec.Mode)}
	}
	if len(ec.Pricing) > 0 && string(ec.Pricing) != "null" {
		return nil, &ConfigError{Path: path + ".pricing", Msg: "pricing is not supported by this version"}
	}
	ce := &compiledEntity{schema: ec.EntitySchema, uniqueIDs: ec.UniqueIDs, mode: ec.Mode}
	if ce.mode == "" {
		ce.mode = "upsert"
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
		mapped[fc.Attribute] = true
		ce.fields = append(ce.fields, cf)
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
	for name, v := range map[string]json.RawMessage{"relations": fc.Relations, "relation_refs": fc.RelationRefs, "file_proxy_url": fc.FileProxyURL} {
		if len(v) > 0 && string(v) != "null" {
			return nil, &ConfigError{Path: path + "." + name, Msg: name + " is not supported by this version"}
		}
	}
	if fc.Type != "" {
		return nil, &ConfigError{Path: path + "._type", Msg: "_type is not supported by this version"}
	}
	cf := &compiledField{attribute: fc.Attribute}
	var err error
	switch {
	case len(fc.Constant) > 0:
		v, err := engine.DecodeJSON(fc.Constant)
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
