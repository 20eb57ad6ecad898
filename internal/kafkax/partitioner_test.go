package kafkax

import (
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
