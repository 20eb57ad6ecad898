//go:build integration

package app_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/kafkax"
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
	holdBackTheCostlyOrg(t, e, 6000, e.Logs) // about 2 ms an event under the race detector
}

// The same with the processors as processes of their own (two `erpstream process`, the two orgs
// pinned to one partition so that one instance maps both): the hold reaches the ingest of
// another process through the org-load topic.
func TestIntegrationProcessorsOfTheirOwnHoldAnOrgBackAtIngest(t *testing.T) {
	e := apptest.New(t)
	e.Kafka.OrgPartitions = kafkax.Placement{"dev-org": 3, "org-b": 3}
	e.Configure = func(c *app.Config) {
		c.APITokens = "it-org-b=org-b"
		c.Services = []string{app.Ingest, app.Query, app.Project}
	}
	e.Start()
	bin := buildErpstream(t)
	var procs []*childProcess
	for _, id := range []string{"load-1", "load-2"} {
		p := newProcessorProcess(t, e, bin, id)
		p.env = append(p.env, "ERPSTREAM_ORG_MAPPING_SECONDS_PER_MIN=1")
		p.start()
		procs = append(procs, p)
	}
	// The processes are built without the race detector: their events take a third as long.
	holdBackTheCostlyOrg(t, e, 20_000, func() string {
		var all strings.Builder
		for _, p := range procs {
			logged, err := os.ReadFile(p.log.Name())
			apptest.Must(t, err)
			all.Write(logged)
		}
		return all.String()
	})
	held := 0.0
	for _, p := range procs {
		held += p.metric("erpstream_processor_org_holds_total")
	}
	if held < 1 {
		t.Errorf("erpstream_processor_org_holds_total %v over both processors, want at least 1", held)
	}
}

// holdBackTheCostlyOrg streams a backlog of costly events of dev-org beside a few of org-b's
// (token it-org-b) and follows the hold from the 429 to the release; logs are the processors'.
func holdBackTheCostlyOrg(t *testing.T, e *apptest.Env, backlog int, logs func() string) {
	t.Helper()
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
	if !strings.Contains(logs(), "takes more than its share of mapping time") {
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
