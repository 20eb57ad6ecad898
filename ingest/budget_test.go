package ingest_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/ingest"
	"github.com/erpstream/erpstream/internal/quota"
	"github.com/erpstream/erpstream/internal/registry"
)

// Budgets count events, not requests: an org that spent its events is answered 429 with
// Retry-After and nothing stored, an NDJSON stream of that org is paced, and another org's
// requests go through all the while.
func TestOrgBudgetsCountEventsAndLeaveOtherOrgsAlone(t *testing.T) {
	budgets := quota.New(quota.Limits{EventsPerMinute: 120})
	f := setup(t, func(c *ingest.Config) { c.Budgets = budgets })
	const otherIntegration = "22222222-2222-4222-8222-222222222222"
	ctx := context.Background()
	must(t, f.reg.PutIntegration(ctx, &registry.Integration{ID: otherIntegration, OrgID: "org-b", Name: "B"}))
	must(t, f.reg.PutUseCase(ctx, &registry.UseCase{ID: "uc-b", OrgID: "org-b", IntegrationID: otherIntegration, Name: "Customers",
		Slug: "customer", Type: registry.TypeInbound, Enabled: true, Version: 1}))

	batch := func(n int, prefix string) string {
		var events []string
		for i := range n {
			events = append(events, event("customer", fmt.Sprintf("%s-%d", prefix, i)))
		}
		return strings.Join(events, ",")
	}
	// 100 events, then 20 more: the budget of 120 a minute is spent.
	budgetStart := time.Now()
	if status, body, _ := f.post(t, token, envelopeWith(batch(100, "a1"))); status != http.StatusOK {
		t.Fatalf("first 100: %d %v", status, body)
	}
	if status, body, _ := f.post(t, token, envelopeWith(batch(20, "a2"))); status != http.StatusOK {
		t.Fatalf("next 20: %d %v", status, body)
	}
	status, body, hdr := f.post(t, token, envelopeWith(batch(10, "a3")))
	if status != http.StatusTooManyRequests || body["code"] != "RATE_LIMITED" || hdr.Get("Retry-After") == "" {
		t.Fatalf("over budget: %d %v (Retry-After %q), want 429", status, body, hdr.Get("Retry-After"))
	}
	// A stream of org A waits for budget (2 events a second here) instead of failing. The
	// bucket has refilled at most 2 events a second since before the first request, so a
	// stream asking for that many plus three must still wait at least 1.5 s, however slow
	// the machine running this test.
	refilled := int(math.Ceil(time.Since(budgetStart).Seconds() * 2))
	lines := make([]string, 0, refilled+3)
	for i := range refilled + 3 {
		lines = append(lines, event("customer", fmt.Sprintf("s-%d", i)))
	}
	start := time.Now()
	status, answer := f.ndjson(t, token, "/v3/erp/updates/events/ndjson?integration_id="+integrationID,
		strings.Join(lines, "\n")+"\n")
	if status != http.StatusOK || !strings.Contains(answer, fmt.Sprintf(`"success":%d`, len(lines))) {
		t.Fatalf("paced stream: %d %s", status, answer)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Errorf("the stream of an org over budget was not paced (%v for %d events)", waited, len(lines))
	}
	// Another org is not slowed down.
	other := `{"integration_id":"` + otherIntegration + `","events":[` + batch(50, "b") + `]}`
	if status, body, _ := f.post(t, "t-other-org", other); status != http.StatusOK {
		t.Fatalf("org B while A is over budget: %d %v", status, body)
	}
	stored := 0
	for _, r := range f.readTopic(t, f.cluster.Topics.Events) {
		if strings.HasPrefix(string(r.Key), "org-a/") {
			stored++
		}
	}
	if want := 120 + len(lines); stored != want {
		t.Errorf("%d events of org A stored, want %d (the refused request stores nothing)", stored, want)
	}
}

// ndjson posts an NDJSON body and returns the whole answer.
func (f *fixture) ndjson(t *testing.T, tok, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}
