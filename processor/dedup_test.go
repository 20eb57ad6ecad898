package processor_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/ingest"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/processor"
)

// outcomes runs a processor until it has written n monitoring rows and returns them by event id.
type harness struct {
	t        *testing.T
	c        *kafkatest.Cluster
	reg      *registry.Registry
	producer *kgo.Client
	consumer *kgo.Client
	seen     map[string]envelope.MonitoringEvent
	writes   int
	// stateDir keeps the processors' entity states and deduplication marks on disk (empty: in memory).
	stateDir string
	// metrics is the last processor's registry.
	metrics *prometheus.Registry
}

func newHarness(t *testing.T) *harness {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	must(t, reg.PutUseCase(context.Background(), &registry.UseCase{ID: "uc-1", OrgID: "org", IntegrationID: "int", Name: "c", Slug: "customer",
		Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(mappingConfig)}))
	// Placed as ingest places events: by org.
	producer, err := kgo.NewClient(append(kafkax.ProducerOpts(c.Topics, 5*time.Second), kgo.SeedBrokers(c.Config.Brokers...))...)
	must(t, err)
	t.Cleanup(producer.Close)
	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.ConsumeTopics(c.Topics.Monitoring, c.Topics.Entities),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	must(t, err)
	t.Cleanup(consumer.Close)
	return &harness{t: t, c: c, reg: reg, producer: producer, consumer: consumer, seen: map[string]envelope.MonitoringEvent{}}
}

func (h *harness) send(e envelope.Event) {
	b, _ := json.Marshal(e)
	must(h.t, h.producer.ProduceSync(context.Background(), &kgo.Record{Topic: h.c.Topics.Events, Key: ingest.EventKey(&e), Value: b}).FirstErr())
}

// run starts a processor (a new instance of the same group each time) and stops it after fn.
func (h *harness) run(fn func()) {
	h.metrics = prometheus.NewRegistry()
	p, err := processor.New(processor.Config{Kafka: h.c.Config, Topics: h.c.Topics, Registry: h.reg, Log: kafkatest.Quiet(),
		StateDir: h.stateDir, Metrics: h.metrics})
	must(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	fn()
	cancel()
	must(h.t, <-done)
}

func (h *harness) waitFor(eventIDs ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		missing := 0
		for _, id := range eventIDs {
			if _, ok := h.seen[id]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		fs := h.consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			h.t.Fatalf("monitoring rows for %v did not all arrive", eventIDs)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Topic == h.c.Topics.Entities {
				h.writes++
				return
			}
			var m envelope.MonitoringEvent
			must(h.t, json.Unmarshal(r.Value, &m))
			h.seen[m.EventID] = m
		})
	}
}

// The marks are in memory (read whole at every start) or on disk (read from the checkpoint);
// either way the window holds across a restart.
func TestDeduplicationWindowSurvivesARestart(t *testing.T) {
	for _, where := range []string{"memory", "disk"} {
		t.Run(where, func(t *testing.T) { testDeduplicationWindowSurvivesARestart(t, where == "disk") })
	}
}

func testDeduplicationWindowSurvivesARestart(t *testing.T, onDisk bool) {
	h := newHarness(t)
	if onDisk {
		h.stateDir = t.TempDir()
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ev := func(id string, dedup string, at time.Time) envelope.Event {
		return envelope.Event{EventID: id, OrgID: "org", IntegrationID: "int", UseCaseID: "uc-1", Format: "json",
			Payload: json.RawMessage(`{"no":"K-1","name":"` + id + `"}`), DeduplicationID: dedup, ReceivedAtUs: at.UnixMicro(), CorrelationID: "c"}
	}
	h.run(func() {
		h.send(ev("e1", "doc-1", t0))
		h.send(ev("e2", "doc-1", t0.Add(time.Hour)))                // inside the window: duplicate
		h.send(ev("e3", "doc-2", t0.Add(time.Hour)))                // another id
		h.send(ev("e4", "doc-1", t0.Add(25*time.Hour)))             // after the window: processed again
		h.send(ev("e5", "doc-1", t0.Add(25*time.Hour+time.Minute))) // window restarted by e4
		h.waitFor("e1", "e2", "e3", "e4", "e5")
	})
	want := map[string]string{"e1": "ENTITY_CREATED", "e2": "DUPLICATE_EVENT", "e3": "ENTITY_UPDATED", "e4": "ENTITY_UPDATED", "e5": "DUPLICATE_EVENT"}
	for id, code := range want {
		if got := h.seen[id]; got.Code != code {
			t.Errorf("%s: %s (%s), want %s", id, got.Code, got.Message, code)
		}
	}
	if h.seen["e2"].Level != envelope.LevelInfo {
		t.Errorf("a duplicate is logged at level %s, want info", h.seen["e2"].Level)
	}
	if h.writes != 3 {
		t.Errorf("%d entity writes, want 3 (duplicates are not mapped)", h.writes)
	}
	// On disk, doc-1's mark of e1 expired when e4 marked it again: two marks are held.
	if got := gauge(h.metrics, "erpstream_dedup_marks"); onDisk && got != 2 {
		t.Errorf("%v marks on disk, want 2 (doc-1 once, doc-2)", got)
	}

	// A new processor instance restores the marks: from the dedup topic, or from its disk.
	h.run(func() {
		h.send(ev("e6", "doc-2", t0.Add(2*time.Hour)))   // e3's id, within its window
		h.send(ev("e7", "doc-3", t0.Add(2*time.Hour)))   // new
		replay := ev("e8", "doc-2", t0.Add(2*time.Hour)) // replays bypass deduplication
		replay.Replay = true
		h.send(replay)
		h.waitFor("e6", "e7", "e8")
	})
	for id, code := range map[string]string{"e6": "DUPLICATE_EVENT", "e7": "ENTITY_UPDATED", "e8": "ENTITY_UPDATED"} {
		if got := h.seen[id]; got.Code != code {
			t.Errorf("after restart %s: %s (%s), want %s", id, got.Code, got.Message, code)
		}
	}
	restored := gauge(h.metrics, "erpstream_dedup_restored_records")
	if onDisk && restored != 0 {
		t.Errorf("the restart read %v mark records: not from its checkpoint", restored)
	}
	if !onDisk && restored != 3 {
		t.Errorf("the restart read %v mark records, want the 3 marks written (e1, e3, e4)", restored)
	}
}

func TestXMLPayloadsAreMapped(t *testing.T) {
	h := newHarness(t)
	must(t, h.reg.PutUseCase(context.Background(), &registry.UseCase{ID: "uc-x", OrgID: "org", IntegrationID: "int", Name: "x", Slug: "xml",
		Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(`{"entities":[{"entity_schema":"contact",
		"unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","jsonataExpression":"customer.` + "`@id`" + `"},
		{"attribute":"phones","jsonataExpression":"[customer.phone]"}]}]}`)}))
	h.run(func() {
		h.send(envelope.Event{EventID: "x1", OrgID: "org", IntegrationID: "int", UseCaseID: "uc-x", Format: "xml", ReceivedAtUs: 1,
			Payload: envelope.StringPayload(`<customer id="C1"><phone>1</phone><phone>2</phone></customer>`)})
		h.send(envelope.Event{EventID: "x2", OrgID: "org", IntegrationID: "int", UseCaseID: "uc-x", Format: "xml", ReceivedAtUs: 2,
			Payload: envelope.StringPayload(`<customer id="C2"><phone>1</customer>`)})
		h.waitFor("x1", "x2")
	})
	if h.seen["x1"].Code != "ENTITY_UPDATED" || h.seen["x2"].Code != "MALFORMED_PAYLOAD" {
		t.Fatalf("x1 %+v\nx2 %+v", h.seen["x1"], h.seen["x2"])
	}
}
