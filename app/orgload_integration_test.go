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
)

// costlyUseCase maps each event with an expression that takes about a millisecond (more under
// the race detector): an org whose events are expensive to map, each within every limit.
const costlyUseCase = `{"name":"Costly ERP","use_cases":[{"name":"Costly","slug":"costly","type":"inbound","enabled":true,
 "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
   {"attribute":"customer_number","field":"no"},
   {"attribute":"checksum","jsonataExpression":"$string($sum([1..20000]))"}]}]}}]}`

// An org whose events take more than its share of the processor's mapping time while another
// org's events wait is held back at ingest (429 naming the share) while the other org's events
// are accepted; once the backlog is mapped it is taken again. Every accepted event of both is
// mapped once.
func TestIntegrationAnOrgOverItsMappingShareIsHeldBackWhileOthersWait(t *testing.T) {
	e := apptest.New(t)
	e.Configure = func(c *app.Config) {
		c.APITokens = "it-org-b=org-b"
		c.OrgMappingPerMinute = time.Second
	}
	e.Start()
	status, b := e.CallAs("it-org-b", "POST", "/v2/integrations", apptest.IntegrationBody)
	if status != http.StatusCreated {
		t.Fatalf("org B: %d %v", status, b)
	}
	other := b["id"].(string)
	costly := e.CreateIntegration(costlyUseCase)
	sendOther := func(n int) int {
		status, _ := e.CallAs("it-org-b", "POST", "/v3/erp/updates/events",
			`{"integration_id":"`+other+`","events":[`+apptest.CustomerEvent(n, "Other", fmt.Sprintf("other-%d", n))+`]}`)
		return status
	}
	for i := range 10 {
		if status := sendOther(i); status != http.StatusOK {
			t.Fatalf("org B's event %d: %d", i, status)
		}
	}
	const backlog = 6000
	var nd strings.Builder
	for i := range backlog {
		nd.WriteString(apptest.PayloadEvent("costly", fmt.Sprintf(`{"no":"C-%d"}`, i)) + "\n")
	}
	req, _ := http.NewRequest("POST", e.URL+"/v3/erp/updates/events/ndjson?integration_id="+costly, strings.NewReader(nd.String()))
	req.Header.Set("Authorization", "Bearer it-token")
	resp, err := http.DefaultClient.Do(req)
	apptest.Must(t, err)
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(answer), fmt.Sprintf(`"success":%d`, backlog)) {
		t.Fatalf("the costly org's stream: %s", answer[max(0, len(answer)-300):])
	}

	sendCostly := func(n int) (int, map[string]any) {
		return e.Call("POST", "/v3/erp/updates/events",
			`{"integration_id":"`+costly+`","events":[`+apptest.PayloadEvent("costly", fmt.Sprintf(`{"no":"L-%d"}`, n))+`]}`)
	}
	accepted := 0
	n := 0
	apptest.WaitFor(t, func() bool {
		n++
		status, body := sendCostly(n)
		if status == http.StatusOK {
			accepted++
			return false
		}
		if status != http.StatusTooManyRequests || body["code"] != "RATE_LIMITED" || !strings.Contains(fmt.Sprint(body["message"]), "share of mapping time") {
			t.Fatalf("the costly org while its backlog is mapped: %d %v", status, body)
		}
		return true
	})
	t.Logf("the costly org was held back after %d more accepted requests", accepted)
	if status := sendOther(100); status != http.StatusOK {
		t.Fatalf("org B while the costly org is held back: %d, want accepted", status)
	}
	if !strings.Contains(e.Logs(), "takes more than its share of mapping time") {
		t.Error("the processor did not log the hold")
	}
	var described strings.Builder
	apptest.Must(t, app.Status(t.Context(), app.Config{Kafka: e.Kafka, ClickHouse: e.CH}, e.Log, &described))
	if !strings.Contains(described.String(), "org dev-org: held back for mapping time (") {
		t.Errorf("status while the costly org is held back:\n%s", described.String())
	}

	// The backlog mapped, the costly org is taken again.
	wait := func(what string, cond func() bool) {
		deadline := time.Now().Add(3 * time.Minute)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 3 minutes", what)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	wait("the costly backlog mapped", func() bool { return e.MonitoringCodes(costly)["ENTITY_CREATED"] == uint64(backlog+accepted) })
	wait("the costly org taken again", func() bool {
		status, _ := sendCostly(1_000_000)
		return status == http.StatusOK
	})
	wait("everything mapped", func() bool {
		return e.MonitoringCodes(costly)["ENTITY_CREATED"] == uint64(backlog+accepted+1) && e.MonitoringCodes(other)["ENTITY_CREATED"] == 11
	})
	if n := e.Scalar("SELECT count() FROM monitoring_events FINAL WHERE integration_id = ?", costly); n != uint64(backlog+accepted+1) {
		t.Errorf("%d monitoring rows of the costly org, want %d (one per accepted event)", n, backlog+accepted+1)
	}
}
