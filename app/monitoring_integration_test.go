//go:build integration

package app_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/auth"
)

var errSimulatedCrash = errors.New("simulated crash between insert and offset commit")

// sendBatch sends events in one request and returns the event ids ingest answered.
func (e *env) sendBatch(integrationID, correlation string, events []string) []string {
	e.t.Helper()
	status, body := e.call("POST", "/v3/erp/updates/events",
		`{"integration_id":"`+integrationID+`","meta":{"correlation_id":"`+correlation+`"},"events":[`+strings.Join(events, ",")+`]}`)
	if status != http.StatusOK {
		e.t.Fatalf("send: %d %v", status, body)
	}
	var ids []string
	for _, r := range body["results"].([]any) {
		ids = append(ids, r.(map[string]any)["event_id"].(string))
	}
	return ids
}

// createIntegration creates an integration from a v2 body and returns its id.
func (e *env) createIntegration(body string) string {
	e.t.Helper()
	status, integ := e.call("POST", "/v2/integrations", body)
	if status != http.StatusCreated {
		e.t.Fatalf("create integration: %d %v", status, integ)
	}
	return integ["id"].(string)
}

// sendOne sends one event with a JSON payload (given as its text) to a use case.
func (e *env) sendOne(integrationID, slug, payload string) {
	e.t.Helper()
	p, _ := json.Marshal(payload)
	e.sendBatch(integrationID, slug, []string{`{"use_case_slug":"` + slug + `","timestamp":"2025-05-01T08:30:00Z","payload":` + string(p) + `}`})
}

func (e *env) scalar(query string, args ...any) uint64 {
	e.t.Helper()
	var n uint64
	if err := e.conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

// The projector dies after ClickHouse took a batch and before the offsets were committed; the
// restarted projector reads the batch again. Counts stay exact everywhere: the rows (without
// FINAL, so nothing relies on a merge), and the per-minute and per-hour aggregates, which a
// second insert would double for good.
func TestIntegrationProjectorCrashBetweenInsertAndCommit(t *testing.T) {
	e := newEnv(t)
	var crashed atomic.Bool
	e.afterInsert = func() error {
		if crashed.Load() {
			return nil
		}
		var n uint64
		if err := e.conn.QueryRow(context.Background(), "SELECT count() FROM monitoring_events").Scan(&n); err != nil || n == 0 {
			return nil
		}
		crashed.Store(true)
		return errSimulatedCrash
	}
	e.start()
	status, integ := e.call("POST", "/v2/integrations", integrationBody)
	if status != http.StatusCreated {
		t.Fatalf("create integration: %d %v", status, integ)
	}
	id := integ["id"].(string)
	var events []string
	for i := 0; i < 200; i++ {
		events = append(events, customerEvent(i, "Kim", fmt.Sprintf("crash-%d", i)))
	}
	e.sendBatch(id, "crash", events[:100])
	e.sendBatch(id, "crash", events[100:])

	select {
	case err := <-e.done:
		if !errors.Is(err, errSimulatedCrash) {
			t.Fatalf("pipeline stopped with %v, want the simulated crash", err)
		}
		e.cancel()
		e.cancel = nil
	case <-time.After(90 * time.Second):
		t.Fatal("the projector never inserted monitoring rows")
	}
	stored := e.scalar("SELECT count() FROM monitoring_events")
	t.Logf("crashed after inserting %d monitoring rows without committing their offsets", stored)

	e.afterInsert = nil
	e.start()
	st := e.waitStats(id, 200)
	time.Sleep(2 * time.Second) // a double insert would land within the next flushes
	st = e.waitStats(id, 200)
	if st["total_events"] != 200.0 || st["success_count"] != 200.0 {
		t.Fatalf("stats after the crash = %v, want exactly 200 successes", st)
	}
	if n := e.scalar("SELECT count() FROM monitoring_events"); n != 200 {
		t.Errorf("%d monitoring rows stored, want 200 (the crashed batch was inserted again)", n)
	}
	if n := e.scalar("SELECT toUInt64(countMerge(events)) FROM monitoring_minute WHERE integration_id = ?", id); n != 200 {
		t.Errorf("monitoring_minute counts %d events, want 200", n)
	}
	if n := e.scalar("SELECT toUInt64(countMerge(events)) FROM monitoring_hour WHERE integration_id = ?", id); n != 200 {
		t.Errorf("monitoring_hour counts %d events, want 200", n)
	}
	if n := e.scalar("SELECT count() FROM raw_events FINAL WHERE integration_id = ?", id); n != 200 {
		t.Errorf("raw_events holds %d events, want 200", n)
	}
	// A range of whole hours is answered from monitoring_hour; it agrees with the rows.
	now := time.Now().UTC()
	status, wide := e.call("POST", "/v2/integrations/"+id+"/monitoring/stats", `{"from_date":"`+now.Add(-5*time.Hour).Format(time.RFC3339)+
		`","to_date":"`+now.Add(4*time.Hour).Truncate(time.Hour).Format(time.RFC3339)+`"}`)
	if status != http.StatusOK || wide["total_events"] != 200.0 {
		t.Errorf("stats over whole hours: %d %v, want 200", status, wide)
	}
}

// Every monitoring route on the real services: stats with breakdowns, time series, error search
// with keyset pages, the event trace, queryEvents, replay, bulk replay and access logs.
func TestIntegrationMonitoringSurface(t *testing.T) {
	e := newEnv(t)
	e.start()
	tokenID := auth.DevPrincipal("it-token").TokenID
	body := strings.Replace(integrationBody, `{"name":"SAP",`, `{"name":"SAP","access_token_ids":["`+tokenID+`"],`, 1)
	status, integ := e.call("POST", "/v2/integrations", body)
	if status != http.StatusCreated {
		t.Fatalf("create integration: %d %v", status, integ)
	}
	id := integ["id"].(string)
	var events []string
	for i := 0; i < 20; i++ {
		events = append(events, customerEvent(i, "Ada", fmt.Sprintf("mon-%d", i)))
	}
	events = append(events, `{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","payload":"{not json"}`,
		`{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","payload":"[1,"}`)
	eventIDs := e.sendBatch(id, "mon-1", events)
	e.waitStats(id, 22)
	// Raw events come from another topic than the monitoring rows and can land a batch later.
	waitFor(t, func() bool {
		return e.scalar("SELECT count() FROM raw_events FINAL WHERE integration_id = ?", id) == 20
	})
	from := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	base := "/v2/integrations/" + id + "/monitoring/"

	// Prometheus metrics count the same events at every stage. A stage counts when its offsets are
	// committed, which can be a moment after its rows are visible: poll.
	var missing []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		resp, err := e.metrics()
		if err != nil {
			t.Fatal(err)
		}
		metrics, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = nil
		for _, want := range []string{
			`erpstream_ingest_events_total{result="success"} 20`,
			`erpstream_ingest_events_total{result="error"} 2`,
			`erpstream_processor_events_total{code="ENTITY_UPDATED",level="success"} 20`,
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

	status, st := e.call("POST", base+"stats", `{"from_date":"`+from+`","group_by":"level"}`)
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
	status, st = e.call("POST", base+"stats", `{"from_date":"`+from+`","group_by":"code"}`)
	if status != http.StatusOK || len(st["breakdown"].([]any)) < 2 {
		t.Errorf("stats by code: %d %v", status, st)
	}

	status, ts := e.call("POST", base+"time-series", `{"from_date":"`+from+`","interval":"5m"}`)
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
	status, v1ts := e.call("POST", "/v1/integrations/"+id+"/monitoring/timeseries", `{"from_date":"`+from+`","interval":"1h"}`)
	if status != http.StatusOK || len(v1ts["buckets"].([]any)) == 0 {
		t.Errorf("v1 time series: %d %v", status, v1ts)
	}

	// Errors, one per page, through the spec's cursor object.
	var seen []string
	cursor := "null"
	for page := 0; page < 5; page++ {
		status, res := e.call("POST", base+"events", `{"from_date":"`+from+`","level":"error","limit":1,"cursor":`+cursor+`}`)
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
		status, res := e.call("POST", "/v1/integrations/"+id+"/monitoring/inbound-events", `{"from_date":"`+from+`","error_category":"`+category+`"}`)
		if status != http.StatusOK || len(res["data"].([]any)) != want {
			t.Errorf("error_category %s: %d %v, want %d rows", category, status, res, want)
		}
	}

	// The trace of one event: its monitoring rows and the event as received.
	status, trace := e.call("GET", base+"events/"+eventIDs[3]+"/associated", "")
	if status != http.StatusOK || len(trace["monitoring_events"].([]any)) == 0 || trace["inbound_event"] == nil {
		t.Fatalf("associated: %d %v", status, trace)
	}
	if p := trace["inbound_event"].(map[string]any)["payload"]; !strings.Contains(fmt.Sprint(p), "K-3") {
		t.Errorf("inbound event payload %v, want customer K-3", p)
	}

	// queryEvents finds the received events by correlation id.
	status, found := e.call("POST", "/v1/integrations/"+id+"/events", `{"correlation_id":"mon-1","limit":25}`)
	if status != http.StatusOK || len(found["data"].([]any)) < 20 {
		t.Fatalf("queryEvents: %d %v", status, found)
	}

	// Replay two events and an unknown id: the results keep request order.
	status, rep := e.call("POST", "/v1/integrations/"+id+"/events/replay", `{"event_ids":["`+eventIDs[0]+`","evt_01J0000000000000000000000X","`+eventIDs[1]+`"]}`)
	if status != http.StatusOK || rep["replayed"] != 2.0 {
		t.Fatalf("replay: %d %v", status, rep)
	}
	results := rep["results"].([]any)
	if results[0].(map[string]any)["status"] != "queued" || results[1].(map[string]any)["status"] != "not_found" || results[2].(map[string]any)["status"] != "queued" {
		t.Errorf("replay results %v", results)
	}
	e.waitStats(id, 24)
	status, replayed := e.call("POST", base+"events", `{"from_date":"`+from+`","correlation_id":"replay_mon-1"}`)
	if status != http.StatusOK || len(replayed["data"].([]any)) != 2 {
		t.Errorf("replayed events' monitoring: %d %v", status, replayed)
	}
	for _, r := range replayed["data"].([]any) {
		if d, _ := r.(map[string]any)["detail"].(map[string]any); d["replay"] != true {
			t.Errorf("a replay's monitoring row is not marked: %v", r)
		}
	}

	// Bulk replay of the last hour: every original event once, never the replays.
	req, _ := http.NewRequest("POST", e.url+"/v1/integrations/"+id+"/events/replay/bulk", strings.NewReader(`{"from_date":"`+from+`"}`))
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
	stored := e.scalar("SELECT count() FROM raw_events FINAL WHERE integration_id = ? AND replay = 0", id)
	if last["done"] != true || last["replayed"] != float64(stored) || stored < 20 || replayCursor == "" {
		t.Errorf("bulk replay ended %v; %d original events stored", last, stored)
	}
	before := e.waitStats(id, 24+float64(stored))

	// Resuming a run from an older cursor (a progress line lost with the connection) replays the
	// events after it again, and the pipeline maps none of them twice: they are the run's
	// duplicates. Here the cursor is moved back to the run's start.
	raw, err := base64.RawURLEncoding.DecodeString(replayCursor)
	if err != nil {
		t.Fatal(err)
	}
	var cur map[string]any
	must(t, json.Unmarshal(raw, &cur))
	cur["after_us"], cur["after_event_id"] = 0, ""
	raw, _ = json.Marshal(cur)
	status, lines := e.callStream("POST", "/v1/integrations/"+id+"/events/replay/bulk", `{"cursor":"`+base64.RawURLEncoding.EncodeToString(raw)+`"}`)
	if status != http.StatusOK || len(lines) == 0 || lines[len(lines)-1]["replayed"] != float64(stored) {
		t.Fatalf("resume: %d %v", status, lines)
	}
	waitFor(t, func() bool {
		return e.scalar("SELECT count() FROM monitoring_events FINAL WHERE integration_id = ? AND code = 'DUPLICATE_EVENT'", id) >= stored
	})
	if dups := e.scalar("SELECT count() FROM monitoring_events FINAL WHERE integration_id = ? AND code = 'DUPLICATE_EVENT'", id); dups != stored {
		t.Errorf("%d duplicates of the resumed run, want %d", dups, stored)
	}
	if after := e.waitStats(id, 0); after["success_count"] != before["success_count"] {
		t.Errorf("resumed run mapped events again: stats %v, before %v", after, before)
	}
	// Another integration's cursor is refused.
	if status, body := e.call("POST", "/v1/integrations/"+id+"/events/replay/bulk", `{"cursor":"bm90IGEgY3Vyc29y"}`); status != http.StatusBadRequest {
		t.Errorf("forged cursor: %d %v", status, body)
	}

	// Access logs: the calls above, made with the integration's token, newest first.
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, logs := e.call("POST", "/v1/integrations/"+id+"/monitoring/access-logs", `{"service":"monitoring","method":"POST","path":"/replay","limit":10}`)
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
	status, res := e.call("POST", "/v1/integrations/"+id+"/monitoring/access-logs", `{"token_id":"tok_someone_else"}`)
	if status != http.StatusBadRequest {
		t.Errorf("foreign token id: %d %v, want 400", status, res)
	}
}

// Relations on the real services: a contract relates to a contact no event has written yet (a
// placeholder is stored), the contact arrives and replaces the placeholder, and a second contract
// event appends a second contact to the stored relation.
func TestIntegrationRelationsAndPlaceholders(t *testing.T) {
	e := newEnv(t)
	e.start()
	body := `{"name":"SAP","use_cases":[
	 {"name":"Contracts","slug":"contract","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contract",
	  "unique_ids":["contract_number"],"fields":[{"attribute":"contract_number","field":"nr"},
	  {"attribute":"customers","relations":{"operation":"_append","items":[{"entity_schema":"contact","_tags":["KUNDE"],
	    "unique_ids":[{"attribute":"customer_number","field":"kunde"}]}]}}]}]}},
	 {"name":"Customers","slug":"customer","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contact",
	  "unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"nr"},{"attribute":"name","field":"name"}]}]}}]}`
	id := e.createIntegration(body)
	send := func(slug, payload string) { e.sendOne(id, slug, payload) }
	contact := func(no string) (attrs map[string]any, n uint64) {
		var raw string
		_ = e.conn.QueryRow(context.Background(), `SELECT attributes FROM entities FINAL WHERE entity_schema = 'contact'
			AND visitParamExtractString(unique_identifiers, 'customer_number') = ?`, no).Scan(&raw)
		_ = json.Unmarshal([]byte(raw), &attrs)
		n = e.scalar("SELECT count() FROM entities FINAL WHERE entity_schema = 'contact' AND deleted = 0")
		return attrs, n
	}
	relatedIDs := func() []string {
		var raw string
		if err := e.conn.QueryRow(context.Background(), `SELECT attributes FROM entities FINAL WHERE entity_schema = 'contract'`).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var attrs struct {
			Customers struct {
				Relation []struct {
					EntityID string `json:"entity_id"`
				} `json:"$relation"`
			} `json:"customers"`
		}
		_ = json.Unmarshal([]byte(raw), &attrs)
		var out []string
		for _, r := range attrs.Customers.Relation {
			out = append(out, r.EntityID)
		}
		return out
	}

	send("contract", `{"nr":"V-1","kunde":"K-9"}`)
	e.waitStats(id, 1)
	waitFor(t, func() bool { a, _ := contact("K-9"); return a["customer_number"] == "K-9" })
	if a, _ := contact("K-9"); a["name"] != nil {
		t.Errorf("placeholder holds more than the unique id: %v", a)
	}
	send("customer", `{"nr":"K-9","name":"Kim"}`)
	waitFor(t, func() bool { a, _ := contact("K-9"); return a["name"] == "Kim" })
	if _, n := contact("K-9"); n != 1 {
		t.Errorf("%d contacts, want the one (placeholder replaced)", n)
	}
	send("contract", `{"nr":"V-1","kunde":"K-10"}`)
	waitFor(t, func() bool { return len(relatedIDs()) == 2 })
	if ids := relatedIDs(); ids[0] == ids[1] {
		t.Errorf("related ids %v", ids)
	}
}

// callStream sends a request whose answer is NDJSON and reads it to the end.
func (e *env) callStream(method, path, body string) (int, []map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer it-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			lines = append(lines, l)
		}
	}
	return resp.StatusCode, lines
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60s")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Patch semantics on the real services: two use cases map different attributes
// of one contact, and an event that leaves an attribute undefined keeps its stored value.
func TestIntegrationEntityWritesPatchTheStoredAttributes(t *testing.T) {
	e := newEnv(t)
	e.start()
	body := `{"name":"SAP","use_cases":[
	 {"name":"Master data","slug":"master","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contact",
	  "unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"nr"},
	  {"attribute":"first_name","field":"vorname"},{"attribute":"city","field":"$.adresse.ort"}]}]}},
	 {"name":"Scoring","slug":"scoring","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contact",
	  "unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"nr"},{"attribute":"segment","field":"segment"}]}]}}]}`
	id := e.createIntegration(body)
	send := func(slug, payload string) { e.sendOne(id, slug, payload) }
	send("master", `{"nr":"K-1","vorname":"Ann","adresse":{"ort":"Köln"}}`)
	e.waitStats(id, 1)
	send("scoring", `{"nr":"K-1","segment":"gold"}`)
	e.waitStats(id, 2)
	send("master", `{"nr":"K-1","vorname":"Anna"}`)
	e.waitStats(id, 3)
	var attrs map[string]any
	waitFor(t, func() bool {
		var raw string
		_ = e.conn.QueryRow(context.Background(), `SELECT attributes FROM entities FINAL WHERE entity_schema = 'contact'`).Scan(&raw)
		attrs = nil
		_ = json.Unmarshal([]byte(raw), &attrs)
		return attrs["first_name"] == "Anna"
	})
	if attrs["city"] != "Köln" || attrs["segment"] != "gold" || attrs["customer_number"] != "K-1" {
		t.Errorf("contact K-1 = %v; want first_name Anna, city Köln kept, segment gold kept", attrs)
	}
	if n := e.scalar("SELECT count() FROM entity_changes WHERE entity_schema = 'contact'"); n != 3 {
		t.Errorf("%d entity changes, want 3", n)
	}
}

// Prune scope on the real services: pruned billing events are marked deleted
// in ClickHouse and keep their unique ids and attributes.
func TestIntegrationPruneScope(t *testing.T) {
	e := newEnv(t)
	e.start()
	raw, err := os.ReadFile("../mapping/testdata/golden/ex5-prune-scope.json")
	if err != nil {
		t.Fatal(err)
	}
	var gc struct {
		Configuration json.RawMessage `json:"configuration"`
	}
	if err := json.Unmarshal(raw, &gc); err != nil {
		t.Fatal(err)
	}
	body := `{"name":"Billing","use_cases":[
	 {"name":"Accounts","slug":"accounts","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"billing_account",
	  "unique_ids":["billing_account_number"],"fields":[{"attribute":"billing_account_number","field":"nr"}]}]}},
	 {"name":"Events","slug":"events","type":"inbound","enabled":true,"configuration":` + string(gc.Configuration) + `}]}`
	id := e.createIntegration(body)
	send := func(slug, payload string, n float64) {
		e.sendOne(id, slug, payload)
		e.waitStats(id, n)
	}
	send("accounts", `{"nr":"BA-9"}`, 1)
	send("events", `{"konto":"BA-9","events":[{"id":"E-1"},{"id":"E-2"},{"id":"E-3"}]}`, 2)
	send("events", `{"konto":"BA-9","events":[{"id":"E-2"},{"id":"E-4"}]}`, 3)
	type row struct {
		uid     string
		deleted uint8
	}
	var rows []row
	waitFor(t, func() bool {
		r, err := e.conn.Query(context.Background(), `SELECT visitParamExtractString(unique_identifiers, 'external_id') AS uid, deleted
			FROM entities FINAL WHERE entity_schema = 'billing_event' ORDER BY uid`) // 18.16 has no positional ORDER BY
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rows = nil
		for r.Next() {
			var x row
			_ = r.Scan(&x.uid, &x.deleted)
			rows = append(rows, x)
		}
		return len(rows) == 4 && rows[0].deleted == 1
	})
	want := []row{{"E-1", 1}, {"E-2", 0}, {"E-3", 1}, {"E-4", 0}}
	for i, w := range want {
		if rows[i] != w {
			t.Errorf("billing events %v, want %v", rows, want)
			break
		}
	}
}
