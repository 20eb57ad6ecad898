// Package quota holds the per-org budgets of the work erpstream accepts: events and bytes per
// minute (token buckets), and bytes in flight to Kafka. Counting events and bytes rather than
// requests is what keeps one tenant's bulk load (an NDJSON stream, a bulk replay) from starving
// another's requests: a stream of a million events costs a million events, not one request.
package quota

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"
)

// Limits of one org. Zero fields take the defaults; negative disables that budget.
type Limits struct {
	EventsPerMinute int   // default 600,000 (10,000 a second)
	BytesPerMinute  int64 // default 2 GiB
	InFlightBytes   int64 // bytes handed to Kafka and not yet acknowledged; default 32 MiB
}

func (l Limits) withDefaults() Limits {
	if l.EventsPerMinute == 0 {
		l.EventsPerMinute = 600_000
	}
	if l.BytesPerMinute == 0 {
		l.BytesPerMinute = 2 << 30
	}
	if l.InFlightBytes == 0 {
		l.InFlightBytes = 32 << 20
	}
	return l
}

// Budgets are every org's budgets in this process.
type Budgets struct {
	limits Limits
	now    func() time.Time

	mu   sync.Mutex
	orgs map[string]*org
}

type org struct {
	events, bytes bucket
	inFlight      int64
	released      chan struct{} // closed and replaced whenever inFlight drops
	// heldUntil: the processors say the org's events take more than its share of mapping time
	// while other orgs wait; until then its new events wait too.
	heldUntil time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New makes budgets with the given limits.
func New(l Limits) *Budgets {
	return &Budgets{limits: l.withDefaults(), now: time.Now, orgs: map[string]*org{}}
}

// Limits returns the limits in force.
func (b *Budgets) Limits() Limits { return b.limits }

func (b *Budgets) orgLocked(id string, now time.Time) *org {
	o := b.orgs[id]
	if o == nil {
		o = &org{events: bucket{float64(b.limits.EventsPerMinute), now}, bytes: bucket{float64(b.limits.BytesPerMinute), now},
			released: make(chan struct{})}
		b.orgs[id] = o
	}
	return o
}

// refill tops a bucket up for the time passed; capacity is one minute's worth.
func (k *bucket) refill(perMinute float64, now time.Time) {
	k.tokens = math.Min(perMinute, k.tokens+now.Sub(k.last).Seconds()*perMinute/60)
	k.last = now
}

// wait is how long until the bucket holds n tokens (n above capacity counts as capacity: a
// single large request must still get through once the bucket is full).
func (k *bucket) wait(n, perMinute float64) time.Duration {
	n = math.Min(n, perMinute)
	if k.tokens >= n {
		return 0
	}
	return time.Duration((n - k.tokens) / (perMinute / 60) * float64(time.Second))
}

// Take spends events and bytes of org's per-minute budgets, or spends nothing and says how long
// to wait until it could.
func (b *Budgets) Take(orgID string, events int, bytes int64) (retryAfter time.Duration) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	o := b.orgLocked(orgID, now)
	wait := o.heldUntil.Sub(now)
	if b.limits.EventsPerMinute > 0 {
		o.events.refill(float64(b.limits.EventsPerMinute), now)
		wait = max(wait, o.events.wait(float64(events), float64(b.limits.EventsPerMinute)))
	}
	if b.limits.BytesPerMinute > 0 {
		o.bytes.refill(float64(b.limits.BytesPerMinute), now)
		wait = max(wait, o.bytes.wait(float64(bytes), float64(b.limits.BytesPerMinute)))
	}
	if wait > 0 {
		return wait
	}
	if b.limits.EventsPerMinute > 0 {
		o.events.tokens -= math.Min(float64(events), float64(b.limits.EventsPerMinute))
	}
	if b.limits.BytesPerMinute > 0 {
		o.bytes.tokens -= math.Min(float64(bytes), float64(b.limits.BytesPerMinute))
	}
	return 0
}

// HoldBack makes Take refuse org's events until until (a zero time releases them): the
// processors say its events take more than its share of mapping time while others wait.
func (b *Budgets) HoldBack(orgID string, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.orgLocked(orgID, b.now()).heldUntil = until
}

// HeldBack is how long org's events are still held back (0: they are not).
func (b *Budgets) HeldBack(orgID string) time.Duration {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if o := b.orgs[orgID]; o != nil && o.heldUntil.After(now) {
		return o.heldUntil.Sub(now)
	}
	return 0
}

// TakeWait is Take that waits for the budget (a stream's backpressure), up to ctx's end.
func (b *Budgets) TakeWait(ctx context.Context, orgID string, events int, bytes int64) error {
	for {
		wait := b.Take(orgID, events, bytes)
		if wait == 0 {
			return nil
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("waiting for the org's event budget: %w", ctx.Err())
		}
	}
}

// Hold reserves bytes of org's in-flight budget, waiting while the org has as much in flight
// as it may (a request larger than the budget goes through alone). The returned release gives
// the bytes back; call it once the broker acknowledged or failed them.
func (b *Budgets) Hold(ctx context.Context, orgID string, bytes int64) (release func(), err error) {
	if b.limits.InFlightBytes < 0 {
		return func() {}, nil
	}
	for {
		b.mu.Lock()
		o := b.orgLocked(orgID, b.now())
		if o.inFlight == 0 || o.inFlight+bytes <= b.limits.InFlightBytes {
			o.inFlight += bytes
			b.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { b.release(o, bytes) }) }, nil
		}
		released := o.released
		b.mu.Unlock()
		select {
		case <-released:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the org's in-flight budget: %w", ctx.Err())
		}
	}
}

func (b *Budgets) release(o *org, bytes int64) {
	b.mu.Lock()
	o.inFlight -= bytes
	close(o.released)
	o.released = make(chan struct{})
	b.mu.Unlock()
}
