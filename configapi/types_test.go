package configapi_test

import (
	"net/http"
	"strings"
	"testing"
)

const connectorIntegration = `{"name":"Billing","integration_type":"connector","connector_config":{"base_url":"https://api.billing.example"},"use_cases":[
 {"name":"Get customer","slug":"get-customer","type":"managed_call","enabled":true,"configuration":{
  "operation":{"method":"GET","path":"/customers/{{id}}"},
  "response_mapping":"{\"name\": first & ' ' & last, \"vendors\": vendors.{\"id\": id}, \"active\": status = 'A'}"},
  "type_annotations":{"response":{"vendors[].id":"string"}}},
 {"name":"Create order","slug":"create-order","type":"managed_call","enabled":true,"configuration":{
  "operation":{"method":"POST","path":"/orders"},"request_mapping":"{\"sku\": item.sku}"}}]}`

func useCaseBySlug(t *testing.T, integ map[string]any, slug string) map[string]any {
	t.Helper()
	for _, u := range integ["use_cases"].([]any) {
		if u := u.(map[string]any); u["slug"] == slug {
			return u
		}
	}
	t.Fatalf("no use case %s in %v", slug, integ)
	return nil
}

func TestTypesPreviewGenerateCommitAndUnlock(t *testing.T) {
	c, _ := setup(t)
	status, integ := c.do("POST", "/v2/integrations", "a", connectorIntegration)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, integ)
	}
	id := integ["id"].(string)
	get := useCaseBySlug(t, integ, "get-customer")
	if get["types_locked"] != false || get["type_annotations"].(map[string]any)["response"] == nil {
		t.Fatalf("managed call use case view %v", get)
	}

	status, preview := c.do("POST", "/v1/integrations/"+id+"/generate-types-preview", "ro", "")
	if status != http.StatusOK || preview["suggested_version"] != "1.0.0" || preview["previous_version"] != nil || len(preview["use_cases"].([]any)) != 2 {
		t.Fatalf("first preview: %d %v", status, preview)
	}
	shapes := map[string]map[string]any{}
	for _, u := range preview["use_cases"].([]any) {
		u := u.(map[string]any)
		shapes[u["slug"].(string)] = u
	}
	resp := shapes["get-customer"]["response_shape"].(map[string]any)["properties"].(map[string]any)
	vendorID := resp["vendors"].(map[string]any)["items"].(map[string]any)["properties"].(map[string]any)["id"].(map[string]any)
	if resp["name"].(map[string]any)["kind"] != "string" || resp["active"].(map[string]any)["kind"] != "boolean" || vendorID["kind"] != "string" {
		t.Errorf("get-customer response shape %v", resp)
	}
	req := shapes["create-order"]["request_shape"].(map[string]any)["properties"].(map[string]any)
	if sku := req["item"].(map[string]any)["properties"].(map[string]any)["sku"].(map[string]any); sku["kind"] != "unknown" || sku["source"] != "item.sku" {
		t.Errorf("create-order request shape %v", req)
	}

	status, gen := c.do("POST", "/v1/integrations/"+id+"/generate-types", "ro", `{"package_name":"@acme/billing","version":"1.0.0"}`)
	files, _ := gen["files"].(map[string]any)
	if status != http.StatusOK || !strings.Contains(files["index.d.ts"].(string), "export type GetCustomerResponse") || files["package.json"] == nil {
		t.Fatalf("generate: %d %v", status, gen)
	}
	if status, body := c.do("POST", "/v1/integrations/"+id+"/generate-types", "ro", `{"package_name":"Not A Name","version":"1"}`); status != http.StatusBadRequest {
		t.Errorf("bad package name: %d %v", status, body)
	}
	if status, _ := c.do("POST", "/v1/integrations/"+id+"/commit-types", "ro", `{"package_name":"@acme/billing","version":"1.0.0"}`); status != http.StatusForbidden {
		t.Errorf("commit with erp:read only: %d", status)
	}
	if status, _ := c.do("POST", "/v1/integrations/"+id+"/generate-types-preview", "b", ""); status != http.StatusNotFound {
		t.Errorf("another org's preview: %d", status)
	}

	if status, body := c.do("POST", "/v1/integrations/"+id+"/commit-types", "a", `{"package_name":"@acme/billing","version":"1.0.0"}`); status != http.StatusOK || body["committed"] != true {
		t.Fatalf("commit: %d %v", status, body)
	}
	if status, body := c.do("POST", "/v1/integrations/"+id+"/commit-types", "a", `{"package_name":"@acme/billing","version":"1.0.0"}`); status != http.StatusConflict {
		t.Errorf("same version twice: %d %v", status, body)
	}
	_, integ = c.do("GET", "/v2/integrations/"+id, "a", "")
	cc := integ["connector_config"].(map[string]any)
	if cc["latest_types_version"] != "1.0.0" || len(cc["types_versions"].([]any)) != 1 || useCaseBySlug(t, integ, "get-customer")["types_locked"] != true {
		t.Fatalf("after commit: %v", integ)
	}
	_, preview = c.do("POST", "/v1/integrations/"+id+"/generate-types-preview", "a", "")
	if preview["previous_version"] != "1.0.0" || preview["suggested_bump"] != "minor" || len(preview["detected_changes"].([]any)) != 0 {
		t.Errorf("preview without changes: %v", preview)
	}

	// Editing a locked use case's configuration unlocks it; dropping a response field is breaking.
	ucID := useCaseBySlug(t, integ, "get-customer")["id"].(string)
	status, body := c.do("PUT", "/v1/integrations/"+id+"/use-cases/"+ucID, "a", `{"configuration":{"operation":{"method":"GET","path":"/customers/{{id}}"},
		"response_mapping":"{\"name\": first & ' ' & last, \"vendors\": vendors.{\"id\": id}}"}}`)
	if status != http.StatusOK || body["types_locked"] != false {
		t.Fatalf("edit locked use case: %d %v", status, body)
	}
	_, preview = c.do("POST", "/v1/integrations/"+id+"/generate-types-preview", "a", "")
	changes := preview["detected_changes"].([]any)
	if preview["suggested_version"] != "2.0.0" || preview["suggested_bump"] != "major" || len(changes) != 1 ||
		changes[0].(map[string]any)["field"] != "response.active" || changes[0].(map[string]any)["type"] != "breaking" {
		t.Errorf("preview after the edit: %v", preview)
	}
	if status, body := c.do("POST", "/v1/integrations/"+id+"/commit-types", "a", `{"package_name":"@acme/billing","version":"2.0.0"}`); status != http.StatusOK {
		t.Fatalf("commit 2.0.0: %d %v", status, body)
	}
	// The versions are server state: an update that omits them keeps them.
	if status, body := c.do("PUT", "/v2/integrations/"+id, "a", `{"name":"Billing 2","integration_type":"connector","connector_config":{"base_url":"https://b.example","types_versions":[]}}`); status != http.StatusOK {
		t.Fatalf("update: %d %v", status, body)
	}
	_, integ = c.do("GET", "/v2/integrations/"+id, "a", "")
	versions := integ["connector_config"].(map[string]any)["types_versions"].([]any)
	if len(versions) != 2 || versions[0].(map[string]any)["status"] != "deprecated" || versions[1].(map[string]any)["status"] != "active" ||
		integ["connector_config"].(map[string]any)["base_url"] != "https://b.example" {
		t.Errorf("versions after an update: %v", integ["connector_config"])
	}
	status, created := c.do("POST", "/v2/integrations", "a", `{"name":"Y","integration_type":"connector","connector_config":{"base_url":"https://y.example",
		"types_versions":[{"version":"9.9.9","package_name":"x","generated_at":"2026-01-01T00:00:00Z","generated_by":"me","status":"active"}],"latest_types_version":"9.9.9"}}`)
	if cc := created["connector_config"].(map[string]any); status != http.StatusCreated || cc["types_versions"] != nil || cc["latest_types_version"] != nil {
		t.Errorf("a create must not bring its own type versions: %d %v", status, created)
	}
	if status, body := c.do("POST", "/v2/integrations", "a", `{"name":"X","use_cases":[{"name":"I","slug":"i","type":"inbound","enabled":true,
		"configuration":{"entities":[]},"type_annotations":{"request":{"a":"string"}}}]}`); status != http.StatusBadRequest {
		t.Errorf("annotations on an inbound use case: %d %v", status, body)
	}
}
