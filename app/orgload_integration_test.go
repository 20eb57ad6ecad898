//go:build integration

package app_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// costlyUseCase maps each event with an expression summing 1…n: an org whose events are expensive
// to map, each within every limit (n = 20,000: about 0.3 ms an event here, 2 ms under the race
// detector).
func costlyUseCase(n int) string {
	return `{"name":"Costly ERP","use_cases":[{"name":"Costly","slug":"costly","type":"inbound","enabled":true,
 "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
   {"attribute":"customer_number","field":"no"},
   {"attribute":"checksum","jsonataExpression":"$string($sum([1..` + strconv.Itoa(n) + `]))"}]}]}}]}`
}

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
	holdBackTheCostlyOrg(t, e, 6000, 20_000, e.Logs) // about 2 ms an event under the race detector
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
	// The processes are built without the race detector: a sum five times as long (about 1.5 ms
	// an event) keeps their mapping slower than the test's ingest, which has the race detector,
	// so that a backlog builds on any machine.
	holdBackTheCostlyOrg(t, e, 6000, 100_000, func() string {
		var all strings.Builder
		for _, p := range procs {
			logged, err := os.ReadFile(p.log.Name())
			apptest.Must(t, err)
			all.Write(logged)
			fmt.Fprintf(&all, "%s: %v events mapped, %v partitions, %v session restarts, %v holds said\n", p.name(),
				p.metric("erpstream_processor_events_total"), p.metric("erpstream_processor_assigned_partitions"),
				p.metric("erpstream_processor_session_restarts_total"), p.metric("erpstream_processor_org_holds_total"))
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
func holdBackTheCostlyOrg(t *testing.T, e *apptest.Env, backlog, sumTo int, logs func() string) {
	t.Helper()
	status, b := e.CallAs("it-org-b", "POST", "/v2/integrations", apptest.IntegrationBody)
	if status != http.StatusCreated {
		t.Fatalf("org B: %d %v", status, b)
	}
	other := b["id"].(string)
	costly := e.CreateIntegration(costlyUseCase(sumTo))
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
	// The backlog goes in as one stream, and single events are sent beside it: a hold that
	// comes while the stream is still being accepted makes the stream wait (streams are not
	// answered 429), and may be over by the time it ends, so the single events look for it
	// from the start.
	streamed := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.URL+"/v3/erp/updates/events/ndjson?integration_id="+costly, strings.NewReader(nd.String()))
		req.Header.Set("Authorization", "Bearer it-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			streamed <- err.Error()
			return
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		streamed <- string(answer)
	}()

	sendCostly := func(n int) (int, map[string]any) {
		return e.Call("POST", "/v3/erp/updates/events",
			`{"integration_id":"`+costly+`","events":[`+apptest.PayloadEvent("costly", fmt.Sprintf(`{"no":"L-%d"}`, n))+`]}`)
	}
	accepted := 0
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		status, body := sendCostly(accepted)
		if status == http.StatusOK {
			accepted++
			if time.Now().After(deadline) {
				logged := logs()
				t.Fatalf("the costly org was not held back within 90 s (%d single events accepted); the processors logged:\n%s",
					accepted, logged[max(0, len(logged)-6000):])
			}
			continue
		}
		if status != http.StatusTooManyRequests || body["code"] != "RATE_LIMITED" || !strings.Contains(fmt.Sprint(body["message"]), "share of mapping time") {
			t.Fatalf("the costly org while its backlog is mapped: %d %v", status, body)
		}
		break
	}
	if answer := <-streamed; !strings.Contains(answer, fmt.Sprintf(`"success":%d`, backlog)) {
		t.Fatalf("the costly org's stream: %s", answer[max(0, len(answer)-300):])
	}
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
