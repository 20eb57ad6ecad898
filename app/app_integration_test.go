//go:build integration

package app_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/chx"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/projector"
	"github.com/erpstream/erpstream/query"
)

// env is one isolated test environment on the real services: its own topic prefix and database.
type env struct {
	jwt    auth.JWTConfig
	t      *testing.T
	kafka  kafkax.Config
	ch     chx.Config
	conn   driver.Conn
	log    *slog.Logger
	url    string
	cancel context.CancelFunc
	done   chan error
	// afterInsert, when set, runs in the projector between a ClickHouse insert and the offset commit.
	afterInsert func() error
	// configure, when set, adjusts the configuration start uses.
	configure func(*app.Config)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	brokers, chAddr := os.Getenv("KAFKA_BROKERS"), os.Getenv("CLICKHOUSE_ADDR")
	if brokers == "" || chAddr == "" {
		// Integration tests never skip silently: `make test` sets both.
		t.Fatal("KAFKA_BROKERS and CLICKHOUSE_ADDR must point at the real services (run `make test`)")
	}
	suffix := randomSuffix()
	e := &env{
		t:     t,
		kafka: kafkax.Config{Brokers: strings.Split(brokers, ","), TopicPrefix: "it-" + suffix, Partitions: 4, Replication: 1},
		ch:    chx.Config{Addr: chAddr, Database: "erpstream_it_" + suffix},
		log:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chx.Open(ctx, e.ch)
	if err != nil {
		t.Fatal(err)
	}
	e.conn = conn
	ver, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		t.Fatalf("kafka at %s: %v", brokers, err)
	}
	t.Logf("using Apache Kafka at %s (cluster %s, %d broker(s)) and ClickHouse %s at %s; topics %s.*, database %s",
		brokers, meta.Cluster, len(meta.Brokers), ver.String(), chAddr, e.kafka.TopicPrefix, e.ch.Database)
	t.Cleanup(func() {
		e.stop()
		topics := kafkax.NewTopics(e.kafka.TopicPrefix)
		dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer dcancel()
		var names []string
		for _, spec := range topics.Specs(1) {
			names = append(names, spec.Name)
		}
		_, _ = kadm.NewClient(cl).DeleteTopics(dctx, names...)
		cl.Close()
		_ = conn.Exec(dctx, "DROP DATABASE IF EXISTS "+e.ch.Database)
		conn.Close()
	})
	return e
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs the whole pipeline (erpstream serve) in this process and waits until it is ready.
func (e *env) start() { e.startWithClock(nil) }

func (e *env) startWithClock(now func() time.Time) {
	e.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	e.cancel, e.done = cancel, make(chan error, 1)
	cfg := app.Config{
		Services: app.AllServices, Listener: ln, Kafka: e.kafka, ClickHouse: e.ch,
		DevMode: true, DevToken: "it-token", Log: e.log, JWT: e.jwt, RateLimitPerMinute: -1, MetricsToken: "it-metrics",
		ProjectorFlushInterval: 200 * time.Millisecond,
		ProjectorAfterInsert:   e.afterInsert,
		Now:                    now,
		OnReady:                func(addr string) { ready <- addr },
	}
	if e.configure != nil {
		e.configure(&cfg)
	}
	go func() { e.done <- app.Run(ctx, cfg) }()
	select {
	case addr := <-ready:
		e.url = "http://" + addr
	case err := <-e.done:
		e.t.Fatalf("pipeline failed to start: %v", err)
	case <-time.After(60 * time.Second):
		e.t.Fatal("pipeline not ready within 60s")
	}
}

func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	if err := <-e.done; err != nil {
		e.t.Errorf("pipeline stopped with error: %v", err)
	}
	e.cancel = nil
}

// metrics reads /metrics on the API port with the metrics token.
func (e *env) metrics() (*http.Response, error) {
	req, _ := http.NewRequest("GET", e.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer it-metrics")
	return http.DefaultClient.Do(req)
}

func (e *env) call(method, path, body string) (int, map[string]any) {
	e.t.Helper()
	return e.callAs("it-token", method, path, body)
}

func (e *env) callAs(token, method, path, body string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		e.t.Fatalf("%s %s: not JSON (%d): %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

const integrationBody = `{"name":"SAP","use_cases":[{"name":"Customers","slug":"customer","type":"inbound","enabled":true,
 "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
   {"attribute":"customer_number","field":"customerNumber"},
   {"attribute":"first_name","field":"firstName"},
   {"attribute":"full_name","jsonataExpression":"firstName & ' ' & lastName"},
   {"attribute":"city","field":"$.address.city"},
   {"attribute":"source","constant":"SAP"}]}]}}]}`

func customerEvent(n int, first, dedup string) string {
	payload := fmt.Sprintf(`{"customerNumber":"K-%d","firstName":"%s","lastName":"Meyer","address":{"city":"Köln"}}`, n, first)
	p, _ := json.Marshal(payload)
	return fmt.Sprintf(`{"event_type":"UPDATE","use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","format":"json","payload":%s,"deduplication_id":%q}`, p, dedup)
}

func (e *env) send(integrationID, correlation string, events []string) {
	e.t.Helper()
	status, body := e.call("POST", "/v3/erp/updates/events",
		`{"integration_id":"`+integrationID+`","meta":{"correlation_id":"`+correlation+`"},"events":[`+strings.Join(events, ",")+`]}`)
	if status != http.StatusOK {
		e.t.Fatalf("send: %d %v", status, body)
	}
	for i, r := range body["results"].([]any) {
		if st := r.(map[string]any)["status"]; st != "success" {
			e.t.Fatalf("results[%d] = %v", i, r)
		}
	}
}

// waitStats polls the seed's stats call until total_events reaches want.
func (e *env) waitStats(integrationID string, want float64) map[string]any {
	e.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		status, st := e.call("POST", "/v1/monitoring/stats", `{"integration_id":"`+integrationID+`","from":"`+
			time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+`","to":"`+time.Now().Add(time.Minute).UTC().Format(time.RFC3339)+`"}`)
		if status != http.StatusOK {
			e.t.Fatalf("stats: %d %v", status, st)
		}
		if st["total_events"].(float64) >= want || time.Now().After(deadline) {
			return st
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (e *env) entity(customer string) (attrs map[string]any, count uint64) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.conn.QueryRow(ctx, `SELECT count() FROM entities FINAL WHERE org_id = 'dev-org' AND entity_schema = 'contact' AND deleted = 0`).Scan(&count); err != nil {
		e.t.Fatal(err)
	}
	var raw string
	err := e.conn.QueryRow(ctx, `SELECT attributes FROM entities FINAL WHERE org_id = 'dev-org' AND entity_schema = 'contact'
		AND visitParamExtractString(unique_identifiers, 'customer_number') = ?`, customer).Scan(&raw)
	if err != nil {
		e.t.Fatalf("entity %s: %v", customer, err)
	}
	if err := json.Unmarshal([]byte(raw), &attrs); err != nil {
		e.t.Fatal(err)
	}
	return attrs, count
}

func TestIntegrationEventsFlowFromHTTPToClickHouse(t *testing.T) {
	e := newEnv(t)
	e.start()
	status, integ := e.call("POST", "/v2/integrations", integrationBody)
	if status != http.StatusCreated {
		t.Fatalf("create integration: %d %v", status, integ)
	}
	id := integ["id"].(string)

	// 300 events in 3 requests of 100, as an ERP batch would send them.
	for r := 0; r < 3; r++ {
		var events []string
		for i := 0; i < 100; i++ {
			n := r*100 + i
			events = append(events, customerEvent(n, "Lena", fmt.Sprintf("d-%d", n)))
		}
		e.send(id, fmt.Sprintf("batch-%d", r), events)
	}
	// One event whose payload is not JSON: answered as an error and counted as one.
	status, res := e.call("POST", "/v3/erp/updates/events", `{"integration_id":"`+id+`","meta":{"correlation_id":"bad"},"events":[`+
		`{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","payload":"{not json"}]}`)
	if status != http.StatusOK || res["results"].([]any)[0].(map[string]any)["status"] != "error" {
		t.Fatalf("malformed payload: %d %v", status, res)
	}

	st := e.waitStats(id, 301)
	t.Logf("stats after 301 events: %v", st)
	if st["total_events"] != 301.0 || st["success_count"] != 300.0 || st["error_count"] != 1.0 || st["last_error_at"] == nil {
		t.Fatalf("stats = %v, want 301 total, 300 success, 1 error", st)
	}
	attrs, count := e.entity("K-42")
	if count != 300 {
		t.Errorf("%d contact entities in ClickHouse, want 300", count)
	}
	want := map[string]any{"customer_number": "K-42", "first_name": "Lena", "full_name": "Lena Meyer", "city": "Köln", "source": "SAP"}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("entity K-42 %s = %v, want %v", k, attrs[k], v)
		}
	}

	// The error is findable, with the use case and cause in its message and the batch's correlation id.
	status, page := e.call("POST", "/v1/monitoring/events", `{"integration_id":"`+id+`","status":["error"],"limit":10}`)
	if status != http.StatusOK || len(page["data"].([]any)) != 1 {
		t.Fatalf("error search: %d %v", status, page)
	}
	bad := page["data"].([]any)[0].(map[string]any)
	if bad["code"] != "MALFORMED_PAYLOAD" || bad["correlation_id"] != "bad" || !strings.Contains(bad["message"].(string), "not valid JSON") {
		t.Errorf("error row = %v", bad)
	}

	// Keyset pagination walks every row exactly once.
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		body := `{"integration_id":"` + id + `","limit":100`
		if cursor != "" {
			body += `,"cursor":"` + cursor + `"`
		}
		status, page := e.call("POST", "/v1/monitoring/events", body+"}")
		if status != http.StatusOK {
			t.Fatalf("page %d: %d %v", pages, status, page)
		}
		for _, row := range page["data"].([]any) {
			rid := row.(map[string]any)["id"].(string)
			if seen[rid] {
				t.Fatalf("row %s on two pages", rid)
			}
			seen[rid] = true
		}
		if page["has_more"] != true {
			break
		}
		cursor = page["next_cursor"].(string)
	}
	if len(seen) != 301 {
		t.Errorf("paged through %d rows, want 301", len(seen))
	}

	// A restart keeps configuration, consumer offsets and counts: nothing is lost or counted twice.
	e.stop()
	e.start()
	if status, got := e.call("GET", "/v2/integrations/"+id, ""); status != http.StatusOK || len(got["use_cases"].([]any)) != 1 {
		t.Fatalf("integration after restart: %d %v", status, got)
	}
	e.send(id, "after-restart", []string{customerEvent(42, "Lea", "d-42-v2")})
	// A deduplication id accepted before the restart is still known: the copy is skipped.
	e.send(id, "resent", []string{customerEvent(5, "Changed", "d-5")})
	st = e.waitStats(id, 303)
	if st["total_events"] != 303.0 || st["success_count"] != 301.0 || st["skipped_count"] != 1.0 {
		t.Fatalf("stats after restart = %v, want 303 total, 301 success, 1 skipped", st)
	}
	if attrs, _ := e.entity("K-5"); attrs["first_name"] != "Lena" {
		t.Errorf("a duplicate changed entity K-5: %v", attrs)
	}
	attrs, count = e.entity("K-42")
	if attrs["first_name"] != "Lea" || attrs["full_name"] != "Lea Meyer" || count != 300 {
		t.Errorf("after the update: K-42 = %v, %d entities; want first_name Lea and still 300 entities", attrs, count)
	}
}

func TestIntegrationDisabledUseCaseAndUnknownSlug(t *testing.T) {
	e := newEnv(t)
	e.start()
	_, integ := e.call("POST", "/v2/integrations", integrationBody)
	id := integ["id"].(string)
	uc := integ["use_cases"].([]any)[0].(map[string]any)
	if status, body := e.call("PUT", "/v1/integrations/"+id+"/use-cases/"+uc["id"].(string), `{"enabled":false}`); status != http.StatusOK {
		t.Fatalf("disable: %d %v", status, body)
	}
	status, body := e.call("POST", "/v3/erp/updates/events", `{"integration_id":"`+id+`","events":[`+customerEvent(1, "A", "x1")+`]}`)
	if status != http.StatusOK || body["results"].([]any)[0].(map[string]any)["status"] != "ignored" {
		t.Fatalf("event to a disabled use case: %d %v", status, body)
	}
	status, body = e.call("POST", "/v3/erp/updates/events", `{"integration_id":"`+id+`","events":[`+strings.Replace(customerEvent(1, "A", "x2"), `"customer"`, `"nope"`, 1)+`]}`)
	if status != http.StatusOK || body["results"].([]any)[0].(map[string]any)["status"] != "ignored" {
		t.Fatalf("unknown slug: %d %v", status, body)
	}
	// Both are in monitoring as skipped, with their codes.
	st := e.waitStats(id, 2)
	if st["skipped_count"] != 2.0 {
		t.Fatalf("stats %v, want 2 skipped", st)
	}
}

// The projector re-inserts a batch when it dies between insert and offset commit. The tables
// collapse such duplicates, so what users see is counted once.
func TestIntegrationReinsertedBatchesCountOnce(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := app.Migrate(ctx, e.ch, e.log); err != nil {
		t.Fatal(err)
	}
	sink := &projector.ClickHouseSink{Conn: e.conn}
	now := time.Now().UnixMilli()
	var rows []envelope.MonitoringEvent
	var writes []envelope.EntityWrite
	for i := 0; i < 50; i++ {
		rows = append(rows, envelope.MonitoringEvent{ID: fmt.Sprintf("m-%d-%s", i, strings.Repeat("x", 36)), OrgID: "o", IntegrationID: "i", EventID: fmt.Sprintf("e-%d", i),
			Level: envelope.LevelSuccess, Code: "ENTITY_UPDATED", CreatedAtMs: now})
		writes = append(writes, envelope.EntityWrite{OrgID: "o", EntitySchema: "contact", EntityID: fmt.Sprintf("c-%d", i), Op: envelope.OpUpsert,
			UniqueIdentifiers: json.RawMessage(`{}`), Attributes: json.RawMessage(`{"n":1}`), Version: 1, WrittenAtMs: now})
	}
	for attempt := 0; attempt < 2; attempt++ {
		if err := sink.WriteMonitoring(ctx, rows); err != nil {
			t.Fatal(err)
		}
		if err := sink.WriteEntities(ctx, writes); err != nil {
			t.Fatal(err)
		}
	}
	// The projector's check for rows an earlier attempt stored asks about a whole batch; 10,000
	// ids of 40 characters are far over one query's size limit.
	var batch []envelope.MonitoringEvent
	for i := 0; i < 10000; i++ {
		batch = append(batch, envelope.MonitoringEvent{ID: fmt.Sprintf("big-%036d", i), OrgID: "o2", IntegrationID: "i", Level: envelope.LevelSuccess, CreatedAtMs: now + int64(i)})
	}
	if err := sink.WriteMonitoring(ctx, batch[:7000]); err != nil {
		t.Fatal(err)
	}
	existing, err := (&projector.ClickHouseStored{Conn: e.conn}).ExistingMonitoring(ctx, batch)
	if err != nil || len(existing) != 7000 || !existing[batch[6999].ID] || existing[batch[7000].ID] {
		t.Fatalf("ExistingMonitoring found %d of the 7,000 stored rows (err %v)", len(existing), err)
	}
	store := &query.ClickHouseStore{Conn: e.conn}
	st, err := store.Stats(ctx, query.Filter{OrgID: "o", IntegrationID: "i", From: time.UnixMilli(now - 1000), To: time.UnixMilli(now + 1000)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 50 {
		t.Errorf("stats count %d after inserting one batch twice, want 50", st.Total)
	}
	var entities uint64
	if err := e.conn.QueryRow(ctx, "SELECT count() FROM entities FINAL WHERE org_id = 'o'").Scan(&entities); err != nil {
		t.Fatal(err)
	}
	if entities != 50 {
		t.Errorf("%d entities after inserting one batch twice, want 50", entities)
	}
}

func TestIntegrationEveryEventEndpointAndTheDedupWindow(t *testing.T) {
	e := newEnv(t)
	var mu sync.Mutex
	clock := time.Now().UTC()
	e.startWithClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return clock })
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	_, integ := e.call("POST", "/v2/integrations", integrationBody)
	id := integ["id"].(string)
	if status, body := e.call("PUT", "/v1/integrations/"+id+"/app-mapping",
		`{"app_id":"sap-app","component_id":"44444444-4444-4444-8444-444444444444"}`); status != http.StatusOK {
		t.Fatalf("app mapping: %d %v", status, body)
	}
	// v2: routed by object_type (the use case's name); v1: by the app mapping.
	v2 := `{"integration_id":"` + id + `","correlation_id":"v2","events":[{"event_type":"UPDATE","object_type":"Customers",` +
		`"timestamp":"2025-05-01T08:30:00Z","format":"json","payload":"{\"customerNumber\":\"V2\",\"firstName\":\"Two\",\"lastName\":\"X\"}"}]}`
	v1 := `{"app_id":"sap-app","component_id":"44444444-4444-4444-8444-444444444444","meta":{"correlation_id":"v1"},"events":[{"event_type":"CREATE",` +
		`"object_type":"Customers","timestamp":"2025-05-01T08:30:00Z","format":"json","payload":"{\"customerNumber\":\"V1\",\"firstName\":\"One\",\"lastName\":\"X\"}"}]}`
	// XML: the root element is the top-level key, so this use case maps from it.
	if status, body := e.call("POST", "/v1/integrations/"+id+"/use-cases", `{"name":"Customers XML","slug":"customer-xml","type":"inbound",
		"enabled":true,"configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"jsonataExpression":"c",
		"fields":[{"attribute":"customer_number","field":"customerNumber"},{"attribute":"first_name","field":"firstName"}]}]}}`); status != http.StatusCreated {
		t.Fatalf("xml use case: %d %v", status, body)
	}
	xml := `{"integration_id":"` + id + `","events":[{"use_case_slug":"customer-xml","timestamp":"2025-05-01T08:30:00Z","format":"xml",` +
		`"payload":"<c><customerNumber>X1</customerNumber><firstName>Ex</firstName><lastName>Em</lastName></c>"}]}`
	for path, body := range map[string]string{"/v2/erp/updates/events": v2, "/v1/erp/updates/events": v1, "/v3/erp/updates/events": xml} {
		status, res := e.call("POST", path, body)
		if status != http.StatusOK || res["results"].([]any)[0].(map[string]any)["status"] != "success" {
			t.Fatalf("%s: %d %v", path, status, res)
		}
	}
	// NDJSON: 50 single-event lines.
	var nd strings.Builder
	for i := 0; i < 50; i++ {
		nd.WriteString(customerEvent(1000+i, "Bulk", fmt.Sprintf("bulk-%d", i)) + "\n")
	}
	req, _ := http.NewRequest("POST", e.url+"/v3/erp/updates/events/ndjson?integration_id="+id, strings.NewReader(nd.String()))
	req.Header.Set("Authorization", "Bearer it-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(raw), `"status":"success"`); n != 50 {
		t.Fatalf("NDJSON accepted %d of 50: %s", n, raw)
	}

	// Deduplication: inside the window a copy is skipped, after 24 h it is processed again.
	e.send(id, "dedup", []string{customerEvent(7, "First", "doc-7")})
	advance(time.Hour)
	e.send(id, "dedup", []string{customerEvent(7, "Copy", "doc-7")})
	advance(24 * time.Hour)
	e.send(id, "dedup", []string{customerEvent(7, "Later", "doc-7")})

	st := e.waitStats(id, 56)
	if st["total_events"] != 56.0 || st["success_count"] != 55.0 || st["skipped_count"] != 1.0 {
		_, errs := e.call("POST", "/v1/monitoring/events", `{"integration_id":"`+id+`","status":["error"]}`)
		t.Fatalf("stats %v, want 56 events: 55 processed, 1 duplicate skipped; errors: %v", st, errs)
	}
	if attrs, _ := e.entity("K-7"); attrs["first_name"] != "Later" {
		t.Errorf("K-7 = %v, want the copy after the window applied", attrs)
	}
	if attrs, _ := e.entity("X1"); attrs["first_name"] != "Ex" {
		t.Errorf("the XML event mapped to %v", attrs)
	}
	for _, c := range []string{"V1", "V2"} {
		if attrs, _ := e.entity(c); attrs["customer_number"] != c {
			t.Errorf("entity %s = %v", c, attrs)
		}
	}
}
