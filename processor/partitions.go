package processor

import (
	"context"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Events are partitioned by org (kafkax.Topics.Partitioner), and an org's entity states are
// written to the same partition number of the entity-state topic by the instance that maps the
// org's events. So every instance maps a share of the partitions and needs the state of those
// partitions only. An instance given a partition reads that state partition from where its store
// has it before it maps the partition's first events.
//
// The catch-up starts once the session has polled the partition's first records, not when the
// partition is assigned: the session fetches its committed offsets with require-stable, which
// returns only after the previous owner's last transaction ended, so the last stable offset the
// catch-up reads to includes that transaction's states if it committed.
//
// The partition's deduplication marks are read at the same point, for the same reason.
//
// It runs beside the mapping of the instance's other partitions (Kafka Streams restores a moved
// task the same way): the partition's polled events are held (its fetching paused once a poll's
// worth is held) until its state is there, and the transactions that commit meanwhile commit its
// offset at its first held event. A partition with millions of states then delays its own orgs' events, not those of
// every org the instance already maps.

// freshPartitions are events partitions given to this instance whose state has not been caught
// up since.
type freshPartitions struct {
	mu sync.Mutex
	// set holds, per fresh partition, the assignment that made it fresh: a partition given
	// again while its catch-up ran stays fresh.
	set  map[int32]uint64
	gave uint64
	// revoked are partitions taken from this instance since the session last looked.
	revoked []int32
	// owned are the partitions this instance holds (a standby round leaves them alone).
	owned map[int32]bool
}

func (p *Processor) markFresh(partitions []int32) {
	p.fresh.mu.Lock()
	defer p.fresh.mu.Unlock()
	if p.fresh.set == nil {
		p.fresh.set = map[int32]uint64{}
	}
	if p.fresh.owned == nil {
		p.fresh.owned = map[int32]bool{}
	}
	p.fresh.gave++
	for _, part := range partitions {
		p.fresh.set[part] = p.fresh.gave
		p.fresh.owned[part] = true
	}
}

// owns reports whether this instance holds the events partition.
func (p *Processor) owns(part int32) bool {
	p.fresh.mu.Lock()
	defer p.fresh.mu.Unlock()
	return p.fresh.owned[part]
}

func (p *Processor) markRevoked(partitions []int32) {
	p.fresh.mu.Lock()
	defer p.fresh.mu.Unlock()
	p.fresh.revoked = append(p.fresh.revoked, partitions...)
	for _, part := range partitions {
		delete(p.fresh.owned, part)
	}
}

func (p *Processor) takeRevoked() []int32 {
	p.fresh.mu.Lock()
	defer p.fresh.mu.Unlock()
	out := p.fresh.revoked
	p.fresh.revoked = nil
	return out
}

// restores are the catch-ups one session runs; at most one per partition at a time (two would
// apply a partition's changelog out of order).
type restores struct {
	p       *Processor
	ctx     context.Context
	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[int32]bool
	// caught are partitions whose catch-up ended, with the assignment it was for.
	caught map[int32]uint64
	err    error
	// wake is signalled when a catch-up ends, to interrupt a poll that waits for new records.
	wake chan struct{}
	// gate, in tests, runs before each catch-up.
	gate func(parts []int32)
}

func (p *Processor) newRestores(ctx context.Context) *restores {
	return &restores{p: p, ctx: ctx, running: map[int32]bool{}, caught: map[int32]uint64{}, wake: make(chan struct{}, 1),
		gate: p.catchUpGate}
}

// start catches up those of parts that are not being caught up already.
func (r *restores) start(parts []int32) {
	p := r.p
	p.fresh.mu.Lock()
	gens := map[int32]uint64{}
	for _, part := range parts {
		gens[part] = p.fresh.set[part]
	}
	p.fresh.mu.Unlock()
	r.mu.Lock()
	var todo []int32
	for _, part := range parts {
		// A partition caught up and not yet released must not be read again beside its mapping.
		if _, caught := r.caught[part]; !r.running[part] && !caught {
			r.running[part] = true
			todo = append(todo, part)
		}
	}
	r.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if r.gate != nil {
			r.gate(todo)
		}
		// Deduplication marks too are read only now, after the previous owner's last
		// transaction ended: read at assignment, they could miss the marks of a transaction
		// still committing, and a later copy of one of its events would be mapped again.
		unlock := p.entities.lockReading(todo)
		err := p.dedup.catchUp(r.ctx, p.cfg.Kafka, p.cfg.Topics.Dedup, todo)
		if err == nil {
			err = p.entities.catchUpLocked(r.ctx, p.cfg.Kafka, p.cfg.Topics.EntityState, todo)
		}
		unlock()
		r.mu.Lock()
		for _, part := range todo {
			delete(r.running, part)
			if err == nil {
				r.caught[part] = gens[part]
			}
		}
		if err != nil && r.err == nil && r.ctx.Err() == nil {
			r.err = fmt.Errorf("catch up entity state of partitions %v: %w", todo, err)
		}
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}()
}

// caughtUp returns the partitions whose state is there since the last call (no longer fresh),
// or the error a catch-up ended with.
func (r *restores) caughtUp() ([]int32, error) {
	r.mu.Lock()
	caught, err := r.caught, r.err
	r.caught = map[int32]uint64{}
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	p := r.p
	p.fresh.mu.Lock()
	defer p.fresh.mu.Unlock()
	var out []int32
	for part, gen := range caught {
		// A partition given again while it was caught up is caught up again when its records
		// come (the previous owner may have written since).
		if p.fresh.set[part] == gen {
			delete(p.fresh.set, part)
			out = append(out, part)
		}
	}
	return out, nil
}

// freshNow are the partitions whose state is still to be caught up (a copy: read once per batch,
// not per event).
func (p *Processor) freshNow() map[int32]bool {
	p.fresh.mu.Lock()
	defer p.fresh.mu.Unlock()
	if len(p.fresh.set) == 0 {
		return nil
	}
	out := make(map[int32]bool, len(p.fresh.set))
	for part := range p.fresh.set {
		out[part] = true
	}
	return out
}

// wait stops the session's catch-ups and waits for them: the next session's catch-up of the
// same partition must not run beside one of this session.
func (r *restores) wait() { r.wg.Wait() }

// heldEvents are the polled events of partitions whose state is being caught up, per partition
// in offset order.
type heldEvents map[int32][]polledEvent

func (h heldEvents) all() []polledEvent {
	var out []polledEvent
	for _, evs := range h {
		out = append(out, evs...)
	}
	return out
}

// statePositions collects, while a transaction produces, how far its records reach in each
// partition of the two changelogs (entity states, dedup marks); committed, they are the stores'
// new positions.
type statePositions struct {
	entityTopic, dedupTopic string
	mu                      sync.Mutex
	entities, marks         map[int32]int64
}

func newStatePositions(entityTopic, dedupTopic string) *statePositions {
	return &statePositions{entityTopic: entityTopic, dedupTopic: dedupTopic, entities: map[int32]int64{}, marks: map[int32]int64{}}
}

func (s *statePositions) observe(r *kgo.Record, err error) {
	if err != nil {
		return
	}
	var next map[int32]int64
	switch r.Topic {
	case s.entityTopic:
		next = s.entities
	case s.dedupTopic:
		next = s.marks
	default:
		return
	}
	s.mu.Lock()
	if r.Offset+1 > next[r.Partition] {
		next[r.Partition] = r.Offset + 1
	}
	s.mu.Unlock()
}
