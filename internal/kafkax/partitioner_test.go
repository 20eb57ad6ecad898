package kafkax

import (
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestEventsArePartitionedByOrg(t *testing.T) {
	topics := NewTopics("erp")
	events := topics.Partitioner().ForTopic(topics.Events)
	spread := map[int]bool{}
	for _, key := range []string{"org-a/int-1/dedup/x", "org-a/int-2/uc/e1", "org-a/int-1/uc/e2", "org-a"} {
		spread[events.Partition(&kgo.Record{Key: []byte(key)}, 12)] = true
	}
	if len(spread) != 1 {
		t.Fatalf("one org's events landed in %d partitions", len(spread))
	}
	orgs := map[int]bool{}
	for i := range 100 {
		orgs[events.Partition(&kgo.Record{Key: []byte(string(rune('a'+i%26)) + string(rune('a'+i/26)) + "/i/u/e")}, 12)] = true
	}
	if len(orgs) < 10 {
		t.Fatalf("100 orgs use only %d of 12 partitions", len(orgs))
	}
	for _, topic := range []string{topics.Dedup, topics.EntityState} {
		if got := topics.Partitioner().ForTopic(topic).Partition(&kgo.Record{Key: []byte("x"), Partition: 7}, 12); got != 7 {
			t.Errorf("%s: partition %d, want the one set (7)", topic, got)
		}
	}
	// Entity writes by their key, as Kafka's default partitioner would.
	byKey := kgo.StickyKeyPartitioner(nil).ForTopic(topics.Entities)
	rec := &kgo.Record{Key: []byte("org-a/entity-1")}
	if got, want := topics.Partitioner().ForTopic(topics.Entities).Partition(rec, 12), byKey.Partition(rec, 12); got != want {
		t.Errorf("entity write in partition %d, want %d", got, want)
	}
}

func TestPinnedOrgsHaveTheirPartitionAndOthersMoveOnlyOffIt(t *testing.T) {
	orgs := make([]string, 2000)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org-%d", i)
	}
	hashed := NewTopics("erp")

	// Two partitions added (12 -> 14) and given to two large orgs: no other org moves.
	grown := NewTopics("erp").WithPlacement(Placement{"big-a": 12, "big-b": 13})
	events := grown.Partitioner().ForTopic(grown.Events)
	if got := events.Partition(&kgo.Record{Key: []byte("big-a/int/uc/e1")}, 14); got != 12 {
		t.Fatalf("big-a's event in partition %d, want its pinned 12", got)
	}
	if got := grown.OrgPartition([]byte("big-b"), 14); got != 13 {
		t.Fatalf("big-b in partition %d, want 13", got)
	}
	for _, org := range orgs {
		if got, was := grown.OrgPartition([]byte(org), 14), hashed.OrgPartition([]byte(org), 12); got != was {
			t.Fatalf("%s moved from %d to %d though only new partitions were pinned", org, was, got)
		}
	}

	// Pinned to an existing partition: every other org is hashed over the other 11 (most move,
	// as when the partition count changes), and none is left on the pinned one.
	pinned := NewTopics("erp").WithPlacement(Placement{"big-a": 5})
	per := map[int32]int{}
	for _, org := range orgs {
		got := pinned.OrgPartition([]byte(org), 12)
		if got == 5 {
			t.Fatalf("%s shares the pinned partition 5", org)
		}
		per[got]++
	}
	if len(per) != 11 {
		t.Fatalf("orgs spread over %d partitions, want 11", len(per))
	}
	for part, n := range per {
		if n < len(orgs)/11/2 {
			t.Errorf("partition %d has %d of %d orgs", part, n, len(orgs))
		}
	}
	// Set without WithPlacement, the same answers.
	direct := NewTopics("erp")
	direct.Placement = Placement{"big-a": 5}
	for _, org := range orgs[:200] {
		if direct.OrgPartition([]byte(org), 12) != pinned.OrgPartition([]byte(org), 12) {
			t.Fatalf("%s placed differently without WithPlacement", org)
		}
	}
}

func TestPlacementIsParsedAndCheckedAgainstThePartitions(t *testing.T) {
	p, err := ParsePlacement(" big-a=12, big-b = 13 ,")
	if err != nil || len(p) != 2 || p["big-a"] != 12 || p["big-b"] != 13 {
		t.Fatalf("parsed %v, %v", p, err)
	}
	if again, err := ParsePlacement(p.String()); err != nil || p.String() != "big-a=12,big-b=13" || len(again) != 2 || again["big-b"] != 13 {
		t.Fatalf("%q read again: %v, %v", p.String(), again, err)
	}
	if p, err := ParsePlacement(""); err != nil || len(p) != 0 {
		t.Fatalf("empty: %v, %v", p, err)
	}
	for _, bad := range []string{"big-a", "big-a=x", "=3", "big-a=-1", "a/b=1", "big-a=1,big-a=2"} {
		if _, err := ParsePlacement(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if err := p.Check(14); err != nil {
		t.Fatalf("14 partitions: %v", err)
	}
	if err := p.Check(13); err == nil || !strings.Contains(err.Error(), "big-b is pinned to partition 13, the events topic has 13") {
		t.Fatalf("13 partitions: %v", err)
	}
	if err := (Placement{"a": 0, "b": 1}).Check(2); err == nil || !strings.Contains(err.Error(), "all 2 events partitions are pinned") {
		t.Fatalf("every partition pinned: %v", err)
	}
	if err := (Placement{"a": 0, "b": 0}).Check(2); err != nil {
		t.Fatalf("two orgs sharing a pinned partition: %v", err)
	}
}

// Partitions added while a producer runs show in its metadata within minutes. Until it is
// restarted it goes on placing orgs among the partitions it verified at start, where their
// states are: an added partition gets no event from it, and no org moves.
func TestOrgsArePlacedAmongThePartitionsVerifiedAtStart(t *testing.T) {
	for _, topics := range []Topics{NewTopics("erp"), NewTopics("erp").WithPlacement(Placement{"big": 3})} {
		started := topics.PlacedAmong(12).Partitioner().ForTopic(topics.Events)
		moved := 0
		for i := range 2000 {
			org := fmt.Sprintf("org-%d", i)
			if i == 0 {
				org = "big"
			}
			rec := &kgo.Record{Key: []byte(org + "/int/uc/e")}
			want := int(topics.OrgPartition([]byte(org), 12))
			if got := started.Partition(rec, 14); got != want {
				t.Fatalf("%v: %s placed in %d of 14 partitions, want %d, its partition among the 12 verified at start", topics.Placement, org, got, want)
			}
			if topics.Partitioner().ForTopic(topics.Events).Partition(rec, 14) != want {
				moved++
			}
		}
		if moved < 1000 {
			t.Fatalf("%v: without the count verified at start only %d of 2000 orgs move to other partitions; the test shows nothing", topics.Placement, moved)
		}
		if got := topics.PlacedAmong(12).PlacedAmongPartitions(); got != 12 {
			t.Fatalf("PlacedAmongPartitions %d, want 12", got)
		}
	}
}
