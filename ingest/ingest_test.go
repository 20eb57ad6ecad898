package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/ingest"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
)

const (
	integrationID = "11111111-1111-4111-8111-111111111111"
	token         = "t-all"
)

type fixture struct {
	cluster *kafkatest.Cluster
	srv     *httptest.Server
	reg     *registry.Registry
}

func setup(t *testing.T, options ...func(*ingest.Config)) *fixture {
	t.Helper()
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	now := time.Now().UTC()
	must(t, reg.PutIntegration(ctx, &registry.Integration{ID: integrationID, OrgID: "org-a", Name: "SAP", CreatedAt: now, UpdatedAt: now}))
	must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "uc-customer", OrgID: "org-a", IntegrationID: integrationID, Name: "Customers",
		Slug: "customer", Type: registry.TypeInbound, Enabled: true, Version: 1}))
	must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "uc-off", OrgID: "org-a", IntegrationID: integrationID, Name: "Old",
		Slug: "old", Type: registry.TypeInbound, Enabled: false, Version: 1}))

	producer, err := kgo.NewClient(append(c.Config.BaseOpts(kafkatest.Quiet()), kafkax.ProducerOpts(c.Topics, 2*time.Second)...)...)
	must(t, err)
	t.Cleanup(producer.Close)
	cfg := ingest.Config{Topics: c.Topics, Producer: producer, Registry: reg, AckTimeout: time.Second, Log: kafkatest.Quiet()}
	for _, o := range options {
		o(&cfg)
	}
	svc, err := ingest.New(cfg)
	must(t, err)

	tokens := &auth.StaticTokens{}
	tokens.Add(token, auth.Principal{OrgID: "org-a", Permissions: auth.AllPermissions})
	tokens.Add("t-other-org", auth.Principal{OrgID: "org-b", Permissions: auth.AllPermissions})
	tokens.Add("t-read-only", auth.Principal{OrgID: "org-a", Permissions: []string{auth.PermRead}})
	engine := httpapi.NewEngine(kafkatest.Quiet())
	svc.Register(engine.Group("/", httpapi.RequireAuth(tokens)))
	srv := httptest.NewServer(engine)
	t.Cleanup(srv.Close)
	return &fixture{cluster: c, srv: srv, reg: reg}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) postTo(t *testing.T, path, body string) (int, map[string]any) {
	t.Helper()
	status, out, _ := f.request(t, token, path, body)
	return status, out
}

func (f *fixture) post(t *testing.T, tok, body string) (int, map[string]any, http.Header) {
	t.Helper()
	return f.request(t, tok, "/v3/erp/updates/events", body)
}

func (f *fixture) request(t *testing.T, tok, path, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response is not JSON (%d): %s", resp.StatusCode, raw)
	}
	return resp.StatusCode, out, resp.Header
}

func event(slug, dedup string) string {
	return fmt.Sprintf(`{"event_type":"UPDATE","use_case_slug":%q,"timestamp":"2025-05-01T08:30:00Z","format":"json","payload":"{\"customerNumber\":\"K-1\"}","deduplication_id":%q}`, slug, dedup)
}

func envelopeWith(events ...string) string {
	return `{"integration_id":"` + integrationID + `","meta":{"correlation_id":"corr-1"},"events":[` + strings.Join(events, ",") + `]}`
}

// monitoringRows reads every record of the monitoring topic.
func (f *fixture) monitoringRows(t *testing.T) []envelope.MonitoringEvent {
	t.Helper()
	var out []envelope.MonitoringEvent
	for _, r := range f.readTopic(t, f.cluster.Topics.Monitoring) {
		var m envelope.MonitoringEvent
		must(t, json.Unmarshal(r.Value, &m))
		out = append(out, m)
	}
	return out
}

// storedEvents reads every record of the events topic.
func (f *fixture) storedEvents(t *testing.T) []envelope.Event {
	t.Helper()
	var out []envelope.Event
	for _, r := range f.readTopic(t, f.cluster.Topics.Events) {
		var e envelope.Event
		must(t, json.Unmarshal(r.Value, &e))
		if want := string(ingest.EventKey(&e)); string(r.Key) != want || !strings.HasPrefix(want, "org-a/"+integrationID+"/") {
			t.Errorf("record key %q, want %q", r.Key, want)
		}
		out = append(out, e)
	}
	return out
}

func (f *fixture) readTopic(t *testing.T, topic string) []*kgo.Record {
	t.Helper()
	adm, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.Config.Brokers...))
	must(t, err)
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(context.Background(), topic)
	must(t, err)
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.Config.Brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	must(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for int64(len(out)) < total {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(out), total, topic)
		}
		out = append(out, fs.Records()...)
	}
	return out
}

func TestAcceptedEventsAreStoredInRequestOrder(t *testing.T) {
	f := setup(t)
	status, body, _ := f.post(t, token, envelopeWith(event("customer", "d-1"), event("old", "d-2"), event("customer", "d-3")))
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	results := body["results"].([]any)
	wantStatus := []string{"success", "ignored", "success"}
	for i, r := range results {
		if got := r.(map[string]any)["status"]; got != wantStatus[i] {
			t.Errorf("results[%d].status = %v, want %s", i, got, wantStatus[i])
		}
		if id, _ := r.(map[string]any)["event_id"].(string); !strings.HasPrefix(id, "evt_") {
			t.Errorf("results[%d].event_id = %q", i, id)
		}
	}
	stored := f.storedEvents(t)
	if len(stored) != 2 {
		t.Fatalf("stored %d events, want 2 (the disabled use case's event is not stored)", len(stored))
	}
	for _, e := range stored {
		if e.CorrelationID != "corr-1" || e.OrgID != "org-a" || e.UseCaseID != "uc-customer" || string(e.Payload) != `"{\"customerNumber\":\"K-1\"}"` {
			t.Errorf("stored event %+v", e)
		}
	}
}

func TestObjectPayloadAndTopLevelCorrelationID(t *testing.T) {
	f := setup(t)
	body := `{"integration_id":"` + integrationID + `","correlation_id":"top","meta":{"correlation_id":"meta"},"events":[
		{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00+02:00","payload":{"customerNumber":"K-2"}}]}`
	status, resp, _ := f.post(t, token, body)
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, resp)
	}
	stored := f.storedEvents(t)
	if len(stored) != 1 || stored[0].CorrelationID != "top" || stored[0].Format != "json" || string(stored[0].Payload) != `{"customerNumber":"K-2"}` {
		t.Fatalf("stored %+v", stored)
	}
}

func TestEnvelopeProblemsAre4xxAndStoreNothing(t *testing.T) {
	f := setup(t)
	many := make([]string, 101)
	for i := range many {
		many[i] = event("customer", fmt.Sprintf("d-%d", i))
	}
	cases := []struct {
		name, tok, body string
		status          int
		code, mentions  string
	}{
		{"no token", "", envelopeWith(event("customer", "a")), 401, "UNAUTHORIZED", "bearer"},
		{"wrong token", "nope", envelopeWith(event("customer", "a")), 401, "UNAUTHORIZED", "invalid"},
		{"missing permission", "t-read-only", envelopeWith(event("customer", "a")), 403, "FORBIDDEN", "erp:events"},
		{"malformed json", token, `{"integration_id":`, 400, "VALIDATION_ERROR", "malformed"},
		{"too many events", token, envelopeWith(many...), 400, "VALIDATION_ERROR", "at most 100"},
		{"no integration id", token, `{"events":[]}`, 400, "VALIDATION_ERROR", "integration_id"},
		{"events not an array", token, `{"integration_id":"` + integrationID + `","events":{}}`, 400, "VALIDATION_ERROR", "must be an array"},
		{"unknown integration", token, strings.Replace(envelopeWith(event("customer", "a")), integrationID, "22222222-2222-4222-8222-222222222222", 1), 404, "INTEGRATION_NOT_FOUND", "22222222"},
		{"another org's integration", "t-other-org", envelopeWith(event("customer", "a")), 404, "INTEGRATION_NOT_FOUND", integrationID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body, _ := f.post(t, tc.tok, tc.body)
			if status != tc.status || body["code"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", status, body, tc.status, tc.code)
			}
			if msg, _ := body["message"].(string); !strings.Contains(msg, tc.mentions) {
				t.Errorf("message %q does not mention %q", msg, tc.mentions)
			}
		})
	}
	if n := len(f.storedEvents(t)); n != 0 {
		t.Fatalf("rejected requests stored %d events", n)
	}
	if n := len(f.monitoringRows(t)); n != 0 {
		t.Fatalf("rejected requests wrote %d monitoring rows", n)
	}
}

func TestEachEventGetsItsOwnResult(t *testing.T) {
	f := setup(t)
	xml := `{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","format":"xml","payload":"<customer id=\"C1\"><name>Lena</name></customer>"}`
	badXML := `{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","format":"xml","payload":"<customer><name>Lena</customer>"}`
	badJSON := `{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","payload":"{not json"}`
	events := []string{
		event("customer", "good-1"),
		event("Bad Slug", "x1"),
		event("nope", "x2"),
		strings.Replace(event("customer", "x3"), "2025-05-01T08:30:00Z", "yesterday", 1),
		event("customer", "a b"),
		`{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","payload":{}}`,
		badJSON,
		badXML,
		xml,
		event("customer", "good-1"), // same deduplication id as the first: skipped
		event("old", "x4"),          // disabled use case
		event("customer", "good-2"),
	}
	status, body, _ := f.post(t, token, envelopeWith(events...))
	if status != http.StatusOK {
		t.Fatalf("status %d: %v", status, body)
	}
	want := []struct{ status, mentions string }{
		{"success", ""}, {"error", "use_case_slug"}, {"ignored", "no inbound use case"}, {"error", "timestamp"},
		{"error", "deduplication_id"}, {"error", "at least one property"}, {"error", "not valid JSON"},
		{"error", "malformed XML"}, {"success", ""}, {"skipped", "earlier in this request"}, {"ignored", "disabled"},
		{"success", ""},
	}
	results := body["results"].([]any)
	if len(results) != len(want) {
		t.Fatalf("%d results for %d events", len(results), len(want))
	}
	for i, w := range want {
		r := results[i].(map[string]any)
		if r["status"] != w.status || !strings.Contains(fmt.Sprint(r["message"]), w.mentions) {
			t.Errorf("results[%d] = %v, want %s mentioning %q", i, r, w.status, w.mentions)
		}
	}
	stored := f.storedEvents(t)
	if len(stored) != 3 {
		t.Fatalf("stored %d events, want the 3 accepted ones", len(stored))
	}
	codes := map[string]int{}
	for _, m := range f.monitoringRows(t) {
		codes[m.Code]++
	}
	wantCodes := map[string]int{"VALIDATION_ERROR": 3, "EVENT_NOT_CONFIGURED": 1, "MALFORMED_PAYLOAD": 3, "DUPLICATE_EVENT": 1, "USE_CASE_DISABLED": 1}
	for code, n := range wantCodes {
		if codes[code] != n {
			t.Errorf("monitoring code %s: %d rows, want %d (all: %v)", code, codes[code], n, codes)
		}
	}
}

func TestV2AndV1Envelopes(t *testing.T) {
	f := setup(t)
	v2 := `{"integration_id":"` + integrationID + `","correlation_id":"c-v2","events":[
		{"event_type":"UPDATE","object_type":"Customers","timestamp":"2025-05-01T08:30:00Z","format":"json","payload":"{\"a\":1}","deduplication_id":"v2-1"},
		{"object_type":"Customers","timestamp":"2025-05-01T08:30:00Z","format":"json","payload":"{\"a\":1}"}]}`
	status, body := f.postTo(t, "/v2/erp/updates/events", v2)
	results := body["results"].([]any)
	if status != 200 || results[0].(map[string]any)["status"] != "success" || results[1].(map[string]any)["status"] != "error" {
		t.Fatalf("v2: %d %v", status, body)
	}
	v1 := `{"app_id":"app-1","component_id":"33333333-3333-4333-8333-333333333333","meta":{"correlation_id":"c-v1"},"events":[
		{"event_type":"CREATE","object_type":"customer","timestamp":"2025-05-01T08:30:00Z","format":"json","payload":"{\"a\":2}"}]}`
	if status, body := f.postTo(t, "/v1/erp/updates/events", v1); status != http.StatusNotFound {
		t.Fatalf("v1 without an app mapping: %d %v", status, body)
	}
	must(t, f.reg.PutAppMapping(context.Background(), &registry.AppMapping{OrgID: "org-a", AppID: "app-1",
		ComponentID: "33333333-3333-4333-8333-333333333333", IntegrationID: integrationID}))
	status, body = f.postTo(t, "/v1/erp/updates/events", v1)
	if status != 200 || body["results"].([]any)[0].(map[string]any)["status"] != "success" {
		t.Fatalf("v1: %d %v", status, body)
	}
	byCorrelation := map[string]envelope.Event{}
	for _, e := range f.storedEvents(t) {
		byCorrelation[e.CorrelationID] = e
	}
	if e := byCorrelation["c-v1"]; e.EventType != "CREATE" || e.UseCaseID != "uc-customer" {
		t.Errorf("v1 event stored as %+v", e)
	}
	if e := byCorrelation["c-v2"]; e.EventName != "Customers" || e.DeduplicationID != "v2-1" {
		t.Errorf("v2 event stored as %+v", e)
	}
}

func TestNDJSONStreamsOneResultPerEventAfterTheAck(t *testing.T) {
	f := setup(t)
	var body strings.Builder
	for i := 0; i < 250; i++ {
		body.WriteString(event("customer", fmt.Sprintf("n-%d", i)) + "\n")
	}
	body.WriteString("\n")                                                                                                  // blank: ignored
	body.WriteString("not json\n")                                                                                          // line 252
	body.WriteString(`{"correlation_id":"env","events":[` + event("customer", "e-1") + `,` + event("nope", "e-2") + "]}\n") // line 253
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v3/erp/updates/events/ndjson?integration_id="+integrationID, strings.NewReader(body.String()))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if len(lines) != 250+1+2+1 {
		t.Fatalf("%d response lines, want 254:\n%s", len(lines), raw)
	}
	var first, bad, envOK, envIgnored map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &first)
	_ = json.Unmarshal([]byte(lines[250]), &bad)
	_ = json.Unmarshal([]byte(lines[251]), &envOK)
	_ = json.Unmarshal([]byte(lines[252]), &envIgnored)
	if first["line"] != 1.0 || first["status"] != "success" {
		t.Errorf("first result %v", first)
	}
	if bad["line"] != 252.0 || bad["status"] != "error" {
		t.Errorf("malformed line result %v", bad)
	}
	if envOK["line"] != 253.0 || envOK["index"] != 0.0 || envOK["status"] != "success" || envIgnored["index"] != 1.0 || envIgnored["status"] != "ignored" {
		t.Errorf("envelope line results %v / %v", envOK, envIgnored)
	}
	var summary map[string]map[string]float64
	_ = json.Unmarshal([]byte(lines[len(lines)-1]), &summary)
	if s := summary["summary"]; s["success"] != 251 || s["error"] != 1 || s["ignored"] != 1 || s["lines"] != 252 {
		t.Errorf("summary %v", summary)
	}
	if n := len(f.storedEvents(t)); n != 251 {
		t.Errorf("stored %d events, want 251", n)
	}
}

func TestNDJSONWithTheBrokerDownReportsLinesNotStored(t *testing.T) {
	f := setup(t)
	f.cluster.Close()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v3/erp/updates/events/ndjson?integration_id="+integrationID,
		strings.NewReader(event("customer", "z-1")+"\n"))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(raw), `"code":"NOT_STORED"`) || strings.Contains(string(raw), `"status":"success"`) {
		t.Fatalf("want NOT_STORED and no success, got %s", raw)
	}
}

func TestOversizeBodyIs413(t *testing.T) {
	f := setup(t)
	big := `{"integration_id":"` + integrationID + `","events":[{"payload":"` + strings.Repeat("x", 5<<20) + `"}]}`
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v3/erp/updates/events", bytes.NewBufferString(big))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", resp.StatusCode)
	}
}

func TestBrokerDownIs503NeverSuccess(t *testing.T) {
	f := setup(t)
	f.cluster.Close()
	status, body, hdr := f.post(t, token, envelopeWith(event("customer", "a")))
	if status != http.StatusServiceUnavailable || body["code"] != "SERVICE_UNAVAILABLE" {
		t.Fatalf("got %d %v, want 503 SERVICE_UNAVAILABLE", status, body)
	}
	if hdr.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}
