package configapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/typegen"
)

// Typed clients for connector integrations: preview the managed calls' types, generate a
// TypeScript package (nothing stored), commit a version (locks the use cases' types).

var packageName = regexp.MustCompile(`^(@[a-z0-9-~][a-z0-9-._~]*/)?[a-z0-9-~][a-z0-9-._~]*$`)

type typesRequest struct {
	PackageName   string                          `json:"package_name"`
	Version       string                          `json:"version"`
	Description   string                          `json:"description"`
	DomainPackage string                          `json:"domain_package"`
	DomainMapName string                          `json:"domain_map_name"`
	Annotations   map[string]*typegen.Annotations `json:"annotations"`
}

func (r *typesRequest) validate(c *gin.Context) bool {
	switch {
	case r.PackageName == "" || len(r.PackageName) > 214 || !packageName.MatchString(r.PackageName):
		httpapi.BadRequest(c, "package_name: an npm package name (lower case, optionally @scope/name)")
	case !typegen.ValidVersion(r.Version):
		httpapi.BadRequest(c, "version: a semantic version such as 1.2.0")
	case len(r.Description) > 1000 || len(r.DomainPackage) > 214 || len(r.DomainMapName) > 128:
		httpapi.BadRequest(c, "description, domain_package, domain_map_name: too long")
	default:
		return true
	}
	return false
}

// managedCallTypes infers the types of the integration's managed calls, with each use case's
// stored annotations or, when given, the request's.
func (a *API) managedCallTypes(integ *registry.Integration, override map[string]*typegen.Annotations) ([]*registry.UseCase, map[string]*typegen.UseCase, []string) {
	var useCases []*registry.UseCase
	types := map[string]*typegen.UseCase{}
	warnings := []string{}
	for _, uc := range a.Registry.Snapshot().UseCases(integ.OrgID, integ.ID) {
		if uc.Type != registry.TypeManagedCall || uc.Slug == "" {
			continue
		}
		useCases = append(useCases, uc)
		t, w := typegen.Infer(uc.Slug, uc.Name, uc.Configuration)
		warnings = append(warnings, w...)
		ann := storedAnnotations(uc)
		if o, ok := override[uc.Slug]; ok && o != nil {
			ann = o
		}
		warnings = append(warnings, t.Annotate(ann)...)
		types[uc.Slug] = t
	}
	return useCases, types, warnings
}

func storedAnnotations(uc *registry.UseCase) *typegen.Annotations {
	if len(uc.TypeAnnotations) == 0 {
		return nil
	}
	var a typegen.Annotations
	if json.Unmarshal(uc.TypeAnnotations, &a) != nil {
		return nil
	}
	return &a
}

// connectorConfig is the part of connector_config the type versions live in; other keys are kept.
type typeVersion struct {
	Version     string `json:"version"`
	PackageName string `json:"package_name"`
	GeneratedAt string `json:"generated_at"`
	GeneratedBy string `json:"generated_by"`
	Status      string `json:"status"`
}

func typeVersions(integ *registry.Integration) (map[string]json.RawMessage, []typeVersion, string) {
	cc := map[string]json.RawMessage{}
	_ = json.Unmarshal(integ.Fields["connector_config"], &cc)
	var versions []typeVersion
	_ = json.Unmarshal(cc["types_versions"], &versions)
	var latest string
	_ = json.Unmarshal(cc["latest_types_version"], &latest)
	return cc, versions, latest
}

type committedType struct {
	Request  *typegen.Descriptor `json:"request"`
	Response *typegen.Descriptor `json:"response"`
}

func committedTypes(integ *registry.Integration) map[string]*typegen.UseCase {
	var stored map[string]committedType
	if json.Unmarshal(integ.CommittedTypes, &stored) != nil {
		return nil
	}
	out := make(map[string]*typegen.UseCase, len(stored))
	for slug, t := range stored {
		out[slug] = &typegen.UseCase{Slug: slug, Request: t.Request, Response: t.Response}
	}
	return out
}

func (a *API) typesPreview(c *gin.Context) {
	integ, ok := a.integration(c)
	if !ok {
		return
	}
	useCases, types, _ := a.managedCallTypes(integ, nil)
	list := []gin.H{}
	for _, uc := range useCases {
		t := types[uc.Slug]
		entry := gin.H{"slug": uc.Slug, "name": uc.Name, "request_shape": t.Request, "response_shape": t.Response}
		if ann := storedAnnotations(uc); ann != nil {
			entry["existing_annotations"] = ann
		}
		list = append(list, entry)
	}
	_, _, previous := typeVersions(integ)
	changes := []typegen.Change{}
	if previous != "" {
		if d := typegen.Diff(committedTypes(integ), types); d != nil {
			changes = d
		}
	}
	version, bump := typegen.Bump(previous, changes)
	out := gin.H{"integration_name": integ.Name, "use_cases": list, "suggested_version": version, "suggested_bump": bump,
		"detected_changes": changes}
	if previous != "" {
		out["previous_version"] = previous
	}
	c.JSON(http.StatusOK, out)
}

func (a *API) generateTypes(c *gin.Context) {
	var req typesRequest
	if !httpapi.BindJSON(c, &req) || !req.validate(c) {
		return
	}
	integ, ok := a.integration(c)
	if !ok {
		return
	}
	_, types, warnings := a.managedCallTypes(integ, req.Annotations)
	list := make([]*typegen.UseCase, 0, len(types))
	for _, t := range types {
		list = append(list, t)
	}
	files, more := typegen.Generate(typegen.Package{Name: req.PackageName, Version: req.Version, Description: req.Description,
		DomainPackage: req.DomainPackage, DomainMapName: req.DomainMapName, IntegrationID: integ.ID, IntegrationName: integ.Name}, list)
	if len(list) == 0 {
		warnings = append(warnings, "the integration has no managed_call use cases with a slug")
	}
	c.JSON(http.StatusOK, gin.H{"package_name": req.PackageName, "version": req.Version, "files": files, "warnings": append(warnings, more...)})
}

// commitTypes records the version on the integration (the previous active one is deprecated),
// remembers the types for the next preview, and locks the use cases' types.
func (a *API) commitTypes(c *gin.Context) {
	var req typesRequest
	if !httpapi.BindJSON(c, &req) || !req.validate(c) {
		return
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	integ, ok := a.integration(c)
	if !ok || protectedIntegration(c, integ) {
		return
	}
	useCases, types, warnings := a.managedCallTypes(integ, req.Annotations)
	cc, versions, previous := typeVersions(integ)
	for _, v := range versions {
		if v.Version == req.Version {
			httpapi.Abort(c, http.StatusConflict, httpapi.CodeConflict, "version "+req.Version+" is committed already")
			return
		}
	}
	if previous != "" {
		if suggested, _ := typegen.Bump(previous, typegen.Diff(committedTypes(integ), types)); suggested != req.Version {
			warnings = append(warnings, fmt.Sprintf("the detected changes suggest version %s", suggested))
		}
	}
	now := a.Now().UTC()
	for i := range versions {
		if versions[i].Status == "active" {
			versions[i].Status = "deprecated"
		}
	}
	versions = append(versions, typeVersion{Version: req.Version, PackageName: req.PackageName,
		GeneratedAt: now.Format("2006-01-02T15:04:05.000Z07:00"), GeneratedBy: changedBy(c), Status: "active"})
	cc["types_versions"], _ = json.Marshal(versions)
	cc["latest_types_version"], _ = json.Marshal(req.Version)
	cc["latest_types_package_name"], _ = json.Marshal(req.PackageName)
	stored := map[string]committedType{}
	for slug, t := range types {
		stored[slug] = committedType{Request: t.Request, Response: t.Response}
	}
	next := *integ
	next.Fields = make(map[string]json.RawMessage, len(integ.Fields))
	for k, v := range integ.Fields {
		next.Fields[k] = v
	}
	next.Fields["connector_config"], _ = json.Marshal(cc)
	next.CommittedTypes, _ = json.Marshal(stored)
	next.UpdatedAt = now
	for _, uc := range useCases {
		locked := *uc
		locked.TypesLocked = true
		if ann, ok := req.Annotations[uc.Slug]; ok && ann != nil {
			locked.TypeAnnotations, _ = json.Marshal(ann)
		}
		locked.UpdatedAt = now
		if err := a.Registry.PutUseCase(c.Request.Context(), &locked); err != nil {
			unavailable(c, err)
			return
		}
	}
	if err := a.Registry.PutIntegration(c.Request.Context(), &next); err != nil {
		unavailable(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"committed": true, "warnings": warnings})
}
