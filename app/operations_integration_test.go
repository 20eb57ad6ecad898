//go:build integration

package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// GET /openapi.json documents exactly what the router serves: every registered route is in the
// document, every documented operation is registered (optional ones aside), and a request to each
// documented path reaches a handler (never the router's "no such route").
func TestIntegrationOpenAPIDocumentMatchesTheRouter(t *testing.T) {
	e := apptest.New(t)
	e.Start()
	resp, err := http.Get(e.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
		Routes  []string                             `json:"x-erpstream-routes"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &doc) != nil || doc.OpenAPI == "" {
		t.Fatalf("%d %.300s", resp.StatusCode, raw)
	}
	registered := map[string]bool{}
	for _, r := range doc.Routes {
		registered[r] = true
		method, path, _ := strings.Cut(r, " ")
		if doc.Paths[path][strings.ToLower(method)] == nil {
			t.Errorf("served but not documented: %s", r)
		}
	}
	const id = "00000000-0000-4000-8000-000000000000"
	documented := 0
	for path, item := range doc.Paths {
		for method, op := range item {
			switch method {
			case "get", "post", "put", "delete", "patch":
			default:
				continue
			}
			documented++
			key := strings.ToUpper(method) + " " + path
			if !registered[key] {
				if op["x-erpstream-optional"] != true {
					t.Errorf("documented but not served: %s", key)
				}
				continue
			}
			url := e.URL + path
			for param, value := range map[string]string{"{integrationId}": id, "{useCaseId}": id, "{eventId}": "evt_x",
				"{key}": "SOME_KEY", "{slug}": "some-slug"} {
				url = strings.ReplaceAll(url, param, value)
			}
			req, _ := http.NewRequest(strings.ToUpper(method), url, strings.NewReader(`{}`))
			req.Header.Set("Authorization", "Bearer it-token")
			if strings.HasSuffix(path, "/ndjson") {
				req.Body = io.NopCloser(strings.NewReader(""))
			}
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("%s: %v", key, err)
				continue
			}
			body, _ := io.ReadAll(io.LimitReader(r.Body, 4096))
			r.Body.Close()
			if r.StatusCode == http.StatusNotFound && strings.Contains(string(body), "no such route") {
				t.Errorf("%s: the router has no such route", key)
			}
		}
	}
	if documented < 50 {
		t.Errorf("only %d operations documented", documented)
	}
}

// erpstream status on a running pipeline: every topic present, the three groups with a member, the
// processor's member holding all four events partitions, the schema up to date; asked for an org,
// the partition of its events and the member mapping them.
func TestIntegrationStatusDescribesTheRunningPipeline(t *testing.T) {
	e := apptest.New(t)
	e.Start()
	var out strings.Builder
	var text string
	apptest.WaitFor(t, func() bool {
		out.Reset()
		if err := app.Status(t.Context(), app.Config{Kafka: e.Kafka, ClickHouse: e.CH}, e.Log, &out, "dev-org"); err != nil {
			t.Fatal(err)
		}
		text = out.String()
		return strings.Contains(text, "assigned "+e.Kafka.TopicPrefix+".events×4 [0 1 2 3]") &&
			strings.Count(text, "Stable, 1 member(s)") == 3 // processor, projector, outbound
	})
	devOrg := fmt.Sprintf("org dev-org: %s.events partition %d of 4, mapped by member ", e.Kafka.TopicPrefix, kafkax.OrgPartition([]byte("dev-org"), 4))
	for _, want := range []string{e.Kafka.TopicPrefix + ".events", "4 partitions", "up to date", "lag 0", devOrg} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "MISSING") {
		t.Errorf("a topic is missing:\n%s", text)
	}

	// With the pipeline stopped, events wait: status names whose they are.
	e.Stop()
	producer, err := kgo.NewClient(append(kafkax.ProducerOpts(e.Kafka.Topics(), 10*time.Second), kgo.SeedBrokers(e.Kafka.Brokers...))...)
	apptest.Must(t, err)
	defer producer.Close()
	for i := range 50 {
		org := "flooding-org"
		if i%10 == 0 {
			org = "dev-org" // shares the partition only if it hashes there; counted where it lands
		}
		ev := &envelope.Event{OrgID: org, IntegrationID: "int", UseCaseID: "uc", EventID: fmt.Sprintf("waiting-%d", i), Payload: []byte(`{}`)}
		apptest.Must(t, producer.ProduceSync(t.Context(), envelope.EventRecord(e.Kafka.Topics().Events, ev)).FirstErr())
	}
	out.Reset()
	apptest.Must(t, app.Status(t.Context(), app.Config{Kafka: e.Kafka, ClickHouse: e.CH}, e.Log, &out))
	flooding := kafkax.OrgPartition([]byte("flooding-org"), 4)
	want := fmt.Sprintf("backlog %s.events partition %d: of the first ", e.Kafka.TopicPrefix, flooding)
	line := ""
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, want) {
			line = l
		}
	}
	wantOrgs := "org flooding-org 45"
	if kafkax.OrgPartition([]byte("dev-org"), 4) == flooding {
		wantOrgs = "of the first 50 waiting, org flooding-org 45, org dev-org 5"
	}
	t.Logf("status: %s", strings.TrimSpace(line))
	if !strings.Contains(line, wantOrgs) {
		t.Errorf("status with 50 events waiting names %q, want %q:\n%s", line, wantOrgs, out.String())
	}
}
