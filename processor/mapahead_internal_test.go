package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
)

// The cache gives an extraction once, to the event it was made for, and none for events the
// instance mapped already; a partition holds a bounded number.
func TestTheAheadCacheGivesAnExtractionOnceToItsEvent(t *testing.T) {
	c := newAheadCache(3)
	c.put(1, 10, "e10", []byte("x10"))
	c.put(1, 11, "e11", []byte("x11"))
	if got := c.take(1, 10, "e10"); string(got) != "x10" {
		t.Fatalf("take 10: %q", got)
	}
	if got := c.take(1, 10, "e10"); got != nil {
		t.Fatalf("taken twice: %q", got)
	}
	if got := c.take(1, 11, "other"); got != nil {
		t.Fatalf("an extraction of another event (a topic made again) was given: %q", got)
	}
	c.put(1, 9, "e9", []byte("x9")) // below what is mapped
	if got := c.take(1, 9, "e9"); got != nil {
		t.Fatalf("an extraction for an event mapped already was kept: %q", got)
	}
	for off := int64(20); off < 30; off++ {
		c.put(1, off, "e", []byte("x"))
	}
	if n := len(c.parts[1].byOffset); n != 3 {
		t.Fatalf("%d extractions held, want the bound 3", n)
	}
	big := make([]byte, aheadMaxBytes/2+1)
	c.put(3, 1, "e1", big)
	c.put(3, 2, "e2", big)
	if c.take(3, 1, "e1") == nil || c.take(3, 2, "e2") != nil {
		t.Fatalf("the second half of the bytes bound was kept beside the first")
	}
	c.put(2, 5, "e5", []byte("x5"))
	c.drop(2)
	if got := c.take(2, 5, "e5"); got != nil {
		t.Fatalf("a dropped partition's extraction was given: %q", got)
	}
}

// An instance whose own partitions have a backlog maps nothing ahead for another instance's org:
// another org's feed must not slow the orgs it holds. Without one it maps its share.
func TestAnInstanceWithABacklogOfItsOwnMapsNothingAhead(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	if err := reg.PutIntegration(ctx, &registry.Integration{ID: "int", OrgID: "big", Name: "SAP"}); err != nil {
		t.Fatal(err)
	}
	if err := reg.PutUseCase(ctx, &registry.UseCase{ID: "uc", OrgID: "big", IntegrationID: "int", Name: "c", Slug: "c", Type: registry.TypeInbound,
		Enabled: true, Version: 1, Configuration: json.RawMessage(`{"entities":[{"entity_schema":"contact","unique_ids":["no"],"fields":[{"attribute":"no","field":"no"}]}]}`)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, ok := reg.Snapshot().UseCase("big", "uc"); return ok })
	p, err := New(Config{Kafka: c.Config, Topics: c.Topics, Registry: reg, Log: kafkatest.Quiet(), MapAheadOrgs: map[string]bool{"big": true}})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	a := &aheadReader{cl: cl, members: 2, xParts: c.Config.Partitions}
	h := &helped{}
	mapOne := func(offset int64) {
		e := envelope.Event{EventID: fmt.Sprint("e-", offset), OrgID: "big", IntegrationID: "int", UseCaseID: "uc", Format: "json",
			Payload: json.RawMessage(`{"no":"K-1"}`), ReceivedAtUs: 1000}
		r := envelope.EventRecord(c.Topics.Events, &e)
		r.Offset = offset
		f := fnv.New32a()
		_, _ = f.Write(r.Key)
		a.share = int(f.Sum32() % uint32(a.members)) // the record is this instance's share
		p.mapAheadOne(ctx, a, r, h)
	}
	p.ownWaiting.Store(aheadYieldBacklog)
	mapOne(0)
	if got := testutil.ToFloat64(p.aheadMapped); got != 0 || h.next != 1 {
		t.Fatalf("with its own backlog: %v mapped ahead, next offset %d; want none, 1", got, h.next)
	}
	p.ownWaiting.Store(0)
	mapOne(1)
	if got := testutil.ToFloat64(p.aheadMapped); got != 1 {
		t.Fatalf("without a backlog: %v mapped ahead, want 1", got)
	}
}

// Two deployments sharing a broker and the processors' group name (topic prefixes erp and
// other) are one Kafka group: a map-ahead instance counts only the members consuming its own
// events topic, so the shares of its deployment add up to all of its events.
func TestMapAheadSharesCountOnlyTheMembersOfItsOwnDeployment(t *testing.T) {
	c := kafkatest.New(t)
	other := kafkax.NewTopics("other")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if err := kafkax.EnsureTopics(ctx, adm, other.Specs(c.Config.Partitions), 1); err != nil {
		t.Fatal(err)
	}
	join := func(events string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.ConsumerGroup("shared-name"),
			kgo.ConsumeTopics(events), kgo.Balancers(kgo.CooperativeStickyBalancer()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		go func() {
			for ctx.Err() == nil {
				cl.PollFetches(ctx)
			}
		}()
		return cl
	}
	ours := []*kgo.Client{join(c.Topics.Events), join(c.Topics.Events)}
	join(other.Events)

	var g kadm.DescribedGroup
	for {
		groups, err := adm.DescribeGroups(ctx, "shared-name")
		if err == nil {
			g = groups["shared-name"]
		}
		if g.State == "Stable" && len(g.Members) == 3 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the group never became stable with 3 members: %+v", g)
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := map[int]bool{}
	for _, cl := range ours {
		me, _ := cl.GroupMetadata()
		share, members := aheadShare(g, c.Topics.Events, me)
		if members != 2 {
			t.Fatalf("members counted: %d, want the 2 of this deployment (the group has %d)", members, len(g.Members))
		}
		if share < 0 || share > 1 || seen[share] {
			t.Fatalf("shares %v, then %d: each of the two must have its own", seen, share)
		}
		seen[share] = true
	}
	rebalancing := g
	rebalancing.State = "PreparingRebalance"
	if share, members := aheadShare(rebalancing, c.Topics.Events, "x"); share != -1 || members != 0 {
		t.Fatalf("during a rebalance: share %d of %d, want none", share, members)
	}
}
