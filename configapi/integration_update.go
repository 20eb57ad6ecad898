package configapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/registry"
)

// Updating an integration: PUT v1 patches its fields; PUT v2 replaces them and, when use_cases is
// present, makes the integration's use cases what the list says. Both validate everything before
// writing anything.

// patchIntegration is PUT /v1/integrations/{id}: absent keys stay unchanged, null clears a key;
// use_cases is ignored.
func (a *API) patchIntegration(c *gin.Context) {
	raw, ok := objectBody(c)
	if !ok {
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	cur, ok := a.integration(c)
	if !ok || protectedIntegration(c, cur) {
		return
	}
	next := *cur
	next.Fields = make(map[string]json.RawMessage, len(cur.Fields))
	for k, v := range cur.Fields {
		next.Fields[k] = v
	}
	applyFields(&next, raw)
	keepTypeVersions(cur, &next)
	if !a.validIntegration(c, &next) {
		return
	}
	if !a.schemasDeclared(c, &next, a.Registry.Snapshot().UseCases(cur.OrgID, cur.ID)) {
		return
	}
	if a.commitIntegration(c, &next, nil) {
		c.JSON(http.StatusOK, next.APIView())
	}
}

// replaceIntegration is PUT /v2/integrations/{id}: the fields are replaced (name required). When
// use_cases is present it is the desired state: use cases matched by id are updated, the others
// created, unlisted ones deleted; omitted, the use cases stay untouched.
func (a *API) replaceIntegration(c *gin.Context) {
	raw, ok := objectBody(c)
	if !ok {
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	cur, ok := a.integration(c)
	if !ok || protectedIntegration(c, cur) {
		return
	}
	var useCases []useCaseRequest
	listed, hasUseCases := raw["use_cases"]
	if hasUseCases {
		if err := json.Unmarshal(listed, &useCases); err != nil {
			httpapi.BadRequest(c, "use_cases: must be an array of use cases: %s", err.Error())
			return
		}
	}
	next := *cur
	next.Fields = map[string]json.RawMessage{}
	applyFields(&next, raw)
	keepTypeVersions(cur, &next)
	if next.Fields["name"] == nil {
		httpapi.BadRequest(c, "name: required")
		return
	}
	if !a.validIntegration(c, &next) {
		return
	}
	after := a.Registry.Snapshot().UseCases(cur.OrgID, cur.ID)
	var changes []useCaseChange
	if hasUseCases {
		if changes, ok = a.planUseCases(c, cur, useCases, next.UpdatedAt); !ok {
			return
		}
		after = nil
		for _, ch := range changes {
			if ch.put != nil {
				after = append(after, ch.put)
			}
		}
	}
	if !a.schemasDeclared(c, &next, after) {
		return
	}
	if a.commitIntegration(c, &next, changes) {
		c.JSON(http.StatusOK, a.withUseCases(&next))
	}
}

func objectBody(c *gin.Context) (map[string]json.RawMessage, bool) {
	var raw map[string]json.RawMessage
	if !httpapi.BindJSON(c, &raw) {
		return nil, false
	}
	if raw == nil {
		httpapi.BadRequest(c, "body must be a JSON object")
		return nil, false
	}
	return raw, true
}

// applyFields writes the body's editable fields onto next (null deletes); identity, timestamps
// and use_cases are not fields.
func applyFields(next *registry.Integration, raw map[string]json.RawMessage) {
	for k, v := range raw {
		switch k {
		case "id", "orgId", "created_at", "updated_at", "use_cases":
		default:
			if string(v) == "null" {
				delete(next.Fields, k)
			} else {
				next.Fields[k] = v
			}
		}
	}
}

// typeVersionKeys of connector_config are written by commit-types only: an update keeps the
// stored values whatever it sends.
var typeVersionKeys = []string{"types_versions", "latest_types_version", "latest_types_package_name"}

func keepTypeVersions(cur, next *registry.Integration) {
	var before, after map[string]json.RawMessage
	_ = json.Unmarshal(cur.Fields["connector_config"], &before)
	if json.Unmarshal(next.Fields["connector_config"], &after) != nil || after == nil {
		return
	}
	for _, k := range typeVersionKeys {
		if v, ok := before[k]; ok {
			after[k] = v
		} else {
			delete(after, k)
		}
	}
	next.Fields["connector_config"], _ = json.Marshal(after)
}

// validIntegration checks next's name, its fields against the spec's IntegrationEditableFields
// and its secret references, and stamps its update time; it answers 400 itself.
func (a *API) validIntegration(c *gin.Context, next *registry.Integration) bool {
	if n, ok := next.Fields["name"]; ok {
		var name string
		if json.Unmarshal(n, &name) != nil || name == "" || utf8.RuneCountInString(name) > 255 {
			httpapi.BadRequest(c, "name: string of 1 to 255 characters")
			return false
		}
		next.Name = name
	}
	fields, _ := json.Marshal(next.Fields)
	if msg := validateAgainst("IntegrationEditableFields", "integration", fields); msg != "" {
		httpapi.BadRequest(c, "%s", msg)
		return false
	}
	if msg := checkSecretReferences(next.Fields["connector_config"]); msg != "" {
		httpapi.BadRequest(c, "%s", msg)
		return false
	}
	next.UpdatedAt = a.Now().UTC()
	return true
}

// useCaseChange is one planned write of an integration update: a use case put (prev is its
// version before, for the history), or deleted.
type useCaseChange struct {
	put     *registry.UseCase
	prev    *registry.UseCase
	deleted *registry.UseCase
}

// planUseCases turns the desired use-case list into changes, refusing (400/409, answered here)
// invalid entries, ids of other integrations and slugs used twice.
func (a *API) planUseCases(c *gin.Context, cur *registry.Integration, useCases []useCaseRequest, now time.Time) ([]useCaseChange, bool) {
	snap := a.Registry.Snapshot()
	var changes []useCaseChange
	keep := map[string]bool{}
	slugs := map[string]string{}
	for i := range useCases {
		r := &useCases[i]
		var existing *registry.UseCase
		if r.ID != nil {
			if u, ok := snap.UseCase(cur.OrgID, *r.ID); ok && u.IntegrationID == cur.ID {
				existing = u
			}
		}
		var ch useCaseChange
		if existing == nil {
			uc, status, code, msg := a.buildUseCase(cur.OrgID, cur.ID, r, now)
			if uc == nil {
				httpapi.Abort(c, status, code, fmt.Sprintf("use_cases[%d].%s", i, msg))
				return nil, false
			}
			if other, taken := snap.UseCase(cur.OrgID, uc.ID); taken && other.IntegrationID != cur.ID {
				httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("use_cases[%d].id: %s belongs to another integration", i, uc.ID))
				return nil, false
			}
			ch = useCaseChange{put: uc}
		} else {
			updated, status, code, msg := a.applyUseCaseUpdate(existing, r, now)
			if updated == nil {
				httpapi.Abort(c, status, code, fmt.Sprintf("use_cases[%d].%s", i, msg))
				return nil, false
			}
			ch = useCaseChange{put: updated, prev: existing}
		}
		changes = append(changes, ch)
		keep[ch.put.ID] = true
		if slug := ch.put.Slug; slug != "" {
			if prev, dup := slugs[slug]; dup && prev != ch.put.ID {
				httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, fmt.Sprintf("use_cases[%d].slug: %q is used twice", i, slug))
				return nil, false
			}
			slugs[slug] = ch.put.ID
		}
	}
	for _, u := range snap.UseCases(cur.OrgID, cur.ID) {
		if !keep[u.ID] {
			changes = append(changes, useCaseChange{deleted: u})
		}
	}
	return changes, true
}

// schemasDeclared checks that the use cases as they will be fit the entity schemas the
// integration's settings declare.
func (a *API) schemasDeclared(c *gin.Context, next *registry.Integration, useCases []*registry.UseCase) bool {
	for _, uc := range useCases {
		if msg := a.undeclaredSchema(next.Fields["settings"], uc); msg != "" {
			httpapi.BadRequest(c, "use case %s: %s", uc.Name, msg)
			return false
		}
	}
	return true
}

// commitIntegration writes the integration, then each use-case change (with its history entry).
func (a *API) commitIntegration(c *gin.Context, next *registry.Integration, changes []useCaseChange) bool {
	if err := a.Registry.PutIntegration(c.Request.Context(), next); err != nil {
		unavailable(c, err)
		return false
	}
	for _, ch := range changes {
		var err error
		switch {
		case ch.deleted != nil:
			err = a.Registry.DeleteUseCase(c.Request.Context(), ch.deleted.OrgID, ch.deleted.ID)
		case ch.prev != nil:
			if err = a.Registry.PutHistory(c.Request.Context(), historyOf(ch.prev, "update", changedBy(c), next.UpdatedAt)); err == nil {
				err = a.Registry.PutUseCase(c.Request.Context(), ch.put)
			}
		default:
			err = a.Registry.PutUseCase(c.Request.Context(), ch.put)
		}
		if err != nil {
			unavailable(c, err)
			return false
		}
	}
	return true
}
