package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/processor"
)

// A map-ahead org's events stay in the org's partition, in the order they were accepted, and the
// instances that do not hold it map them ahead of the one that does: of two CREATEs of one
// entity the second still fails, every event has one outcome, and the applying instance took
// extractions the others made.
func TestAMapAheadOrgsEventsAreMappedAheadByTheOtherInstancesInOrder(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	must(t, reg.PutIntegration(ctx, &registry.Integration{ID: "int", OrgID: "big", Name: "SAP"}))
	// A costly field (a sum over a range) keeps the applying instance behind the other two.
	must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "customers", OrgID: "big", IntegrationID: "int", Name: "c", Slug: "customers",
		Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(`{"entities":[{"entity_schema":"contact",
		"unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"no"},{"attribute":"name","field":"name"},
		{"attribute":"weight","jsonataExpression":"$sum([1..20000])"}]}]}`)}))
	f := &fleet{t: t, c: c, reg: reg}
	ahead := func(cfg *processor.Config) { cfg.MapAheadOrgs = map[string]bool{"big": true} }
	fleet := []*instance{f.start("a", ahead), f.start("b", ahead), f.start("c", ahead)}
	waitFor(t, func() bool {
		held := 0.0
		for _, in := range fleet {
			if in.partitions() == 0 {
				return false
			}
			held += in.partitions()
		}
		return int(held) == int(c.Config.Partitions)
	})
	time.Sleep(time.Second) // two rounds of the instances' look at the group
	// One backlog at once: the applying instance maps it event by event, the others their shares.
	producer := newProducer(t, c, c.Topics)
	const n = 150
	at := int64(1000)
	for i := range n {
		for _, which := range []string{"first", "again"} {
			at++
			e := envelope.Event{EventID: fmt.Sprint("big-", which, "-", i), OrgID: "big", IntegrationID: "int", UseCaseID: "customers",
				EventType: "CREATE", Format: "json", Payload: json.RawMessage(fmt.Sprintf(`{"no":"K-%d","name":"%s"}`, i, which)), ReceivedAtUs: at}
			producer.Produce(ctx, envelope.EventRecord(c.Topics.Events, &e), func(_ *kgo.Record, err error) { must(t, err) })
		}
	}
	must(t, producer.Flush(ctx))
	sum := func(name string) (total float64) {
		for _, in := range fleet {
			total += counter(in, name)
		}
		return total
	}
	waitFor(t, func() bool { return sum("erpstream_processor_events_total") == 2*n })
	taken, made := sum("erpstream_processor_ahead_extractions_taken_total"), sum("erpstream_processor_mapped_ahead_events_total")
	var exists float64
	for _, in := range fleet {
		exists += byCode(in, "ENTITY_ALREADY_EXISTS")
		noRestartsOrRefusals(t, in)
		in.halt(t)
	}
	if taken < n || made < taken {
		t.Fatalf("%v extractions made ahead and %v taken by the applying instance, want at least %d taken of those made", made, taken, n)
	}
	t.Logf("%v of %d events mapped ahead, %v taken", made, 2*n, taken)
	if changes := f.changes(); changes[envelope.ChangeCreated] != n || len(changes) != 1 {
		t.Fatalf("entity changes %v, want %d created", changes, n)
	}
	if exists != n {
		t.Fatalf("%v second CREATEs failed as existing, want all %d (applied in order)", exists, n)
	}
	rows := map[string]envelope.MonitoringEvent{}
	for _, r := range readTopic(t, c, c.Topics.Monitoring) {
		var m envelope.MonitoringEvent
		must(t, json.Unmarshal(r.Value, &m))
		if _, twice := rows[m.EventID]; twice {
			t.Fatalf("event %s has two monitoring rows", m.EventID)
		}
		rows[m.EventID] = m
	}
	for i := range n {
		first, again := rows[fmt.Sprint("big-first-", i)], rows[fmt.Sprint("big-again-", i)]
		if first.Level != envelope.LevelSuccess || again.Code != "ENTITY_ALREADY_EXISTS" {
			t.Fatalf("K-%d: first CREATE %s %s, second %s %s; want success, then ENTITY_ALREADY_EXISTS", i, first.Level, first.Code, again.Level, again.Code)
		}
	}
}
