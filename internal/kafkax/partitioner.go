package kafkax

import (
	"bytes"
	"hash/fnv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Partitioner places erpstream's records on their partitions:
//
//   - events by org: every event of one org is in one partition, in the order it was accepted,
//     and the processor instance owning that partition holds the org's entity state (the key is
//     "<org>/…"; the org is hashed, see OrgPartition);
//   - deduplication marks and entity states where the processor put them (Record.Partition): the
//     partition of the event they came from, so that each is restored with its partition;
//   - everything else by its key (Kafka's murmur2, as franz-go's sticky key partitioner).
//
// Every producer of erpstream's records uses it, so they all agree where an org lives.
func (t Topics) Partitioner() kgo.Partitioner {
	return partitioner{topics: t, byKey: kgo.StickyKeyPartitioner(nil)}
}

type partitioner struct {
	topics Topics
	byKey  kgo.Partitioner
}

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	switch topic {
	case p.topics.Events:
		return byOrg{}
	case p.topics.Dedup, p.topics.EntityState:
		return asSet{}
	}
	return p.byKey.ForTopic(topic)
}

type byOrg struct{}

func (byOrg) RequiresConsistency(*kgo.Record) bool { return true }
func (byOrg) Partition(r *kgo.Record, n int) int {
	org := r.Key
	if i := bytes.IndexByte(org, '/'); i >= 0 {
		org = org[:i]
	}
	return int(OrgPartition(org, int32(n)))
}

// asSet keeps the partition the producer chose. Topic verification at start makes the
// co-partitioned topics equally partitioned; the modulo only keeps a misconfigured deployment
// from failing every record.
type asSet struct{}

func (asSet) RequiresConsistency(*kgo.Record) bool { return true }
func (asSet) Partition(r *kgo.Record, n int) int {
	if r.Partition < 0 {
		return 0
	}
	return int(r.Partition) % n
}

// OrgPartition is the events partition of an org among n: FNV-1a of its id. Changing it (or
// the events topic's partition count) moves orgs to other partitions, away from their state.
func OrgPartition(org []byte, n int32) int32 {
	h := fnv.New32a()
	_, _ = h.Write(org)
	return int32(h.Sum32() % uint32(n))
}
