package configapi_test

import (
	"net/http"
	"testing"
)

// Ids may be chosen by clients, so one org can send another's: whatever ids org B sends, org A's
// integrations, use cases, app mappings and environment stay as they are, found and routed.
func TestOneOrgCannotTouchAnothersObjectsWhateverIDsItSends(t *testing.T) {
	c, _ := setup(t)
	const ucID = "5f0c7d1e-2a4b-4c3d-9e8f-0a1b2c3d4e5f"
	const component = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	uc := `{"id":"` + ucID + `","name":"Customers","slug":"customer","type":"inbound","enabled":true,
		"configuration":{"entities":[{"entity_schema":"contact","unique_ids":["no"],"fields":[{"attribute":"no","field":"no"}]}]}}`
	status, a := c.do("POST", "/v2/integrations", "a", `{"name":"A","use_cases":[`+uc+`]}`)
	if status != http.StatusCreated {
		t.Fatalf("org A: %d %v", status, a)
	}
	aID := a["id"].(string)
	if status, body := c.do("PUT", "/v1/integrations/"+aID+"/app-mapping", "a", `{"app_id":"sap","component_id":"`+component+`"}`); status != http.StatusOK {
		t.Fatalf("org A app mapping: %d %v", status, body)
	}
	if status, body := c.do("PUT", "/v1/environment/API_URL", "a", `{"value":"https://a.example","type":"String"}`); status != http.StatusOK && status != http.StatusCreated {
		t.Fatalf("org A env: %d %v", status, body)
	}

	// Org B: the same use-case id (in an integration of its own), the same app and component,
	// the same environment key, and A's integration id in every path.
	status, b := c.do("POST", "/v2/integrations", "b", `{"name":"B","use_cases":[`+uc+`]}`)
	if status != http.StatusCreated {
		t.Fatalf("org B with A's use-case id: %d %v", status, b)
	}
	bID := b["id"].(string)
	c.do("PUT", "/v1/integrations/"+bID+"/app-mapping", "b", `{"app_id":"sap","component_id":"`+component+`","overwrite":true}`)
	c.do("PUT", "/v1/environment/API_URL", "b", `{"value":"https://b.example","type":"String"}`)
	for _, call := range [][3]string{
		{"GET", "/v2/integrations/" + aID, ""},
		{"PUT", "/v2/integrations/" + aID, `{"name":"taken"}`},
		{"DELETE", "/v2/integrations/" + aID, ""},
		{"PUT", "/v1/integrations/" + aID + "/use-cases/" + ucID, `{"enabled":false}`},
		{"DELETE", "/v1/integrations/" + aID + "/use-cases/" + ucID, ""},
		{"PUT", "/v1/integrations/" + aID + "/app-mapping", `{"app_id":"sap","component_id":"` + component + `","overwrite":true}`},
		{"DELETE", "/v1/integrations/" + aID + "/app-mapping", `{"app_id":"sap","component_id":"` + component + `"}`},
	} {
		if status, body := c.do(call[0], call[1], "b", call[2]); status != http.StatusNotFound {
			t.Errorf("org B %s %s: %d %v, want 404", call[0], call[1], status, body)
		}
	}
	// B deletes its copy of the use case, then its integration.
	if status, body := c.do("DELETE", "/v1/integrations/"+bID+"/use-cases/"+ucID, "b", ""); status != http.StatusOK && status != http.StatusNoContent {
		t.Errorf("org B deletes its own use case: %d %v", status, body)
	}
	if status, body := c.do("DELETE", "/v2/integrations/"+bID, "b", ""); status != http.StatusOK && status != http.StatusNoContent {
		t.Errorf("org B deletes its integration: %d %v", status, body)
	}
	c.do("DELETE", "/v1/environment/API_URL", "b", "")

	// A's objects are all there, unchanged.
	status, got := c.do("GET", "/v1/integrations/"+aID+"/use-cases/"+ucID, "a", "")
	if status != http.StatusOK || got["enabled"] != true || got["slug"] != "customer" {
		t.Errorf("org A's use case after B's writes: %d %v", status, got)
	}
	status, got = c.do("GET", "/v2/integrations/"+aID, "a", "")
	if status != http.StatusOK || got["name"] != "A" || len(got["use_cases"].([]any)) != 1 {
		t.Errorf("org A's integration after B's writes: %d %v", status, got)
	}
	status, env := c.do("GET", "/v1/environment", "a", "")
	if status != http.StatusOK || !containsValue(env, "https://a.example") {
		t.Errorf("org A's environment after B's writes: %d %v", status, env)
	}
	if status, body := c.do("DELETE", "/v1/integrations/"+aID+"/app-mapping", "a", `{"app_id":"sap","component_id":"`+component+`"}`); status != http.StatusOK {
		t.Errorf("org A's app mapping after B's writes: %d %v", status, body)
	}
}

// An embedded use case may not take an existing use case's id (which moved it, untraced, out of
// a protected integration); app mappings of a protected integration need erp:admin.
func TestProtectedIntegrationsKeepTheirUseCasesAndMappings(t *testing.T) {
	c, _ := setup(t)
	const ucID = "1f0c7d1e-2a4b-4c3d-9e8f-0a1b2c3d4e5f"
	const component = "2a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	uc := `{"id":"` + ucID + `","name":"Customers","slug":"customer","type":"inbound","enabled":true,
		"configuration":{"entities":[{"entity_schema":"contact","unique_ids":["no"],"fields":[{"attribute":"no","field":"no"}]}]}}`
	status, p := c.do("POST", "/v2/integrations", "a", `{"name":"P","protected":true,"use_cases":[`+uc+`]}`)
	if status != http.StatusCreated {
		t.Fatalf("protected integration: %d %v", status, p)
	}
	pID := p["id"].(string)
	if status, body := c.do("POST", "/v2/integrations", "writer", `{"name":"thief","use_cases":[`+uc+`]}`); status != http.StatusConflict {
		t.Errorf("embedding a protected integration's use-case id: %d %v, want 409", status, body)
	}
	if status, got := c.do("GET", "/v1/integrations/"+pID+"/use-cases/"+ucID, "a", ""); status != http.StatusOK {
		t.Errorf("the protected use case: %d %v", status, got)
	}
	if status, body := c.do("PUT", "/v1/integrations/"+pID+"/app-mapping", "writer", `{"app_id":"sap","component_id":"`+component+`"}`); status != http.StatusForbidden {
		t.Errorf("app mapping on a protected integration without erp:admin: %d %v, want 403", status, body)
	}
	if status, body := c.do("PUT", "/v1/integrations/"+pID+"/app-mapping", "a", `{"app_id":"sap","component_id":"`+component+`"}`); status != http.StatusOK {
		t.Fatalf("app mapping as admin: %d %v", status, body)
	}
	status, other := c.do("POST", "/v2/integrations", "writer", `{"name":"other"}`)
	if status != http.StatusCreated {
		t.Fatalf("other: %d %v", status, other)
	}
	if status, body := c.do("PUT", "/v1/integrations/"+other["id"].(string)+"/app-mapping", "writer",
		`{"app_id":"sap","component_id":"`+component+`","overwrite":true}`); status != http.StatusForbidden {
		t.Errorf("moving a protected integration's app mapping away without erp:admin: %d %v, want 403", status, body)
	}
}

func containsValue(v any, want string) bool {
	switch x := v.(type) {
	case string:
		return x == want
	case map[string]any:
		for _, e := range x {
			if containsValue(e, want) {
				return true
			}
		}
	case []any:
		for _, e := range x {
			if containsValue(e, want) {
				return true
			}
		}
	}
	return false
}
