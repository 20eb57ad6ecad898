package processor_test

import (
	"context"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/processor"
)

// erpstream admin partitions N grows the three co-partitioned topics alike and lays the states and
// marks out for the new count, refusing while a processor runs. Processors started afterwards
// find every org's states in its new partition: a new round updates every entity, forwards
// nothing, and the deduplication marks moved with them still refuse copies.
func TestGrowPartitionsAddsThemAlikeAndMovesTheStates(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	from := f.c.Config.Partitions
	to := from + 2
	moved := 0
	for _, org := range f.orgs {
		if kafkax.OrgPartition([]byte(org), to) != kafkax.OrgPartition([]byte(org), from) {
			moved++
		}
	}
	if moved == 0 {
		t.Fatalf("no org moves from %d to %d partitions; the test shows nothing", from, to)
	}
	a := f.start("a")
	f.send("first", 10)
	waitFor(t, func() bool { return a.mapped() == float64(10*len(f.orgs)) })
	if _, err := processor.GrowPartitions(ctx, f.c.Config, f.c.Topics, to, kafkatest.Quiet()); err == nil ||
		!strings.Contains(err.Error(), "stop every processor first") {
		t.Fatalf("with a processor running: %v, want refused", err)
	}
	a.halt(t)

	rep, err := processor.GrowPartitions(ctx, f.c.Config, f.c.Topics, to, kafkatest.Quiet())
	must(t, err)
	if rep.From != from || rep.To != to || rep.Relayout.StatesMoved != int64(10*moved) || rep.Relayout.MarksMoved != int64(10*moved) {
		t.Fatalf("report %+v, want %d → %d and the %d states and marks of the %d orgs that move", rep, from, to, 10*moved, moved)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.c.Config.Brokers...))
	must(t, err)
	defer cl.Close()
	details, err := kadm.NewClient(cl).ListTopics(ctx, f.c.Topics.Events, f.c.Topics.EntityState, f.c.Topics.Dedup, f.c.Topics.Extractions)
	must(t, err)
	if len(details) != 4 {
		t.Fatalf("topics %v, want four", details.Names())
	}
	for _, d := range details {
		if len(d.Partitions) != int(to) {
			t.Errorf("%s has %d partitions, want %d", d.Topic, len(d.Partitions), to)
		}
	}
	if _, err := processor.GrowPartitions(ctx, f.c.Config, f.c.Topics, from, kafkatest.Quiet()); err == nil {
		t.Fatalf("shrinking to %d partitions: accepted", from)
	}
	again, err := processor.GrowPartitions(ctx, f.c.Config, f.c.Topics, to, kafkatest.Quiet())
	if err != nil || again.From != to || again.Relayout.StatesMoved+again.Relayout.MarksMoved != 0 {
		t.Fatalf("a second run: %+v, %v; want %d -> %d, nothing moved", again, err, to, to)
	}

	// A producer and a processor that start now place among the new count.
	f.producer = newProducer(t, f.c, f.c.Topics)
	b := f.start("b", func(cfg *processor.Config) { cfg.Topics = f.c.Topics.PlacedAmong(to) })
	f.send("second", 10)
	f.sendCopies("first", 10)
	waitFor(t, func() bool { return b.mapped() == float64(20*len(f.orgs)) })
	b.halt(t)
	if got := counter(b, "erpstream_processor_forwarded_events_total"); got != 0 {
		t.Fatalf("%v events forwarded, want none", got)
	}
	if changes := f.changes(); changes[envelope.ChangeCreated] != 10*len(f.orgs) || changes[envelope.ChangeUpdated] != 10*len(f.orgs) {
		t.Fatalf("entity changes %v, want %d created and %d updated (the second round found every state; the copies were refused)",
			changes, 10*len(f.orgs), 10*len(f.orgs))
	}
}
