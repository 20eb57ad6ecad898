//go:build integration

// Integration tests of the monitoring surface on the real services.
package query_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/auth"
)

// Every monitoring route on the real services: stats with breakdowns, time series, error search
// with keyset pages, the event trace, queryEvents, replay, bulk replay and access logs.
func TestIntegrationMonitoringSurface(t *testing.T) {
	e := apptest.New(t)
	e.Start()
	tokenID := auth.DevPrincipal("it-token").TokenID
	body := strings.Replace(apptest.IntegrationBody, `{"name":"SAP",`, `{"name":"SAP","access_token_ids":["`+tokenID+`"],`, 1)
	status, integ := e.Call("POST", "/v2/integrations", body)
	if status != http.StatusCreated {
		t.Fatalf("create integration: %d %v", status, integ)
	}
	id := integ["id"].(string)
	var events []string
	for i := 0; i < 20; i++ {
		events = append(events, apptest.CustomerEvent(i, "Ada", fmt.Sprintf("mon-%d", i)))
	}
	events = append(events, `{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","payload":"{not json"}`,
		`{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","payload":"[1,"}`)
	eventIDs := e.SendBatch(id, "mon-1", events)
	e.WaitStats(id, 22)
	// Raw events come from another topic than the monitoring rows and can land a batch later.
	apptest.WaitFor(t, func() bool {
		return e.Scalar("SELECT count() FROM raw_events FINAL WHERE integration_id = ?", id) == 20
	})
	from := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	base := "/v2/integrations/" + id + "/monitoring/"

	// Prometheus metrics count the same events at every stage. A stage counts when its offsets are
	// committed, which can be a moment after its rows are visible: poll.
	var missing []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		resp, err := e.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = nil
		for _, want := range []string{
			`erpstream_ingest_events_total{result="success"} 20`,
			`erpstream_ingest_events_total{result="error"} 2`,
			`erpstream_processor_events_total{code="ENTITY_CREATED",level="success"} 20`,
			`erpstream_http_requests_total{method="POST",route="/v3/erp/updates/events",status="200"} 1`,
			`erpstream_projector_rows_total{kind="raw_events"} 20`,
		} {
			if !strings.Contains(string(metrics), want) {
				missing = append(missing, want)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, m := range missing {
		t.Errorf("/metrics lacks %s", m)
	}

	status, st := e.Call("POST", base+"stats", `{"from_date":"`+from+`","group_by":"level"}`)
	if status != http.StatusOK || st["total_events"] != 22.0 || st["error_count"] != 2.0 {
		t.Fatalf("v2 stats: %d %v", status, st)
	}
	byLevel := map[string]float64{}
	for _, g := range st["breakdown"].([]any) {
		g := g.(map[string]any)
		byLevel[g["level"].(string)] = g["total_events"].(float64)
	}
	if byLevel["success"] != 20 || byLevel["error"] != 2 {
		t.Errorf("breakdown by level = %v", byLevel)
	}
	status, st = e.Call("POST", base+"stats", `{"from_date":"`+from+`","group_by":"code"}`)
	if status != http.StatusOK || len(st["breakdown"].([]any)) < 2 {
		t.Errorf("stats by code: %d %v", status, st)
	}

	status, ts := e.Call("POST", base+"time-series", `{"from_date":"`+from+`","interval":"5m"}`)
	if status != http.StatusOK {
		t.Fatalf("time series: %d %v", status, ts)
	}
	sum := 0.0
	for _, b := range ts["buckets"].([]any) {
		sum += b.(map[string]any)["total_count"].(float64)
	}
	if n := len(ts["buckets"].([]any)); n < 12 || n > 14 || sum != 22 {
		t.Errorf("time series: %d buckets summing to %v, want 13 zero-filled buckets summing to 22", n, sum)
	}
	status, v1ts := e.Call("POST", "/v1/integrations/"+id+"/monitoring/timeseries", `{"from_date":"`+from+`","interval":"1h"}`)
	if status != http.StatusOK || len(v1ts["buckets"].([]any)) == 0 {
		t.Errorf("v1 time series: %d %v", status, v1ts)
	}

	// Errors, one per page, through the spec's cursor object.
	var seen []string
	cursor := "null"
	for page := 0; page < 5; page++ {
		status, res := e.Call("POST", base+"events", `{"from_date":"`+from+`","level":"error","limit":1,"cursor":`+cursor+`}`)
		if status != http.StatusOK {
			t.Fatalf("error search: %d %v", status, res)
		}
		for _, r := range res["data"].([]any) {
			r := r.(map[string]any)
			if r["code"] != "MALFORMED_PAYLOAD" || r["correlation_id"] != "mon-1" {
				t.Errorf("error row %v", r)
			}
			seen = append(seen, r["id"].(string))
		}
		if res["has_more"] != true {
			break
		}
		c, _ := json.Marshal(res["next_cursor"])
		cursor = string(c)
	}
	if len(seen) != 2 || seen[0] == seen[1] {
		t.Errorf("paged errors %v, want 2 distinct rows", seen)
	}

	// v1 error categories: malformed payloads are validation errors, none is a system error.
	for category, want := range map[string]int{"validation": 2, "system": 0, "timeout": 0} {
		status, res := e.Call("POST", "/v1/integrations/"+id+"/monitoring/inbound-events", `{"from_date":"`+from+`","error_category":"`+category+`"}`)
		if status != http.StatusOK || len(res["data"].([]any)) != want {
			t.Errorf("error_category %s: %d %v, want %d rows", category, status, res, want)
		}
	}

	// The trace of one event: its monitoring rows and the event as received.
	status, trace := e.Call("GET", base+"events/"+eventIDs[3]+"/associated", "")
	if status != http.StatusOK || len(trace["monitoring_events"].([]any)) == 0 || trace["inbound_event"] == nil {
		t.Fatalf("associated: %d %v", status, trace)
	}
	if p := trace["inbound_event"].(map[string]any)["payload"]; !strings.Contains(fmt.Sprint(p), "K-3") {
		t.Errorf("inbound event payload %v, want customer K-3", p)
	}

	// queryEvents finds the received events by correlation id.
	status, found := e.Call("POST", "/v1/integrations/"+id+"/events", `{"correlation_id":"mon-1","limit":25}`)
	if status != http.StatusOK || len(found["data"].([]any)) < 20 {
		t.Fatalf("queryEvents: %d %v", status, found)
	}

	// Replay two events and an unknown id: the results keep request order.
	status, rep := e.Call("POST", "/v1/integrations/"+id+"/events/replay", `{"event_ids":["`+eventIDs[0]+`","evt_01J0000000000000000000000X","`+eventIDs[1]+`"]}`)
	if status != http.StatusOK || rep["replayed"] != 2.0 {
		t.Fatalf("replay: %d %v", status, rep)
	}
	results := rep["results"].([]any)
	if results[0].(map[string]any)["status"] != "queued" || results[1].(map[string]any)["status"] != "not_found" || results[2].(map[string]any)["status"] != "queued" {
		t.Errorf("replay results %v", results)
	}
	e.WaitStats(id, 24)
	status, replayed := e.Call("POST", base+"events", `{"from_date":"`+from+`","correlation_id":"replay_mon-1"}`)
	if status != http.StatusOK || len(replayed["data"].([]any)) != 2 {
		t.Errorf("replayed events' monitoring: %d %v", status, replayed)
	}
	for _, r := range replayed["data"].([]any) {
		if d, _ := r.(map[string]any)["detail"].(map[string]any); d["replay"] != true {
			t.Errorf("a replay's monitoring row is not marked: %v", r)
		}
	}

	// Bulk replay of the last hour: every original event once, never the replays.
	req, _ := http.NewRequest("POST", e.URL+"/v1/integrations/"+id+"/events/replay/bulk", strings.NewReader(`{"from_date":"`+from+`"}`))
	req.Header.Set("Authorization", "Bearer it-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var last map[string]any
	replayCursor := ""
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		last = nil
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatalf("bulk replay line %q: %v", sc.Text(), err)
		}
		if c, ok := last["cursor"].(string); ok {
			replayCursor = c
		}
	}
	resp.Body.Close()
	stored := e.Scalar("SELECT count() FROM raw_events FINAL WHERE integration_id = ? AND replay = 0", id)
	if last["done"] != true || last["replayed"] != float64(stored) || stored < 20 || replayCursor == "" {
		t.Errorf("bulk replay ended %v; %d original events stored", last, stored)
	}
	before := e.WaitStats(id, 24+float64(stored))

	// Resuming a run from an older cursor (a progress line lost with the connection) replays the
	// events after it again, and the pipeline maps none of them twice: they are the run's
	// duplicates. Here the cursor is moved back to the run's start.
	raw, err := base64.RawURLEncoding.DecodeString(replayCursor)
	if err != nil {
		t.Fatal(err)
	}
	var cur map[string]any
	apptest.Must(t, json.Unmarshal(raw, &cur))
	cur["after_us"], cur["after_event_id"] = 0, ""
	raw, _ = json.Marshal(cur)
	status, lines := e.CallStream("POST", "/v1/integrations/"+id+"/events/replay/bulk", `{"cursor":"`+base64.RawURLEncoding.EncodeToString(raw)+`"}`)
	if status != http.StatusOK || len(lines) == 0 || lines[len(lines)-1]["replayed"] != float64(stored) {
		t.Fatalf("resume: %d %v", status, lines)
	}
	apptest.WaitFor(t, func() bool {
		return e.Scalar("SELECT count() FROM monitoring_events FINAL WHERE integration_id = ? AND code = 'DUPLICATE_EVENT'", id) >= stored
	})
	if dups := e.Scalar("SELECT count() FROM monitoring_events FINAL WHERE integration_id = ? AND code = 'DUPLICATE_EVENT'", id); dups != stored {
		t.Errorf("%d duplicates of the resumed run, want %d", dups, stored)
	}
	if after := e.WaitStats(id, 0); after["success_count"] != before["success_count"] {
		t.Errorf("resumed run mapped events again: stats %v, before %v", after, before)
	}
	// Another integration's cursor is refused.
	if status, body := e.Call("POST", "/v1/integrations/"+id+"/events/replay/bulk", `{"cursor":"bm90IGEgY3Vyc29y"}`); status != http.StatusBadRequest {
		t.Errorf("forged cursor: %d %v", status, body)
	}

	// Access logs: the calls above, made with the integration's token, newest first.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, logs := e.Call("POST", "/v1/integrations/"+id+"/monitoring/access-logs", `{"service":"monitoring","method":"POST","path":"/replay","limit":10}`)
		if status != http.StatusOK {
			t.Fatalf("access logs: %d %v", status, logs)
		}
		rows := logs["data"].([]any)
		if len(rows) >= 2 {
			r := rows[0].(map[string]any)
			if r["token_id"] != tokenID || r["status"] != 200.0 || r["org_id"] != "dev-org" || !strings.HasPrefix(r["request_id"].(string), "req_") {
				t.Errorf("access log row %v", r)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("access logs never showed the replay calls: %v", logs)
		}
		time.Sleep(300 * time.Millisecond)
	}
	status, res := e.Call("POST", "/v1/integrations/"+id+"/monitoring/access-logs", `{"token_id":"tok_someone_else"}`)
	if status != http.StatusBadRequest {
		t.Errorf("foreign token id: %d %v, want 400", status, res)
	}
}
