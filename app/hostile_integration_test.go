//go:build integration

package app_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/quota"
)

const hostileUseCases = `{"name":"SAP","use_cases":[
 {"id":"0e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b","name":"Customers","slug":"customer","type":"inbound","enabled":true,
  "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
   {"attribute":"customer_number","field":"customerNumber"},{"attribute":"first_name","field":"firstName"}]}]}},
 {"name":"Slow","slug":"slow","type":"inbound","enabled":true,
  "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"jsonataExpression":"items","fields":[
   {"attribute":"customer_number","field":"no"},
   {"attribute":"flag","jsonataExpression":"$contains($$.s, /a.*a.*a.*z/) ? 'y' : 'n'"}]}]}},
 {"name":"Fan-out","slug":"fanout","type":"inbound","enabled":true,
  "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"jsonataExpression":"[1..20000].{\"no\": $string($)}",
   "fields":[{"attribute":"customer_number","field":"no"}]}]}}]}`

// Hostile and unlucky inputs on the real services: a slow mapping and a fan-out bomb fail alone
// among ordinary events, another org reusing the ids of this org's use case changes nothing here,
// compiling is bounded, limits follow the matched route, and metrics need their token.
func TestIntegrationHostileInputsFailAloneAndTenantsStayApart(t *testing.T) {
	e := apptest.New(t)
	e.Configure = func(c *app.Config) { c.APITokens = "it-org-b=org-b" }
	e.Start()
	id := e.CreateIntegration(hostileUseCases)

	var events []string
	for i := range 50 {
		events = append(events, apptest.PayloadEvent("customer", fmt.Sprintf(`{"customerNumber":"K-%d","firstName":"Lena"}`, i)))
	}
	var items []string
	for i := range 2000 {
		items = append(items, fmt.Sprintf(`{"no":"S-%d"}`, i))
	}
	events = append(events[:25], append([]string{
		apptest.PayloadEvent("slow", `{"s":"`+strings.Repeat("a", 40)+`","items":[`+strings.Join(items, ",")+`]}`),
		apptest.PayloadEvent("fanout", `{"a":1}`)}, events[25:]...)...)
	e.SendBatch(id, "hostile", events)
	apptest.WaitFor(t, func() bool {
		return e.Scalar("SELECT count() FROM monitoring_events FINAL WHERE integration_id = ?", id) >= 52
	})
	codes := e.MonitoringCodes(id)
	if codes["ENTITY_CREATED"] != 50 || codes["MAPPING_TIMEOUT"] != 1 || codes["MAPPING_LIMIT_EXCEEDED"] != 1 {
		t.Fatalf("monitoring codes %v: want 50 ENTITY_CREATED, 1 MAPPING_TIMEOUT, 1 MAPPING_LIMIT_EXCEEDED", codes)
	}
	if n := e.Scalar("SELECT count() FROM entities FINAL WHERE integration_id = ? AND deleted = 0", id); n != 50 {
		t.Errorf("%d contacts, want 50 (the failed events write none)", n)
	}

	// Org B creates a use case with this org's use-case id, then deletes it: this org's use case
	// is still found, routed and mapped.
	status, b := e.CallAs("it-org-b", "POST", "/v2/integrations", hostileUseCases)
	if status != http.StatusCreated {
		t.Fatalf("org B: %d %v", status, b)
	}
	const ucID = "0e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b"
	if status, body := e.CallAs("it-org-b", "DELETE", "/v1/integrations/"+b["id"].(string)+"/use-cases/"+ucID, ""); status != http.StatusOK {
		t.Fatalf("org B deletes its copy: %d %v", status, body)
	}
	if status, got := e.Call("GET", "/v1/integrations/"+id+"/use-cases/"+ucID, ""); status != http.StatusOK || got["slug"] != "customer" {
		t.Fatalf("this org's use case after org B's writes: %d %v", status, got)
	}
	e.Send(id, "after-org-b", []string{apptest.CustomerEvent(900, "Ida", "after-b")})
	apptest.WaitFor(t, func() bool { return e.MonitoringCodes(id)["ENTITY_CREATED"] == 51 })

	// Compiling is bounded: a 64 KB expression compiles, a longer one is refused on save.
	expr := func(size int) string {
		var fields []string
		for i := 0; len(strings.Join(fields, ",")) < size-40; i++ {
			fields = append(fields, fmt.Sprintf(`\"f%d\": a.b[%d] + %d.5`, i, i, i))
		}
		return "{" + strings.Join(fields, ",") + "}"
	}
	sim := func(src string) (int, map[string]any) {
		return e.Call("POST", "/v2/erp/updates/mapping_simulation", `{"event_configuration":{"entities":[{"entity_schema":"contact","unique_ids":["no"],
			"fields":[{"attribute":"no","constant":"K"},{"attribute":"x","jsonataExpression":"`+src+`"}]}]},"payload":{"a":{"b":[1]}}}`)
	}
	if status, body := sim(expr(60 << 10)); status != http.StatusOK {
		t.Errorf("a 60 KB expression: %d %v", status, body["code"])
	}
	if status, body := sim(expr(70 << 10)); status != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(body["message"]), "S0219") {
		t.Errorf("a 70 KB expression: %d %v, want 422 with S0219", status, body["code"])
	}

	// The body limit follows the matched route, not the path's last segment.
	req, _ := http.NewRequest("PUT", e.URL+"/v1/environment/ndjson", strings.NewReader(`{"value":"`+strings.Repeat("x", 5<<20)+`"}`))
	req.Header.Set("Authorization", "Bearer it-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("PUT /v1/environment/ndjson with 5 MB: %d, want 413", resp.StatusCode)
	}
	// Metrics are not public on the API port.
	resp, err = http.Get(e.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/metrics without the metrics token: %d, want 401", resp.StatusCode)
	}
}

// Budgets count events per org (an org over its budget is 429 while another org is served), and
// a paced NDJSON stream outlives the server's request timeout while it makes progress.
func TestIntegrationOrgBudgetsAndLongStreams(t *testing.T) {
	e := apptest.New(t)
	e.Configure = func(c *app.Config) {
		c.APITokens = "it-org-b=org-b"
		c.OrgBudgets = quota.Limits{EventsPerMinute: 300}
		c.RequestTimeout = 2 * time.Second
	}
	e.Start()
	id := e.CreateIntegration(apptest.IntegrationBody)
	for r := range 3 {
		var events []string
		for i := range 100 {
			events = append(events, apptest.CustomerEvent(r*100+i, "Lena", fmt.Sprintf("bud-%d-%d", r, i)))
		}
		e.Send(id, fmt.Sprintf("budget-%d", r), events)
	}
	// The budget refills continuously (5 events a second here): a second's refill does not cover
	// another 100, however long the first 300 took.
	var over []string
	for i := range 100 {
		over = append(over, apptest.CustomerEvent(900+i, "X", fmt.Sprintf("over-%d", i)))
	}
	status, body := e.Call("POST", "/v3/erp/updates/events", `{"integration_id":"`+id+`","events":[`+strings.Join(over, ",")+`]}`)
	if status != http.StatusTooManyRequests || body["code"] != "RATE_LIMITED" {
		t.Fatalf("an org over its event budget: %d %v, want 429", status, body)
	}
	status, b := e.CallAs("it-org-b", "POST", "/v2/integrations", apptest.IntegrationBody)
	if status != http.StatusCreated {
		t.Fatalf("org B: %d %v", status, b)
	}
	bID := b["id"].(string)

	// Org B streams 10 lines, 400 ms apart: 4 s, twice the server's request timeout.
	pr, pw := io.Pipe()
	go func() {
		for i := range 10 {
			fmt.Fprintln(pw, apptest.CustomerEvent(i, "Paced", fmt.Sprintf("paced-%d", i)))
			time.Sleep(400 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", e.URL+"/v3/erp/updates/events/ndjson?integration_id="+bID, pr)
	req.Header.Set("Authorization", "Bearer it-org-b")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(answer), `"success":10`) {
		t.Fatalf("paced stream: %v\n%s", err, answer)
	}
	apptest.WaitFor(t, func() bool { return e.MonitoringCodes(bID)["ENTITY_CREATED"] == 10 })
	apptest.WaitFor(t, func() bool { return e.MonitoringCodes(id)["ENTITY_CREATED"] == 300 })
	if n := e.Scalar("SELECT count() FROM entities FINAL WHERE org_id = 'dev-org' AND integration_id = ?", id); n != 300 {
		t.Errorf("%d contacts of the org over budget, want 300 (the refused request stored nothing)", n)
	}
}
