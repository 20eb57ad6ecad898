package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/kafkax"
)

// DedupWindow is how long a deduplication id suppresses its copies (24 hours per
// integration, counted from the first accepted receipt and not extended by duplicates).
const DedupWindow = 24 * time.Hour

// dedupStore is the exact deduplication state of the partitions this processor owns. Its
// changelog is the compacted dedup topic, co-partitioned with the events topic: an event's
// record key is also its dedup record's key, so both land in the same partition number. Marks
// are produced in the same Kafka transaction as the event's outputs and applied to the committed
// marks only after that transaction commits, so they never run ahead of Kafka.
//
// The committed marks are in memory (restored whole at each assignment) or, with a state
// directory, on disk beside the entity states (dedup_pebble.go): a day of marks is one per
// event with a deduplication id, at a million events a minute more than a billion, which no heap
// holds.
type dedupStore struct {
	mu        sync.Mutex
	committed committedMarks
	staged    map[string]dedupMark
	log       *slog.Logger
	// restored counts marks read catching up given partitions, followed those read by standby
	// rounds (metrics, tests).
	restored, followed atomic.Int64
}

// committedMarks is the committed part of the dedup store.
type committedMarks interface {
	// firstSeen is the first accepted receipt (ms) of key in partition, if marked.
	firstSeen(partition int32, key string) (int64, bool)
	// apply records the marks, and the changelog positions they bring the store to, at once.
	apply(marks []dedupMark, positions map[int32]int64) error
	// positions is where to resume reading each changelog partition (absent: from the start).
	positions() map[int32]int64
	// reset readies partitions for a catch-up: in memory they are read again from the start.
	reset(partitions []int32)
	// drop forgets partitions taken from this instance (on disk they stay, to be caught up
	// from their checkpoint if they come back).
	drop(partitions []int32)
	size() int
}

type dedupMark struct {
	partition int32
	key       string
	atMs      int64
}

type dedupRecord struct {
	FirstSeenMs int64  `json:"first_seen_ms"`
	EventID     string `json:"event_id"`
}

func newDedupStore(log *slog.Logger) *dedupStore {
	return &dedupStore{committed: newMemMarks(), staged: map[string]dedupMark{}, log: log}
}

// openDisk keeps the committed marks in db (the entity states' store) from now on.
func (d *dedupStore) openDisk(db *pebble.DB, topicID string) error {
	marks, err := openPebbleMarks(db, topicID)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.committed = marks
	d.mu.Unlock()
	d.log.Info("deduplication marks on disk", "marks", marks.size(), "checkpoints", len(marks.positions()))
	return nil
}

// onDisk is whether the committed marks are kept on disk.
func (d *dedupStore) onDisk() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, disk := d.committed.(*pebbleMarks)
	return disk
}

// duplicate reports whether key was accepted within the window before atMs.
func (d *dedupStore) duplicate(partition int32, key string, atMs int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if m, ok := d.staged[key]; ok && within(m.atMs, atMs) {
		return true
	}
	first, ok := d.committed.firstSeen(partition, key)
	return ok && within(first, atMs)
}

func within(firstMs, atMs int64) bool { return atMs-firstMs < DedupWindow.Milliseconds() }

// stage records a mark of the running transaction.
func (d *dedupStore) stage(partition int32, key string, atMs int64) {
	d.mu.Lock()
	d.staged[key] = dedupMark{partition: partition, key: key, atMs: atMs}
	d.mu.Unlock()
}

// commit applies the staged marks once their transaction committed, with the positions its
// dedup records brought their partitions to; abort drops them.
func (d *dedupStore) commit(positions map[int32]int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	marks := make([]dedupMark, 0, len(d.staged))
	for _, m := range d.staged {
		marks = append(marks, m)
	}
	if err := d.committed.apply(marks, positions); err != nil {
		// The marks are in the committed transaction's records: a catch-up reads them back.
		d.log.Error("committed deduplication marks not stored locally; they are read back from the topic", "err", err)
	}
	clear(d.staged)
}

func (d *dedupStore) abort() {
	d.mu.Lock()
	clear(d.staged)
	d.mu.Unlock()
}

// drop forgets revoked partitions.
func (d *dedupStore) drop(partitions []int32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.committed.drop(partitions)
}

func (d *dedupStore) size() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.committed.size()
}

// catchUp reads the changelog of newly assigned partitions from where the store has them before
// their events are processed: in memory from the start, on disk from the checkpoint.
func (d *dedupStore) catchUp(ctx context.Context, kc kafkax.Config, topic string, partitions []int32) error {
	d.mu.Lock()
	d.committed.reset(partitions)
	d.mu.Unlock()
	read, err := d.readChangelog(ctx, kc, topic, partitions, slog.LevelInfo)
	d.restored.Add(int64(read))
	return err
}

// readChangelog reads partitions on from the store's positions to their last stable offsets,
// logging what it read at level. The caller holds the partitions' reading locks.
func (d *dedupStore) readChangelog(ctx context.Context, kc kafkax.Config, topic string, partitions []int32, level slog.Level) (int, error) {
	if len(partitions) == 0 {
		return 0, nil
	}
	start := time.Now()
	d.mu.Lock()
	from := d.committed.positions()
	d.mu.Unlock()
	offsets := map[int32]kgo.Offset{}
	for _, p := range partitions {
		if at, ok := from[p]; ok {
			offsets[p] = kgo.NewOffset().At(at)
		} else {
			offsets[p] = kgo.NewOffset().AtStart()
		}
	}
	// A checkpoint older than the topic's retention (25 h) reads from the start: what it
	// missed is expired.
	cl, err := kgo.NewClient(append(append(kc.BaseOpts(d.log), kafkax.ChangelogOpts()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return 0, fmt.Errorf("dedup restore client: %w", err)
	}
	defer cl.Close()
	var marks []dedupMark
	positions := map[int32]int64{}
	flush := func() error {
		if len(marks) == 0 && len(positions) == 0 {
			return nil
		}
		d.mu.Lock()
		err := d.committed.apply(marks, positions)
		d.mu.Unlock()
		marks = marks[:0]
		clear(positions)
		return err
	}
	var storeErr error
	read, err := kafkax.CatchUpFrom(ctx, cl, d.log, topic, partitions, from, func(r *kgo.Record) {
		positions[r.Partition] = r.Offset + 1
		var rec dedupRecord
		// Control records and tombstones (a mark moved by relayout) carry no mark.
		if !r.Attrs.IsControl() && r.Value != nil && json.Unmarshal(r.Value, &rec) == nil {
			marks = append(marks, dedupMark{partition: r.Partition, key: string(r.Key), atMs: rec.FirstSeenMs})
		}
		if len(marks) >= 5000 {
			if err := flush(); err != nil && storeErr == nil {
				storeErr = err
			}
		}
	})
	if err := flush(); err != nil && storeErr == nil {
		storeErr = err
	}
	if err != nil {
		return read, fmt.Errorf("dedup restore of %s: %w", topic, err)
	}
	if storeErr != nil {
		// Unlike an entity state, a mark missing here would let a copy through: fail the catch-up.
		return read, fmt.Errorf("dedup marks of %s not stored: %w", topic, storeErr)
	}
	d.log.Log(ctx, level, "dedup state caught up", "partitions", partitions, "records", read, "marks", d.size(),
		"ms", time.Since(start).Milliseconds())
	return read, nil
}

// memMarks keeps the marks in maps, per partition.
type memMarks struct {
	parts map[int32]*dedupPartition
	at    map[int32]int64
}

type dedupPartition struct {
	firstSeen map[string]int64 // key -> first accepted receipt, ms
	watermark int64            // newest receipt seen, ms: expiry runs on event time
	pruned    int64
}

func newMemMarks() *memMarks {
	return &memMarks{parts: map[int32]*dedupPartition{}, at: map[int32]int64{}}
}

func (m *memMarks) firstSeen(partition int32, key string) (int64, bool) {
	p := m.parts[partition]
	if p == nil {
		return 0, false
	}
	first, ok := p.firstSeen[key]
	return first, ok
}

// apply records marks of the partitions being held only: a partition is read whole when given.
func (m *memMarks) apply(marks []dedupMark, positions map[int32]int64) error {
	for _, mk := range marks {
		if p := m.parts[mk.partition]; p != nil {
			p.set(mk.key, mk.atMs)
		}
	}
	for part, at := range positions {
		if m.parts[part] != nil {
			m.at[part] = at
		}
	}
	return nil
}

func (m *memMarks) positions() map[int32]int64 { return maps.Clone(m.at) }

func (m *memMarks) reset(partitions []int32) {
	for _, p := range partitions {
		m.parts[p] = &dedupPartition{firstSeen: map[string]int64{}}
		delete(m.at, p)
	}
}

func (m *memMarks) drop(partitions []int32) {
	for _, p := range partitions {
		delete(m.parts, p)
		delete(m.at, p)
	}
}

func (m *memMarks) size() int {
	n := 0
	for _, p := range m.parts {
		n += len(p.firstSeen)
	}
	return n
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
