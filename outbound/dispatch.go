package outbound

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// job is one delivery attempt to make; done runs once the delivery is settled for its source
// record (delivered, handed to a retry topic, dead-lettered or dropped).
type job struct {
	d    *Delivery
	done func()
	// sync, when set, receives the outcome instead of retries (POST /v1/erp/trigger).
	sync chan *outcome
	// dequeued gives back the job's share of its destination's queue.
	dequeued func()
}

// deliveriesOf maps one change with every enabled mapping of the use cases subscribed to it.
// A mapping that fails is a monitoring error of its own; the others deliver.
func (s *Service) deliveriesOf(ctx context.Context, ch *change, ucs []*compiledUseCase) []*job {
	var jobs []*job
	w := &ch.write
	made := 0
	for _, c := range ucs {
		for i := range c.mappings {
			m := &c.mappings[i]
			if !m.cfg.enabled() {
				continue
			}
			if made++; made > MaxDeliveriesPerChange {
				d := &Delivery{ID: DeliveryID(w.OrgID, c.uc.ID, m.id, w.EntityID, w.Version, w.EventID), OrgID: w.OrgID,
					IntegrationID: c.uc.IntegrationID, UseCaseID: c.uc.ID, MappingID: m.id, MappingName: m.cfg.Name,
					EventName: w.CatalogEvent(), EntityID: w.EntityID, EntitySchema: w.EntitySchema, CorrelationID: w.CorrelationID}
				s.record(ctx, d, rowMappingFailed(d, fmt.Errorf("%w: more than %d deliveries for one change; this and later mappings are not delivered",
					errMapping, MaxDeliveriesPerChange)))
				return jobs
			}
			d := &Delivery{
				ID: DeliveryID(w.OrgID, c.uc.ID, m.id, w.EntityID, w.Version, w.EventID), OrgID: w.OrgID,
				IntegrationID: c.uc.IntegrationID, UseCaseID: c.uc.ID, MappingID: m.id, MappingName: m.cfg.Name,
				WebhookID: m.cfg.Delivery.WebhookID, WebhookURL: m.cfg.Delivery.WebhookURL, EventName: w.CatalogEvent(),
				Source: SourceChange, EntitySchema: w.EntitySchema, EntityID: w.EntityID, Version: w.Version,
				EventID: w.EventID, CorrelationID: w.CorrelationID,
			}
			if c.cfg.ackTracking() {
				d.AckID = newAckID()
			}
			doc, err := input(ch, d.AckID, SourceChange)
			if err == nil {
				var body []byte
				mctx, cancel := context.WithTimeout(ctx, mappingTimeout)
				body, err = payload(mctx, m, doc, s.now())
				cancel()
				d.Payload = body
			}
			if err != nil {
				s.metrics.attempts.WithLabelValues("mapping_failed").Inc()
				s.record(ctx, d, rowMappingFailed(d, err))
				continue
			}
			jobs = append(jobs, &job{d: d})
		}
	}
	return jobs
}

// MaxDeliveriesPerChange bounds the fan-out of one change: enabled mappings over every outbound
// use case of the org subscribed to its event.
const MaxDeliveriesPerChange = 100

// mappingTimeout bounds one outbound mapping's evaluation.
const mappingTimeout = 500 * time.Millisecond

// destinations holds one set of lanes per destination (a webhook of an org): a slow or dead
// webhook fills its own lanes and queue, never another's.
type destinations struct {
	s  *Service
	mu sync.Mutex
	m  map[string]*destination
	// saturatedAt is when each org last had a webhook saturate: for a while after, its full lanes
	// are deferred without the dispatcher's wait, so one org's many slow webhooks cannot make the
	// dispatcher (which serves every org) wait a second each.
	saturatedAt map[string]time.Time
}

// orgWaitPause is how long after a saturation an org's full lanes are deferred without waiting.
const orgWaitPause = 30 * time.Second

func (ds *destinations) mayWait(org string, now time.Time) bool {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return now.Sub(ds.saturatedAt[org]) >= orgWaitPause
}

func (ds *destinations) saturated(org string, now time.Time) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if len(ds.saturatedAt) > maxDestinations {
		clear(ds.saturatedAt)
	}
	ds.saturatedAt[org] = now
}

type destination struct {
	lanes []chan *job
	// queued counts the payload bytes waiting in the lanes.
	queued atomic.Int64
	// saturated: a lane stayed full for DispatchWait; deliveries are deferred until it drains.
	saturated atomic.Bool
}

func newDestinations(s *Service) *destinations {
	return &destinations{s: s, m: map[string]*destination{}, saturatedAt: map[string]time.Time{}}
}

// maxDestinations bounds the lanes kept; further destinations share one.
const maxDestinations = 4096

func (ds *destinations) get(ctx context.Context, key string) *destination {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if d, ok := ds.m[key]; ok {
		return d
	}
	if len(ds.m) >= maxDestinations {
		key = "(overflow)"
		if d, ok := ds.m[key]; ok {
			return d
		}
	}
	n := ds.s.cfg.DestinationConcurrency
	d := &destination{lanes: make([]chan *job, n)}
	for i := range d.lanes {
		d.lanes[i] = make(chan *job, max(1, ds.s.cfg.DestinationQueue/n))
		go ds.s.lane(ctx, d.lanes[i])
	}
	ds.m[key] = d
	return d
}

// destinationKey names a delivery's lanes: the org's webhook definition, or the bare URL. Two
// webhooks on one host are two destinations: one answering slowly holds only its own lanes.
func destinationKey(d *Delivery) string {
	if d.WebhookID != "" {
		return d.OrgID + "/webhook/" + d.WebhookID
	}
	return d.OrgID + "/url/" + d.WebhookURL
}

// dispatch queues a delivery on its destination's lane for its entity (so one entity's
// deliveries to one destination go out in order). A full lane makes the dispatcher wait up to
// DispatchWait: a fast webhook under a burst drains in time, and the wait slows the consumer
// down instead of deferring work. A lane still full then marks its destination saturated: from
// then until the lane is half empty, deliveries to it move to the first retry topic at once,
// without counting as an attempt, so a slow webhook costs the dispatcher one wait, not one per
// delivery.
func (s *Service) dispatch(ctx context.Context, j *job) {
	dest := s.dests.get(ctx, destinationKey(j.d))
	h := fnv.New32a()
	h.Write([]byte(j.d.OrgID + "/" + j.d.EntityID))
	lane := dest.lanes[int(h.Sum32()%uint32(len(dest.lanes)))]
	size := int64(len(j.d.Payload))
	if dest.saturated.Load() {
		if len(lane) > cap(lane)/2 {
			s.deferBusy(ctx, j)
			return
		}
		dest.saturated.Store(false)
	}
	if dest.queued.Load()+size > s.cfg.DestinationQueueBytes {
		s.deferBusy(ctx, j)
		return
	}
	// The lane goroutine reads dequeued: it is set before the job is handed over.
	dest.queued.Add(size)
	j.dequeued = func() { dest.queued.Add(-size) }
	select {
	case lane <- j:
		return
	default:
	}
	if !s.dests.mayWait(j.d.OrgID, time.Now()) {
		dest.queued.Add(-size)
		j.dequeued = nil
		dest.saturated.Store(true)
		s.deferBusy(ctx, j)
		return
	}
	wait := time.NewTimer(s.cfg.DispatchWait)
	defer wait.Stop()
	select {
	case lane <- j:
	case <-wait.C:
		dest.queued.Add(-size)
		j.dequeued = nil
		dest.saturated.Store(true)
		s.dests.saturated(j.d.OrgID, time.Now())
		s.deferBusy(ctx, j)
	case <-ctx.Done():
	}
}

func (s *Service) deferBusy(ctx context.Context, j *job) {
	s.metrics.deferred.Inc()
	s.defer_(ctx, j, "destination busy")
}

// lane sends its jobs one after another.
func (s *Service) lane(ctx context.Context, jobs <-chan *job) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-jobs:
			if j.dequeued != nil {
				j.dequeued()
			}
			s.run(ctx, j)
		}
	}
}

// retryDelay is the wait before attempt n+1 (n attempts made): the delay of its retry topic
// with ±20% jitter, at least the receiver's Retry-After.
func retryDelay(delays []time.Duration, n int, after time.Duration) (time.Duration, int) {
	tier := min(n-1, len(delays)-1)
	for after > delays[tier] && tier < len(delays)-1 {
		tier++
	}
	d := delays[tier]
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return max(d, min(after, delays[len(delays)-1])), tier
}
