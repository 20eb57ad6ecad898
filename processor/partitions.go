package processor

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Events are partitioned by org (kafkax.Topics.Partitioner), and an org's entity states are
// written to the same partition number of the entity-state topic by the instance that maps the
// org's events. So every instance maps a share of the partitions and needs the state of those
// partitions only. An instance given a partition reads that state partition from where its store
// has it before it maps the partition's first events (catchUpFresh).
//
// The catch-up runs once the session has polled the partition's first records, not when the
// partition is assigned: the session fetches its committed offsets with require-stable, which
// returns only after the previous owner's last transaction ended, so the last stable offset the
// catch-up reads to includes that transaction's states if it committed.

// freshPartitions are events partitions given to this instance whose state has not been caught
// up since.
type freshPartitions struct {
	mu sync.Mutex
	// set holds, per fresh partition, the assignment that made it fresh: a partition given
	// again while its catch-up ran stays fresh.
	set  map[int32]uint64
	gave uint64
}

func (p *Processor) markFresh(partitions []int32) {
	p.fresh.mu.Lock()
	defer p.fresh.mu.Unlock()
	if p.fresh.set == nil {
		p.fresh.set = map[int32]uint64{}
	}
	p.fresh.gave++
	for _, part := range partitions {
		p.fresh.set[part] = p.fresh.gave
	}
}

// catchUpFresh catches up the state of the batch's fresh partitions.
func (p *Processor) catchUpFresh(ctx context.Context, batch []polledEvent) error {
	p.fresh.mu.Lock()
	var parts []int32
	seen := map[int32]uint64{}
	for _, in := range batch {
		if part := in.rec.Partition; p.fresh.set[part] != 0 && !slices.Contains(parts, part) {
			parts = append(parts, part)
			seen[part] = p.fresh.set[part]
		}
	}
	p.fresh.mu.Unlock()
	if len(parts) == 0 {
		return nil
	}
	if err := p.entities.catchUp(ctx, p.cfg.Kafka, p.cfg.Topics.EntityState, parts); err != nil {
		return fmt.Errorf("catch up entity state of partitions %v: %w", parts, err)
	}
	p.fresh.mu.Lock()
	for _, part := range parts {
		if p.fresh.set[part] == seen[part] {
			delete(p.fresh.set, part)
		}
	}
	p.fresh.mu.Unlock()
	return nil
}

// statePositions collects, while a transaction produces, how far its state records reach in
// each entity-state partition; committed, they are the store's new positions.
type statePositions struct {
	topic string
	mu    sync.Mutex
	next  map[int32]int64
}

func (s *statePositions) observe(r *kgo.Record, err error) {
	if err != nil || r.Topic != s.topic {
		return
	}
	s.mu.Lock()
	if r.Offset+1 > s.next[r.Partition] {
		s.next[r.Partition] = r.Offset + 1
	}
	s.mu.Unlock()
}
