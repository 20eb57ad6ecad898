package query_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/query"
)

const integrationID = "11111111-1111-4111-8111-111111111111"

// fakeStore records what it was asked for and returns canned rows.
type fakeStore struct {
	filter  query.Filter
	groupBy string
	step    time.Duration
	limit   int
	after   *query.Cursor
	rows    []envelope.MonitoringEvent
	access  query.AccessFilter
}

func (f *fakeStore) StatsBy(_ context.Context, flt query.Filter, groupBy string) (query.Stats, error) {
	f.filter, f.groupBy = flt, groupBy
	st := query.Stats{Total: 10, Success: 6, Error: 2, Warning: 0, Skipped: 2}
	if groupBy != "" {
		st.Breakdown = []query.Group{{Key: "info", Stats: query.Stats{Total: 1, Skipped: 1}}, {Key: "skipped", Stats: query.Stats{Total: 1, Skipped: 1}},
			{Key: "success", Stats: query.Stats{Total: 6, Success: 6}}, {Key: "error", Stats: query.Stats{Total: 2, Error: 2}}}
	}
	return st, nil
}

func (f *fakeStore) TimeSeries(_ context.Context, flt query.Filter, step time.Duration) ([]query.Bucket, error) {
	f.filter, f.step = flt, step
	var out []query.Bucket
	for t := flt.From.Truncate(step); !t.After(flt.To); t = t.Add(step) {
		out = append(out, query.Bucket{Start: t})
	}
	return out, nil
}

func (f *fakeStore) Events(_ context.Context, flt query.Filter, limit int, after *query.Cursor) ([]envelope.MonitoringEvent, error) {
	f.filter, f.limit, f.after = flt, limit, after
	if len(f.rows) > limit {
		return f.rows[:limit], nil
	}
	return f.rows, nil
}

func (f *fakeStore) Trace(context.Context, string, string, string) ([]envelope.MonitoringEvent, *envelope.Event, error) {
	return f.rows, nil, nil
}

func (f *fakeStore) RawEvents(context.Context, query.RawFilter, int, *query.RawCursor) ([]envelope.Event, error) {
	return nil, nil
}

func (f *fakeStore) AccessLogs(_ context.Context, flt query.AccessFilter, _ int, _ *query.Cursor) ([]envelope.AccessLog, error) {
	f.access = flt
	return nil, nil
}

func setup(t *testing.T) (*fakeStore, func(tok, path, body string) (int, map[string]any)) {
	t.Helper()
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	if err := reg.PutIntegration(context.Background(), &registry.Integration{ID: integrationID, OrgID: "org-a", Name: "SAP"}); err != nil {
		t.Fatal(err)
	}
	store := &fakeStore{}
	tokens := &auth.StaticTokens{}
	tokens.Add("a", auth.Principal{OrgID: "org-a", Permissions: auth.AllPermissions})
	tokens.Add("b", auth.Principal{OrgID: "org-b", Permissions: auth.AllPermissions})
	tokens.Add("events-only", auth.Principal{OrgID: "org-a", Permissions: []string{auth.PermEvents}})
	e := httpapi.NewEngine(kafkatest.Quiet())
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	(&query.Service{Store: store, Registry: reg, Log: kafkatest.Quiet(), Now: func() time.Time { return now }}).Register(e.Group("/", httpapi.RequireAuth(tokens)))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return store, func(tok, path, body string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("not JSON (%d): %s", resp.StatusCode, raw)
		}
		return resp.StatusCode, out
	}
}

func TestStatsShapeAndDefaults(t *testing.T) {
	store, post := setup(t)
	status, body := post("a", "/v1/monitoring/stats", `{"integration_id":"`+integrationID+`"}`)
	if status != http.StatusOK {
		t.Fatalf("%d %v", status, body)
	}
	if body["total_events"] != 10.0 || body["success_count"] != 6.0 || body["skipped_count"] != 2.0 {
		t.Errorf("counts %v", body)
	}
	if rate := body["success_rate"].(float64); rate != 75 { // 6 / (6+2+0): skipped does not count
		t.Errorf("success_rate = %v, want 75", rate)
	}
	if store.filter.OrgID != "org-a" || store.filter.To.Sub(store.filter.From) != 24*time.Hour {
		t.Errorf("default filter = %+v, want org-a and the last 24 hours", store.filter)
	}
}

func TestEventsPaginateWithAnOpaqueCursor(t *testing.T) {
	store, post := setup(t)
	for i := 0; i < 3; i++ {
		store.rows = append(store.rows, envelope.MonitoringEvent{ID: string(rune('c' - i)), OrgID: "org-a", Level: envelope.LevelInfo, CreatedAtMs: int64(3000 - i)})
	}
	status, body := post("a", "/v1/monitoring/events", `{"integration_id":"`+integrationID+`","status":["skipped"],"limit":2}`)
	if status != http.StatusOK || body["has_more"] != true || len(body["data"].([]any)) != 2 {
		t.Fatalf("%d %v", status, body)
	}
	if store.limit != 3 {
		t.Errorf("store asked for %d rows, want limit+1 = 3", store.limit)
	}
	if got := strings.Join(store.filter.Levels, ","); got != "skipped,info" {
		t.Errorf("levels = %s, want skipped,info", got)
	}
	if lvl := body["data"].([]any)[0].(map[string]any)["level"]; lvl != "skipped" {
		t.Errorf("info rows are shown as %v, want skipped", lvl)
	}
	cursor := body["next_cursor"].(string)
	status, _ = post("a", "/v1/monitoring/events", `{"integration_id":"`+integrationID+`","limit":2,"cursor":"`+cursor+`"}`)
	if status != http.StatusOK || store.after == nil || store.after.CreatedAtMs != 2999 || store.after.ID != "b" {
		t.Fatalf("cursor not honoured: %d %+v", status, store.after)
	}
}

func TestBadQueriesAre4xx(t *testing.T) {
	_, post := setup(t)
	cases := []struct {
		name, tok, path, body string
		status                int
		mentions              string
	}{
		{"inverted range", "a", "/v1/monitoring/stats", `{"integration_id":"` + integrationID + `","from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}`, 400, "from"},
		{"range too long", "a", "/v1/monitoring/stats", `{"integration_id":"` + integrationID + `","from":"2025-01-01T00:00:00Z","to":"2026-01-01T00:00:00Z"}`, 400, "90 days"},
		{"bad date", "a", "/v1/monitoring/events", `{"integration_id":"` + integrationID + `","from":"last week"}`, 400, "from"},
		{"unknown status", "a", "/v1/monitoring/events", `{"integration_id":"` + integrationID + `","status":["great"]}`, 400, "status"},
		{"limit too high", "a", "/v1/monitoring/events", `{"integration_id":"` + integrationID + `","limit":101}`, 400, "limit"},
		{"tampered cursor", "a", "/v1/monitoring/events", `{"integration_id":"` + integrationID + `","cursor":"eyJub3QiOiJhIGN1cnNvciJ9"}`, 400, "cursor"},
		{"no integration", "a", "/v1/monitoring/stats", `{}`, 400, "integration_id"},
		{"other org", "b", "/v1/monitoring/stats", `{"integration_id":"` + integrationID + `"}`, 404, integrationID},
		{"no permission", "events-only", "/v1/monitoring/stats", `{"integration_id":"` + integrationID + `"}`, 403, "erp:monitoring"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(tc.tok, tc.path, tc.body)
			if status != tc.status || !strings.Contains(body["message"].(string), tc.mentions) || body["code"] == "" {
				t.Fatalf("got %d %v, want %d mentioning %q", status, body, tc.status, tc.mentions)
			}
		})
	}
}

func TestV2StatsFoldInfoIntoSkipped(t *testing.T) {
	store, post := setup(t)
	status, body := post("a", "/v2/integrations/"+integrationID+"/monitoring/stats", `{"group_by":"level","use_case_type":"inbound","use_case_id":""}`)
	if status != http.StatusOK {
		t.Fatalf("%d %v", status, body)
	}
	if store.groupBy != "level" || store.filter.UseCaseType != "inbound" || store.filter.UseCaseID == nil || *store.filter.UseCaseID != "" {
		t.Errorf("filter = %+v group_by %q; want inbound, the General use case, by level", store.filter, store.groupBy)
	}
	skipped := 0.0
	for _, g := range body["breakdown"].([]any) {
		g := g.(map[string]any)
		if g["level"] == "info" {
			t.Errorf("info leaked into the breakdown: %v", g)
		}
		if g["level"] == "skipped" {
			skipped += g["total_events"].(float64)
		}
	}
	if skipped != 2 {
		t.Errorf("skipped group total = %v, want info+skipped = 2", skipped)
	}
}

func TestTimeSeriesBucketsAreCapped(t *testing.T) {
	store, post := setup(t)
	status, body := post("a", "/v2/integrations/"+integrationID+"/monitoring/time-series", `{"from_date":"2026-01-02T00:00:00Z","to_date":"2026-01-02T12:00:00Z","interval":"1h"}`)
	if status != http.StatusOK || len(body["buckets"].([]any)) != 13 || store.step != time.Hour {
		t.Fatalf("%d %v (step %v)", status, body, store.step)
	}
	first := body["buckets"].([]any)[0].(map[string]any)
	if first["timestamp"] != "2026-01-02T00:00:00Z" || first["total_count"] != 0.0 {
		t.Errorf("first bucket %v", first)
	}
	status, body = post("a", "/v2/integrations/"+integrationID+"/monitoring/time-series", `{"from_date":"2026-01-01T00:00:00Z","to_date":"2026-01-02T00:00:00Z","interval":"5m"}`)
	if status != http.StatusBadRequest || !strings.Contains(body["message"].(string), "at most 200") {
		t.Errorf("289 buckets: %d %v, want 400", status, body)
	}
	status, body = post("a", "/v2/integrations/"+integrationID+"/monitoring/time-series", `{"from_date":"2026-01-01T00:00:00Z","interval":"7m"}`)
	if status != http.StatusBadRequest || !strings.Contains(body["message"].(string), "interval") {
		t.Errorf("bad interval: %d %v, want 400", status, body)
	}
}

func TestV2EventsCursorIsTheSpecObject(t *testing.T) {
	store, post := setup(t)
	for i := 0; i < 3; i++ {
		store.rows = append(store.rows, envelope.MonitoringEvent{ID: string(rune('c' - i)), OrgID: "org-a", Level: envelope.LevelError, CreatedAtMs: int64(3000 - i)})
	}
	status, body := post("a", "/v2/integrations/"+integrationID+"/monitoring/events", `{"limit":2,"level":"error","code":"TIMEOUT"}`)
	if status != http.StatusOK || body["has_more"] != true {
		t.Fatalf("%d %v", status, body)
	}
	if store.filter.Code != "TIMEOUT" || strings.Join(store.filter.Levels, ",") != "error" {
		t.Errorf("filter %+v", store.filter)
	}
	cursor, _ := json.Marshal(body["next_cursor"])
	if !strings.Contains(string(cursor), `"created_at"`) || !strings.Contains(string(cursor), `"id"`) {
		t.Fatalf("next_cursor %s, want {created_at, id}", cursor)
	}
	status, _ = post("a", "/v2/integrations/"+integrationID+"/monitoring/events", `{"limit":2,"cursor":`+string(cursor)+`}`)
	if status != http.StatusOK || store.after == nil || store.after.ID != "b" || store.after.CreatedAtMs != 2999 {
		t.Fatalf("cursor not honoured: %d %+v", status, store.after)
	}
}

func TestV1ErrorCategories(t *testing.T) {
	store, post := setup(t)
	status, body := post("a", "/v1/integrations/"+integrationID+"/monitoring/inbound-events", `{"error_category":"timeout"}`)
	if status != http.StatusOK || strings.Join(store.filter.Codes, ",") != "TIMEOUT" || store.filter.UseCaseType != "inbound" {
		t.Fatalf("timeout: %d %v, filter %+v", status, body, store.filter)
	}
	status, body = post("a", "/v1/integrations/"+integrationID+"/monitoring/inbound-events", `{"error_category":"system"}`)
	if status != http.StatusOK || store.filter.Codes != nil || len(store.filter.ExcludeCodes) < 10 || strings.Join(store.filter.Levels, ",") != "error" {
		t.Fatalf("system: %d %v, filter %+v; want errors outside every other category", status, body, store.filter)
	}
	status, body = post("a", "/v1/integrations/"+integrationID+"/monitoring/inbound-events", `{"error_category":"cosmic_rays"}`)
	if status != http.StatusBadRequest {
		t.Errorf("unknown category: %d %v, want 400", status, body)
	}
}
