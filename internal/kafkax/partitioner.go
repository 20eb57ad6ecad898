package kafkax

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Partitioner places erpstream's records on their partitions:
//
//   - events by org: every event of one org is in one partition, in the order it was accepted,
//     and the processor instance owning that partition holds the org's entity state (the key is
//     "<org>/…"; see Topics.OrgPartition); a spread org's events over the partitions by their
//     whole key, to be mapped there and applied in the org's partition (Topics.SpreadPartition);
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
		return byOrg{topics: p.topics}
	case p.topics.Dedup, p.topics.EntityState:
		return asSet{}
	}
	return p.byKey.ForTopic(topic)
}

type byOrg struct{ topics Topics }

func (byOrg) RequiresConsistency(*kgo.Record) bool { return true }
func (b byOrg) Partition(r *kgo.Record, n int) int {
	org := orgOfKey(r.Key)
	if among := b.topics.placedAmong; among > 0 && int32(n) > among {
		n = int(among)
	}
	if b.topics.Spread[string(org)] && !IsCopy(r) {
		return int(b.topics.SpreadPartition(org, r.Key, int32(n)))
	}
	return int(b.topics.OrgPartition(org, int32(n)))
}

// PlacedAmong returns the topics with orgs placed among the first n events partitions, the count
// this process verified at start, also after partitions are added while it runs. Added
// partitions would otherwise move orgs away from their states the moment a producer's metadata
// shows them (within minutes), before the state topics are laid out anew; the processor forwards
// an event a newer producer placed among more partitions back among these (docs/scaling.md,
// "Adding partitions"). A restart verifies the new count and places by it.
func (t Topics) PlacedAmong(n int32) Topics {
	t.placedAmong = n
	return t
}

// PlacedAmongPartitions is the count set by PlacedAmong (0: none).
func (t Topics) PlacedAmongPartitions() int32 { return t.placedAmong }

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
// Topics.OrgPartition is the same when no org is pinned.
func OrgPartition(org []byte, n int32) int32 {
	h := fnv.New32a()
	_, _ = h.Write(org)
	return int32(h.Sum32() % uint32(n))
}

// Placement pins orgs to events partitions (ERPSTREAM_ORG_PARTITIONS): a large org on a
// partition of its own no longer shares its order with the orgs hashed there, and the
// partition's processor instance maps only that org. Every other org is hashed over the
// partitions no org is pinned to, so pinning orgs to partitions added for them moves no other
// org. Every service that produces or maps events must have the same placement
// (docs/scaling.md, "Giving a large org a partition of its own").
type Placement map[string]int32

// ParsePlacement reads "org=partition,org=partition".
func ParsePlacement(s string) (Placement, error) {
	p := Placement{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		org, part, ok := strings.Cut(item, "=")
		org = strings.TrimSpace(org)
		n, err := strconv.ParseInt(strings.TrimSpace(part), 10, 32)
		if !ok || org == "" || strings.Contains(org, "/") || err != nil || n < 0 {
			return nil, fmt.Errorf("org partitions: %q is not org=partition (a partition number from 0)", item)
		}
		if _, dup := p[org]; dup {
			return nil, fmt.Errorf("org partitions: %s is pinned twice", org)
		}
		p[org] = int32(n)
	}
	return p, nil
}

// String is the placement as ERPSTREAM_ORG_PARTITIONS spells it, orgs in order.
func (p Placement) String() string {
	orgs := slices.Sorted(maps.Keys(p))
	items := make([]string, len(orgs))
	for i, org := range orgs {
		items[i] = org + "=" + strconv.Itoa(int(p[org]))
	}
	return strings.Join(items, ",")
}

// Check refuses a placement the events topic's n partitions cannot hold: a pinned partition
// beyond them, or no partition left for the orgs that are not pinned.
func (p Placement) Check(n int32) error {
	if len(p) == 0 {
		return nil
	}
	for org, part := range p {
		if part >= n {
			return fmt.Errorf("org partitions: %s is pinned to partition %d, the events topic has %d (0–%d)", org, part, n, n-1)
		}
	}
	if int32(len(p.pinned(n))) >= n {
		return fmt.Errorf("org partitions: all %d events partitions are pinned; the other orgs need at least one", n)
	}
	return nil
}

// pinned is the distinct pinned partitions below n, ascending.
func (p Placement) pinned(n int32) []int32 {
	out := make([]int32, 0, len(p))
	for _, part := range p {
		if part < n {
			out = append(out, part)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// WithPlacement returns the topics with orgs pinned by p.
func (t Topics) WithPlacement(p Placement) Topics {
	t.Placement = p
	t.pinned = p.pinned(1 << 30)
	return t
}

// OrgPartition is the events partition of an org among n: its pinned partition when it has
// one, else FNV-1a of its id over the partitions no org is pinned to, in order (with none
// pinned: OrgPartition). A pin beyond n (refused at start, Placement.Check) is ignored.
func (t Topics) OrgPartition(org []byte, n int32) int32 {
	if len(t.Placement) == 0 {
		return OrgPartition(org, n)
	}
	if part, ok := t.Placement[string(org)]; ok && part < n {
		return part
	}
	pinned := t.pinned
	if pinned == nil { // Placement set without WithPlacement
		pinned = t.Placement.pinned(n)
	}
	for len(pinned) > 0 && pinned[len(pinned)-1] >= n {
		pinned = pinned[:len(pinned)-1]
	}
	if int32(len(pinned)) >= n {
		return OrgPartition(org, n)
	}
	// The k-th partition that is not pinned.
	k := OrgPartition(org, n-int32(len(pinned)))
	for _, part := range pinned {
		if part <= k {
			k++
		}
	}
	return k
}
