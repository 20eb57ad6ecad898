package configapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/configapi"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
)

type client struct {
	t   *testing.T
	url string
}

func setup(t *testing.T) (*client, func() *client) {
	t.Helper()
	c := kafkatest.New(t)
	start := func() *client {
		reg := registrytest.Start(t, c)
		tokens := &auth.StaticTokens{}
		tokens.Add("a", auth.Principal{OrgID: "org-a", Permissions: auth.AllPermissions})
		tokens.Add("b", auth.Principal{OrgID: "org-b", Permissions: auth.AllPermissions})
		tokens.Add("ro", auth.Principal{OrgID: "org-a", Permissions: []string{auth.PermRead}})
		e := httpapi.NewEngine(kafkatest.Quiet())
		(&configapi.API{Registry: reg}).Register(e.Group("/", httpapi.RequireAuth(tokens)))
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
