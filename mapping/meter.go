package mapping

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// MeterReadingConfig is the spec's IntegrationMeterReading.
type MeterReadingConfig struct {
	JSONataExpression string          `json:"jsonataExpression"`
	ReadingMatching   string          `json:"reading_matching"`
	Mode              string          `json:"mode"`
	Scope             json.RawMessage `json:"scope"`
	Meter             *MeterIDsConfig `json:"meter"`
	MeterCounter      *MeterIDsConfig `json:"meter_counter"`
	Fields            []FieldConfig   `json:"fields"`
}

// MeterIDsConfig is MeterUniqueIdsConfig.
type MeterIDsConfig struct {
	UniqueIDs []RelationUniqueIDConfig `json:"unique_ids"`
}

type compiledMeterReading struct {
	expr      jsonata.Expression
	matching  string
	mode      string
	meter     []*compiledField
	counter   []*compiledField // nil: no counter
	fields    []*compiledField
	hasScope  bool
	scopeFrom string
}

// MeterReadingUpdate is the spec's MeterReadingUpdate (plus mode, as later API versions add).
type MeterReadingUpdate struct {
	Meter        EntityRef  `json:"meter"`
	MeterCounter *EntityRef `json:"meter_counter,omitempty"`
	Attributes   Attributes `json:"attributes"`
	Mode         string     `json:"mode"`
	// Matching is the entry's reading_matching: external_id or strict-date.
	Matching string `json:"-"`
	// Entry is the index of the meter_readings entry that produced the update.
	Entry int `json:"-"`
}

// ReadingPrune is the prune plan of an upsert-prune-scope entry for one (meter, counter) pair:
// after the upserts, every other reading of the pair whose external id is not
// kept is deleted; with Source set, only readings of that source are eligible.
type ReadingPrune struct {
	Meter           EntityRef  `json:"meter"`
	MeterCounter    *EntityRef `json:"meter_counter,omitempty"`
	Source          string     `json:"source,omitempty"`
	KeepExternalIDs []any      `json:"keep_external_ids"`
	Entry           int        `json:"-"`
}

// EntityRef names an entity by unique ids: {"$entity_unique_ids": {…}}.
type EntityRef struct {
	UniqueIDs Attributes `json:"$entity_unique_ids"`
}

var (
	readingMatchings = map[string]bool{"": true, "external_id": true, "strict-date": true}
	readingModes     = map[string]bool{"": true, "upsert": true, "delete": true, "upsert-prune-scope": true}
	readingSources   = map[string]bool{"ERP": true, "ECP": true, "360": true, "journey-submission": true}
	readingReasons   = map[string]bool{"regular": true, "irregular": true, "last": true, "first": true, "meter_change": true,
		"contract_change": true, "meter_adjustment": true}
)

func compileMeterReading(path string, raw json.RawMessage, eng jsonata.Engine) (*compiledMeterReading, error) {
	var mc MeterReadingConfig
	if err := json.Unmarshal(raw, &mc); err != nil {
		return nil, &ConfigError{Path: path, Msg: "not a meter reading configuration: " + err.Error()}
	}
	if !readingMatchings[mc.ReadingMatching] {
		return nil, &ConfigError{Path: path + ".reading_matching", Msg: "one of external_id, strict-date"}
	}
	if !readingModes[mc.Mode] {
		return nil, &ConfigError{Path: path + ".mode", Msg: "one of upsert, delete, upsert-prune-scope"}
	}
	cm := &compiledMeterReading{matching: mc.ReadingMatching, mode: mc.Mode}
	if cm.matching == "" {
		cm.matching = "external_id"
	}
	if cm.mode == "" {
		cm.mode = "upsert"
	}
	if mc.Meter == nil || len(mc.Meter.UniqueIDs) == 0 {
		return nil, &ConfigError{Path: path + ".meter.unique_ids", Msg: "at least one unique id of the meter is required"}
	}
	if cm.matching == "strict-date" && mc.MeterCounter == nil {
		return nil, &ConfigError{Path: path + ".meter_counter", Msg: "strict-date matching needs the meter counter (readings are matched per counter and day)"}
	}
	if len(mc.Scope) > 0 && string(mc.Scope) != "null" {
		if cm.mode != "upsert-prune-scope" {
			return nil, &ConfigError{Path: path + ".scope", Msg: "only for mode upsert-prune-scope"}
		}
		var scope struct {
			Source string `json:"source"`
		}
		if err := json.Unmarshal(mc.Scope, &scope); err != nil {
			return nil, &ConfigError{Path: path + ".scope", Msg: "an object {source?} is required"}
		}
		cm.hasScope, cm.scopeFrom = true, scope.Source
	}
	if len(mc.Fields) == 0 {
		return nil, &ConfigError{Path: path + ".fields", Msg: "required"}
	}
	var err error
	if mc.JSONataExpression != "" {
		if cm.expr, err = compileExpr(eng, path+".jsonataExpression", mc.JSONataExpression); err != nil {
			return nil, err
		}
	}
	if cm.meter, err = compileUniqueIDs(path+".meter.unique_ids", mc.Meter.UniqueIDs, eng); err != nil {
		return nil, err
	}
	if mc.MeterCounter != nil {
		if len(mc.MeterCounter.UniqueIDs) == 0 {
			return nil, &ConfigError{Path: path + ".meter_counter.unique_ids", Msg: "at least one unique id of the counter is required"}
		}
		if cm.counter, err = compileUniqueIDs(path+".meter_counter.unique_ids", mc.MeterCounter.UniqueIDs, eng); err != nil {
			return nil, err
		}
	}
	for j, fc := range mc.Fields {
		cf, err := compileField(fmt.Sprintf("%s.fields[%d]", path, j), fc, eng)
		if err != nil {
			return nil, err
		}
		if cf.source == sourceFileProxy || cf.source == sourceRelation || cf.source == sourceRelationRef {
			return nil, &ConfigError{Path: fmt.Sprintf("%s.fields[%d]", path, j), Msg: "meter reading fields take constant, jsonataExpression or field"}
		}
		cm.fields = append(cm.fields, cf)
	}
	return cm, nil
}

func compileUniqueIDs(path string, uids []RelationUniqueIDConfig, eng jsonata.Engine) ([]*compiledField, error) {
	var out []*compiledField
	for k, u := range uids {
		upath := fmt.Sprintf("%s[%d]", path, k)
		if u.Attribute == "" {
			return nil, &ConfigError{Path: upath + ".attribute", Msg: "required"}
		}
		f, err := compileField(upath, FieldConfig{Attribute: u.Attribute, Field: u.Field, JSONataExpression: u.JSONataExpression, Constant: u.Constant}, eng)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// extract runs the meter-reading steps 1–5 (docs/mapping.md) for one meter_readings entry, and plans its pruning.
func (cm *compiledMeterReading) extract(ctx context.Context, path string, payload any, env *jsonata.Env) ([]MeterReadingUpdate, []ReadingPrune, []Warning, *Error) {
	data := payload
	if cm.expr != nil {
		v, err := cm.expr.Eval(ctx, payload, env)
		if err != nil {
			return nil, nil, nil, &Error{Code: "MAPPING_EXPRESSION_FAILED", Path: path + ".jsonataExpression", Msg: err.Error()}
		}
		data = v
	}
	var out []MeterReadingUpdate
	for n, item := range itemsOf(data) {
		ipath := fmt.Sprintf("%s (item %d)", path, n)
		upd := MeterReadingUpdate{Mode: cm.mode, Matching: cm.matching}
		var err *Error
		if upd.Meter, upd.MeterCounter, err = cm.meterOf(ctx, ipath, item, env); err != nil {
			return nil, nil, nil, err
		}
		for j, f := range cm.fields {
			v, ok, err := f.value(ctx, fmt.Sprintf("%s.fields[%d]", path, j), item, env)
			if err != nil {
				return nil, nil, nil, err
			}
			if ok {
				upd.Attributes.set(f.attribute, v)
			}
		}
		if err := cm.validate(ipath, &upd); err != nil {
			return nil, nil, nil, err
		}
		out = append(out, upd)
	}
	if cm.mode != "upsert-prune-scope" {
		return out, nil, nil, nil
	}
	prunes, warning := cm.plan(ctx, path, payload, env, out)
	return out, prunes, warning, nil
}

func (cm *compiledMeterReading) meterOf(ctx context.Context, path string, item any, env *jsonata.Env) (EntityRef, *EntityRef, *Error) {
	meter, err := uniqueIDValues(ctx, path+".meter", cm.meter, item, env)
	if err != nil {
		return EntityRef{}, nil, err
	}
	if cm.counter == nil {
		return EntityRef{UniqueIDs: meter}, nil, nil
	}
	counter, err := uniqueIDValues(ctx, path+".meter_counter", cm.counter, item, env)
	if err != nil {
		return EntityRef{}, nil, err
	}
	return EntityRef{UniqueIDs: meter}, &EntityRef{UniqueIDs: counter}, nil
}

// plan groups an upsert-prune-scope entry's readings by (meter, counter). With no readings the
// pair is derived from the payload itself, and everything of that
// pair in scope is pruned; when it cannot be derived nothing is pruned, with a warning.
func (cm *compiledMeterReading) plan(ctx context.Context, path string, payload any, env *jsonata.Env, readings []MeterReadingUpdate) ([]ReadingPrune, []Warning) {
	if len(readings) == 0 {
		meter, counter, err := cm.meterOf(ctx, path, payload, env)
		if err != nil {
			return nil, []Warning{{EntitySchema: "meter_reading", Field: "configuration." + path,
				Message: "no readings, and the meter (and counter) cannot be derived from the payload: nothing pruned (" + err.Msg + ")"}}
		}
		return []ReadingPrune{{Meter: meter, MeterCounter: counter, Source: cm.scopeFrom, KeepExternalIDs: []any{}}}, nil
	}
	var out []ReadingPrune
	index := map[string]int{}
	for _, r := range readings {
		key := display(r.Meter.UniqueIDs)
		if r.MeterCounter != nil {
			key += display(r.MeterCounter.UniqueIDs)
		}
		i, ok := index[key]
		if !ok {
			i = len(out)
			index[key] = i
			out = append(out, ReadingPrune{Meter: r.Meter, MeterCounter: r.MeterCounter, Source: cm.scopeFrom, KeepExternalIDs: []any{}})
		}
		if id, ok := r.Attributes.get("external_id"); ok {
			out[i].KeepExternalIDs = append(out[i].KeepExternalIDs, id)
		}
	}
	return out, nil
}

func uniqueIDValues(ctx context.Context, path string, fields []*compiledField, item any, env *jsonata.Env) (Attributes, *Error) {
	var out Attributes
	var missing []string
	for k, f := range fields {
		v, ok, err := f.value(ctx, fmt.Sprintf("%s.unique_ids[%d]", path, k), item, env)
		if err != nil {
			return nil, err
		}
		if !ok || isEmpty(v) {
			missing = append(missing, f.attribute)
			continue
		}
		out = append(out, Attribute{Name: f.attribute, Value: v})
	}
	if len(missing) > 0 {
		return nil, &Error{Code: "MISSING_UNIQUE_IDENTIFIERS", Path: path, Msg: fmt.Sprintf("no value for unique id attribute(s) %v", missing)}
	}
	return out, nil
}

// validate checks a reading's attributes (§11 steps 3–4) and normalises a date-only timestamp.
func (cm *compiledMeterReading) validate(path string, upd *MeterReadingUpdate) *Error {
	required := []string{"external_id", "timestamp", "source", "value"}
	if cm.mode == "delete" {
		required = []string{"external_id"}
	}
	var missing []string
	for _, name := range required {
		if v, ok := upd.Attributes.get(name); !ok || isEmpty(v) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return &Error{Code: "INVALID_METER_READING_ATTRIBUTES", Path: path, Msg: "missing attributes " + strings.Join(missing, ", ")}
	}
	if v, ok := upd.Attributes.get("source"); ok {
		if s, _ := v.(string); !readingSources[s] {
			return &Error{Code: "INVALID_METER_READING_ATTRIBUTES", Path: path, Msg: fmt.Sprintf("source %v: one of ERP, ECP, 360, journey-submission", display(v))}
		}
	}
	if v, ok := upd.Attributes.get("reason"); ok && !isEmpty(v) {
		if s, _ := v.(string); !readingReasons[s] {
			return &Error{Code: "INVALID_METER_READING_ATTRIBUTES", Path: path,
				Msg: fmt.Sprintf("reason %v: one of regular, irregular, last, first, meter_change, contract_change, meter_adjustment", display(v))}
		}
	}
	if v, ok := upd.Attributes.get("timestamp"); ok {
		ts, err := readingTimestamp(v)
		if err != nil {
			return &Error{Code: "INVALID_METER_READING_ATTRIBUTES", Path: path, Msg: err.Error()}
		}
		upd.Attributes.set("timestamp", ts)
	}
	return nil
}

var (
	dateOnly = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)
	dateTime = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2})T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})?$`)
)

// readingTimestamp accepts YYYY-MM-DD (made midnight UTC) and YYYY-MM-DDTHH:mm:ss[.fff][Z|±HH:mm]
// (unchanged), on real calendar dates; anything else must be converted in JSONata.
func readingTimestamp(v any) (string, error) {
	s, ok := v.(string)
	bad := fmt.Errorf("timestamp %v: an ISO 8601 date (YYYY-MM-DD) or date-time is required; convert other formats in JSONata", display(v))
	if !ok {
		return "", bad
	}
	switch {
	case dateOnly.MatchString(s):
		if _, err := time.Parse(time.DateOnly, s); err != nil {
			return "", fmt.Errorf("timestamp %q is not a calendar date", s)
		}
		return s + "T00:00:00.000Z", nil
	case dateTime.MatchString(s):
		day := dateTime.FindStringSubmatch(s)[1]
		if _, err := time.Parse(time.DateOnly, day); err != nil {
			return "", fmt.Errorf("timestamp %q is not a calendar date", s)
		}
		return s, nil
	}
	return "", bad
}

func display(v any) string {
	b, err := jsonata.MarshalValue(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
