package mapping

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// PruneScopeUpdate is the plan of an upsert-prune-scope entry: after the entry's
// upserts, the entities of EntitySlug in the scope that were not upserted are deleted or purged.
// The simulation shows it as prune_scope_updates (the shape later API versions use).
type PruneScopeUpdate struct {
	EntitySlug    string       `json:"entity_slug"`
	Scope         PruneScope   `json:"scope"`
	KeepUniqueIDs []Attributes `json:"keep_unique_ids"`
	DeletionMode  string       `json:"deletion_mode"` // delete or purge
}

// PruneScope is the resolved scope.
type PruneScope struct {
	ScopeMode string     `json:"scope_mode"`
	Schema    string     `json:"schema,omitempty"`
	UniqueIDs Attributes `json:"unique_ids,omitempty"`
	Query     Attributes `json:"query,omitempty"`
}

type compiledScope struct {
	mode      string
	schema    string
	uniqueIDs []*compiledField
	query     []*compiledField
}

// PruneScopeConfig is the spec's PruneScopeConfig.
type PruneScopeConfig struct {
	ScopeMode string                   `json:"scope_mode"`
	Schema    string                   `json:"schema"`
	UniqueIDs []RelationUniqueIDConfig `json:"unique_ids"`
	Query     []RelationUniqueIDConfig `json:"query"`
}

func compileScope(path string, raw json.RawMessage, eng jsonata.Engine) (*compiledScope, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, &ConfigError{Path: path, Msg: "required for the upsert-prune-scope modes"}
	}
	var sc PruneScopeConfig
	if err := json.Unmarshal(raw, &sc); err != nil {
		return nil, &ConfigError{Path: path, Msg: "not a scope configuration: " + err.Error()}
	}
	cs := &compiledScope{mode: sc.ScopeMode, schema: sc.Schema}
	var err error
	switch sc.ScopeMode {
	case "relations":
		if sc.Schema == "" {
			return nil, &ConfigError{Path: path + ".schema", Msg: "required for scope_mode relations"}
		}
		if len(sc.UniqueIDs) == 0 {
			return nil, &ConfigError{Path: path + ".unique_ids", Msg: "required for scope_mode relations"}
		}
		if cs.uniqueIDs, err = compileUniqueIDs(path+".unique_ids", sc.UniqueIDs, eng); err != nil {
			return nil, err
		}
	case "query":
		if len(sc.Query) == 0 {
			return nil, &ConfigError{Path: path + ".query", Msg: "required for scope_mode query"}
		}
		if cs.query, err = compileUniqueIDs(path+".query", sc.Query, eng); err != nil {
			return nil, err
		}
	default:
		return nil, &ConfigError{Path: path + ".scope_mode", Msg: "one of relations, query"}
	}
	return cs, nil
}

// plan resolves the scope against the payload and lists what the entry upserted.
func (ce *compiledEntity) plan(ctx context.Context, path string, payload any, env *jsonata.Env, upserted []EntityUpdate) (PruneScopeUpdate, *Error) {
	pu := PruneScopeUpdate{EntitySlug: ce.schema, DeletionMode: strings.TrimPrefix(ce.mode, "upsert-prune-scope-"),
		Scope: PruneScope{ScopeMode: ce.scope.mode, Schema: ce.scope.schema}, KeepUniqueIDs: []Attributes{}}
	var err *Error
	if ce.scope.mode == "relations" {
		pu.Scope.UniqueIDs, err = uniqueIDValues(ctx, path+".scope", ce.scope.uniqueIDs, payload, env)
	} else {
		pu.Scope.Query, err = uniqueIDValues(ctx, path+".scope.query", ce.scope.query, payload, env)
	}
	if err != nil {
		return PruneScopeUpdate{}, err
	}
	for _, u := range upserted {
		pu.KeepUniqueIDs = append(pu.KeepUniqueIDs, u.UniqueIdentifiers)
	}
	return pu, nil
}

func (ce *compiledEntity) pruneMode() bool { return strings.HasPrefix(ce.mode, "upsert-prune-scope-") }
