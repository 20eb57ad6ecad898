package outbound

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
)

// pendingChange is a change some enabled outbound use case subscribes to.
type pendingChange struct {
	rec      *kgo.Record
	write    envelope.EntityWrite
	useCases []*compiledUseCase
}

// preparedBatch is one poll's changes that some use case subscribes to, and the entities they
// left, once read (ready closed).
type preparedBatch struct {
	pending []*pendingChange
	stored  map[EntityVersion]StoredEntity
	ready   chan struct{}
}

// maxBatchesReading bounds the polls whose entities are being read at once: reading waits for
// the projector (about its flush interval), so several polls wait together.
const maxBatchesReading = 8

// prepareLoop turns polled entity writes into deliveries. Polls wait for their entities
// concurrently and are dispatched in poll order, so the deliveries of one entity reach their
// lane in change order.
func (s *Service) prepareLoop(ctx context.Context, batches <-chan []*kgo.Record, finish func(*kgo.Record)) {
	order := make(chan *preparedBatch, maxBatchesReading)
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		for pb := range order {
			select {
			case <-pb.ready:
			case <-ctx.Done():
				continue
			}
			s.dispatchBatch(ctx, pb, finish)
		}
	}()
	for batch := range batches {
		pb := s.match(batch, finish)
		if pb == nil {
			continue
		}
		go func() {
			pb.stored = s.awaitProjected(ctx, pb.pending)
			close(pb.ready)
		}()
		order <- pb
	}
	close(order)
	<-dispatched
}

// match keeps the writes some enabled outbound use case subscribes to; the others are done.
func (s *Service) match(recs []*kgo.Record, finish func(*kgo.Record)) *preparedBatch {
	snap := s.cfg.Registry.Snapshot()
	var pending []*pendingChange
	for _, rec := range recs {
		// Most writes belong to orgs without outbound use cases: their header says so (records
		// without it, written before it existed, are decoded).
		if org := headerOf(rec, envelope.HeaderOrg); org != "" && !s.matcher.anyFor(snap, org) {
			finish(rec)
			continue
		}
		w, err := writeOf(rec)
		if err != nil {
			s.log.Error("undecodable entity write; skipped", "partition", rec.Partition, "offset", rec.Offset, "err", err)
			finish(rec)
			continue
		}
		if w.Change == "" {
			finish(rec)
			continue
		}
		ucs := s.matcher.match(snap, w.OrgID, w.CatalogEvent())
		if len(ucs) == 0 {
			finish(rec)
			continue
		}
		pending = append(pending, &pendingChange{rec: rec, write: w, useCases: ucs})
	}
	if len(pending) == 0 {
		return nil
	}
	return &preparedBatch{pending: pending, ready: make(chan struct{})}
}

// dispatchBatch maps a batch's changes and dispatches their deliveries; a record is done once
// all its deliveries are.
func (s *Service) dispatchBatch(ctx context.Context, pb *preparedBatch, finish func(*kgo.Record)) {
	if ctx.Err() != nil {
		return
	}
	for _, pc := range pb.pending {
		ch := &change{write: pc.write, entity: pb.stored[EntityVersion{pc.write.EntityID, pc.write.Version}]}
		if ch.entity.Attributes == nil { // never stored within the wait: the write's own attributes
			ch.entity = StoredEntity{Version: pc.write.Version, Deleted: pc.write.Op != envelope.OpUpsert,
				Attributes: pc.write.Attributes, UniqueIdentifiers: pc.write.UniqueIdentifiers}
		}
		s.metrics.lag.Observe(time.Since(time.UnixMilli(pc.write.WrittenAtMs)).Seconds())
		jobs := s.deliveriesOf(ctx, ch, pc.useCases)
		for _, j := range jobs {
			j.d.TraceParent = headerOf(pc.rec, "traceparent")
		}
		if len(jobs) == 0 {
			finish(pc.rec)
			continue
		}
		left := atomic.Int32{}
		left.Store(int32(len(jobs)))
		rec := pc.rec
		for _, j := range jobs {
			j.done = func() {
				if left.Add(-1) == 0 {
					finish(rec)
				}
			}
			s.dispatch(ctx, j)
		}
	}
}

// awaitProjected reads the entities the changes produced, once the projector has stored them
// (its committed offsets passed the writes), waiting at most EntityWait for that; a ClickHouse
// error waits on: nothing is delivered with an entity erpstream could not read. A write the
// projector did not store (one that added nothing) reads the entity as it is.
func (s *Service) awaitProjected(ctx context.Context, pending []*pendingChange) map[EntityVersion]StoredEntity {
	type scope struct{ org, schema string }
	want := map[scope][]EntityVersion{}
	upTo := map[int32]int64{}
	for _, pc := range pending {
		sc := scope{pc.write.OrgID, pc.write.EntitySchema}
		want[sc] = append(want[sc], EntityVersion{pc.write.EntityID, pc.write.Version})
		upTo[pc.rec.Partition] = max(upTo[pc.rec.Partition], pc.rec.Offset)
	}
	deadline := time.Now().Add(s.cfg.EntityWait)
	if !s.projected.wait(ctx, upTo, deadline) && ctx.Err() == nil {
		s.log.Warn("the projector has not stored these changes within the wait; delivered with the entities as stored now",
			"changes", len(pending), "wait", s.cfg.EntityWait)
	}
	out := map[EntityVersion]StoredEntity{}
	backoff := 200 * time.Millisecond
	warned := false
	for sc, writes := range want {
		for {
			got, err := s.cfg.Entities.Changed(ctx, sc.org, sc.schema, writes)
			if err == nil {
				for w, e := range got {
					out[w] = e
				}
				break
			}
			if ctx.Err() != nil {
				return out
			}
			if !warned {
				s.log.Warn("entities unreadable; outbound deliveries wait", "err", err)
				warned = true
			}
			select {
			case <-ctx.Done():
				return out
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
	return out
}

func headerOf(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
