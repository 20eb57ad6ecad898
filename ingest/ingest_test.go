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
}

func setup(t *testing.T) *fixture {
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

	producer, err := kgo.NewClient(append(c.Config.BaseOpts(kafkatest.Quiet()), kafkax.ProducerOpts(2*time.Second)...)...)
	must(t, err)
	t.Cleanup(producer.Close)
	svc, err := ingest.New(ingest.Config{Topics: c.Topics, Producer: producer, Registry: reg, AckTimeout: time.Second, Log: kafkatest.Quiet()})
	must(t, err)

	tokens := &auth.StaticTokens{}
	tokens.Add(token, auth.Principal{OrgID: "org-a", Permissions: auth.AllPermissions})
	tokens.Add("t-other-org", auth.Principal{OrgID: "org-b", Permissions: auth.AllPermissions})
	tokens.Add("t-read-only", auth.Principal{OrgID: "org-a", Permissions: []string{auth.PermRead}})
	engine := httpapi.NewEngine(kafkatest.Quiet())
	svc.Register(engine.Group("/", httpapi.RequireAuth(tokens)))
	srv := httptest.NewServer(engine)
	t.Cleanup(srv.Close)
	return &fixture{cluster: c, srv: srv}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) post(t *testing.T, tok, body string) (int, map[string]any, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+"/v3/erp/updates/events", strings.NewReader(body))
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

// storedEvents reads every record of the events topic.
func (f *fixture) storedEvents(t *testing.T) []envelope.Event {
	t.Helper()
	adm, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.Config.Brokers...))
	must(t, err)
	defer adm.Close()
	ends, err := kadm.NewClient(adm).ListEndOffsets(context.Background(), f.cluster.Topics.Events)
	must(t, err)
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	if total == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.cluster.Config.Brokers...), kgo.ConsumeTopics(f.cluster.Topics.Events),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	must(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []envelope.Event
	for int64(len(out)) < total {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d events", len(out), total)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var e envelope.Event
			must(t, json.Unmarshal(r.Value, &e))
			if !strings.HasPrefix(string(r.Key), "org-a/"+integrationID+"/"+e.UseCaseID+"/") {
				t.Errorf("record key %q is not org/integration/use case/spread", r.Key)
			}
			out = append(out, e)
		})
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
		if e.CorrelationID != "corr-1" || e.OrgID != "org-a" || e.UseCaseID != "uc-customer" || e.Payload != `{"customerNumber":"K-1"}` {
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
	if len(stored) != 1 || stored[0].CorrelationID != "top" || stored[0].Format != "json" || stored[0].Payload != `{"customerNumber":"K-2"}` {
		t.Fatalf("stored %+v", stored)
	}
}

func TestBadRequestsAreRejectedWholeAndStoreNothing(t *testing.T) {
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
		{"unknown integration", token, strings.Replace(envelopeWith(event("customer", "a")), integrationID, "22222222-2222-4222-8222-222222222222", 1), 404, "INTEGRATION_NOT_FOUND", "22222222"},
		{"another org's integration", "t-other-org", envelopeWith(event("customer", "a")), 404, "INTEGRATION_NOT_FOUND", integrationID},
		{"unknown slug after a good event", token, envelopeWith(event("customer", "a"), event("nope", "b")), 404, "USE_CASE_NOT_FOUND", "events[1].use_case_slug"},
		{"slug pattern", token, envelopeWith(event("Bad Slug", "a")), 400, "VALIDATION_ERROR", "events[0].use_case_slug"},
		{"bad timestamp", token, envelopeWith(strings.Replace(event("customer", "a"), "2025-05-01T08:30:00Z", "yesterday", 1)), 400, "VALIDATION_ERROR", "events[0].timestamp"},
		{"bad dedup id", token, envelopeWith(event("customer", "a b")), 400, "VALIDATION_ERROR", "deduplication_id"},
		{"empty payload object", token, envelopeWith(`{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","payload":{}}`), 400, "VALIDATION_ERROR", "events[0].payload"},
		{"no routing", token, envelopeWith(`{"timestamp":"2025-05-01T08:30:00Z","payload":"{}"}`), 400, "VALIDATION_ERROR", "use_case_slug or event_name"},
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
