package ingest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/ingest"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
)

// nullProducer acknowledges everything at once: the fuzz target is the envelope parsing.
type nullProducer struct{}

func (nullProducer) ProduceSync(context.Context, ...*kgo.Record) kgo.ProduceResults { return nil }
func (nullProducer) Produce(_ context.Context, r *kgo.Record, p func(*kgo.Record, error)) {
	p(r, nil)
}

// FuzzEnvelope sends arbitrary bodies to every event endpoint: the answer is always a status in
// the documented set with a JSON body, never a panic or a 5xx.
func FuzzEnvelope(f *testing.F) {
	for _, s := range []string{
		envelopeWith(event("customer", "a")),
		`{"integration_id":"` + integrationID + `","events":[{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","format":"xml","payload":"<a><b>1</b></a>"}]}`,
		`{"app_id":"x","component_id":"y","meta":{},"events":[]}`,
		`{"events":null}`, `[]`, `"x"`, `{"integration_id":1}`,
	} {
		f.Add(s)
	}
	c := kafkatest.New(f)
	reg := registrytest.Start(f, c)
	_ = reg.PutIntegration(context.Background(), &registry.Integration{ID: integrationID, OrgID: "org-a", Name: "SAP"})
	_ = reg.PutUseCase(context.Background(), &registry.UseCase{ID: "uc", OrgID: "org-a", IntegrationID: integrationID, Name: "Customers",
		Slug: "customer", Type: registry.TypeInbound, Enabled: true, Version: 1})
	svc, err := ingest.New(ingest.Config{Topics: c.Topics, Producer: nullProducer{}, Registry: reg, AckTimeout: time.Second, Log: kafkatest.Quiet()})
	if err != nil {
		f.Fatal(err)
	}
	tokens := &auth.StaticTokens{}
	tokens.Add(token, auth.Principal{OrgID: "org-a", Permissions: auth.AllPermissions})
	engine := httpapi.NewEngine(kafkatest.Quiet())
	svc.Register(engine.Group("/", httpapi.RequireAuth(tokens)))
	allowed := map[int]bool{200: true, 400: true, 404: true, 413: true}
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/v3/erp/updates/events", "/v2/erp/updates/events", "/v1/erp/updates/events",
			"/v3/erp/updates/events/ndjson?integration_id=" + integrationID} {
			req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			rec := httptest.NewRecorder()
			engine.ServeHTTP(rec, req)
			if !allowed[rec.Code] || !strings.HasPrefix(strings.TrimSpace(rec.Body.String()), "{") {
				t.Fatalf("%s: %d %q", path, rec.Code, rec.Body.String())
			}
		}
	})
}
