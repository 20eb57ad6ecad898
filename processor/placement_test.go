package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/processor"
)

// An org pinned to a partition of its own (ERPSTREAM_ORG_PARTITIONS) has every event there, mapped
// against its states there, and shares the partition with no other org. An event a producer
// without the placement put in another partition is not mapped against a partition that holds
// none of the org's states: it is forwarded to the pinned partition and mapped there.
func TestAPinnedOrgIsMappedInItsPartitionAndMisplacedEventsAreForwarded(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	orgs := []string{"big", "small-a", "small-b", "small-c", "small-d", "small-e"}
	registerCustomers(t, reg, orgs...)
	hashedAt := kafkax.OrgPartition([]byte("big"), c.Config.Partitions)
	pin := (hashedAt + 1) % c.Config.Partitions // not where the hash puts it
	pinned := c.Topics.WithPlacement(kafkax.Placement{"big": pin})
	aware, unaware := newProducer(t, c, pinned), newProducer(t, c, c.Topics)
	at := int64(1000)
	// send produces customers 0…n-1 of org and returns the partitions their events went to.
	send := func(cl *kgo.Client, org, round string, n int) map[int32]int {
		parts := map[int32]int{}
		for i := range n {
			at++
			e := envelope.Event{EventID: fmt.Sprint(org, "-", round, "-", i), OrgID: org, IntegrationID: "int", UseCaseID: "customers",
				Format: "json", Payload: json.RawMessage(fmt.Sprintf(`{"no":"K-%d","name":"%s"}`, i, round)), ReceivedAtUs: at}
			r, err := cl.ProduceSync(ctx, envelope.EventRecord(c.Topics.Events, &e)).First()
			must(t, err)
			parts[r.Partition]++
		}
		return parts
	}

	f := &fleet{t: t, c: c, reg: reg}
	in := f.start("a", func(cfg *processor.Config) { cfg.Topics = pinned })
	if parts := send(aware, "big", "first", 10); len(parts) != 1 || parts[pin] != 10 {
		t.Fatalf("the pinned org's events went to partitions %v, want all in %d", parts, pin)
	}
	for _, org := range orgs[1:] {
		if parts := send(aware, org, "first", 5); parts[pin] != 0 {
			t.Fatalf("%s's events went to the pinned partition %d: %v", org, pin, parts)
		}
	}
	waitFor(t, func() bool { return in.mapped() == 35 })
	send(aware, "big", "second", 10)
	waitFor(t, func() bool { return in.mapped() == 45 })

	// A producer without the placement puts the org's event where its hash says: the processor
	// forwards it to the pinned partition, where it is mapped against the org's states; the other
	// orgs' events go on.
	if parts := send(unaware, "big", "misplaced", 1); parts[hashedAt] != 1 {
		t.Fatalf("the unaware producer put the event in %v, want partition %d", parts, hashedAt)
	}
	for _, org := range orgs[1:] {
		send(aware, org, "second", 5)
	}
	waitFor(t, func() bool { return in.mapped() == 46+25 })
	if got := counter(in, "erpstream_processor_forwarded_events_total"); got != 1 {
		t.Fatalf("%v events forwarded, want 1", got)
	}
	noRestartsOrRefusals(t, in)
	in.halt(t)
	changes := changesByOrg(t, c)
	if got := changes["big"]; got[envelope.ChangeCreated] != 10 || got[envelope.ChangeUpdated] != 11 || len(got) != 2 {
		t.Fatalf("the pinned org's changes %v, want 10 created and 11 updated (the second round and the forwarded event found its states)", got)
	}
	for _, org := range orgs[1:] {
		if got := changes[org]; got[envelope.ChangeCreated] != 5 || got[envelope.ChangeUpdated] != 5 || len(got) != 2 {
			t.Fatalf("%s's changes %v, want 5 created and 5 updated", org, got)
		}
	}
}

// registerCustomers gives each org an integration "int" with the customers use case.
func registerCustomers(t *testing.T, reg *registry.Registry, orgs ...string) {
	t.Helper()
	for _, org := range orgs {
		must(t, reg.PutIntegration(context.Background(), &registry.Integration{ID: "int", OrgID: org, Name: "SAP"}))
		must(t, reg.PutUseCase(context.Background(), &registry.UseCase{ID: "customers", OrgID: org, IntegrationID: "int", Name: "c",
			Slug: "customers", Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(mappingConfig)}))
	}
}

// newProducer is a producer placing records as topics do, closed when the test ends.
func newProducer(t *testing.T, c *kafkatest.Cluster, topics kafkax.Topics) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append(kafkax.ProducerOpts(topics, 5*time.Second), kgo.SeedBrokers(c.Config.Brokers...))...)
	must(t, err)
	t.Cleanup(cl.Close)
	return cl
}

// noRestartsOrRefusals fails the test if the instance restarted a session or stopped a partition.
func noRestartsOrRefusals(t *testing.T, in *instance) {
	t.Helper()
	if got := counter(in, "erpstream_processor_session_restarts_total") + gauge(in.metrics, "erpstream_processor_refused_partitions"); got != 0 {
		t.Fatalf("%v session restarts or refused partitions, want none", got)
	}
}

// changesByOrg counts the committed entity writes of c by org and change.
func changesByOrg(t *testing.T, c *kafkatest.Cluster) map[string]map[string]int {
	t.Helper()
	changes := map[string]map[string]int{}
	for _, w := range readEntityWrites(t, c) {
		if changes[w.OrgID] == nil {
			changes[w.OrgID] = map[string]int{}
		}
		changes[w.OrgID][w.Change]++
	}
	return changes
}

// counter is the sum of a counter family of the instance's metrics.
func counter(in *instance, name string) float64 {
	families, _ := in.metrics.Gather()
	total := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}
