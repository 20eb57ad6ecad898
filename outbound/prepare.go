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

// prepare matches a poll's entity writes to outbound use cases, waits until the projector has
// stored the entities they changed, maps them and dispatches the deliveries. finish marks a
// record done once all its deliveries are.
func (s *Service) prepare(ctx context.Context, recs []*kgo.Record, finish func(*kgo.Record)) {
	snap := s.cfg.Registry.Snapshot()
	var pending []*pendingChange
	for _, rec := range recs {
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
		return
	}
	stored := s.awaitProjected(ctx, pending)
	if ctx.Err() != nil {
		return
	}
	for _, pc := range pending {
		ch := &change{write: pc.write, entity: stored[pc.write.EntityID]}
		if ch.entity.Attributes == nil { // never stored within the wait: the write's own attributes
			ch.entity = StoredEntity{Version: pc.write.Version, Deleted: pc.write.Op != envelope.OpUpsert,
				Attributes: pc.write.Attributes, UniqueIdentifiers: pc.write.UniqueIdentifiers}
		}
		s.metrics.lag.Observe(time.Since(time.UnixMilli(pc.write.WrittenAtMs)).Seconds())
		jobs := s.deliveriesOf(ctx, ch, pc.useCases)
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

// awaitProjected reads the entities the changes produced, waiting while the projector has not
// stored them yet, at most EntityWait (a ClickHouse error waits on: nothing is delivered with an
// entity erpstream could not read).
func (s *Service) awaitProjected(ctx context.Context, pending []*pendingChange) map[string]StoredEntity {
	type scope struct{ org, schema string }
	want := map[scope]map[string]uint64{}
	for _, pc := range pending {
		sc := scope{pc.write.OrgID, pc.write.EntitySchema}
		if want[sc] == nil {
			want[sc] = map[string]uint64{}
		}
		if v := want[sc][pc.write.EntityID]; pc.write.Version > v {
			want[sc][pc.write.EntityID] = pc.write.Version
		}
	}
	out := map[string]StoredEntity{}
	deadline := time.Now().Add(s.cfg.EntityWait)
	backoff := 50 * time.Millisecond
	warned := false
	for {
		missing := 0
		failed := false
		for sc, versions := range want {
			got, err := s.cfg.Entities.Changed(ctx, sc.org, sc.schema, versions)
			if err != nil {
				if ctx.Err() != nil {
					return out
				}
				failed = true
				if !warned {
					s.log.Warn("entities unreadable; outbound deliveries wait", "err", err)
					warned = true
				}
				continue
			}
			for id, e := range got {
				out[id] = e
				delete(versions, id)
			}
			missing += len(versions)
		}
		if missing == 0 && !failed {
			return out
		}
		if !failed && time.Now().After(deadline) {
			s.log.Warn("entities not stored within the wait; delivered with the change's attributes", "entities", missing, "wait", s.cfg.EntityWait)
			return out
		}
		select {
		case <-ctx.Done():
			return out
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}
