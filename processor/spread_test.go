package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/processor"
)

// A spread org's event mapped outside the org's partition is applied there as if it had been
// mapped there: every golden case, each an org of its own whose event lands away from its
// partition, writes the same entity records and monitoring row as without spreading.
func TestAMappedAwayEventIsAppliedAsIfMappedInItsOrgsPartition(t *testing.T) {
	files, err := filepath.Glob("../mapping/testdata/golden/*.json")
	must(t, err)
	type run struct {
		c   *kafkatest.Cluster
		reg *registry.Registry
	}
	plain, spread := run{c: kafkatest.New(t)}, run{c: kafkatest.New(t)}
	plain.reg, spread.reg = registrytest.Start(t, plain.c), registrytest.Start(t, spread.c)
	ctx := context.Background()
	orgs := map[string]bool{}
	var events []envelope.Event
	for i, file := range files {
		raw, err := os.ReadFile(file)
		must(t, err)
		var gc struct {
			Configuration json.RawMessage `json:"configuration"`
			Format        string          `json:"format"`
			Payload       json.RawMessage `json:"payload"`
		}
		must(t, json.Unmarshal(raw, &gc))
		if gc.Configuration == nil {
			continue // v1 wrapped configurations are simulation-only
		}
		if gc.Format == "" {
			gc.Format = "json"
		}
		org := fmt.Sprintf("org-%d", i)
		orgs[org] = true
		for _, r := range []run{plain, spread} {
			must(t, r.reg.PutIntegration(ctx, &registry.Integration{ID: "int", OrgID: org, Name: "SAP"}))
			must(t, r.reg.PutUseCase(ctx, &registry.UseCase{ID: "uc", OrgID: org, IntegrationID: "int", Name: "c", Slug: "c",
				Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: gc.Configuration}))
		}
		events = append(events, envelope.Event{EventID: org, OrgID: org, IntegrationID: "int", UseCaseID: "uc", Format: gc.Format,
			Payload: gc.Payload, ReceivedAtUs: int64(1_746_088_200_000_000 + i)})
	}
	topics := spread.c.Topics.WithSpread(orgs)
	for i := range events {
		placeAway(topics, &events[i], spread.c.Config.Partitions)
	}
	producer := newProducer(t, spread.c, topics)
	for _, e := range events {
		must(t, producer.ProduceSync(ctx, envelope.EventRecord(topics.Events, &e)).FirstErr())
	}
	metrics := prometheus.NewRegistry()
	spreadRows, spreadWrites := processProduced(t, spread.c, spread.reg, events, func(cfg *processor.Config) {
		cfg.Topics, cfg.Metrics = topics, metrics
	})
	if got := counter(&instance{metrics: metrics}, "erpstream_processor_mapped_away_events_total"); int(got) != len(events) {
		t.Fatalf("%v events mapped away from their org's partition, want all %d", got, len(events))
	}
	plainRows, plainWrites := runPipeline(t, plain.c, plain.reg, events)

	type written struct {
		op, change, uniqueIDs, attributes string
		version                           uint64
	}
	byEntity := func(ws []envelope.EntityWrite) map[string][]written {
		out := map[string][]written{}
		for _, w := range ws {
			key := w.OrgID + "/" + w.EntitySchema + "/" + w.EntityID
			out[key] = append(out[key], written{string(w.Op), w.Change, string(w.UniqueIdentifiers), string(w.Attributes), w.Version})
		}
		return out
	}
	want, got := byEntity(plainWrites), byEntity(spreadWrites)
	if len(want) < 20 {
		t.Fatalf("only %d entities written by the golden cases", len(want))
	}
	for key, w := range want {
		if fmt.Sprint(got[key]) != fmt.Sprint(w) {
			t.Errorf("%s: mapped away %v, mapped in its partition %v", key, got[key], w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d entities written mapped away, %d mapped in their partitions", len(got), len(want))
	}
	for _, e := range events {
		p, s := plainRows[e.EventID], spreadRows[e.EventID]
		if p.Level != s.Level || p.Code != s.Code || p.Message != s.Message || string(p.Detail) != string(s.Detail) {
			t.Errorf("%s: monitoring row mapped away %s %s %s %s, in its partition %s %s %s %s", e.OrgID,
				s.Level, s.Code, s.Message, s.Detail, p.Level, p.Code, p.Message, p.Detail)
		}
	}
}

// One org's feed is mapped by every instance when the org is spread (ERPSTREAM_ORG_SPREAD): its
// events land in every partition, each instance maps those of its partitions, and the instance
// holding the org's partition applies them all against the org's states, once: the second round
// finds every entity, copies of the first round are refused as duplicates.
func TestASpreadOrgsFeedIsMappedByEveryInstance(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	registerCustomers(t, reg, "big")
	topics := c.Topics.WithSpread(map[string]bool{"big": true})
	producer := newProducer(t, c, topics)
	at := int64(1000)
	send := func(round, dedupRound string, n int) map[int32]int {
		parts := map[int32]int{}
		for i := range n {
			at++
			e := envelope.Event{EventID: fmt.Sprint("big-", round, "-", i), OrgID: "big", IntegrationID: "int", UseCaseID: "customers",
				Format: "json", Payload: json.RawMessage(fmt.Sprintf(`{"no":"K-%d","name":"%s"}`, i, round)), ReceivedAtUs: at,
				DeduplicationID: fmt.Sprint("doc-", dedupRound, "-", i)}
			r, err := producer.ProduceSync(context.Background(), envelope.EventRecord(topics.Events, &e)).First()
			must(t, err)
			parts[r.Partition]++
		}
		return parts
	}
	f := &fleet{t: t, c: c, reg: reg}
	useSpread := func(cfg *processor.Config) { cfg.Topics = topics }
	a, b := f.start("a", useSpread), f.start("b", useSpread)
	waitFor(t, func() bool {
		return a.partitions() > 0 && b.partitions() > 0 && int(a.partitions()+b.partitions()) == int(c.Config.Partitions)
	})
	const n = 200
	if parts := send("first", "first", n); len(parts) != int(c.Config.Partitions) {
		t.Fatalf("the spread org's events went to partitions %v, want every one of %d", parts, c.Config.Partitions)
	}
	outcomes := func() float64 { return a.mapped() + b.mapped() }
	waitFor(t, func() bool { return outcomes() == n })
	send("second", "second", n)
	send("copy", "first", n)
	waitFor(t, func() bool { return outcomes() == 3*n })
	awayA, awayB := counter(a, "erpstream_processor_mapped_away_events_total"), counter(b, "erpstream_processor_mapped_away_events_total")
	if awayA == 0 || awayB == 0 {
		t.Fatalf("events mapped away from the org's partition: %v by a, %v by b; want both to map a share", awayA, awayB)
	}
	if dup := duplicates(a) + duplicates(b); dup != n {
		t.Errorf("%v copies refused as duplicates, want %d", dup, n)
	}
	noRestartsOrRefusals(t, a)
	noRestartsOrRefusals(t, b)
	a.halt(t)
	b.halt(t)
	if changes := f.changes(); changes[envelope.ChangeCreated] != n || changes[envelope.ChangeUpdated] != n || len(changes) != 2 {
		t.Fatalf("entity changes %v, want %d created and %d updated", changes, n, n)
	}
	// Every event's one monitoring row is written by the org's partition, none by the copies' origin.
	rows := map[string]int{}
	for _, r := range readTopic(t, c, c.Topics.Monitoring) {
		var m envelope.MonitoringEvent
		must(t, json.Unmarshal(r.Value, &m))
		rows[m.EventID]++
	}
	if len(rows) != 3*n {
		t.Fatalf("%d events have monitoring rows, want %d", len(rows), 3*n)
	}
	for id, k := range rows {
		if k != 1 {
			t.Fatalf("event %s has %d monitoring rows", id, k)
		}
	}
}

// placeAway gives an event an id that puts it outside its org's partition.
func placeAway(topics kafkax.Topics, e *envelope.Event, partitions int32) {
	for n := 0; ; n++ {
		e.EventID = fmt.Sprint(e.OrgID, "-", n)
		if topics.SpreadPartition([]byte(e.OrgID), envelope.RecordKey(e), partitions) != topics.OrgPartition([]byte(e.OrgID), partitions) {
			return
		}
	}
}

// An extraction too large to travel in one record (a wide fan-out) is left behind: the org's
// partition maps the event itself, and every entity is written.
func TestAnExtractionTooLargeForARecordIsMappedWhereItIsApplied(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{"people": json.RawMessage(`{"entities":[{"entity_schema":"contact",
		"jsonataExpression":"people","unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"no"},
		{"attribute":"name","field":"name"}]}]}`)})
	var people []string
	for i := range 30 {
		people = append(people, fmt.Sprintf(`{"no":"K-%d","name":"%s"}`, i, strings.Repeat("n", 150)))
	}
	topics := c.Topics.WithSpread(map[string]bool{"org": true})
	e := envelope.Event{OrgID: "org", IntegrationID: "int", UseCaseID: "people", Format: "json", ReceivedAtUs: 1000,
		Payload: json.RawMessage(`{"people":[` + strings.Join(people, ",") + `]}`)}
	placeAway(topics, &e, c.Config.Partitions)
	must(t, newProducer(t, c, topics).ProduceSync(context.Background(), envelope.EventRecord(topics.Events, &e)).FirstErr())
	metrics := prometheus.NewRegistry()
	rows, writes := processProduced(t, c, reg, []envelope.Event{e}, func(cfg *processor.Config) {
		cfg.Topics, cfg.Metrics, cfg.MaxRecordBytes = topics, metrics, 8<<10 // the event fits, its extraction does not
	})
	if o := rows[e.EventID]; o.Level != envelope.LevelSuccess || len(writes) != 30 {
		t.Fatalf("outcome %s %s and %d entity writes, want success and 30", o.Code, o.Message, len(writes))
	}
	if got := counter(&instance{metrics: metrics}, "erpstream_processor_mapped_away_events_total"); got != 1 {
		t.Fatalf("%v events handled away from the org's partition, want 1", got)
	}
	copies := 0
	for _, r := range readTopic(t, c, c.Topics.Events) {
		if kafkax.IsCopy(r) {
			var cp envelope.Event
			must(t, envelope.Decode(r.Value, &cp))
			if len(cp.Mapped) != 0 || len(r.Value) > 8<<10 {
				t.Fatalf("the copy carries %d bytes of mapping (%d in all), want none", len(cp.Mapped), len(r.Value))
			}
			copies++
		}
	}
	if copies != 1 {
		t.Fatalf("%d copies in the events topic, want 1", copies)
	}
}
