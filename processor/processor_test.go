package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/processor"
)

const mappingConfig = `{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
	{"attribute":"customer_number","field":"no"},{"attribute":"name","jsonataExpression":"$uppercase(name)"}]}]}`

func TestEventsBecomeEntityWritesAndOneMonitoringRowEach(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	// The integration honours event_type (settings.honor_event_type), so DELETE deletes.
	must(t, reg.PutIntegration(ctx, &registry.Integration{ID: "int", OrgID: "org", Name: "SAP",
		Fields: map[string]json.RawMessage{"settings": json.RawMessage(`{"honor_event_type":true}`)}}))
	must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "uc-1", OrgID: "org", IntegrationID: "int", Name: "c", Slug: "customer",
		Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(mappingConfig)}))

	events := []envelope.Event{
		{EventID: "e1", OrgID: "org", IntegrationID: "int", UseCaseID: "uc-1", Format: "json", Payload: json.RawMessage(`{"no":"K-1","name":"lena"}`), CorrelationID: "c1", ReceivedAtUs: 1000},
		{EventID: "e2", OrgID: "org", IntegrationID: "int", UseCaseID: "uc-1", Format: "json", Payload: json.RawMessage(`{"name":"no number"}`), CorrelationID: "c1", ReceivedAtUs: 2000},
		{EventID: "e3", OrgID: "org", IntegrationID: "int", UseCaseID: "uc-1", Format: "json", Payload: json.RawMessage(`{"no":"K-1"}`), EventType: "DELETE", CorrelationID: "c2", ReceivedAtUs: 3000},
		{EventID: "e4", OrgID: "org", IntegrationID: "int", UseCaseID: "uc-gone", Format: "json", Payload: json.RawMessage(`{"no":"K-9"}`), CorrelationID: "c3", ReceivedAtUs: 4000},
	}
	monitoring, writes := runPipeline(t, c, reg, events)

	want := map[string][2]string{
		"e1": {"success", "ENTITY_CREATED"},
		"e2": {"error", "MISSING_UNIQUE_IDENTIFIERS"},
		"e3": {"success", "ENTITY_DELETED"},
		"e4": {"error", "USE_CASE_NOT_FOUND"},
	}
	for id, w := range want {
		m := monitoring[id]
		if string(m.Level) != w[0] || m.Code != w[1] {
			t.Errorf("%s: %s/%s, want %s/%s (%s)", id, m.Level, m.Code, w[0], w[1], m.Message)
		}
	}
	if m := monitoring["e2"]; m.CorrelationID != "c1" || m.UseCaseType != "inbound" {
		t.Errorf("e2 monitoring row lost its correlation or lane: %+v", m)
	}
	if len(writes) != 2 {
		t.Fatalf("%d entity writes, want 2 (e1 upsert, e3 delete)", len(writes))
	}
	// Events of one entity may sit in different partitions; the version restores their order.
	sort.Slice(writes, func(i, j int) bool { return writes[i].Version < writes[j].Version })
	if writes[0].EntityID != writes[1].EntityID {
		t.Error("the same customer got two entity ids")
	}
	if string(writes[0].Attributes) != `{"customer_number":"K-1","name":"LENA"}` || writes[0].Op != envelope.OpUpsert || writes[0].Version != 1000 {
		t.Errorf("first write %+v", writes[0])
	}
	if writes[1].Op != envelope.OpDelete || writes[1].Version != 3000 || writes[1].CorrelationID != "c2" {
		t.Errorf("second write %+v", writes[1])
	}
	// Each write names its change: the catalog events outbound delivers (contact.created, .deleted).
	if writes[0].Change != envelope.ChangeCreated || writes[1].Change != envelope.ChangeDeleted || writes[1].CatalogEvent() != "contact.deleted" {
		t.Errorf("changes %q, %q", writes[0].Change, writes[1].Change)
	}
}

// An update of an existing entity is "updated"; a delete of an entity that is not there writes
// its tombstone but no change (no catalog event).
func TestEntityWritesNameTheirChange(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{"a": json.RawMessage(mappingConfig)})
	must(t, reg.PutIntegration(context.Background(), &registry.Integration{ID: "int", OrgID: "org", Name: "SAP",
		Fields: map[string]json.RawMessage{"settings": json.RawMessage(`{"honor_event_type":true}`)}}))
	var seq eventSeq
	del := seq.ev("delete-unknown", "a", `{"no":"K-7"}`)
	del.EventType = "DELETE"
	_, writes := runPipeline(t, c, reg, []envelope.Event{
		seq.ev("create", "a", `{"no":"K-1","name":"ann"}`),
		seq.ev("update", "a", `{"no":"K-1","name":"anna"}`),
		del,
	})
	changes := map[string]string{}
	for _, w := range writes {
		changes[w.EventID] = w.Change
	}
	want := map[string]string{"create": envelope.ChangeCreated, "update": envelope.ChangeUpdated, "delete-unknown": ""}
	if fmt.Sprint(changes) != fmt.Sprint(want) {
		t.Fatalf("changes %v, want %v", changes, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// runPipeline produces events, runs a processor until every event has its monitoring row, and
// returns the rows by event id and the entity writes (of earlier runs on c too).
func runPipeline(t *testing.T, c *kafkatest.Cluster, reg *registry.Registry, events []envelope.Event) (map[string]envelope.MonitoringEvent, []envelope.EntityWrite) {
	t.Helper()
	produceEvents(t, c, events)
	return processProduced(t, c, reg, events)
}

// produceEvents writes events as ingest does: each org's to its partition, so they are mapped in
// the order given.
func produceEvents(t *testing.T, c *kafkatest.Cluster, events []envelope.Event) {
	t.Helper()
	producer := orgProducer(t, c)
	for _, e := range events {
		must(t, producer.ProduceSync(context.Background(), envelope.EventRecord(c.Topics.Events, &e)).FirstErr())
	}
}

// orgProducer places records as erpstream's producers do (events by org).
func orgProducer(t *testing.T, c *kafkatest.Cluster) *kgo.Client {
	t.Helper()
	producer, err := kgo.NewClient(append(kafkax.ProducerOpts(c.Topics, 5*time.Second), kgo.SeedBrokers(c.Config.Brokers...))...)
	must(t, err)
	t.Cleanup(producer.Close)
	return producer
}

var stateDirs sync.Map // test name -> directory

func stateDir(t *testing.T) string {
	if d, ok := stateDirs.Load(t.Name()); ok {
		return d.(string)
	}
	d := t.TempDir()
	stateDirs.Store(t.Name(), d)
	return d
}

// processProduced runs a processor until every event (produced already) has its monitoring row.
func processProduced(t *testing.T, c *kafkatest.Cluster, reg *registry.Registry, events []envelope.Event,
	options ...func(*processor.Config)) (map[string]envelope.MonitoringEvent, []envelope.EntityWrite) {
	t.Helper()
	ctx := context.Background()
	// The entity states are kept on disk, in one directory per test: a later run on c starts from
	// the earlier run's store and its checkpoint (the memory store is what the other tests use).
	cfg := processor.Config{Kafka: c.Config, Topics: c.Topics, Registry: reg, Log: kafkatest.Quiet(),
		Now: func() time.Time { return time.UnixMilli(5000) }, FileProxyBaseURL: "https://files.example.com", StateDir: stateDir(t)}
	for _, o := range options {
		o(&cfg)
	}
	p, err := processor.New(cfg)
	must(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	defer func() {
		cancel()
		must(t, <-done)
	}()
	monitoring := map[string]envelope.MonitoringEvent{}
	var writes []envelope.EntityWrite
	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.ConsumeTopics(c.Topics.Monitoring, c.Topics.Entities),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	must(t, err)
	defer consumer.Close()
	waitCtx, waitCancel := context.WithTimeout(ctx, 20*time.Second)
	defer waitCancel()
	missing := func() int {
		n := 0
		for _, e := range events {
			if _, ok := monitoring[e.EventID]; !ok {
				n++
			}
		}
		return n
	}
	for missing() > 0 {
		fs := consumer.PollFetches(waitCtx)
		if waitCtx.Err() != nil {
			t.Fatalf("%d of %d events have no monitoring row", missing(), len(events))
		}
		fs.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case c.Topics.Monitoring:
				var m envelope.MonitoringEvent
				must(t, json.Unmarshal(r.Value, &m))
				if _, dup := monitoring[m.EventID]; dup {
					t.Errorf("two monitoring rows for %s", m.EventID)
				}
				monitoring[m.EventID] = m
			case c.Topics.Entities:
				var w envelope.EntityWrite
				must(t, json.Unmarshal(r.Value, &w))
				writes = append(writes, w)
			}
		})
	}
	return monitoring, writes
}

// By default event types mean what the product says (CREATE creates and fails if the entity
// exists, DELETE deletes, no type is an UPDATE); settings.honor_event_type: false turns that off.
func TestEventTypesApplyByDefaultAndCanBeTurnedOff(t *testing.T) {
	for _, tc := range []struct {
		settings string
		want     map[string]string // event -> monitoring code
		ops      map[string]envelope.EntityOp
	}{
		{"", map[string]string{"u0": "ENTITY_CREATED", "c1": "ENTITY_ALREADY_EXISTS", "d1": "ENTITY_DELETED", "n1": "SOFT_DELETED_ENTITY_MATCHED"},
			map[string]envelope.EntityOp{"u0": envelope.OpUpsert, "d1": envelope.OpDelete, "n1": envelope.OpUpsert}},
		{`{"honor_event_type":true}`, map[string]string{"u0": "ENTITY_CREATED", "c1": "ENTITY_ALREADY_EXISTS", "d1": "ENTITY_DELETED"},
			map[string]envelope.EntityOp{"u0": envelope.OpUpsert, "d1": envelope.OpDelete}},
		{`{"honor_event_type":false}`, map[string]string{"u0": "ENTITY_CREATED", "c1": "ENTITY_UPDATED", "d1": "ENTITY_UPDATED", "n1": "ENTITY_UPDATED"},
			map[string]envelope.EntityOp{"u0": envelope.OpUpsert, "c1": envelope.OpUpsert, "d1": envelope.OpUpsert}},
	} {
		t.Run("settings="+tc.settings, func(t *testing.T) {
			c := kafkatest.New(t)
			reg := registrytest.Start(t, c)
			ctx := context.Background()
			integ := &registry.Integration{ID: "int", OrgID: "org", Name: "SAP"}
			if tc.settings != "" {
				integ.Fields = map[string]json.RawMessage{"settings": json.RawMessage(tc.settings)}
			}
			must(t, reg.PutIntegration(ctx, integ))
			must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "uc-1", OrgID: "org", IntegrationID: "int", Name: "c", Slug: "customer",
				Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(mappingConfig)}))
			ev := func(id, eventType, name string, at int64) envelope.Event {
				return envelope.Event{EventID: id, OrgID: "org", IntegrationID: "int", UseCaseID: "uc-1", Format: "json",
					Payload: json.RawMessage(`{"no":"K-1","name":"` + name + `"}`), EventType: eventType, ReceivedAtUs: at}
			}
			monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
				ev("u0", "UPDATE", "a", 1000), ev("c1", "CREATE", "b", 2000), ev("d1", "DELETE", "c", 3000), ev("n1", "", "d", 4000),
			})
			for id, code := range tc.want {
				if m := monitoring[id]; m.Code != code {
					t.Errorf("%s: %s (%s), want %s", id, m.Code, m.Message, code)
				}
			}
			ops := map[string]envelope.EntityOp{}
			for _, w := range writes {
				ops[w.EventID] = w.Op
			}
			for id, op := range tc.ops {
				if ops[id] != op {
					t.Errorf("%s wrote %q, want %q (all: %v)", id, ops[id], op, ops)
				}
			}
			if _, wrote := ops["c1"]; wrote && tc.want["c1"] == "ENTITY_ALREADY_EXISTS" {
				t.Error("a failed CREATE was written")
			}
		})
	}
}

// the pipeline writes the file-proxy URL the simulation leaves out.
func TestFileProxyURLIsWrittenWithTheEventsIntegration(t *testing.T) {
	raw, err := os.ReadFile("../mapping/testdata/golden/file-proxy-url.json")
	must(t, err)
	var gc struct {
		Configuration json.RawMessage `json:"configuration"`
		Payload       json.RawMessage `json:"payload"`
	}
	must(t, json.Unmarshal(raw, &gc))
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	must(t, reg.PutIntegration(ctx, &registry.Integration{ID: "int-7", OrgID: "org", Name: "SAP"}))
	must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "uc-1", OrgID: "org", IntegrationID: "int-7", Name: "c", Slug: "contracts",
		Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: gc.Configuration}))
	_, writes := runPipeline(t, c, reg, []envelope.Event{{EventID: "e1", OrgID: "org", IntegrationID: "int-7", UseCaseID: "uc-1",
		Format: "json", Payload: gc.Payload, ReceivedAtUs: 1000}})
	if len(writes) != 1 {
		t.Fatalf("%d writes, want 1", len(writes))
	}
	var attrs map[string]any
	must(t, json.Unmarshal(writes[0].Attributes, &attrs))
	want := "https://files.example.com/download?orgId=org&integrationId=int-7&useCaseSlug=invoice-pdf&documentId=R+2025%2F17&year=2025&kind=invoice"
	if attrs["invoice_pdf"] != want {
		t.Errorf("invoice_pdf = %v\nwant %s", attrs["invoice_pdf"], want)
	}
}

// an upsert identical to the entity's last write by the same use case is
// ENTITY_NO_OP and writes nothing; another use case's write in between, a change, or a replay writes.
func TestUnchangedUpsertsWriteNothing(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	for _, id := range []string{"a", "b"} {
		must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: id, OrgID: "org", IntegrationID: "int", Name: id, Slug: id,
			Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(mappingConfig)}))
	}
	var at int64
	ev := func(id, useCase, name string, replay bool) envelope.Event {
		at += 1000
		return envelope.Event{EventID: id, OrgID: "org", IntegrationID: "int", UseCaseID: useCase, Format: "json",
			Payload: json.RawMessage(`{"no":"K-1","name":"` + name + `"}`), ReceivedAtUs: at, Replay: replay}
	}
	monitoring, writes := runPipeline(t, c, reg, []envelope.Event{
		ev("first", "a", "ann", false),
		ev("same", "a", "ann", false),
		ev("other-use-case", "b", "bob", false),
		ev("back", "a", "ann", false),
		ev("again", "a", "ann", false),
		ev("replayed", "a", "ann", true),
		ev("changed", "a", "anna", false),
	})
	want := map[string]string{"first": "ENTITY_CREATED", "same": "ENTITY_NO_OP", "other-use-case": "ENTITY_UPDATED",
		"back": "ENTITY_UPDATED", "again": "ENTITY_NO_OP", "replayed": "ENTITY_UPDATED", "changed": "ENTITY_UPDATED"}
	for id, code := range want {
		if m := monitoring[id]; m.Code != code {
			t.Errorf("%s: %s (%s), want %s", id, m.Code, m.Message, code)
		}
	}
	written := map[string]bool{}
	for _, w := range writes {
		written[w.EventID] = true
	}
	if len(writes) != 5 || written["same"] || written["again"] {
		t.Errorf("%d writes (%v), want 5: none for the unchanged upserts", len(writes), written)
	}
}

// withUseCases starts a broker and a registry holding integration "int" of org "org" with the
// given inbound use cases (id = slug = name).
func withUseCases(t *testing.T, configs map[string]json.RawMessage) (*kafkatest.Cluster, *registry.Registry) {
	t.Helper()
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	must(t, reg.PutIntegration(ctx, &registry.Integration{ID: "int", OrgID: "org", Name: "SAP"}))
	for id, cfg := range configs {
		must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: id, OrgID: "org", IntegrationID: "int", Name: id, Slug: id,
			Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: cfg}))
	}
	return c, reg
}

// eventSeq makes events of org "org", integration "int", each received 1 ms after the previous.
type eventSeq struct{ at int64 }

func (s *eventSeq) ev(id, useCase, payload string) envelope.Event {
	s.at += 1000
	return envelope.Event{EventID: id, OrgID: "org", IntegrationID: "int", UseCaseID: useCase, Format: "json",
		Payload: json.RawMessage(payload), ReceivedAtUs: s.at}
}

// With settings.entity_schemas, an entity or a relation of a schema the integration does not
// declare fails the event, naming use case, entity, field and schema; without, any schema goes.
func TestDeclaredEntitySchemas(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	must(t, reg.PutIntegration(ctx, &registry.Integration{ID: "strict", OrgID: "org", Name: "SAP",
		Fields: map[string]json.RawMessage{"settings": json.RawMessage(`{"entity_schemas":["contract","contact"]}`)}}))
	must(t, reg.PutIntegration(ctx, &registry.Integration{ID: "open", OrgID: "org", Name: "Navision"}))
	cfg := json.RawMessage(`{"entities":[{"entity_schema":"contract","unique_ids":["nr"],"fields":[{"attribute":"nr","field":"nr"},
		{"attribute":"parties","relations":{"operation":"_set","jsonataExpression":"parteien.{\"entity_schema\": art, \"unique_ids\": [{\"attribute\": \"no\", \"constant\": no}]}"}}]}]}`)
	for _, integ := range []string{"strict", "open"} {
		must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "uc-" + integ, OrgID: "org", IntegrationID: integ, Name: "contracts", Slug: "contracts",
			Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: cfg}))
	}
	ev := func(id, integ, art string) envelope.Event {
		return envelope.Event{EventID: id, OrgID: "org", IntegrationID: integ, UseCaseID: "uc-" + integ, Format: "json", ReceivedAtUs: 1000,
			Payload: json.RawMessage(`{"nr":"V-` + id + `","parteien":[{"art":"` + art + `","no":"K-1"}]}`)}
	}
	monitoring, _ := runPipeline(t, c, reg, []envelope.Event{ev("ok", "strict", "contact"), ev("typo", "strict", "contcat"), ev("open", "open", "contcat")})
	if m := monitoring["ok"]; m.Code != "ENTITY_CREATED" {
		t.Errorf("declared schema: %s (%s)", m.Code, m.Message)
	}
	if m := monitoring["typo"]; m.Code != "RELATION_SCHEMA_UNKNOWN" || !strings.Contains(m.Message, "contracts") ||
		!strings.Contains(m.Message, "parties") || !strings.Contains(m.Message, `"contcat"`) {
		t.Errorf("undeclared related schema: %s %q, want RELATION_SCHEMA_UNKNOWN naming use case, field and schema", m.Code, m.Message)
	}
	if m := monitoring["open"]; m.Code != "ENTITY_CREATED" {
		t.Errorf("an integration that declares no schemas: %s (%s)", m.Code, m.Message)
	}
}

// An event of an org in a partition other than the org's (a producer with another placement; the
// layout of versions before events were partitioned by org) is forwarded to the org's partition
// in the transaction that commits past it, and mapped there, once, against the org's states. A
// forwarded event that is outside its org's partition again (processors that place the org
// differently) stops its partition instead of going back and forth, until a restart forwards it
// once more.
func TestEventsOutsideTheirOrgsPartitionAreForwardedThere(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{"contracts": contractConfig("_append")})
	ctx := context.Background()
	producer, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	must(t, err)
	defer producer.Close()
	seq := &eventSeq{}
	home := kafkax.OrgPartition([]byte("org"), c.Config.Partitions)
	away := (home + 1) % c.Config.Partitions
	placed := seq.ev("placed", "contracts", `{"nr":"V-1","kontakte":[{"no":"K-1","rolle":"A"}]}`)
	elsewhere := seq.ev("elsewhere", "contracts", `{"nr":"V-1","kontakte":[{"no":"K-2","rolle":"B"}]}`)
	for _, r := range []struct {
		partition int32
		e         envelope.Event
	}{{home, placed}, {away, elsewhere}} {
		b, _ := json.Marshal(r.e)
		must(t, producer.ProduceSync(ctx, &kgo.Record{Topic: c.Topics.Events, Partition: r.partition, Value: b}).FirstErr())
	}
	in := (&fleet{t: t, c: c, reg: reg}).start("a")
	waitFor(t, func() bool { return in.mapped() == 2 })
	if got := counter(in, "erpstream_processor_forwarded_events_total"); got != 1 {
		t.Fatalf("%v events forwarded, want 1", got)
	}

	// Forwarded already, and outside its org's partition again.
	bounced := seq.ev("bounced", "contracts", `{"nr":"V-2","kontakte":[]}`)
	b, _ := json.Marshal(bounced)
	must(t, producer.ProduceSync(ctx, &kgo.Record{Topic: c.Topics.Events, Partition: away, Value: b,
		Headers: []kgo.RecordHeader{{Key: "erp-forwarded-from", Value: []byte("0/7")}}}).FirstErr())
	waitFor(t, func() bool { return gauge(in.metrics, "erpstream_processor_refused_partitions") == 1 })
	time.Sleep(time.Second)
	mapped := in.mapped()
	in.halt(t)
	if mapped != 2 {
		t.Fatalf("%v events mapped, want 2: the bounced one must not be mapped", mapped)
	}
	// A restart (the placement put right) forwards it once more, and it is mapped.
	again := (&fleet{t: t, c: c, reg: reg}).start("b")
	waitFor(t, func() bool {
		return again.mapped() == 1 && counter(again, "erpstream_processor_forwarded_events_total") == 1
	})
	if got := gauge(again.metrics, "erpstream_processor_refused_partitions"); got != 0 {
		t.Fatalf("%v partitions stopped after the restart, want 0", got)
	}
	again.halt(t)

	var last envelope.EntityWrite
	writes := map[string]int{}
	for _, w := range readEntityWrites(t, c) {
		if w.EntitySchema == "contract" {
			writes[w.EventID]++
			if strings.Contains(string(w.UniqueIdentifiers), "V-1") && w.Version >= last.Version {
				last = w // the newest write of contract V-1
			}
		}
	}
	if writes["placed"] != 1 || writes["elsewhere"] != 1 || writes["bounced"] != 1 {
		t.Fatalf("contract writes by event %v, want one each (bounced's after the restart)", writes)
	}
	if last.EventID != "elsewhere" || strings.Count(string(last.Attributes), `"entity_id"`) != 2 {
		t.Errorf("the newest contract write (%s) is %s, want the forwarded event's with both contacts appended", last.EventID, last.Attributes)
	}
}

// An event older than the entity's state (mapped in a later poll than a newer one) still gets its
// appends in: merged into the current list and written above the state's version.
func TestALateEventsAppendsAreMerged(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{"contracts": contractConfig("_append")})
	newer := envelope.Event{EventID: "newer", OrgID: "org", IntegrationID: "int", UseCaseID: "contracts", Format: "json",
		Payload: json.RawMessage(`{"nr":"V-1","kontakte":[{"no":"K-2","rolle":"B"}]}`), ReceivedAtUs: 2000}
	older := envelope.Event{EventID: "older", OrgID: "org", IntegrationID: "int", UseCaseID: "contracts", Format: "json",
		Payload: json.RawMessage(`{"nr":"V-1","kontakte":[{"no":"K-1","rolle":"A"}]}`), ReceivedAtUs: 1000}
	runPipeline(t, c, reg, []envelope.Event{newer})
	_, writes := runPipeline(t, c, reg, []envelope.Event{older})
	var merged *envelope.EntityWrite
	for i, w := range writes {
		if w.EventID == "older" && w.EntitySchema == "contract" && w.Version > 2000 {
			merged = &writes[i]
		}
	}
	if merged == nil || strings.Count(string(merged.Attributes), `"entity_id"`) != 2 || merged.Version != 2001 {
		t.Fatalf("no write of the late append above the newer version: %+v", writes)
	}
}

func gauge(reg *prometheus.Registry, name string) float64 {
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() == name && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readEntityWrites reads every committed entity write of c.
func readEntityWrites(t *testing.T, c *kafkatest.Cluster) []envelope.EntityWrite {
	t.Helper()
	var out []envelope.EntityWrite
	for _, r := range readTopic(t, c, c.Topics.Entities) {
		var w envelope.EntityWrite
		must(t, json.Unmarshal(r.Value, &w))
		out = append(out, w)
	}
	return out
}

// readTopic reads a topic's committed records from the start, until a second passes without.
func readTopic(t *testing.T, c *kafkatest.Cluster, topic string) []*kgo.Record {
	t.Helper()
	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	must(t, err)
	defer consumer.Close()
	var out []*kgo.Record
	for wait := 10 * time.Second; ; wait = time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		fs := consumer.PollFetches(ctx)
		cancel()
		if fs.IsClientClosed() || fs.NumRecords() == 0 && ctx.Err() != nil {
			return out
		}
		out = append(out, fs.Records()...)
	}
}

// An event whose records would be over the broker's size limit fails alone (ENTITY_TOO_LARGE)
// instead of aborting its transaction again and again; the next event is mapped.
func TestAnOversizedRecordFailsItsEventOnly(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{"contracts": contractConfig("_append")})
	var contacts []string
	for i := 0; i < 50; i++ {
		contacts = append(contacts, fmt.Sprintf(`{"no":"K-%d","rolle":"KUNDE"}`, i))
	}
	seq := &eventSeq{}
	events := []envelope.Event{
		seq.ev("big", "contracts", `{"nr":"V-1","kontakte":[`+strings.Join(contacts, ",")+`]}`),
		seq.ev("small", "contracts", `{"nr":"V-2","kontakte":[{"no":"K-1","rolle":"A"}]}`),
	}
	produceEvents(t, c, events)
	monitoring, writes := processProduced(t, c, reg, events, func(cfg *processor.Config) { cfg.MaxRecordBytes = 2048 })
	if m := monitoring["big"]; m.Code != "ENTITY_TOO_LARGE" || !strings.Contains(m.Message, "2048") {
		t.Errorf("big: %s %q, want ENTITY_TOO_LARGE", m.Code, m.Message)
	}
	if m := monitoring["small"]; m.Code != "ENTITY_CREATED" {
		t.Errorf("small: %s (%s)", m.Code, m.Message)
	}
	for _, w := range writes {
		if w.EventID == "big" {
			t.Errorf("the oversized event wrote %s %s", w.EntitySchema, w.EntityID)
		}
	}
}
