package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/kafkax"
)

// RelayoutReport is what Relayout did.
type RelayoutReport struct {
	StatesMoved, MarksMoved int64
	// Unplaceable are states written before they carried their org: left where they are.
	Unplaceable int64
}

// Relayout moves entity states and deduplication marks to the partition of their org
// (Topics.OrgPartition: pinned or hashed): the layout every processor instance relies on since events are
// partitioned by org. Versions before spread events by deduplication id and kept states by
// entity id. Each misplaced record is copied to its org's partition, then a tombstone replaces it
// where it was (compaction removes both). Running it again moves nothing more; a copy of an older
// state never replaces a newer one (states are versioned). Run it with the processors stopped and
// their lag at 0 (docs/scaling.md, "Upgrading"); it refuses while one consumes the events.
func Relayout(ctx context.Context, kc kafkax.Config, t kafkax.Topics, log *slog.Logger) (RelayoutReport, error) {
	var rep RelayoutReport
	cl, err := kgo.NewClient(append(append(kc.BaseOpts(log), kafkax.ChangelogOpts()...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchMaxBytes(8<<20))...)
	if err != nil {
		return rep, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := processorsStopped(ctx, adm, t.Events); err != nil {
		return rep, err
	}
	details, err := adm.ListTopics(ctx, t.Events, t.EntityState, t.Dedup)
	if err != nil {
		return rep, err
	}
	events, ok := details[t.Events]
	if !ok || events.Err != nil {
		return rep, fmt.Errorf("topic %s: not found (erpstream admin ensure-topics)", t.Events)
	}
	n := int32(len(events.Partitions))
	if err := t.Placement.Check(n); err != nil {
		return rep, err // the services refuse to start with it: states moved by it would be lost to them
	}
	for _, topic := range []string{t.EntityState, t.Dedup} {
		if d := details[topic]; int32(len(d.Partitions)) != n {
			return rep, fmt.Errorf("%s has %d partitions, %s %d: they must be equal", topic, len(d.Partitions), t.Events, n)
		}
	}
	var produceErr atomic.Value
	produce := func(r *kgo.Record) {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			if err != nil {
				produceErr.CompareAndSwap(nil, err)
			}
		})
	}
	// A misplaced record is replaced by a tombstone only once its copy is stored: the copies are
	// flushed first, a batch at a time.
	var tombstones []*kgo.Record
	settle := func() error {
		if err := cl.Flush(ctx); err != nil {
			return err
		}
		if err, _ := produceErr.Load().(error); err != nil {
			return errors.Join(errors.New("some records were not moved; run it again"), err)
		}
		for _, r := range tombstones {
			produce(r)
		}
		tombstones = tombstones[:0]
		return nil
	}
	var settleErr error
	move := func(r *kgo.Record, org []byte) bool {
		want := t.OrgPartition(org, n)
		if want == r.Partition || settleErr != nil {
			return false
		}
		produce(&kgo.Record{Topic: r.Topic, Partition: want, Key: r.Key, Value: r.Value, Headers: r.Headers})
		tombstones = append(tombstones, &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: r.Key})
		if len(tombstones) >= 10_000 {
			settleErr = settle()
		}
		return true
	}
	orgOf := func(topic string, r *kgo.Record) []byte {
		if topic == t.Dedup {
			org, _, _ := bytes.Cut(r.Key, []byte("/"))
			return org
		}
		var st struct {
			Org string `json:"o"`
		}
		if json.Unmarshal(r.Value, &st) != nil {
			return nil
		}
		return []byte(st.Org)
	}
	// One partition at a time, each with an index of the last offset of every key outside its
	// org's partition (movedIndex: in memory up to a million keys, then on disk), so memory
	// stays bounded however many states move.
	for _, topic := range []string{t.EntityState, t.Dedup} {
		for part := range n {
			if err := relayoutPartition(ctx, kc, log, topic, part, t, n, orgOf, move, &rep); err != nil {
				return rep, err
			}
			if settleErr != nil {
				return rep, settleErr
			}
		}
	}
	if err := settle(); err != nil {
		return rep, err
	}
	if err := settle(); err != nil { // the last tombstones
		return rep, err
	}
	return rep, nil
}

// relayoutPartition moves the records of one partition of topic that are outside their org's
// partition: first the last offset of every such key (a tombstone from an earlier run
// included), then the move of each key's last record, unless a tombstone.
func relayoutPartition(ctx context.Context, kc kafkax.Config, log *slog.Logger, topic string, part int32, t kafkax.Topics, n int32,
	orgOf func(string, *kgo.Record) []byte, move func(*kgo.Record, []byte) bool, rep *RelayoutReport) error {
	last := newMovedIndex(log, topic, part)
	defer last.close()
	var indexErr error
	err := readChangelog(ctx, kc, log, topic, part, func(r *kgo.Record) {
		if indexErr != nil {
			return
		}
		if r.Value == nil {
			_, ok, err := last.lastOffset(r.Key)
			if ok {
				err = last.set(r.Key, r.Offset)
			}
			indexErr = err
			return
		}
		org := orgOf(topic, r)
		if len(org) == 0 {
			if topic == t.EntityState {
				rep.Unplaceable++
			}
			return
		}
		if t.OrgPartition(org, n) != r.Partition {
			indexErr = last.set(r.Key, r.Offset)
		}
	})
	if err == nil {
		err = indexErr
	}
	if err != nil || last.empty() {
		return err
	}
	err = readChangelog(ctx, kc, log, topic, part, func(r *kgo.Record) {
		if indexErr != nil || r.Value == nil {
			return
		}
		at, ok, err := last.lastOffset(r.Key)
		if indexErr = err; !ok || at != r.Offset {
			return
		}
		if move(r, orgOf(topic, r)) {
			if topic == t.Dedup {
				rep.MarksMoved++
			} else {
				rep.StatesMoved++
			}
		}
	})
	if err == nil {
		err = indexErr
	}
	return err
}

// readChangelog reads one partition of a compacted topic from its start to its last stable offset.
func readChangelog(ctx context.Context, kc kafkax.Config, log *slog.Logger, topic string, part int32, fn func(*kgo.Record)) error {
	reader, err := kgo.NewClient(append(append(kc.BaseOpts(log), kafkax.ChangelogOpts()...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		return err
	}
	defer reader.Close()
	if _, err := kafkax.CatchUpFrom(ctx, reader, log, topic, []int32{part}, nil, fn); err != nil {
		return fmt.Errorf("read %s partition %d: %w", topic, part, err)
	}
	return nil
}
