package replay_test

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

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/query"
	"github.com/erpstream/erpstream/replay"
)

const (
	integrationID = "11111111-1111-4111-8111-111111111111"
	useCaseID     = "22222222-2222-4222-8222-222222222222"
)

type fakeSource struct {
	raw     map[string]envelope.Event
	filters []query.RawFilter // what bulk replays asked for
}

func (f *fakeSource) RawEvents(_ context.Context, filter query.RawFilter, _ int, _ *query.RawCursor) ([]envelope.Event, error) {
	f.filters = append(f.filters, filter)
	return nil, nil
}

func (f *fakeSource) RawEventsByID(_ context.Context, org, integ string, ids []string) (map[string]envelope.Event, error) {
	out := map[string]envelope.Event{}
	for _, id := range ids {
		if e, ok := f.raw[id]; ok && e.OrgID == org && e.IntegrationID == integ {
			out[id] = e
		}
	}
	return out, nil
}

type fakeProducer struct{ records []*kgo.Record }

func (p *fakeProducer) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	p.records = append(p.records, rs...)
	out := make(kgo.ProduceResults, len(rs))
	for i, r := range rs {
		out[i] = kgo.ProduceResult{Record: r}
	}
	return out
}

func setup(t *testing.T) (*fakeSource, *fakeProducer, func(tok, body string, route ...string) (int, map[string]any)) {
	t.Helper()
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	if err := reg.PutIntegration(ctx, &registry.Integration{ID: integrationID, OrgID: "org-a", Name: "SAP"}); err != nil {
		t.Fatal(err)
	}
	if err := reg.PutUseCase(ctx, &registry.UseCase{ID: useCaseID, OrgID: "org-a", IntegrationID: integrationID, Name: "Customers",
		Slug: "customer", Type: registry.TypeInbound, Enabled: true}); err != nil {
		t.Fatal(err)
	}
	src, prod := &fakeSource{raw: map[string]envelope.Event{}}, &fakeProducer{}
	tokens := &auth.StaticTokens{}
	tokens.Add("a", auth.Principal{OrgID: "org-a", Permissions: auth.AllPermissions})
	tokens.Add("b", auth.Principal{OrgID: "org-b", Permissions: auth.AllPermissions})
	e := httpapi.NewEngine(kafkatest.Quiet())
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	(&replay.Service{Source: src, Registry: reg, Producer: prod, Topics: kafkax.NewTopics(""), Log: kafkatest.Quiet(),
		Now: func() time.Time { return now }}).Register(e.Group("/", httpapi.RequireAuth(tokens)))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	// route "/bulk" posts to the bulk replay; its NDJSON answer is read as its last line.
	return src, prod, func(tok, body string, route ...string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/integrations/"+integrationID+"/events/replay"+strings.Join(route, ""), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if lines := bytes.Split(bytes.TrimSpace(raw), []byte("\n")); len(lines) > 1 {
			raw = lines[len(lines)-1]
		}
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("not JSON (%d): %s", resp.StatusCode, raw)
		}
		return resp.StatusCode, out
	}
}

func TestReplayValidation(t *testing.T) {
	_, prod, post := setup(t)
	ids := make([]string, replay.MaxEventIDs+1)
	for i := range ids {
		ids[i] = `"e` + string(rune('a'+i%26)) + `"`
	}
	if status, body := post("a", `{"event_ids":[`+strings.Join(ids, ",")+`]}`); status != http.StatusBadRequest ||
		!strings.Contains(body["message"].(string), "event_ids") {
		t.Errorf("101 ids: %d %v, want 400", status, body)
	}
	if status, body := post("a", `{"event_ids":[]}`); status != http.StatusBadRequest {
		t.Errorf("no ids: %d %v, want 400", status, body)
	}
	if status, body := post("b", `{"event_ids":["x"]}`); status != http.StatusNotFound {
		t.Errorf("other org: %d %v, want 404", status, body)
	}
	if len(prod.records) != 0 {
		t.Errorf("refused requests produced %d records", len(prod.records))
	}
}

// A replayed event is a new event on the events topic, built as ingestion builds it: new id,
// replay flag, replay_ correlation id, the original receive time, the org in key and headers.
func TestReplayProducesAnEventRecord(t *testing.T) {
	src, prod, post := setup(t)
	orig := envelope.Event{EventID: "evt_1", OrgID: "org-a", IntegrationID: integrationID, UseCaseID: useCaseID, UseCaseSlug: "customer",
		Timestamp: "t", Format: "json", Payload: json.RawMessage(`{"id":"C1"}`), CorrelationID: "corr", ReceivedAtUs: 42}
	src.raw["evt_1"] = orig
	status, body := post("a", `{"event_ids":["evt_1","evt_missing"]}`)
	if status != http.StatusOK || body["replayed"] != 1.0 {
		t.Fatalf("%d %v", status, body)
	}
	results := body["results"].([]any)
	if results[0].(map[string]any)["status"] != "queued" || results[1].(map[string]any)["status"] != "not_found" {
		t.Errorf("results %v", results)
	}
	if len(prod.records) != 1 {
		t.Fatalf("%d records, want 1", len(prod.records))
	}
	rec := prod.records[0]
	var ev envelope.Event
	if err := json.Unmarshal(rec.Value, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.EventID == orig.EventID || ev.EventID != body["event_ids"].([]any)[0] || !ev.Replay || ev.CorrelationID != "replay_corr" ||
		ev.ReceivedAtUs != 42 || string(ev.Payload) != `{"id":"C1"}` {
		t.Errorf("replayed event %+v", ev)
	}
	want := envelope.EventRecord(rec.Topic, &ev)
	if rec.Topic != kafkax.NewTopics("").Events || string(rec.Key) != string(want.Key) || !strings.HasPrefix(string(rec.Key), "org-a/") ||
		len(rec.Headers) != len(want.Headers) {
		t.Errorf("record topic %q key %q headers %v", rec.Topic, rec.Key, rec.Headers)
	}
}

// A bulk replay takes "status": "error" (only the events whose mapping failed), passes it to the
// stored-event query, and refuses any other status.
func TestBulkReplayStatusFilter(t *testing.T) {
	src, _, post := setup(t)
	status, body := post("a", `{"from_date":"2026-01-02T00:00:00Z","status":"success"}`, "/bulk")
	if status != http.StatusBadRequest || !strings.Contains(fmt.Sprint(body["message"]), "status") {
		t.Fatalf("status success: %d %v, want 400", status, body)
	}
	if len(src.filters) != 0 {
		t.Fatalf("a refused bulk replay queried the store: %v", src.filters)
	}
	status, _ = post("a", `{"from_date":"2026-01-02T00:00:00Z","status":"error"}`, "/bulk")
	if status != http.StatusOK || len(src.filters) == 0 || !src.filters[0].Failed {
		t.Fatalf("status error: %d, filters %+v", status, src.filters)
	}
	status, _ = post("a", `{"from_date":"2026-01-02T00:00:00Z"}`, "/bulk")
	if status != http.StatusOK || src.filters[len(src.filters)-1].Failed {
		t.Fatalf("no status: %d, filters %+v", status, src.filters)
	}
}
