// Package projector writes entity writes and monitoring events from Kafka into ClickHouse.
//
// Offsets are committed only after ClickHouse accepted the batch. A crash between insert and
// commit re-inserts the batch; the tables collapse such duplicates (idempotent row keys with
// ReplacingMergeTree) and readers use FINAL, so nothing a user sees is counted twice.
package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/erpstream/erpstream/internal/jsonata"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/lru"
	"github.com/erpstream/erpstream/internal/tracing"
)

// Sink stores decoded rows, one insert per table and batch; implemented by ClickHouseSink.
type Sink interface {
	WriteEntities(ctx context.Context, rows []envelope.EntityWrite) error
	WriteMonitoring(ctx context.Context, rows []envelope.MonitoringEvent) error
	WriteRawEvents(ctx context.Context, rows []envelope.Event) error
	WriteAccessLogs(ctx context.Context, rows []envelope.AccessLog) error
}

// Stored is what the projector reads back before it writes; implemented by ClickHouseStored.
type Stored interface {
	// ExistingMonitoring returns which of the rows are stored already: after a crash between an
	// insert and its offset commit, or an insert whose outcome is unknown, the rows already stored
	// must not reach the aggregates a second time.
	ExistingMonitoring(ctx context.Context, rows []envelope.MonitoringEvent) (map[string]bool, error)
	// CurrentEntities returns the stored state of entities by id, per org and schema.
	CurrentEntities(ctx context.Context, ids map[EntityScope][]string) (map[string]StoredEntity, error)
}

// EntityScope is an org and entity schema: the prefix of the entities table's key.
type EntityScope struct{ OrgID, Schema string }

// StoredEntity is an entity's latest stored row.
type StoredEntity struct {
	Version           uint64
	Deleted           bool
	UniqueIdentifiers []byte
	Attributes        []byte
	AttributeVersions []byte
}

// DefaultGroup is the consumer group of every instance.
const DefaultGroup = "erpstream-projector"

// Config of the projector.
type Config struct {
	Kafka  kafkax.Config
	Topics kafkax.Topics
	Group  string // default "erpstream-projector"
	// A batch flushes at MaxRows records, MaxBytes of record values or FlushInterval after its
	// first record, whichever comes first. 18.16 pays a large fixed cost per insert, so batches
	// should not be tiny; MaxBytes keeps raw events with large payloads from growing memory.
	MaxRows       int
	MaxBytes      int
	FlushInterval time.Duration
	Sink          Sink
	Stored        Stored
	Log           *slog.Logger
	// AfterInsert, when set, runs after a batch is stored and before its offsets are committed;
	// an error stops the projector there. Tests use it to crash at the worst moment.
	AfterInsert func() error
	// Retention drops old partitions once an hour (nil: no retention).
	Retention func(ctx context.Context) error
	// Metrics registers the projector's metrics (nil: not exported).
	Metrics prometheus.Registerer
	// EntityCache is how many entities' stored rows the projector keeps to patch their next
	// writes without reading ClickHouse (default DefaultEntityCache; negative: none).
	EntityCache int
}

// Projector is the ClickHouse writer service.
type Projector struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// unsure marks monitoring partitions whose next batch may repeat rows already stored: newly
	// assigned ones (the previous owner may have crashed between insert and commit).
	unsure   map[int32]bool
	rows     *prometheus.CounterVec
	failures prometheus.Counter
	skipped  prometheus.Counter
	// commitFailures counts failed offset commits (each retried).
	commitFailures prometheus.Counter
	batchTime      prometheus.Histogram
	// cache holds the rows of entities this projector wrote lately (entitycache.go).
	cache       *lru.Cache[string, StoredEntity]
	cacheLookup *prometheus.CounterVec
}

// New validates cfg.
func New(cfg Config) (*Projector, error) {
	if cfg.Sink == nil || cfg.Stored == nil {
		return nil, errors.New("projector: sink and stored state are required")
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 20000
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = 64 << 20
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.EntityCache == 0 {
		cfg.EntityCache = DefaultEntityCache
	}
	p := &Projector{cfg: cfg, log: cfg.Log.With("component", "projector"), unsure: map[int32]bool{},
		cache: lru.New[string, StoredEntity](cfg.EntityCache),
		cacheLookup: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpstream_projector_entity_cache_lookups_total",
			Help: "Entities an update batch needed the stored row of, by where it came from (cache, clickhouse)."}, []string{"source"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpstream_projector_rows_total",
			Help: "Rows stored in ClickHouse, by kind (raw_events, entities, monitoring_events, access_logs)."}, []string{"kind"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_projector_insert_failures_total",
			Help: "Failed ClickHouse batch inserts; each is retried with backoff while consumption pauses."}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_projector_commit_failures_total",
			Help: "Failed offset commits after a stored batch; each is retried, and the next batch's commit covers it."}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_projector_rows_already_stored_total",
			Help: "Monitoring rows an earlier attempt (or a crashed owner) had stored, not inserted again."}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "erpstream_projector_batch_duration_seconds",
			Help: "Time to store one batch in ClickHouse, retries included.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
	}
	for _, c := range []prometheus.Collector{p.rows, p.failures, p.skipped, p.commitFailures, p.batchTime, p.cacheLookup} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("projector metrics: %w", err)
		}
	}
	return p, nil
}

// Run consumes until ctx ends.
func (p *Projector) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(p.cfg.Kafka.ClientOpts(p.log, "projector"),
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.SessionTimeout(15*time.Second), // a crashed instance's partitions move after 15 s
		kgo.ConsumeTopics(p.cfg.Topics.Entities, p.cfg.Topics.Monitoring, p.cfg.Topics.Events, p.cfg.Topics.Access),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, assigned map[string][]int32) {
			p.cache.Clear() // what another projector wrote meanwhile is not in it
			p.mu.Lock()
			for _, part := range assigned[p.cfg.Topics.Monitoring] {
				p.unsure[part] = true
			}
			p.mu.Unlock()
		}),
		kgo.OnPartitionsRevoked(func(context.Context, *kgo.Client, map[string][]int32) { p.cache.Clear() }),
		kgo.OnPartitionsLost(func(context.Context, *kgo.Client, map[string][]int32) { p.cache.Clear() }),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
		// A fetch may overshoot a batch's byte budget by at most this much.
		kgo.FetchMaxBytes(int32(min(p.cfg.MaxBytes/4, 16<<20))),
		kgo.FetchMaxPartitionBytes(int32(min(p.cfg.MaxBytes/4, 1<<20))),
	)...)
	if err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	defer cl.Close()
	p.log.Info("projector consuming", "topics", []string{p.cfg.Topics.Entities, p.cfg.Topics.Monitoring, p.cfg.Topics.Events, p.cfg.Topics.Access}, "group", p.cfg.Group)
	if p.cfg.Retention != nil {
		go p.retention(ctx)
	}

	for {
		recs := p.collect(ctx, cl)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		if len(recs) > 0 {
			if err := p.flush(ctx, recs); err != nil {
				cl.AllowRebalance()
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if p.cfg.AfterInsert != nil {
				if err := p.cfg.AfterInsert(); err != nil {
					cl.AllowRebalance()
					return err
				}
			}
			p.commit(ctx, cl)
		}
		cl.AllowRebalance()
	}
}

// commit commits everything polled and stored so far, retrying briefly: a broker restart or a
// coordinator move fails a commit or two. A commit that still fails is carried by the next
// batch's (offsets are per partition, the next commit covers them), and at worst rows are
// stored again after a rebalance, which the tables collapse.
func (p *Projector) commit(ctx context.Context, cl *kgo.Client) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := cl.CommitUncommittedOffsets(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		p.commitFailures.Inc()
		if attempt == 5 {
			p.log.Warn("offset commit failed; the next batch's commit carries these offsets", "attempts", attempt, "err", err)
			return
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff *= 2
	}
}

// collect polls until a batch is full or its age reaches FlushInterval.
func (p *Projector) collect(ctx context.Context, cl *kgo.Client) []*kgo.Record {
	var recs []*kgo.Record
	var deadline time.Time
	size := 0
	for len(recs) < p.cfg.MaxRows && size < p.cfg.MaxBytes {
		if len(recs) > 0 && !time.Now().Before(deadline) {
			break
		}
		fetches := p.poll(ctx, cl, p.cfg.MaxRows-len(recs), deadline)
		if ctx.Err() != nil {
			return nil
		}
		if len(recs) == 0 && fetches.NumRecords() == 0 {
			// Nothing is held, so let a pending rebalance run. Polling again without this
			// blocked the group's rejoin forever after a broker restart (BlockRebalanceOnPoll
			// holds rebalances from every poll until AllowRebalance).
			cl.AllowRebalance()
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		if len(recs) == 0 && fetches.NumRecords() > 0 {
			deadline = time.Now().Add(p.cfg.FlushInterval)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			recs = append(recs, r)
			size += len(r.Value)
		})
	}
	return recs
}

// poll waits for records, until deadline when one is set (a batch is open).
func (p *Projector) poll(ctx context.Context, cl *kgo.Client, max int, deadline time.Time) kgo.Fetches {
	if deadline.IsZero() {
		return cl.PollRecords(ctx, max)
	}
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return cl.PollRecords(pctx, max)
}

// batch is one flush's decoded rows.
type batch struct {
	entities   []envelope.EntityWrite
	monitoring []envelope.MonitoringEvent
	monLast    map[int32]string // per monitoring partition in the batch, the id of its last row
	raw        []envelope.Event
	access     []envelope.AccessLog
	// current is every entity's stored row once the batch is stored (set by patch); it goes into
	// the cache only when ClickHouse has taken the batch.
	current map[string]StoredEntity
}

// flush decodes and writes one batch, retrying with backoff until ClickHouse takes it or ctx ends:
// a ClickHouse outage pauses consumption and loses nothing.
func (p *Projector) flush(ctx context.Context, recs []*kgo.Record) error {
	b := batch{monLast: map[int32]string{}}
	for _, r := range recs {
		var err error
		switch r.Topic {
		case p.cfg.Topics.Entities:
			var w envelope.EntityWrite
			if err = envelope.Decode(r.Value, &w); err == nil {
				b.entities = append(b.entities, w)
			}
		case p.cfg.Topics.Monitoring:
			var m envelope.MonitoringEvent
			if err = envelope.Decode(r.Value, &m); err == nil {
				b.monitoring = append(b.monitoring, m)
				b.monLast[r.Partition] = m.ID
			}
		case p.cfg.Topics.Events:
			if kafkax.IsCopy(r) {
				// A processor's copy (forwarded, or mapped away) of an event stored from its original.
				continue
			}
			var e envelope.Event
			if err = envelope.Decode(r.Value, &e); err == nil {
				b.raw = append(b.raw, e)
			}
		case p.cfg.Topics.Access:
			var a envelope.AccessLog
			if err = envelope.Decode(r.Value, &a); err == nil {
				b.access = append(b.access, a)
			}
		}
		if err != nil {
			p.log.Error("undecodable record; skipped", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		}
	}
	p.mu.Lock()
	check := false
	for part := range b.monLast {
		check = check || p.unsure[part]
	}
	p.mu.Unlock()
	if tracing.Exporting() {
		var span trace.Span
		ctx, span = tracing.Tracer().Start(ctx, "store batch in ClickHouse", trace.WithLinks(tracing.Links(recs, 128)...),
			trace.WithAttributes(attribute.Int("erpstream.entities", len(b.entities)), attribute.Int("erpstream.monitoring", len(b.monitoring)),
				attribute.Int("erpstream.raw_events", len(b.raw))))
		defer span.End()
	}
	backoff := 200 * time.Millisecond
	batchStart := time.Now()
	for attempt := 1; ; attempt++ {
		start := time.Now()
		// After an assignment, and on every retry (an insert may have failed after the server
		// stored it), keep out the monitoring rows that are stored already.
		existing, err := p.write(ctx, &b, check || attempt > 1)
		if err == nil {
			p.rows.WithLabelValues("raw_events").Add(float64(len(b.raw)))
			p.rows.WithLabelValues("entities").Add(float64(len(b.entities)))
			p.rows.WithLabelValues("monitoring_events").Add(float64(len(b.monitoring) - len(existing)))
			p.rows.WithLabelValues("access_logs").Add(float64(len(b.access)))
			p.skipped.Add(float64(len(existing)))
			for id, row := range b.current {
				p.cache.Put(id, row)
			}
			p.batchTime.Observe(time.Since(batchStart).Seconds())
			// A crashed owner's insert covers a contiguous run from the committed offset, so once
			// a partition's last row in a batch was new, nothing after it can be stored already.
			p.mu.Lock()
			for part, last := range b.monLast {
				if !existing[last] {
					delete(p.unsure, part)
				}
			}
			p.mu.Unlock()
			p.log.Debug("batch written", "entities", len(b.entities), "monitoring", len(b.monitoring), "raw", len(b.raw), "ms", time.Since(start).Milliseconds())
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.failures.Inc()
		p.log.Warn("clickhouse insert failed; retrying", "attempt", attempt, "entities", len(b.entities), "monitoring", len(b.monitoring), "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second) // resume within seconds of ClickHouse being back
	}
}

func (p *Projector) write(ctx context.Context, b *batch, checkExisting bool) (existing map[string]bool, err error) {
	// Raw events and entities before monitoring: a monitoring row saying "updated" is never
	// visible before what it reports. The two are inserted at once (each is its own table), as
	// are monitoring rows and access logs after them: a flush waits for the slower of each pair,
	// not for the sum.
	if err := both(func() error {
		if len(b.raw) == 0 {
			return nil
		}
		return p.cfg.Sink.WriteRawEvents(ctx, b.raw)
	}, func() error {
		if len(b.entities) == 0 {
			return nil
		}
		rows, current, err := p.patch(ctx, b.entities)
		if err != nil {
			return err
		}
		b.current = current
		return p.cfg.Sink.WriteEntities(ctx, rows)
	}); err != nil {
		return nil, err
	}
	accessDone := make(chan error, 1)
	go func() {
		if len(b.access) == 0 {
			accessDone <- nil
			return
		}
		accessDone <- p.cfg.Sink.WriteAccessLogs(ctx, b.access)
	}()
	defer func() {
		if aerr := <-accessDone; aerr != nil && err == nil {
			existing, err = nil, aerr
		}
	}()
	if len(b.monitoring) > 0 {
		rows := b.monitoring
		if checkExisting {
			existing, err = p.cfg.Stored.ExistingMonitoring(ctx, rows)
			if err != nil {
				return nil, err
			}
			if len(existing) > 0 {
				fresh := rows[:0:0]
				for _, m := range rows {
					if !existing[m.ID] {
						fresh = append(fresh, m)
					}
				}
				p.log.Info("monitoring rows already stored by an earlier attempt; not inserted again", "rows", len(existing))
				rows = fresh
			}
		}
		if len(rows) > 0 {
			if err := p.cfg.Sink.WriteMonitoring(ctx, rows); err != nil {
				return nil, err
			}
		}
	}
	return existing, nil
}

// both runs two inserts at once and returns their errors.
func both(a, b func() error) error {
	errB := make(chan error, 1)
	go func() { errB <- b() }()
	errA := a()
	return errors.Join(errA, <-errB)
}

// retention runs the configured retention once an hour.
func (p *Projector) retention(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := p.cfg.Retention(ctx); err != nil && ctx.Err() == nil {
			p.log.Warn("retention failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// patch gives entity writes patch semantics (only mapped attributes are
// written): each write's attributes are laid over the entity's stored ones, in version order, so
// an attribute a later event does not map (another use case's, or one left undefined) keeps its
// value. Merging is per attribute, by version (lww.go): a write older than the stored row still
// sets the attributes no newer write set, and a write that adds nothing is not written, so a
// batch written again after a crash changes nothing.
// Entity writes are keyed by entity id, so one projector owns all writes of an entity.
//
// It returns the rows to insert and every entity's stored row after them (for the cache). Rows of
// entities this projector wrote lately come from its cache, the others from ClickHouse.
func (p *Projector) patch(ctx context.Context, writes []envelope.EntityWrite) ([]envelope.EntityWrite, map[string]StoredEntity, error) {
	scopes := map[EntityScope][]string{}
	cached := map[string]StoredEntity{}
	seen := map[string]bool{}
	for _, w := range writes {
		if seen[w.EntityID] {
			continue
		}
		seen[w.EntityID] = true
		if row, ok := p.cache.Get(w.EntityID); ok {
			cached[w.EntityID] = row
			continue
		}
		scope := EntityScope{w.OrgID, w.EntitySchema}
		scopes[scope] = append(scopes[scope], w.EntityID)
	}
	stored := map[string]StoredEntity{}
	if len(scopes) > 0 {
		var err error
		if stored, err = p.cfg.Stored.CurrentEntities(ctx, scopes); err != nil {
			return nil, nil, err
		}
	}
	p.cacheLookup.WithLabelValues("cache").Add(float64(len(cached)))
	p.cacheLookup.WithLabelValues("clickhouse").Add(float64(len(seen) - len(cached)))
	for id, row := range cached {
		stored[id] = row
	}
	sorted := append([]envelope.EntityWrite(nil), writes...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Version < sorted[j].Version })
	out := sorted[:0]
	for _, w := range sorted {
		cur, ok := stored[w.EntityID]
		if ok && len(cur.UniqueIdentifiers) > 0 {
			// The unique identifiers are every value the entity was addressed by: a write that found
			// it by email keeps the customer number it was created with; a tombstone by id (a prune)
			// names none and keeps them all.
			if len(w.UniqueIdentifiers) == 0 {
				w.UniqueIdentifiers = cur.UniqueIdentifiers
			} else if merged, err := mergeAttributes(cur.UniqueIdentifiers, w.UniqueIdentifiers); err == nil {
				w.UniqueIdentifiers = merged
			}
		}
		if !ok {
			if w.Op == envelope.OpPurge {
				w.Attributes = json.RawMessage(`{}`) // a purge keeps nothing but the unique identifiers
			}
			w.AttributeVersions = firstVersions(&w)
		} else {
			merged, changed, err := mergeWrite(cur, w)
			switch {
			case err != nil:
				p.log.Error("stored entity attributes unreadable; the write replaces them", "entity_id", w.EntityID, "err", err)
				w.AttributeVersions = firstVersions(&w)
			case !changed:
				continue // applied already, or older than everything it sets
			default:
				w = merged
			}
		}
		stored[w.EntityID] = StoredEntity{Version: w.Version, Deleted: w.Op != envelope.OpUpsert, UniqueIdentifiers: w.UniqueIdentifiers,
			Attributes: w.Attributes, AttributeVersions: w.AttributeVersions}
		out = append(out, w)
	}
	return out, stored, nil
}

// mergeAttributes lays patch's keys over base's, keeping base's key order and appending new keys.
func mergeAttributes(base, patch []byte) ([]byte, error) {
	bv, err := jsonata.DecodeJSON(base)
	if err != nil {
		return nil, err
	}
	pv, err := jsonata.DecodeJSON(patch)
	if err != nil {
		return nil, err
	}
	bo, ok1 := bv.(*jsonata.Object)
	po, ok2 := pv.(*jsonata.Object)
	if !ok1 || !ok2 {
		return nil, errors.New("attributes are not JSON objects")
	}
	for _, k := range po.Keys() {
		v, _ := po.Get(k)
		bo.Set(k, v)
	}
	return jsonata.MarshalValue(bo)
}
