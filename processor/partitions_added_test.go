package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/processor"
)

// Partitions added to the topics while the services run (kafka-topics.sh --alter, without the
// steps of docs/scaling.md) show in every client's metadata within minutes. The services go on
// placing orgs among the partitions they verified at start, where the orgs' states are: the
// processor maps every event once against its org's states, forwards those a service started
// after the change placed among more partitions, and stops no partition. With partitions added
// to the events topic alone (a service started after that refuses to start: the topics are
// co-partitioned), an event in an added partition (put there by a producer that verified
// nothing) has no state partition to catch up: it is forwarded too.
func TestPartitionsAddedWhileRunningMoveNoOrgAwayFromItsStates(t *testing.T) {
	t.Run("every co-partitioned topic", func(t *testing.T) { partitionsAddedWhileRunning(t, true) })
	t.Run("the events topic alone", func(t *testing.T) { partitionsAddedWhileRunning(t, false) })
}

func partitionsAddedWhileRunning(t *testing.T, coPartitioned bool) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	var orgs []string
	for i := range 16 {
		orgs = append(orgs, fmt.Sprint("org-", i))
	}
	registerCustomers(t, reg, orgs...)
	started := c.Config.Partitions
	verified := c.Topics.PlacedAmong(started) // what every service verified at start
	producer := func(topics kafkax.Topics) *kgo.Client { return newProducer(t, c, topics) }
	at := int64(1000)
	const customers = 5
	// send produces customers of every org and returns the partition each org's events went to.
	send := func(cl *kgo.Client, round string) map[string]int32 {
		parts := map[string]int32{}
		for _, org := range orgs {
			for i := range customers {
				at++
				e := envelope.Event{EventID: fmt.Sprint(org, "-", round, "-", i), OrgID: org, IntegrationID: "int", UseCaseID: "customers",
					Format: "json", Payload: json.RawMessage(fmt.Sprintf(`{"no":"K-%d","name":"%s"}`, i, round)), ReceivedAtUs: at}
				r, err := cl.ProduceSync(ctx, envelope.EventRecord(c.Topics.Events, &e)).First()
				must(t, err)
				parts[org] = r.Partition
			}
		}
		return parts
	}

	f := &fleet{t: t, c: c, reg: reg}
	a := f.start("a", func(cfg *processor.Config) { cfg.Topics = verified })
	first := send(producer(verified), "first")
	waitFor(t, func() bool { return a.mapped() == float64(len(orgs)*customers) })
	a.halt(t)

	// Two partitions added to the events topic, and to the two co-partitioned with it.
	admCl, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...))
	must(t, err)
	defer admCl.Close()
	grown := []string{c.Topics.Events}
	if coPartitioned {
		grown = append(grown, c.Topics.EntityState, c.Topics.Dedup)
	}
	resp, err := kadm.NewClient(admCl).CreatePartitions(ctx, 2, grown...)
	must(t, err)
	must(t, resp.Error())

	// The processor (its metadata now showing six partitions) and an ingest that started with
	// four: the ingest sends every org where it was, the processor maps there.
	var logs processor.LockedBuffer
	b := f.start("b", func(cfg *processor.Config) {
		cfg.Topics = verified
		cfg.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	second := send(producer(verified), "second")
	for _, org := range orgs {
		if second[org] != first[org] {
			t.Fatalf("%s's events went to partition %d after partitions were added, before to %d", org, second[org], first[org])
		}
	}
	// An ingest started after the change places among six: the processor forwards what it
	// places elsewhere to the org's partition among four.
	third := send(producer(c.Topics.PlacedAmong(started+2)), "third")
	moved, added := 0, 0
	for _, org := range orgs {
		if third[org] != first[org] {
			moved++
		}
		if third[org] >= started {
			added++
		}
	}
	if moved == 0 || added == 0 {
		t.Fatalf("placed among six, %d of %d orgs moved, %d into added partitions; the test shows nothing", moved, len(orgs), added)
	}
	waitFor(t, func() bool { return b.mapped() == float64(2*len(orgs)*customers) })
	if got := counter(b, "erpstream_processor_forwarded_events_total"); got != float64(moved*customers) {
		t.Fatalf("%v events forwarded, want %d (those of the %d orgs placed elsewhere)", got, moved*customers, moved)
	}
	noRestartsOrRefusals(t, b)
	if !strings.Contains(logs.String(), "events partitions were added since this processor started") {
		t.Fatalf("the processor did not say partitions were added:\n%s", logs.String())
	}
	b.halt(t)
	changes := changesByOrg(t, c)
	for _, org := range orgs {
		if got := changes[org]; got[envelope.ChangeCreated] != customers || got[envelope.ChangeUpdated] != 2*customers || len(got) != 2 {
			t.Fatalf("%s's changes %v, want %d created and %d updated: each event mapped once against the org's states", org, got, customers, 2*customers)
		}
	}
}
