package api

import (
	"encoding/json"
	"testing"
)

func TestDocumentDropsWhatIsNotServedAndAddsErpstreamsOperations(t *testing.T) {
	b, err := Document([]Operation{FromGin("GET", "/v1/integrations/:integrationId")})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Info   map[string]any                       `json:"info"`
		Paths  map[string]map[string]map[string]any `json:"paths"`
		Routes []string                             `json:"x-erpstream-routes"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Info["version"] != "0.58.0+erpstream" || len(doc.Routes) != 1 || doc.Routes[0] != "GET /v1/integrations/{integrationId}" {
		t.Errorf("info %v routes %v", doc.Info, doc.Routes)
	}
	if _, ok := doc.Paths["/v1/erp/trigger"]["post"]; !ok {
		t.Error("/v1/erp/trigger is served but not documented")
	}
	if op := doc.Paths["/v1/webhooks/{webhookId}"]["put"]; op == nil || op["x-erpstream-addition"] != true {
		t.Errorf("webhook definitions: %v", op)
	}
	if op := doc.Paths["/download"]["get"]; op == nil || op["security"] == nil {
		t.Errorf("/download: %v", op)
	}
	if op := doc.Paths["/v1/managed-call/{slug}/execute"]["post"]; op == nil {
		t.Error("a served operation of the specification is missing")
	}
	if op := doc.Paths["/v1/environment/{key}"]["put"]; op == nil || op["parameters"] == nil {
		t.Errorf("an addition with a path parameter: %v", op)
	}
}
