// Package apptest runs erpstream on the real services for integration tests: each Env has its own
// topic prefix and ClickHouse database on the Kafka broker and ClickHouse server that
// KAFKA_BROKERS and CLICKHOUSE_ADDR name (scripts/test.sh starts both), and runs the whole
// pipeline in the test's process.
package apptest

import (
	"bufio"
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
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/chx"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// Env is one isolated test environment on the real services: its own topic prefix and database.
type Env struct {
	JWT    auth.JWTConfig
	T      *testing.T
	Kafka  kafkax.Config
	CH     chx.Config
	Conn   driver.Conn
	Log    *slog.Logger
	URL    string
	cancel context.CancelFunc
	done   chan error
	logs   *logBuffer
	// instances numbers the services StartOnly runs.
	instances atomic.Int64
	// AfterInsert, when set, runs in the projector between a ClickHouse insert and the offset commit.
	AfterInsert func() error
	// Configure, when set, adjusts the configuration start uses.
	Configure func(*app.Config)
}

// New prepares an environment (topics and database are removed when the test ends); Start runs
// the pipeline in it.
func New(t *testing.T) *Env {
	t.Helper()
	brokers, chAddr := os.Getenv("KAFKA_BROKERS"), os.Getenv("CLICKHOUSE_ADDR")
	if brokers == "" || chAddr == "" {
		// Integration tests never skip silently: `make test` sets both.
		t.Fatal("KAFKA_BROKERS and CLICKHOUSE_ADDR must point at the real services (run `make test`)")
	}
	suffix := randomSuffix()
	e := &Env{
		T:     t,
		Kafka: kafkax.Config{Brokers: strings.Split(brokers, ","), TopicPrefix: "it-" + suffix, Partitions: 4, Replication: 1},
		CH:    chx.Config{Addr: chAddr, Database: "erpstream_it_" + suffix},
		logs:  &logBuffer{},
	}
	// Warnings and errors go to the test's log; info and above are kept for Logs.
	e.Log = slog.New(fanout{slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}),
		slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo})})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := chx.Open(ctx, e.CH)
	if err != nil {
		t.Fatal(err)
	}
	e.Conn = conn
	ver, err := conn.ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	meta, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		t.Fatalf("kafka at %s: %v", brokers, err)
	}
	t.Logf("using Apache Kafka at %s (cluster %s, %d broker(s)) and ClickHouse %s at %s; topics %s.*, database %s",
		brokers, meta.Cluster, len(meta.Brokers), ver.String(), chAddr, e.Kafka.TopicPrefix, e.CH.Database)
	t.Cleanup(func() {
		e.Stop()
		topics := kafkax.NewTopics(e.Kafka.TopicPrefix)
		dctx, dcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer dcancel()
		var names []string
		for _, spec := range topics.Specs(1) {
			names = append(names, spec.Name)
		}
		_, _ = kadm.NewClient(cl).DeleteTopics(dctx, names...)
		cl.Close()
		_ = conn.Exec(dctx, "DROP DATABASE IF EXISTS "+e.CH.Database)
		conn.Close()
	})
	return e
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Logs is everything the pipeline logged so far at info level and above: tests look for secrets in it.
func (e *Env) Logs() string { return e.logs.String() }

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fanout hands every record to each handler that takes its level.
type fanout []slog.Handler

func (f fanout) Enabled(ctx context.Context, l slog.Level) bool {
	for _, h := range f {
		if h.Enabled(ctx, l) {
			return true
		}
	}
	return false
}

func (f fanout) Handle(ctx context.Context, r slog.Record) error {
	for _, h := range f {
		if h.Enabled(ctx, r.Level) {
			_ = h.Handle(ctx, r.Clone())
		}
	}
	return nil
}

func (f fanout) WithAttrs(attrs []slog.Attr) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithAttrs(attrs)
	}
	return out
}

func (f fanout) WithGroup(name string) slog.Handler {
	out := make(fanout, len(f))
	for i, h := range f {
		out[i] = h.WithGroup(name)
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Start runs the whole pipeline (erpstream serve) in this process and waits until it is ready.
func (e *Env) Start() { e.StartWithClock(nil) }

// StartWithClock is Start with ingest's clock replaced (receive times, the deduplication window).
func (e *Env) StartWithClock(now func() time.Time) {
	e.T.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	e.cancel, e.done = cancel, make(chan error, 1)
	cfg := app.Config{
		Services: app.AllServices, Listener: ln, Kafka: e.Kafka, ClickHouse: e.CH,
		DevMode: true, DevToken: "it-token", Log: e.Log, JWT: e.JWT, RateLimitPerMinute: -1, MetricsToken: "it-metrics",
		ProjectorFlushInterval: 200 * time.Millisecond,
		ProjectorAfterInsert:   e.AfterInsert,
		Now:                    now,
		OnReady:                func(addr string) { ready <- addr },
	}
	if e.Configure != nil {
		e.Configure(&cfg)
	}
	go func() { e.done <- app.Run(ctx, cfg) }()
	select {
	case addr := <-ready:
		e.URL = "http://" + addr
	case err := <-e.done:
		e.T.Fatalf("pipeline failed to start: %v", err)
	case <-time.After(60 * time.Second):
		e.T.Fatal("pipeline not ready within 60s")
	}
}

// StartOnly runs the named services as a process of their own (as `erpstream ingest` etc. do),
// beside whatever runs already, until the test ends; it returns its HTTP base URL ("" without
// HTTP routes).
func (e *Env) StartOnly(services ...string) string {
	e.T.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	cfg := app.Config{
		Services: services, Listener: ln, Kafka: e.Kafka, ClickHouse: e.CH,
		DevMode: true, DevToken: "it-token", Log: e.Log, JWT: e.JWT, RateLimitPerMinute: -1, MetricsToken: "it-metrics",
		ProjectorFlushInterval: 200 * time.Millisecond,
		// Unique per call: instances of one service need transactional ids of their own.
		InstanceID: fmt.Sprintf("it-%s-%d", strings.Join(services, "-"), e.instances.Add(1)),
		OnReady:    func(addr string) { ready <- addr },
	}
	if e.Configure != nil {
		e.Configure(&cfg)
	}
	go func() { done <- app.Run(ctx, cfg) }()
	e.T.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.T.Errorf("%v stopped with error: %v", services, err)
		}
	})
	select {
	case addr := <-ready:
		if addr == "" || addr == ln.Addr().String() && !servesHTTP(services) {
			ln.Close()
			return ""
		}
		return "http://" + addr
	case err := <-done:
		e.T.Fatalf("%v failed to start: %v", services, err)
	case <-time.After(60 * time.Second):
		e.T.Fatalf("%v not ready within 60s", services)
	}
	return ""
}

func servesHTTP(services []string) bool {
	for _, s := range services {
		if s == app.Ingest || s == app.Query || s == app.Outbound {
			return true
		}
	}
	return false
}

// Stop stops the pipeline and fails the test if it stopped with an error.
func (e *Env) Stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	if err := <-e.done; err != nil {
		e.T.Errorf("pipeline stopped with error: %v", err)
	}
	e.cancel = nil
}

// Exited delivers the pipeline's error when it stops by itself (a crash hook fired); after that,
// Stop has nothing left to stop and Start may run it again.
func (e *Env) Exited() <-chan error {
	out := make(chan error, 1)
	go func(done chan error, cancel context.CancelFunc) {
		err := <-done
		cancel()
		out <- err
	}(e.done, e.cancel)
	e.cancel = nil
	return out
}

// The harness is a client of erpstream's own API under test (loopback), not an outbound request
// of erpstream: it uses net/http directly; product code sends only through package egress.

// Metrics reads /metrics on the API port with the metrics token.
func (e *Env) Metrics() (*http.Response, error) {
	req, _ := http.NewRequest("GET", e.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer it-metrics")
	return http.DefaultClient.Do(req)
}

// Call sends a request with the dev token and decodes the JSON answer.
func (e *Env) Call(method, path, body string) (int, map[string]any) {
	e.T.Helper()
	return e.CallAs("it-token", method, path, body)
}

// CallAs is Call with another bearer token ("" sends none).
func (e *Env) CallAs(token, method, path, body string) (int, map[string]any) {
	e.T.Helper()
	req, _ := http.NewRequest(method, e.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.T.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		e.T.Fatalf("%s %s: not JSON (%d): %s", method, path, resp.StatusCode, raw)
	}
	return resp.StatusCode, out
}

// IntegrationBody is a v2 integration with one customer use case mapping contacts.
const IntegrationBody = `{"name":"SAP","use_cases":[{"name":"Customers","slug":"customer","type":"inbound","enabled":true,
 "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
   {"attribute":"customer_number","field":"customerNumber"},
   {"attribute":"first_name","field":"firstName"},
   {"attribute":"full_name","jsonataExpression":"firstName & ' ' & lastName"},
   {"attribute":"city","field":"$.address.city"},
   {"attribute":"source","constant":"SAP"}]}]}}]}`

// CustomerEvent is one event for IntegrationBody's customer use case.
func CustomerEvent(n int, first, dedup string) string {
	payload := fmt.Sprintf(`{"customerNumber":"K-%d","firstName":"%s","lastName":"Meyer","address":{"city":"Köln"}}`, n, first)
	p, _ := json.Marshal(payload)
	return fmt.Sprintf(`{"event_type":"UPDATE","use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","format":"json","payload":%s,"deduplication_id":%q}`, p, dedup)
}

// Send sends events in one request and fails the test unless every one is accepted.
func (e *Env) Send(integrationID, correlation string, events []string) {
	e.T.Helper()
	status, body := e.Call("POST", "/v3/erp/updates/events",
		`{"integration_id":"`+integrationID+`","meta":{"correlation_id":"`+correlation+`"},"events":[`+strings.Join(events, ",")+`]}`)
	if status != http.StatusOK {
		e.T.Fatalf("send: %d %v", status, body)
	}
	for i, r := range body["results"].([]any) {
		if st := r.(map[string]any)["status"]; st != "success" {
			e.T.Fatalf("results[%d] = %v", i, r)
		}
	}
}

// WaitStats polls the seed's stats call until total_events reaches want.
func (e *Env) WaitStats(integrationID string, want float64) map[string]any {
	e.T.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		status, st := e.Call("POST", "/v1/monitoring/stats", `{"integration_id":"`+integrationID+`","from":"`+
			time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)+`","to":"`+time.Now().Add(time.Minute).UTC().Format(time.RFC3339)+`"}`)
		if status != http.StatusOK {
			e.T.Fatalf("stats: %d %v", status, st)
		}
		if st["total_events"].(float64) >= want || time.Now().After(deadline) {
			return st
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Entity reads a stored contact's attributes by customer number, and how many contacts the org has.
func (e *Env) Entity(customer string) (attrs map[string]any, count uint64) {
	e.T.Helper()
	ctx := context.Background()
	if err := e.Conn.QueryRow(ctx, `SELECT count() FROM entities FINAL WHERE org_id = 'dev-org' AND entity_schema = 'contact' AND deleted = 0`).Scan(&count); err != nil {
		e.T.Fatal(err)
	}
	var raw string
	err := e.Conn.QueryRow(ctx, `SELECT attributes FROM entities FINAL WHERE org_id = 'dev-org' AND entity_schema = 'contact'
		AND visitParamExtractString(unique_identifiers, 'customer_number') = ?`, customer).Scan(&raw)
	if err != nil {
		e.T.Fatalf("entity %s: %v", customer, err)
	}
	if err := json.Unmarshal([]byte(raw), &attrs); err != nil {
		e.T.Fatal(err)
	}
	return attrs, count
}

// SendBatch sends events in one request and returns the event ids ingest answered.
func (e *Env) SendBatch(integrationID, correlation string, events []string) []string {
	e.T.Helper()
	status, body := e.Call("POST", "/v3/erp/updates/events",
		`{"integration_id":"`+integrationID+`","meta":{"correlation_id":"`+correlation+`"},"events":[`+strings.Join(events, ",")+`]}`)
	if status != http.StatusOK {
		e.T.Fatalf("send: %d %v", status, body)
	}
	var ids []string
	for _, r := range body["results"].([]any) {
		ids = append(ids, r.(map[string]any)["event_id"].(string))
	}
	return ids
}

// CreateIntegration creates an integration from a v2 body and returns its id.
func (e *Env) CreateIntegration(body string) string {
	e.T.Helper()
	status, integ := e.Call("POST", "/v2/integrations", body)
	if status != http.StatusCreated {
		e.T.Fatalf("create integration: %d %v", status, integ)
	}
	return integ["id"].(string)
}

// SendOne sends one event with a JSON payload (given as its text) to a use case.
func (e *Env) SendOne(integrationID, slug, payload string) {
	e.T.Helper()
	p, _ := json.Marshal(payload)
	e.SendBatch(integrationID, slug, []string{`{"use_case_slug":"` + slug + `","timestamp":"2025-05-01T08:30:00Z","payload":` + string(p) + `}`})
}

// Scalar runs a ClickHouse query that answers one number.
func (e *Env) Scalar(query string, args ...any) uint64 {
	e.T.Helper()
	var n uint64
	if err := e.Conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		e.T.Fatalf("%s: %v", query, err)
	}
	return n
}

// CallStream sends a request whose answer is NDJSON and reads it to the end.
func (e *Env) CallStream(method, path, body string) (int, []map[string]any) {
	e.T.Helper()
	req, _ := http.NewRequest(method, e.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer it-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.T.Fatal(err)
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

// Must fails the test on an error.
func Must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// WaitFor polls cond until it holds, failing the test after 60 s.
func WaitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60s")
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// Processed counts the monitoring rows of the feed that say an event was mapped.
func (e *Env) Processed(level string) uint64 {
	return e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE org_id = 'dev-org' AND level = ?`, level)
}

// PayloadEvent is one event with a JSON payload for a use case.
func PayloadEvent(slug, payload string) string {
	return fmt.Sprintf(`{"use_case_slug":%q,"timestamp":"2025-05-01T08:30:00Z","payload":%s}`, slug, payload)
}

// MonitoringCodes counts an integration's monitoring rows by code.
func (e *Env) MonitoringCodes(integrationID string) map[string]uint64 {
	e.T.Helper()
	rows, err := e.Conn.Query(e.T.Context(), `SELECT code, count() FROM monitoring_events FINAL WHERE integration_id = ? GROUP BY code`, integrationID)
	if err != nil {
		e.T.Fatal(err)
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var code string
		var n uint64
		if err := rows.Scan(&code, &n); err != nil {
			e.T.Fatal(err)
		}
		out[code] = n
	}
	return out
}
