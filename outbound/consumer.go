package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/erpstream/erpstream/internal/envelope"
)

type topicPartition struct {
	topic     string
	partition int32
}

// progress tracks one assigned partition: which of its polled records are done, so the committed
// offset never passes a record whose deliveries are still waiting or in flight. A crash
// redelivers what was not committed (at least once, with the same webhook-id).
type progress struct {
	tp      topicPartition
	epoch   int32
	offsets []int64 // polled, in order
	done    map[int64]bool
	held    int // retry records waiting for their due time
}

// Run consumes entity changes and the retry topics until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	topics := append([]string{s.cfg.Topics.Entities}, s.cfg.Topics.OutboundRetries...)
	r := &runner{s: s, parts: map[topicPartition]*progress{}}
	cl, err := kgo.NewClient(append(s.cfg.Kafka.ClientOpts(s.log, "outbound"),
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.SessionTimeout(15*time.Second),
		kgo.ConsumeTopics(topics...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond),
		kgo.FetchMaxPartitionBytes(1<<20),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			if ps := assigned[s.cfg.Topics.Entities]; len(ps) > 0 {
				s.cfg.Acks.own(ps, true)
			}
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
			r.commit(ctx, cl)
			r.drop(revoked)
			s.cfg.Acks.own(revoked[s.cfg.Topics.Entities], false)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			r.drop(lost)
			s.cfg.Acks.own(lost[s.cfg.Topics.Entities], false)
		}),
	)...)
	if err != nil {
		return fmt.Errorf("outbound: %w", err)
	}
	defer cl.Close()
	r.cl = cl
	s.log.Info("outbound consuming", "topics", topics, "group", s.cfg.Group)

	changes := make(chan []*kgo.Record, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.prepareLoop(ctx, changes, r.finish) }()
	go func() { defer wg.Done(); r.commitLoop(ctx) }()
	go s.cfg.Acks.sweep(ctx, s)
	go s.projected.run(ctx)
	defer wg.Wait()
	defer close(changes)

	for {
		fetches := cl.PollRecords(ctx, 2000)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				s.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
			}
		})
		var batch []*kgo.Record
		fetches.EachRecord(func(rec *kgo.Record) {
			if !r.track(rec) {
				return
			}
			if rec.Topic == s.cfg.Topics.Entities {
				batch = append(batch, rec)
				return
			}
			r.retryRecord(ctx, rec)
		})
		if len(batch) > 0 {
			select {
			case changes <- batch:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// runner is one Run's consumer state.
type runner struct {
	s     *Service
	cl    *kgo.Client
	mu    sync.Mutex
	parts map[topicPartition]*progress
}

// track registers a polled record; false when its partition is no longer ours.
func (r *runner) track(rec *kgo.Record) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	tp := topicPartition{rec.Topic, rec.Partition}
	p := r.parts[tp]
	if p == nil {
		p = &progress{tp: tp, done: map[int64]bool{}}
		r.parts[tp] = p
	}
	p.epoch = rec.LeaderEpoch
	p.offsets = append(p.offsets, rec.Offset)
	return true
}

// finish marks a record done.
func (r *runner) finish(rec *kgo.Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.parts[topicPartition{rec.Topic, rec.Partition}]; p != nil {
		p.done[rec.Offset] = true
	}
}

func (r *runner) drop(parts map[string][]int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for t, ps := range parts {
		for _, p := range ps {
			delete(r.parts, topicPartition{t, p})
		}
	}
}

// commit commits each partition's done prefix.
func (r *runner) commit(ctx context.Context, cl *kgo.Client) {
	offsets := map[string]map[int32]kgo.EpochOffset{}
	r.mu.Lock()
	for tp, p := range r.parts {
		n := 0
		for n < len(p.offsets) && p.done[p.offsets[n]] {
			delete(p.done, p.offsets[n])
			n++
		}
		if n == 0 {
			continue
		}
		next := p.offsets[n-1] + 1
		p.offsets = append(p.offsets[:0], p.offsets[n:]...)
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		offsets[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: p.epoch, Offset: next}
	}
	r.mu.Unlock()
	if len(offsets) == 0 {
		return
	}
	cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
		if err != nil && ctx.Err() == nil {
			r.s.log.Warn("outbound offset commit failed; the next one carries these offsets", "err", err)
		}
	})
}

func (r *runner) commitLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// A final commit of what is done, with a fresh context: the group is still ours.
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r.commit(cctx, r.cl)
			cancel()
			return
		case <-t.C:
			r.commit(ctx, r.cl)
		}
	}
}

// retryRecord schedules a delivery read from a retry topic for its due time. While a partition
// holds a record that is not due, it is not fetched further: its later records come due later.
func (r *runner) retryRecord(ctx context.Context, rec *kgo.Record) {
	var d Delivery
	if err := json.Unmarshal(rec.Value, &d); err != nil {
		r.s.log.Error("undecodable retry record; skipped", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		r.finish(rec)
		return
	}
	wait := time.Until(d.Due())
	if wait <= 0 {
		r.s.dispatch(ctx, &job{d: &d, done: func() { r.finish(rec) }})
		return
	}
	tp := topicPartition{rec.Topic, rec.Partition}
	r.mu.Lock()
	p := r.parts[tp]
	if p != nil {
		p.held++
	}
	r.mu.Unlock()
	r.cl.PauseFetchPartitions(map[string][]int32{rec.Topic: {rec.Partition}})
	time.AfterFunc(wait, func() {
		if ctx.Err() != nil {
			return
		}
		r.s.dispatch(ctx, &job{d: &d, done: func() { r.finish(rec) }})
		r.mu.Lock()
		resume := false
		if p != nil {
			p.held--
			resume = p.held == 0 && r.parts[tp] == p
		}
		r.mu.Unlock()
		if resume {
			r.cl.ResumeFetchPartitions(map[string][]int32{rec.Topic: {rec.Partition}})
		}
	})
}

// writeOf decodes an entity write record.
func writeOf(rec *kgo.Record) (envelope.EntityWrite, error) {
	var w envelope.EntityWrite
	err := json.Unmarshal(rec.Value, &w)
	return w, err
}
