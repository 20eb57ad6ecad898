package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/kafkax"
)

// DedupWindow is how long a deduplication id suppresses its copies (24 hours per
// integration, counted from the first accepted receipt and not extended by duplicates).
const DedupWindow = 24 * time.Hour

// dedupStore is the exact deduplication state of the partitions this processor owns. Its
// changelog is the compacted dedup topic, co-partitioned with the events topic: an event's
// record key is also its dedup record's key, so both land in the same partition number. Marks
// are produced in the same Kafka transaction as the event's outputs and applied to memory only
// after that transaction commits, so memory never runs ahead of Kafka.
type dedupStore struct {
	mu     sync.Mutex
	parts  map[int32]*dedupPartition
	staged map[string]stagedMark
	log    *slog.Logger
}

type dedupPartition struct {
	firstSeen map[string]int64 // key -> first accepted receipt, ms
	watermark int64            // newest receipt seen, ms: expiry runs on event time
	pruned    int64
}

type stagedMark struct {
	partition int32
	atMs      int64
}

type dedupRecord struct {
	FirstSeenMs int64  `json:"first_seen_ms"`
	EventID     string `json:"event_id"`
}

func newDedupStore(log *slog.Logger) *dedupStore {
	return &dedupStore{parts: map[int32]*dedupPartition{}, staged: map[string]stagedMark{}, log: log}
}

// duplicate reports whether key was accepted within the window before atMs.
func (d *dedupStore) duplicate(partition int32, key string, atMs int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m, ok := d.staged[key]; ok && within(m.atMs, atMs) {
		return true
	}
	p := d.parts[partition]
	if p == nil {
		return false
	}
	first, ok := p.firstSeen[key]
	return ok && within(first, atMs)
}

func within(firstMs, atMs int64) bool { return atMs-firstMs < DedupWindow.Milliseconds() }

// stage records a mark of the running transaction.
func (d *dedupStore) stage(partition int32, key string, atMs int64) {
	d.mu.Lock()
	d.staged[key] = stagedMark{partition: partition, atMs: atMs}
	d.mu.Unlock()
}

// commit applies the staged marks once their transaction committed; abort drops them.
func (d *dedupStore) commit() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, m := range d.staged {
		if p := d.parts[m.partition]; p != nil {
			p.set(key, m.atMs)
		}
	}
	clear(d.staged)
}

func (d *dedupStore) abort() {
	d.mu.Lock()
	clear(d.staged)
	d.mu.Unlock()
}

func (p *dedupPartition) set(key string, atMs int64) {
	p.firstSeen[key] = atMs
	if atMs > p.watermark {
		p.watermark = atMs
	}
	// Expire by event time, at most once a minute of it.
	if p.watermark-p.pruned > time.Minute.Milliseconds() {
		cutoff := p.watermark - DedupWindow.Milliseconds()
		for k, first := range p.firstSeen {
			if first < cutoff {
				delete(p.firstSeen, k)
			}
		}
		p.pruned = p.watermark
	}
}

// drop forgets revoked partitions.
func (d *dedupStore) drop(partitions []int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range partitions {
		delete(d.parts, p)
	}
}

// restore reads the changelog of newly assigned partitions before their events are processed.
func (d *dedupStore) restore(ctx context.Context, kc kafkax.Config, topic string, partitions []int32) error {
	if len(partitions) == 0 {
		return nil
	}
	start := time.Now()
	offsets := map[int32]kgo.Offset{}
	for _, p := range partitions {
		offsets[p] = kgo.NewOffset().AtStart()
	}
	cl, err := kgo.NewClient(append(append(kc.BaseOpts(d.log), kafkax.ChangelogOpts()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))...)
	if err != nil {
		return fmt.Errorf("dedup restore client: %w", err)
	}
	defer cl.Close()
	state := map[int32]*dedupPartition{}
	for _, p := range partitions {
		state[p] = &dedupPartition{firstSeen: map[string]int64{}}
	}
	read, err := kafkax.CatchUp(ctx, cl, d.log, topic, partitions, func(r *kgo.Record) {
		var rec dedupRecord
		if err := json.Unmarshal(r.Value, &rec); err == nil {
			state[r.Partition].set(string(r.Key), rec.FirstSeenMs)
		}
	})
	if err != nil {
		return fmt.Errorf("dedup restore of %s: %w", topic, err)
	}
	d.mu.Lock()
	for p, s := range state {
		d.parts[p] = s
	}
	d.mu.Unlock()
	d.log.Info("dedup state restored", "partitions", partitions, "records", read, "ms", time.Since(start).Milliseconds())
	return nil
}
