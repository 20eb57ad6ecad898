package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// fleet is a cluster with one org per events partition, each with a customers use case, and
// processor instances on it with their state on disk.
type fleet struct {
	t        *testing.T
	c        *kafkatest.Cluster
	reg      *registry.Registry
	orgs     []string // orgs[p] is the org of events partition p
	producer *kgo.Client
	at       int64
}

func newFleet(t *testing.T) *fleet {
	c, reg := withUseCases(t, map[string]json.RawMessage{"customers": json.RawMessage(mappingConfig)})
	f := &fleet{t: t, c: c, reg: reg, orgs: make([]string, c.Config.Partitions), at: 1000}
	ctx := context.Background()
	for i, placed := 0, 0; placed < len(f.orgs); i++ {
		org := fmt.Sprint("org-", i)
		if part := kafkax.OrgPartition([]byte(org), c.Config.Partitions); f.orgs[part] == "" {
			f.orgs[part] = org
			placed++
			must(t, reg.PutIntegration(ctx, &registry.Integration{ID: "int", OrgID: org, Name: "SAP"}))
			must(t, reg.PutUseCase(ctx, &registry.UseCase{ID: "customers", OrgID: org, IntegrationID: "int", Name: "c", Slug: "customers",
				Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(mappingConfig)}))
		}
	}
	producer, err := kgo.NewClient(append(kafkax.ProducerOpts(c.Topics, 5*time.Second), kgo.SeedBrokers(c.Config.Brokers...))...)
	must(t, err)
	t.Cleanup(producer.Close)
	f.producer = producer
	return f
}

type instance struct {
	metrics *prometheus.Registry
	stop    context.CancelFunc
	done    chan error
}

// start runs a processor instance until halted.
func (f *fleet) start(id string, options ...func(*processor.Config)) *instance {
	return f.startGated(id, nil, options...)
}

// startGated is start with a gate every catch-up of a given partition passes first.
func (f *fleet) startGated(id string, gate func([]int32), options ...func(*processor.Config)) *instance {
	in := &instance{metrics: prometheus.NewRegistry(), done: make(chan error, 1)}
	cfg := processor.Config{Kafka: f.c.Config, Topics: f.c.Topics, Registry: f.reg, Log: kafkatest.Quiet(),
		InstanceID: id, Metrics: in.metrics, StateDir: filepath.Join(stateDir(f.t), id)}
	for _, o := range options {
		o(&cfg)
	}
	p, err := processor.New(cfg)
	must(f.t, err)
	if gate != nil {
		p.SetCatchUpGate(gate)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	in.stop = cancel
	go func() { in.done <- p.Run(runCtx) }()
	return in
}

func (in *instance) halt(t *testing.T) {
	in.stop()
	must(t, <-in.done)
}

// mapped is how many events the instance committed.
func (in *instance) mapped() float64 { return counter(in, "erpstream_processor_events_total") }

func (in *instance) partitions() float64 {
	return gauge(in.metrics, "erpstream_processor_assigned_partitions")
}

// sharing waits until both instances hold partitions, all of them between them.
func (f *fleet) sharing(a, b *instance) {
	f.t.Helper()
	waitFor(f.t, func() bool {
		return a.partitions() > 0 && b.partitions() > 0 && int(a.partitions()+b.partitions()) == len(f.orgs)
	})
}

// send produces customers 0…n-1 of every org (an event each; the same customers every round,
// a deduplication id per round and customer).
func (f *fleet) send(round string, n int) { f.sendAs(round, round, n) }

// sendCopies sends a round's events again: new event ids, the round's deduplication ids.
func (f *fleet) sendCopies(round string, n int) { f.sendAs(round+"-copy", round, n) }

func (f *fleet) sendAs(round, dedupRound string, n int) {
	for _, org := range f.orgs {
		for i := range n {
			f.at++
			e := envelope.Event{EventID: fmt.Sprint(org, "-", round, "-", i), OrgID: org, IntegrationID: "int", UseCaseID: "customers", Format: "json",
				Payload: json.RawMessage(fmt.Sprintf(`{"no":"K-%d","name":"%s"}`, i, round)), ReceivedAtUs: f.at,
				DeduplicationID: fmt.Sprint("doc-", dedupRound, "-", i)}
			must(f.t, f.producer.ProduceSync(context.Background(), envelope.EventRecord(f.c.Topics.Events, &e)).FirstErr())
		}
	}
}

// changes counts the committed entity writes by change.
func (f *fleet) changes() map[string]int {
	out := map[string]int{}
	for _, w := range readEntityWrites(f.t, f.c) {
		out[w.Change]++
	}
	return out
}

// Two processor instances each map the events of the orgs in their partitions (exactly once);
// when one stops, the other takes its partitions over with their entity state: the orgs'
// entities written before are updated, not created again.
func TestEveryInstanceMapsItsPartitionsAndTakesOverState(t *testing.T) {
	f := newFleet(t)
	a, b := f.start("a"), f.start("b")
	// Both in the group before the first events: a rebalance waits for the second to join.
	f.sharing(a, b)
	f.send("first", 10)
	waitFor(t, func() bool { return a.mapped()+b.mapped() == 40 })
	if a.mapped() == 0 || b.mapped() == 0 {
		t.Fatalf("events mapped by the instances: %v and %v, want both to map", a.mapped(), b.mapped())
	}
	a.halt(t)
	before := b.mapped()
	f.send("second", 10)
	waitFor(t, func() bool { return b.mapped() == before+40 })
	b.halt(t)
	if changes := f.changes(); changes[envelope.ChangeCreated] != 40 || changes[envelope.ChangeUpdated] != 40 {
		t.Fatalf("entity changes %v, want 40 created and 40 updated (the second round found every entity)", changes)
	}
}

// A partition given to an instance is caught up beside the mapping of the partitions it holds:
// while the state of the taken-over orgs is read, the instance's own orgs' events are mapped, and
// the taken-over orgs' events after it, against their state.
func TestATakenOverPartitionsCatchUpHoldsUpOnlyItsOwnOrgs(t *testing.T) {
	f := newFleet(t)
	// b's catch-ups pass at once until armed; armed, they wait for release.
	var armed atomic.Bool
	release := make(chan struct{})
	var gated sync.Map // partition -> true: its catch-up waited at the gate
	a := f.start("a")
	// Polls of 4 events: a held partition (10 events a round) is paused after 4 and fetches
	// again once released.
	b := f.startGated("b", func(parts []int32) {
		if armed.Load() {
			for _, part := range parts {
				gated.Store(part, true)
			}
			<-release
		}
	}, func(c *processor.Config) { c.MaxPoll = 4 })
	f.sharing(a, b)
	own := int(b.partitions())
	f.send("first", 10)
	waitFor(t, func() bool { return a.mapped()+b.mapped() == 40 })
	armed.Store(true)
	a.halt(t)
	waitFor(t, func() bool { return int(b.partitions()) == len(f.orgs) })
	before := b.mapped()
	f.send("second", 10)
	// The taken-over partitions' catch-ups wait at the gate; b maps its own orgs meanwhile.
	waitFor(t, func() bool {
		n := 0
		gated.Range(func(any, any) bool { n++; return true })
		return n == len(f.orgs)-own && b.mapped() == before+float64(10*own)
	})
	close(release)
	waitFor(t, func() bool { return b.mapped() == before+40 })
	b.halt(t)
	if changes := f.changes(); changes[envelope.ChangeCreated] != 40 || changes[envelope.ChangeUpdated] != 40 {
		t.Fatalf("entity changes %v, want 40 created and 40 updated (the taken-over orgs' entities found after their catch-up)", changes)
	}
}

// A standby instance follows the states and deduplication marks of the partitions it does not
// hold, so taking them over reads nothing again: the taken-over orgs' entities are found, and
// copies of their events refused, with no catch-up read.
func TestAStandbyTakesOverWithoutReadingTheStateAgain(t *testing.T) {
	f := newFleet(t)
	a := f.start("a")
	b := f.start("b", func(c *processor.Config) { c.Standby, c.StandbyInterval = true, 100*time.Millisecond })
	f.sharing(a, b)
	others := float64(len(f.orgs)) - b.partitions()
	f.send("first", 10)
	waitFor(t, func() bool { return a.mapped()+b.mapped() == 40 })
	// b's standby rounds read the states and marks a wrote: ten per org of a's partitions.
	waitFor(t, func() bool {
		return gauge(b.metrics, "erpstream_entity_state_standby_records") == 10*others && gauge(b.metrics, "erpstream_dedup_marks") == 40
	})
	a.halt(t)
	restored := gauge(b.metrics, "erpstream_entity_state_restored_records")
	marksRestored := gauge(b.metrics, "erpstream_dedup_restored_records")
	before := b.mapped()
	f.send("second", 10)
	f.sendCopies("first", 10)
	waitFor(t, func() bool { return b.mapped() == before+80 })
	if got := gauge(b.metrics, "erpstream_entity_state_restored_records") - restored; got != 0 {
		t.Errorf("taking a's partitions over read %v state records, want 0 (the standby had them)", got)
	}
	if got := gauge(b.metrics, "erpstream_dedup_restored_records") - marksRestored; got != 0 {
		t.Errorf("taking a's partitions over read %v dedup mark records, want 0 (the standby had them)", got)
	}
	if got := duplicates(b); got != 40 {
		t.Errorf("%v copies refused as duplicates, want 40 (every org's, a's taken-over ones too)", got)
	}
	b.halt(t)
	if changes := f.changes(); changes[envelope.ChangeCreated] != 40 || changes[envelope.ChangeUpdated] != 40 {
		t.Fatalf("entity changes %v, want 40 created and 40 updated", changes)
	}
}

// duplicates is how many events the instance refused as copies.
func duplicates(in *instance) float64 { return byCode(in, "DUPLICATE_EVENT") }

// byCode is how many events the instance committed with the monitoring code.
func byCode(in *instance, code string) float64 {
	families, _ := in.metrics.Gather()
	total := 0.0
	for _, f := range families {
		if f.GetName() != "erpstream_processor_events_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// A standby keeps every partition's states: on disk only.
func TestAStandbyNeedsTheStateOnDisk(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	_, err := processor.New(processor.Config{Kafka: c.Config, Topics: c.Topics, Registry: reg, Log: kafkatest.Quiet(), Standby: true})
	if err == nil || !strings.Contains(err.Error(), "on disk") {
		t.Fatalf("standby without a state dir: %v, want refused", err)
	}
}
