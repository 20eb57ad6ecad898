package configapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/erpstream/erpstream/configapi"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/internal/secrets"
)

type client struct {
	t   *testing.T
	url string
}

var testBox, _ = secrets.NewBox(secrets.NewKey())

func setup(t *testing.T) (*client, func() *client) {
	t.Helper()
	c := kafkatest.New(t)
	start := func() *client {
		reg := registrytest.Start(t, c)
		tokens := &auth.StaticTokens{}
		tokens.Add("a", auth.Principal{OrgID: "org-a", Permissions: auth.AllPermissions})
		tokens.Add("b", auth.Principal{OrgID: "org-b", Permissions: auth.AllPermissions})
		tokens.Add("ro", auth.Principal{OrgID: "org-a", Permissions: []string{auth.PermRead}})
		tokens.Add("writer", auth.Principal{OrgID: "org-a", TokenID: "tok-writer", Permissions: []string{auth.PermRead, auth.PermWrite}})
		e := httpapi.NewEngine(kafkatest.Quiet())
		(&configapi.API{Registry: reg, Secrets: testBox}).Register(e.Group("/", httpapi.RequireAuth(tokens)))
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		return &client{t: t, url: srv.URL}
	}
	return start(), start
}

func (c *client) do(method, path, tok, body string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		c.t.Fatalf("%s %s: not JSON (%d): %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

const inbound = `{"name":"Customers","slug":"customer","type":"inbound","enabled":true,"configuration":{"entities":[
	{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"customerNumber"}]}]}}`

func TestConfigLifecycleAcrossARestart(t *testing.T) {
	c, restart := setup(t)
	status, integ := c.do("POST", "/v2/integrations", "a", `{"name":"SAP","description":"ERP","settings":{"autoRefresh":{"enabled":false}},"use_cases":[`+inbound+`]}`)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %v", status, integ)
	}
	id := integ["id"].(string)
	if integ["orgId"] != "org-a" || integ["description"] != "ERP" || len(integ["use_cases"].([]any)) != 1 {
		t.Fatalf("created integration %v", integ)
	}
	uc := integ["use_cases"].([]any)[0].(map[string]any)
	if uc["slug"] != "customer" || uc["integrationId"] != id || uc["enabled"] != true {
		t.Fatalf("embedded use case %v", uc)
	}

	// Another org gets 404 for the id, never 403.
	if status, body := c.do("GET", "/v2/integrations/"+id, "b", ""); status != http.StatusNotFound || body["code"] != "INTEGRATION_NOT_FOUND" {
		t.Fatalf("other org: %d %v", status, body)
	}
	// Without erp:write, creating is 403.
	if status, _ := c.do("POST", "/v1/integrations", "ro", `{"name":"x"}`); status != http.StatusForbidden {
		t.Fatalf("read-only create: %d", status)
	}
	// Duplicate slug in the same integration is a conflict.
	if status, body := c.do("POST", "/v1/integrations/"+id+"/use-cases", "a", inbound); status != http.StatusConflict {
		t.Fatalf("duplicate slug: %d %v", status, body)
	}
	// Toggle the use case off with a partial update.
	ucID := uc["id"].(string)
	if status, body := c.do("PUT", "/v1/integrations/"+id+"/use-cases/"+ucID, "a", `{"enabled":false}`); status != http.StatusOK || body["enabled"] != false || body["slug"] != "customer" {
		t.Fatalf("toggle: %d %v", status, body)
	}

	// A restarted service sees everything.
	c2 := restart()
	status, got := c2.do("GET", "/v1/integrations/"+id+"/use-cases/"+ucID, "a", "")
	if status != http.StatusOK || got["enabled"] != false {
		t.Fatalf("after restart: %d %v", status, got)
	}
	if status, list := c2.do("GET", "/v1/integrations", "a", ""); status != http.StatusOK || len(list["integrations"].([]any)) != 1 {
		t.Fatalf("list after restart: %d %v", status, list)
	}
	if status, _ := c2.do("DELETE", "/v1/integrations/"+id, "a", ""); status != http.StatusOK {
		t.Fatalf("delete: %d", status)
	}
	if status, _ := c2.do("GET", "/v1/integrations/"+id+"/use-cases/"+ucID, "a", ""); status != http.StatusNotFound {
		t.Fatalf("use case outlived its integration: %d", status)
	}
}

func TestInvalidUseCasesAreRejectedWithTheFieldPath(t *testing.T) {
	c, _ := setup(t)
	_, integ := c.do("POST", "/v1/integrations", "a", `{"name":"SAP"}`)
	id := integ["id"].(string)
	cases := map[string]struct{ body, mentions string }{
		"jsonata does not compile": {`{"name":"x","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"c","unique_ids":["a"],"fields":[{"attribute":"a","jsonataExpression":"$x("}]}]}}`, "configuration.entities[0].fields[0].jsonataExpression"},
		"bad slug":                 {`{"name":"x","slug":"Not OK","type":"inbound","enabled":true,"configuration":{}}`, "slug"},
		"unknown type":             {`{"name":"x","type":"magic","enabled":true}`, "type"},
		"missing enabled":          {`{"name":"x","type":"outbound"}`, "enabled"},
		"inbound without config":   {`{"name":"x","type":"inbound","enabled":true}`, "configuration"},
		"empty name":               {`{"name":"","type":"outbound","enabled":true}`, "name"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			status, body := c.do("POST", "/v1/integrations/"+id+"/use-cases", "a", tc.body)
			if status != http.StatusBadRequest || body["code"] != "VALIDATION_ERROR" || !strings.Contains(body["message"].(string), tc.mentions) {
				t.Fatalf("got %d %v, want 400 mentioning %q", status, body, tc.mentions)
			}
		})
	}
	if status, body := c.do("POST", "/v2/integrations", "a", `{"name":"y","use_cases":[`+inbound+`,`+inbound+`]}`); status != http.StatusConflict {
		t.Fatalf("two embedded use cases with one slug: %d %v", status, body)
	}
	if status, list := c.do("GET", "/v2/integrations", "a", ""); status != http.StatusOK || len(list["integrations"].([]any)) != 1 {
		t.Fatalf("a rejected v2 create left something behind: %v", list)
	}
}

func TestHistoryPagesNewestFirstAndLosesNoConcurrentChange(t *testing.T) {
	c, _ := setup(t)
	_, integ := c.do("POST", "/v2/integrations", "a", `{"name":"SAP","use_cases":[`+inbound+`]}`)
	id := integ["id"].(string)
	ucID := integ["use_cases"].([]any)[0].(map[string]any)["id"].(string)
	path := "/v1/integrations/" + id + "/use-cases/" + ucID
	for i := 0; i < 15; i++ {
		if status, body := c.do("PUT", path, "writer", fmt.Sprintf(`{"name":"v%d","change_description":"step %d"}`, i, i)); status != 200 {
			t.Fatalf("update %d: %d %v", i, status, body)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c.do("PUT", path, "writer", fmt.Sprintf(`{"enabled":%v}`, i%2 == 0))
		}(i)
	}
	wg.Wait()
	status, page := c.do("GET", path+"/history", "a", "")
	entries := page["history"].([]any)
	if status != 200 || len(entries) != 20 || page["next_cursor"] == nil {
		t.Fatalf("first page: %d, %d entries, cursor %v", status, len(entries), page["next_cursor"])
	}
	first := entries[0].(map[string]any)
	if first["changed_by"] != "tok-writer" || first["useCaseId"] != ucID {
		t.Errorf("newest entry %v", first)
	}
	status, page2 := c.do("GET", path+"/history?cursor="+page["next_cursor"].(string), "a", "")
	if status != 200 || len(page2["history"].([]any)) != 5 || page2["next_cursor"] != nil {
		t.Fatalf("second page: %d %v", status, page2)
	}
	seen := map[string]bool{}
	for _, e := range append(entries, page2["history"].([]any)...) {
		seen[e.(map[string]any)["id"].(string)] = true
	}
	if len(seen) != 25 {
		t.Fatalf("%d distinct history entries for 25 updates", len(seen))
	}
	// The oldest entry is the use case as created.
	if last := page2["history"].([]any)[4].(map[string]any); last["name"] != "Customers" {
		t.Errorf("oldest entry %v", last)
	}
	if status, _ := c.do("GET", path+"/history?cursor=bm90LWEtY3Vyc29y", "a", ""); status != 400 {
		t.Errorf("a tampered cursor: %d", status)
	}
}

func TestV2UpdateIsDeclarative(t *testing.T) {
	c, _ := setup(t)
	second := strings.Replace(strings.Replace(inbound, `"customer"`, `"contract"`, 1), `"Customers"`, `"Contracts"`, 1)
	_, integ := c.do("POST", "/v2/integrations", "a", `{"name":"SAP","use_cases":[`+inbound+`,`+second+`]}`)
	id := integ["id"].(string)
	ucs := integ["use_cases"].([]any)
	firstID := ucs[0].(map[string]any)["id"].(string)
	// Omitted use_cases: untouched.
	if status, got := c.do("PUT", "/v2/integrations/"+id, "a", `{"name":"SAP 2","description":"renamed"}`); status != 200 || len(got["use_cases"].([]any)) != 2 || got["name"] != "SAP 2" {
		t.Fatalf("rename: %d %v", status, got)
	}
	// Desired state: the first updated, the second gone, a third created.
	third := strings.Replace(strings.Replace(inbound, `"customer"`, `"meter"`, 1), `"Customers"`, `"Meters"`, 1)
	body := `{"name":"SAP 2","use_cases":[{"id":"` + firstID + `","name":"Customers v2","type":"inbound","enabled":false},` + third + `]}`
	status, got := c.do("PUT", "/v2/integrations/"+id, "a", body)
	if status != 200 {
		t.Fatalf("declarative update: %d %v", status, got)
	}
	names := map[string]bool{}
	for _, u := range got["use_cases"].([]any) {
		names[u.(map[string]any)["name"].(string)] = true
	}
	if len(names) != 2 || !names["Customers v2"] || !names["Meters"] {
		t.Fatalf("use cases after the update: %v", names)
	}
	if status, _ := c.do("PUT", "/v2/integrations/"+id, "a", `{"description":"no name"}`); status != 400 {
		t.Errorf("v2 update without name: %d", status)
	}
	if status, h := c.do("GET", "/v1/integrations/"+id+"/use-cases/"+firstID+"/history", "a", ""); status != 200 || len(h["history"].([]any)) != 1 {
		t.Errorf("a declarative update wrote no history: %v", h)
	}
}

func TestProtectedIntegrations(t *testing.T) {
	c, _ := setup(t)
	_, integ := c.do("POST", "/v2/integrations", "a", `{"name":"Core","protected":true,"use_cases":[`+inbound+`]}`)
	id := integ["id"].(string)
	ucID := integ["use_cases"].([]any)[0].(map[string]any)["id"].(string)
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/v1/integrations/" + id, `{"description":"x"}`},
		{"PUT", "/v1/integrations/" + id + "/use-cases/" + ucID, `{"enabled":false}`},
		{"DELETE", "/v1/integrations/" + id + "/use-cases/" + ucID, ""},
		{"POST", "/v1/integrations/" + id + "/use-cases", strings.Replace(inbound, "customer", "other", 1)},
	} {
		if status, body := c.do(tc.method, tc.path, "writer", tc.body); status != 403 || body["code"] != "INTEGRATION_PROTECTED" {
			t.Errorf("%s %s by a non-admin: %d %v", tc.method, tc.path, status, body)
		}
	}
	if status, body := c.do("DELETE", "/v1/integrations/"+id, "a", ""); status != 403 || body["code"] != "INTEGRATION_PROTECTED" {
		t.Errorf("deleting a protected integration as admin: %d %v", status, body)
	}
	if status, _ := c.do("PUT", "/v1/integrations/"+id, "a", `{"protected":false}`); status != 200 {
		t.Fatalf("admin unprotects: %d", status)
	}
	if status, _ := c.do("DELETE", "/v1/integrations/"+id, "a", ""); status != 200 {
		t.Fatalf("delete after unprotecting: %d", status)
	}
}

func TestSecureProxyReadOnlyFieldsAndEverySchema(t *testing.T) {
	c, _ := setup(t)
	_, integ := c.do("POST", "/v1/integrations", "a", `{"name":"Proxy"}`)
	id := integ["id"].(string)
	status, uc := c.do("POST", "/v1/integrations/"+id+"/use-cases", "a", `{"name":"p","slug":"p","type":"secure_proxy","enabled":true,
		"configuration":{"vpc_mode":"static_ip","allowed_domains":["evil.example"]}}`)
	if status != 201 {
		t.Fatalf("create: %d %v", status, uc)
	}
	cfg := uc["configuration"].(map[string]any)
	if cfg["vpc_mode"] != "static_ip" || cfg["allowed_domains"] != nil {
		t.Fatalf("allowed_domains must be ignored on write: %v", cfg)
	}
	path := "/v1/integrations/" + id + "/use-cases/" + uc["id"].(string)
	if status, body := c.do("PUT", path, "a", `{"configuration":{"vpc_mode":"secure_link"}}`); status != 400 || !strings.Contains(body["message"].(string), "vpc_mode") {
		t.Errorf("changing vpc_mode: %d %v", status, body)
	}
	if status, list := c.do("GET", "/v1/integrations/secure-proxies", "a", ""); status != 200 || len(list["secure_proxies"].([]any)) != 1 {
		t.Errorf("secure proxies: %d %v", status, list)
	}
	cases := map[string]struct{ body, mentions string }{
		"outbound without mappings": {`{"name":"o","type":"outbound","enabled":true,"configuration":{"event_catalog_event":"contract.created"}}`, "mappings"},
		"outbound webhook id":       {`{"name":"o","type":"outbound","enabled":true,"configuration":{"event_catalog_event":"c","mappings":[{"name":"m","jsonata_expression":"$","enabled":true,"delivery":{"type":"webhook"}}]}}`, "configuration.mappings[0].delivery"},
		"managed call path":         {`{"name":"m","type":"managed_call","enabled":true,"configuration":{"operation":{"method":"GET"}}}`, "configuration.operation"},
		"file proxy steps":          {`{"name":"f","type":"file_proxy","enabled":true,"configuration":{"steps":[],"response":{"body":"$","encoding":"base64"}}}`, "configuration.steps"},
		"secure proxy vpc mode":     {`{"name":"s","type":"secure_proxy","enabled":true,"configuration":{"vpc_mode":"tunnel"}}`, "configuration.vpc_mode"},
		"outbound jsonata":          {`{"name":"o","type":"outbound","enabled":true,"configuration":{"event_catalog_event":"c","mappings":[{"name":"m","jsonata_expression":"$x(","enabled":true,"delivery":{"type":"webhook","webhook_id":"w"}}]}}`, "configuration.mappings[0].jsonata_expression: JSONata does not compile"},
		"managed call mapping":      {`{"name":"m","type":"managed_call","enabled":true,"configuration":{"operation":{"method":"GET","path":"/x"},"response_mapping":"{"}}`, "configuration.response_mapping"},
		"inbound unique ids":        {`{"name":"i","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"c","unique_ids":"x","fields":[]}]}}`, "configuration.entities[0].unique_ids"},
		"pricing on_error":          {`{"name":"i","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"c","unique_ids":["a"],"fields":[{"attribute":"a","field":"a"}],"pricing":{"items_jsonata":"x","on_error":"retry"}}]}}`, "configuration.entities[0].pricing.on_error"},
		"relation ref path":         {`{"name":"i","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"c","unique_ids":["a"],"fields":[{"attribute":"a","field":"a"},{"attribute":"r","relation_refs":{"operation":"_set","items":[{"entity_schema":"contact","unique_ids":[{"attribute":"n","field":"n"}],"path":"address","value":{"attribute":"addresses","field":"x"}}]}}]}]}}`, "configuration.entities[0].fields[1].relation_refs.items[0].value.attribute"},
	}
	for name, tc := range cases {
		if status, body := c.do("POST", "/v1/integrations/"+id+"/use-cases", "a", tc.body); status != 400 || !strings.Contains(body["message"].(string), tc.mentions) {
			t.Errorf("%s: %d %v (want 400 naming %s)", name, status, body, tc.mentions)
		}
	}
	if status, body := c.do("POST", "/v1/integrations", "a", `{"name":"C","integration_type":"connector","connector_config":{"base_url":"https://x","auth":{"type":"bearer","token":"plain-secret"}}}`); status != 400 || !strings.Contains(body["message"].(string), "connector_config.auth.token") {
		t.Errorf("a plain secret in connector_config: %d %v", status, body)
	}
	if status, body := c.do("POST", "/v1/integrations", "a", `{"name":"C","integration_type":"connector","connector_config":{"base_url":"https://x","auth":{"type":"bearer","token":"{{env.PARTNER_TOKEN}}"}}}`); status != 201 {
		t.Errorf("an env reference in connector_config: %d %v", status, body)
	}
	if status, body := c.do("POST", "/v1/integrations", "a", `{"name":"C","integration_type":"crm"}`); status != 400 || !strings.Contains(body["message"].(string), "integration_type") {
		t.Errorf("unknown integration_type: %d %v", status, body)
	}
}

func TestEnvironmentSecretsAreWriteOnly(t *testing.T) {
	c, _ := setup(t)
	if status, body := c.do("PUT", "/v1/environment/PARTNER_TOKEN", "a", `{"value":"s3cret","type":"SecretString"}`); status != 200 || body["value"] != nil {
		t.Fatalf("put secret: %d %v", status, body)
	}
	if status, _ := c.do("PUT", "/v1/environment/erp.base_url", "a", `{"value":"https://erp.example"}`); status != 200 {
		t.Fatal("put string")
	}
	status, list := c.do("GET", "/v1/environment", "a", "")
	vars := list["variables"].([]any)
	if status != 200 || len(vars) != 2 {
		t.Fatalf("list: %d %v", status, list)
	}
	for _, v := range vars {
		m := v.(map[string]any)
		if m["key"] == "PARTNER_TOKEN" && m["value"] != nil {
			t.Fatalf("a secret value was returned: %v", m)
		}
		if m["key"] == "erp.base_url" && m["value"] != "https://erp.example" {
			t.Fatalf("string value: %v", m)
		}
	}
	if status, other := c.do("GET", "/v1/environment", "b", ""); status != 200 || len(other["variables"].([]any)) != 0 {
		t.Fatalf("another org sees the environment: %v", other)
	}
	if status, _ := c.do("PUT", "/v1/environment/bad key", "a", `{"value":"x"}`); status != 400 {
		t.Errorf("bad key: %d", status)
	}
	if status, _ := c.do("DELETE", "/v1/environment/PARTNER_TOKEN", "ro", ""); status != 403 {
		t.Errorf("delete without erp:write: %d", status)
	}
}

// settings.entity_schemas: configurations naming an undeclared schema are refused with the path,
// also when the settings change under existing use cases.
func TestDeclaredEntitySchemasAreChecked(t *testing.T) {
	c, _ := setup(t)
	contracts := `{"name":"Contracts","slug":"contracts","type":"inbound","enabled":true,"configuration":{"entities":[
		{"entity_schema":"contract","unique_ids":["nr"],"fields":[{"attribute":"nr","field":"nr"},
		{"attribute":"customer","relations":{"operation":"_set","items":[{"entity_schema":"SCHEMA","unique_ids":[{"attribute":"no","field":"kunde"}]}]}}]}]}}`
	status, integ := c.do("POST", "/v2/integrations", "a", `{"name":"SAP","settings":{"entity_schemas":["contract","contact"]},"use_cases":[`+
		strings.Replace(contracts, "SCHEMA", "contcat", 1)+`]}`)
	if status != http.StatusBadRequest || !strings.Contains(integ["message"].(string), `use_cases[0].configuration.entities[0].fields[1].relations.items[0].entity_schema: schema "contcat"`) {
		t.Fatalf("an undeclared related schema: %d %v", status, integ)
	}
	status, integ = c.do("POST", "/v2/integrations", "a", `{"name":"SAP","settings":{"entity_schemas":["contract","contact"]},"use_cases":[`+
		strings.Replace(contracts, "SCHEMA", "contact", 1)+`]}`)
	if status != http.StatusCreated {
		t.Fatalf("declared schemas: %d %v", status, integ)
	}
	id := integ["id"].(string)
	status, body := c.do("POST", "/v1/integrations/"+id+"/use-cases", "a", `{"name":"Meters","type":"inbound","enabled":true,"configuration":{"entities":[
		{"entity_schema":"meter","unique_ids":["nr"],"fields":[{"attribute":"nr","field":"nr"}]}]}}`)
	if status != http.StatusBadRequest || !strings.Contains(body["message"].(string), `configuration.entities[0].entity_schema: schema "meter"`) {
		t.Errorf("a use case of an undeclared schema: %d %v", status, body)
	}
	status, body = c.do("PUT", "/v1/integrations/"+id, "a", `{"settings":{"entity_schemas":["contact"]}}`)
	if status != http.StatusBadRequest || !strings.Contains(body["message"].(string), `use case Contracts: configuration.entities[0].entity_schema: schema "contract"`) {
		t.Errorf("settings that leave out a schema in use: %d %v", status, body)
	}
}
