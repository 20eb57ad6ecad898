// Package processor consumes accepted events, maps them with their use case's configuration and
// emits entity writes and monitoring events. Each poll is one Kafka transaction that also commits
// the consumed offsets, so an event's outputs become visible exactly once or not at all.
package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/processor/mapping"
)

// Config of the processor.
type Config struct {
	Kafka      kafkax.Config
	Topics     kafkax.Topics
	Group      string // consumer group, default "erpstream-processor"
	InstanceID string // makes the transactional id unique per running instance
	MaxPoll    int    // records per transaction, default 2000
	// EvalTimeout bounds one event's mapping.
	EvalTimeout time.Duration
	Registry    *registry.Registry
	Engine      jsonata.Engine
	Log         *slog.Logger
	Now         func() time.Time
	// Metrics registers the processor's metrics (nil: not exported).
	Metrics prometheus.Registerer
}

// Processor is the mapping service.
type Processor struct {
	cfg      Config
	log      *slog.Logger
	mappings sync.Map // use case id -> *compiledMapping of its latest version
	dedup    *dedupStore
	entities *entityStore

	// Outcomes are counted when their transaction commits, so a retried batch counts once.
	pending   map[[2]string]int // (level, code) -> events in the open transaction
	outcomes  *prometheus.CounterVec
	aborts    prometheus.Counter
	batchTime prometheus.Histogram
}

type compiledMapping struct {
	version int64
	m       *mapping.Mapping
	err     error
}

// New validates cfg and returns a processor.
func New(cfg Config) (*Processor, error) {
	if cfg.Registry == nil {
		return nil, errors.New("processor: registry is required")
	}
	if cfg.Group == "" {
		cfg.Group = "erpstream-processor"
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 2000
	}
	if cfg.EvalTimeout <= 0 {
		cfg.EvalTimeout = 2 * time.Second
	}
	if cfg.Engine == nil {
		cfg.Engine = jsonata.Default
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.InstanceID == "" {
		cfg.InstanceID = ids.NewUUID()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	log := cfg.Log.With("component", "processor")
	p := &Processor{cfg: cfg, log: log, dedup: newDedupStore(log), entities: newEntityStore(log), pending: map[[2]string]int{},
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpstream_processor_events_total",
			Help: "Events processed (committed), by monitoring level and code."}, []string{"level", "code"}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_processor_transaction_aborts_total",
			Help: "Transactions aborted; their batch is processed again."}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "erpstream_processor_batch_duration_seconds",
			Help: "Time from a batch's first record to its committed transaction.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	for _, c := range []prometheus.Collector{p.outcomes, p.aborts, p.batchTime} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("processor metrics: %w", err)
		}
	}
	return p, nil
}

// Run consumes until ctx ends.
func (p *Processor) Run(ctx context.Context) error {
	select {
	case <-p.cfg.Registry.Ready():
	case <-ctx.Done():
		return nil
	}
	// The entity state is read whole before the first event is mapped, then followed.
	stateCtx, stopState := context.WithCancel(ctx)
	defer stopState()
	stateErr := make(chan error, 1)
	go func() { stateErr <- p.entities.run(stateCtx, p.cfg.Kafka, p.cfg.Topics.EntityState) }()
	select {
	case <-p.entities.ready:
	case err := <-stateErr:
		return fmt.Errorf("processor: %w", err)
	case <-ctx.Done():
		return nil
	}
	sess, err := kgo.NewGroupTransactSession(append(p.cfg.Kafka.BaseOpts(p.log),
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.cfg.Topics.Events),
		kgo.TransactionalID(p.cfg.Group+"-"+p.cfg.InstanceID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.TransactionTimeout(60*time.Second),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2*time.Millisecond),
		// Same hashing as ingest, so a dedup mark lands in the partition number of its event.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, assigned map[string][]int32) {
			if err := p.dedup.restore(ctx, p.cfg.Kafka, p.cfg.Topics.Dedup, assigned[p.cfg.Topics.Events]); err != nil {
				p.log.Error("dedup restore failed; duplicates may be processed again", "err", err)
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, revoked map[string][]int32) {
			p.dedup.drop(revoked[p.cfg.Topics.Events])
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
			p.dedup.drop(lost[p.cfg.Topics.Events])
		}),
	)...)
	if err != nil {
		return fmt.Errorf("processor: %w", err)
	}
	defer sess.Close()
	p.log.Info("processor consuming", "topic", p.cfg.Topics.Events, "group", p.cfg.Group)

	for {
		fetches := sess.PollRecords(ctx, p.cfg.MaxPoll)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
		})
		if fetches.NumRecords() == 0 {
			continue
		}
		began := time.Now()
		if err := sess.Begin(); err != nil {
			return fmt.Errorf("processor: begin transaction: %w", err)
		}
		promise := kgo.AbortingFirstErrPromise(sess.Client())
		fetches.EachRecord(func(rec *kgo.Record) {
			for _, out := range p.process(ctx, rec) {
				sess.Produce(ctx, out, promise.Promise())
			}
		})
		committed, err := sess.End(ctx, promise.Err() == nil)
		if committed {
			p.dedup.commit()
			p.entities.commit()
			for k, n := range p.pending {
				p.outcomes.WithLabelValues(k[0], k[1]).Add(float64(n))
			}
			p.batchTime.Observe(time.Since(began).Seconds())
		} else {
			p.dedup.abort()
			p.entities.abort()
			p.aborts.Inc()
		}
		clear(p.pending)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("processor: end transaction: %w", err)
		}
		if !committed {
			p.log.Warn("transaction aborted; the batch will be processed again", "records", fetches.NumRecords(), "produce_err", promise.Err())
		}
	}
}

// process maps one event record into the records to produce.
func (p *Processor) process(ctx context.Context, rec *kgo.Record) []*kgo.Record {
	var ev envelope.Event
	if err := json.Unmarshal(rec.Value, &ev); err != nil {
		p.log.Error("undecodable event record; skipped", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "err", err)
		return nil
	}
	if ev.DeduplicationID != "" && !ev.Replay {
		receivedMs := ev.ReceivedAtUs / 1000
		if p.dedup.duplicate(rec.Partition, string(rec.Key), receivedMs) {
			return []*kgo.Record{p.monitoringRecord(&ev, outcome{useCaseType: registry.TypeInbound, level: envelope.LevelInfo,
				code: "DUPLICATE_EVENT", message: "deduplication_id " + ev.DeduplicationID + " was accepted within the last 24 hours; not mapped again"})}
		}
		mark, _ := json.Marshal(dedupRecord{FirstSeenMs: receivedMs, EventID: ev.EventID})
		p.dedup.stage(rec.Partition, string(rec.Key), receivedMs)
		outs, o := p.mapEvent(ctx, &ev)
		outs = append(outs, &kgo.Record{Topic: p.cfg.Topics.Dedup, Key: rec.Key, Value: mark})
		return append(outs, p.monitoringRecord(&ev, o))
	}
	outs, o := p.mapEvent(ctx, &ev)
	return append(outs, p.monitoringRecord(&ev, o))
}

type outcome struct {
	useCaseType string
	level       envelope.Level
	code        string
	message     string
	detail      map[string]any
}

func (p *Processor) mapEvent(ctx context.Context, ev *envelope.Event) ([]*kgo.Record, outcome) {
	snap := p.cfg.Registry.Snapshot()
	uc, ok := snap.UseCase(ev.OrgID, ev.UseCaseID)
	if !ok {
		p.mappings.Delete(ev.UseCaseID)
		return nil, outcome{level: envelope.LevelError, code: "USE_CASE_NOT_FOUND",
			message: fmt.Sprintf("use case %s was deleted before the event was processed", ev.UseCaseID)}
	}
	o := outcome{useCaseType: uc.Type}
	if !uc.Enabled {
		o.level, o.code, o.message = envelope.LevelSkipped, "USE_CASE_DISABLED", "use case "+uc.Slug+" is disabled"
		return nil, o
	}
	m, err := p.compiled(uc)
	if err != nil {
		o.level, o.code, o.message = envelope.LevelError, "USE_CASE_MISSING_CONFIG", fmt.Sprintf("use case %s: %v", uc.Slug, err)
		return nil, o
	}
	// The simulation parses payloads with the same function.
	payload, err := mapping.ParsePayload(ev.Payload, ev.Format)
	if err != nil {
		o.level, o.code, o.message = envelope.LevelError, "MALFORMED_PAYLOAD", fmt.Sprintf("use case %s: %v", uc.Slug, err)
		return nil, o
	}
	evalCtx, cancel := context.WithTimeout(ctx, p.cfg.EvalTimeout)
	defer cancel()
	res, err := m.Extract(evalCtx, payload, &jsonata.Env{Now: ev.ReceivedAt()})
	if err != nil {
		var me *mapping.Error
		code := "MAPPING_EXPRESSION_FAILED"
		if errors.As(err, &me) {
			code = me.Code
		}
		o.level, o.code, o.message = envelope.LevelError, code, fmt.Sprintf("use case %s: %v", uc.Slug, err)
		return nil, o
	}
	updates, readings := res.Entities, res.MeterReadings
	now := p.cfg.Now().UnixMilli()
	outs := make([]*kgo.Record, 0, len(updates))
	entities := make([]map[string]string, 0, len(updates))
	deleted := 0
	// event_type is stored but drives nothing unless the integration opts in with
	// settings.honor_event_type (MAPPING.md §13.2): then DELETE applies upserts as deletes.
	honorEventType := false
	if integ, ok := snap.Integration(ev.OrgID, ev.IntegrationID); ok {
		var settings struct {
			HonorEventType bool `json:"honor_event_type"`
		}
		if json.Unmarshal(integ.Fields["settings"], &settings) == nil {
			honorEventType = settings.HonorEventType
		}
	}
	// stubVersion is below every real write's version (a receive time in µs): a placeholder for a
	// related entity never overrides the entity's real state, whichever is projected first.
	const stubVersion = 1
	emit := func(u mapping.EntityUpdate, attrs mapping.Attributes, op envelope.EntityOp, version uint64) error {
		entityID := u.EntityID(ev.OrgID)
		uids, _ := json.Marshal(u.UniqueIdentifiers)
		ab, err := json.Marshal(attrs)
		if err != nil {
			return err
		}
		w := envelope.EntityWrite{
			OrgID: ev.OrgID, EntitySchema: u.EntitySlug, EntityID: entityID, Op: op,
			UniqueIdentifiers: uids, Attributes: ab, Version: version,
			IntegrationID: ev.IntegrationID, UseCaseID: ev.UseCaseID, EventID: ev.EventID,
			CorrelationID: ev.CorrelationID, WrittenAtMs: now,
		}
		b, _ := json.Marshal(&w)
		outs = append(outs, &kgo.Record{Topic: p.cfg.Topics.Entities, Key: []byte(ev.OrgID + "/" + entityID), Value: b,
			Headers: headers(ev)})
		entities = append(entities, map[string]string{"entity_schema": u.EntitySlug, "entity_id": entityID, "op": string(op)})
		return nil
	}
	// The event's state changes stay local until it has mapped without error; later updates of
	// the event see earlier ones.
	changed := map[string]*entityState{}
	state := func(id string) *entityState {
		if st, ok := changed[id]; ok {
			return st
		}
		return p.entities.get(id)
	}
	version := uint64(ev.ReceivedAtUs)
	var warnings []string
	warnCode := ""
	warn := func(code, msg string) {
		if warnCode == "" {
			warnCode = code
		}
		warnings = append(warnings, msg)
	}
	noops := 0
	for _, u := range updates {
		id := u.EntityID(ev.OrgID)
		cur := state(id)
		// Events of one entity can sit in different partitions and be mapped out of order. A late
		// event (older than the state) is written as it is, and ClickHouse keeps the newer version;
		// it neither reads nor changes the state.
		late := cur != nil && cur.Version > version
		if u.Mode == "delete" || u.Mode == "purge" || (honorEventType && ev.EventType == "DELETE") {
			op := envelope.OpDelete
			if u.Mode == "purge" {
				op = envelope.OpPurge
			}
			// The tombstone is written even when the entity is unknown or deleted already (then the
			// outcome is a no-op): an older upsert still in flight must not resurrect it.
			if err := emit(u, u.Attributes, op, version); err != nil {
				o.level, o.code, o.message = envelope.LevelError, "ATTRIBUTE_TYPE_MISMATCH", fmt.Sprintf("use case %s, entity %s: %v", uc.Slug, u.EntitySlug, err)
				return nil, o
			}
			if !late && !cur.live() {
				noops++
			} else {
				deleted++
			}
			if !late {
				// A purged entity is gone for good: matching it later is no restore.
				next := &entityState{Schema: u.EntitySlug, Deleted: true, Version: version,
					Phantom: op == envelope.OpPurge || (!cur.live() && !cur.softDeleted())}
				if cur != nil {
					next.Relations = cur.Relations
				}
				changed[id] = next
			}
			continue
		}
		if late {
			attrs, _ := u.Resolve(ev.OrgID)
			if err := emit(u, attrs, envelope.OpUpsert, version); err != nil {
				o.level, o.code, o.message = envelope.LevelError, "ATTRIBUTE_TYPE_MISMATCH", fmt.Sprintf("use case %s, entity %s: %v", uc.Slug, u.EntitySlug, err)
				return nil, o
			}
			continue
		}
		if honorEventType && ev.EventType == "CREATE" && cur.live() {
			o.level, o.code = envelope.LevelError, "ENTITY_ALREADY_EXISTS"
			o.message = fmt.Sprintf("use case %s: CREATE of %s %s, which exists", uc.Slug, u.EntitySlug, uniqueIDsText(u))
			return nil, o
		}
		if cur.softDeleted() {
			warn("SOFT_DELETED_ENTITY_MATCHED", fmt.Sprintf("%s %s was deleted; the upsert restores it", u.EntitySlug, uniqueIDsText(u)))
		}
		attrs, stubs := u.Resolve(ev.OrgID)
		next := &entityState{Schema: u.EntitySlug, Version: version, Relations: map[string][]mapping.ResolvedRelationItem{}}
		if cur.live() {
			for k, v := range cur.Relations {
				next.Relations[k] = v
			}
		}
		for i, a := range u.Attributes {
			rel, ok := a.Value.(*mapping.Relation)
			if !ok {
				continue
			}
			items := attrs[i].Value.(*mapping.ResolvedRelation).Items
			if cur.live() { // on a new entity both appends are _set
				items = mapping.MergeRelation(rel.Operation, cur.Relations[a.Name], items)
			}
			attrs[i].Value = &mapping.ResolvedRelation{Items: items}
			next.Relations[a.Name] = items
		}
		if err := emit(u, attrs, envelope.OpUpsert, version); err != nil {
			o.level, o.code, o.message = envelope.LevelError, "ATTRIBUTE_TYPE_MISMATCH", fmt.Sprintf("use case %s, entity %s: %v", uc.Slug, u.EntitySlug, err)
			return nil, o
		}
		changed[id] = next
		for _, st := range stubs {
			sid := st.EntityID(ev.OrgID)
			if state(sid) != nil {
				continue // exists, or a placeholder is there already
			}
			_ = emit(st, st.Attributes, envelope.OpUpsert, stubVersion)
			changed[sid] = &entityState{Schema: st.EntitySlug, Placeholder: true, Version: stubVersion}
		}
	}
	// Prune scopes (MAPPING.md §7.3), after the upserts: the entities of the scope that this entry
	// did not upsert are deleted or purged.
	var pruned []string
	for _, pu := range res.Prunes {
		scopeID := pu.ScopeEntityID(ev.OrgID)
		if !state(scopeID).live() {
			warn("PRUNE_SCOPE_PARTIAL_FAILURE", fmt.Sprintf("scope %s %s not found; nothing pruned", pu.Scope.Schema, mustJSON(pu.Scope.UniqueIDs)))
			continue
		}
		keep := pu.KeepIDs(ev.OrgID)
		op := envelope.OpDelete
		if pu.DeletionMode == "purge" {
			op = envelope.OpPurge
		}
		for _, id := range p.entities.inScope(scopeID, pu.EntitySlug, changed) {
			if keep[id] {
				continue
			}
			cur := state(id)
			w := envelope.EntityWrite{OrgID: ev.OrgID, EntitySchema: pu.EntitySlug, EntityID: id, Op: op,
				UniqueIdentifiers: json.RawMessage(`{}`), Attributes: json.RawMessage(`{}`), Version: version,
				IntegrationID: ev.IntegrationID, UseCaseID: ev.UseCaseID, EventID: ev.EventID, CorrelationID: ev.CorrelationID, WrittenAtMs: now}
			b, _ := json.Marshal(&w)
			outs = append(outs, &kgo.Record{Topic: p.cfg.Topics.Entities, Key: []byte(ev.OrgID + "/" + id), Value: b, Headers: headers(ev)})
			entities = append(entities, map[string]string{"entity_schema": pu.EntitySlug, "entity_id": id, "op": string(op)})
			changed[id] = &entityState{Schema: pu.EntitySlug, Deleted: true, Version: version, Phantom: op == envelope.OpPurge, Relations: cur.Relations}
			pruned = append(pruned, id)
		}
	}

	// Meter readings, after the entities (MAPPING.md §2 step 6): matched by external id within the
	// meter (and counter); the meter must exist, readings never create one.
	readingsDeleted := 0
	var externalIDs []any
	for _, r := range readings {
		meter := mapping.EntityUpdate{EntitySlug: "meter", UniqueIdentifiers: r.Meter.UniqueIDs}
		meterID := meter.EntityID(ev.OrgID)
		if !state(meterID).live() {
			o.level, o.code = envelope.LevelError, "METER_READING_GROUP_FAILED"
			o.message = fmt.Sprintf("use case %s: meter %s not found; readings never create meters", uc.Slug, uniqueIDsText(meter))
			return nil, o
		}
		reading := mapping.EntityUpdate{EntitySlug: "meter_reading",
			UniqueIdentifiers: mapping.Attributes{{Name: "meter_id", Value: meterID}}}
		attrs := mapping.Attributes{{Name: "meter_id", Value: meterID}}
		if r.MeterCounter != nil {
			counter := mapping.EntityUpdate{EntitySlug: "meter_counter", UniqueIdentifiers: r.MeterCounter.UniqueIDs}
			counterID := counter.EntityID(ev.OrgID)
			if !state(counterID).live() {
				o.level, o.code = envelope.LevelError, "METER_READING_GROUP_FAILED"
				o.message = fmt.Sprintf("use case %s: meter counter %s not found", uc.Slug, uniqueIDsText(counter))
				return nil, o
			}
			reading.UniqueIdentifiers = append(reading.UniqueIdentifiers, mapping.Attribute{Name: "counter_id", Value: counterID})
			attrs = append(attrs, mapping.Attribute{Name: "counter_id", Value: counterID})
		}
		for _, a := range r.Attributes {
			if a.Name == "external_id" {
				reading.UniqueIdentifiers = append(reading.UniqueIdentifiers, a)
				externalIDs = append(externalIDs, a.Value)
			}
			if a.Name != "meter_id" && a.Name != "counter_id" {
				attrs = append(attrs, a)
			}
		}
		op := envelope.OpUpsert
		if r.Mode == "delete" {
			op = envelope.OpDelete
			readingsDeleted++
		}
		if err := emit(reading, attrs, op, version); err != nil {
			o.level, o.code, o.message = envelope.LevelError, "INVALID_METER_READING_ATTRIBUTES", fmt.Sprintf("use case %s: %v", uc.Slug, err)
			return nil, o
		}
	}
	for id, st := range changed {
		b, _ := json.Marshal(st)
		outs = append(outs, &kgo.Record{Topic: p.cfg.Topics.EntityState, Key: []byte(id), Value: b})
		p.entities.stage(id, st)
	}
	o.level = envelope.LevelSuccess
	switch {
	case len(updates) == 0 && len(readings) > 0 && readingsDeleted == len(readings):
		o.code, o.message = "METER_READING_DELETED", strconv.Itoa(len(readings))+" meter reading(s) deleted"
	case len(updates) == 0 && len(readings) > 0:
		o.code, o.message = "METER_READING_UPSERTED", strconv.Itoa(len(readings))+" meter reading(s) applied"
	case len(warnings) > 0:
		o.level, o.code, o.message = envelope.LevelWarning, warnCode, strings.Join(warnings, "; ")
	case len(res.Prunes) > 0:
		o.code = "PRUNE_SCOPE_COMPLETED"
		o.message = fmt.Sprintf("%d entity update(s) applied, %d entit(ies) pruned from the scope", len(updates)-noops, len(pruned))
	case len(updates) == noops:
		o.code, o.message = "ENTITY_NO_OP", "the mapping produced no entity updates"
		if len(updates) > 0 {
			o.message = strconv.Itoa(noops) + " delete(s) of entities that did not exist or were deleted already"
		}
	case deleted == len(updates)-noops:
		o.code, o.message = "ENTITY_DELETED", strconv.Itoa(deleted)+" entity update(s) applied"
	default:
		o.code, o.message = "ENTITY_UPDATED", strconv.Itoa(len(updates)-noops)+" entity update(s) applied"
	}
	o.detail = map[string]any{"entities": entities, "use_case_version": uc.Version}
	if len(readings) > 0 {
		o.detail["reading_count"], o.detail["external_ids"] = len(readings), externalIDs
	}
	if len(res.Prunes) > 0 {
		o.detail["pruned"] = pruned
	}
	return outs, o
}

func (p *Processor) monitoringRecord(ev *envelope.Event, o outcome) *kgo.Record {
	if ev.Replay { // replays are marked in monitoring (their correlation id also starts with replay_)
		if o.detail == nil {
			o.detail = map[string]any{}
		}
		o.detail["replay"] = true
	}
	var detail json.RawMessage
	if o.detail != nil {
		detail, _ = json.Marshal(o.detail)
	}
	m := envelope.MonitoringEvent{
		ID:            ids.NameUUID("monitoring", ev.OrgID, ev.EventID, "processed"),
		OrgID:         ev.OrgID,
		IntegrationID: ev.IntegrationID,
		EventID:       ev.EventID,
		CorrelationID: ev.CorrelationID,
		UseCaseID:     ev.UseCaseID,
		UseCaseType:   o.useCaseType,
		Level:         o.level,
		Code:          o.code,
		Message:       o.message,
		Detail:        detail,
		CreatedAtMs:   p.cfg.Now().UnixMilli(),
	}
	p.pending[[2]string{string(o.level), o.code}]++
	if o.level == envelope.LevelError {
		p.log.Info("event failed", "event_id", ev.EventID, "use_case_id", ev.UseCaseID, "code", o.code, "message", o.message)
	}
	b, _ := json.Marshal(&m)
	return &kgo.Record{Topic: p.cfg.Topics.Monitoring, Key: []byte(ev.OrgID + "/" + ev.EventID), Value: b, Headers: headers(ev)}
}

func headers(ev *envelope.Event) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: envelope.HeaderOrg, Value: []byte(ev.OrgID)},
		{Key: envelope.HeaderIntegration, Value: []byte(ev.IntegrationID)},
		{Key: envelope.HeaderUseCase, Value: []byte(ev.UseCaseID)},
		{Key: envelope.HeaderCorrelationID, Value: []byte(ev.CorrelationID)},
		{Key: envelope.HeaderSchema, Value: []byte(envelope.SchemaVersion)},
	}
}

// compiled returns the use case's mapping, compiling it once per use-case version; a new version
// replaces the old one's entry, so the cache holds one mapping per live use case.
func (p *Processor) compiled(uc *registry.UseCase) (*mapping.Mapping, error) {
	if v, ok := p.mappings.Load(uc.ID); ok {
		if c := v.(*compiledMapping); c.version == uc.Version {
			return c.m, c.err
		}
	}
	m, err := mapping.Compile(uc.Configuration, p.cfg.Engine)
	if err == nil {
		err = m.Unapplied()
	}
	p.mappings.Store(uc.ID, &compiledMapping{version: uc.Version, m: m, err: err})
	return m, err
}

func uniqueIDsText(u mapping.EntityUpdate) string {
	b, _ := json.Marshal(u.UniqueIdentifiers)
	return string(b)
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
