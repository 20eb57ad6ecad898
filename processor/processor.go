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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/tracing"
	"github.com/erpstream/erpstream/mapping"
)

// DefaultGroup is the consumer group of every instance.
const DefaultGroup = "erpstream-processor"

// Config of the processor.
type Config struct {
	Kafka      kafkax.Config
	Topics     kafkax.Topics
	Group      string // consumer group, default "erpstream-processor"
	InstanceID string // makes the transactional id unique per running instance
	MaxPoll    int    // events polled (and mapped in one transaction) at once, default 5000
	// EvalTimeout bounds one event's mapping (extraction), default 2 s.
	EvalTimeout time.Duration
	// BatchBudget bounds the time one transaction spends mapping, default 5 s: past it the
	// transaction commits what is mapped and the rest of the poll goes into the next one. With
	// EvalTimeout this keeps every transaction far below its 20 s timeout, however slow the
	// mappings are.
	BatchBudget time.Duration
	// MaxTransactionRecords is the records one transaction produces before it commits early
	// (default 50,000); an event's records are never split.
	MaxTransactionRecords int
	// MaxEntityUpdatesPerEvent bounds one event's fan-out (default 10,000): an event whose
	// mapping yields more entity updates or meter readings fails alone with MAPPING_LIMIT_EXCEEDED.
	MaxEntityUpdatesPerEvent int
	// MaxPruneScope bounds what one prune reads (default 100,000): the entities a query scope
	// matches, the entities related to a scope entity (any schema, live or deleted). Every prune
	// reads its whole scope to find what the event did not keep, so an unbounded scope would make
	// each such event cost as much as the scope is large; a larger one fails the event alone with
	// MAPPING_LIMIT_EXCEEDED.
	MaxPruneScope int
	// OrgMappingPerMinute is an org's share of an instance's mapping time a minute while other
	// orgs' events wait behind its own (default 30 s, half the instance; negative: none). An org
	// over it is named on the org-load topic, and ingest holds its new events back (orgload.go).
	OrgMappingPerMinute time.Duration
	Registry            *registry.Registry
	Engine              jsonata.Engine
	Log                 *slog.Logger
	Now                 func() time.Time
	// MaxRecordBytes bounds each record the processor produces (default 8 MiB less room for the
	// batch framing: the topics' max.message.bytes). An event that would produce a larger one fails.
	MaxRecordBytes int
	// FileProxyBaseURL is where file_proxy_url attributes point: <base>/download?….
	FileProxyBaseURL string
	// SignLink signs the download links it builds (package fileproxy); nil leaves them unsigned.
	SignLink func(org, link string) string
	// Metrics registers the processor's metrics (nil: not exported).
	Metrics prometheus.Registerer
	// StateDir, when set, keeps the committed entity states on disk there (Pebble, one store per
	// entity-state topic) with a bounded cache: memory stays flat as entities grow, and a restart
	// reads the topic only from the store's checkpoint. Empty: in memory, restored whole.
	StateDir string
	// Standby also follows, into the disk store, the entity state of the partitions this instance
	// does not hold, every StandbyInterval (5 s), so taking one over reads seconds of changelog
	// (standby.go). Needs StateDir.
	Standby         bool
	StandbyInterval time.Duration
	// MapAheadOrgs are orgs whose events the instances not holding the org's partition map
	// ahead of the one that does, into the extractions topic, which the applying instance takes
	// them from (mapahead.go); the org's order is kept.
	MapAheadOrgs map[string]bool
}

// Processor is the mapping service.
type Processor struct {
	cfg      Config
	log      *slog.Logger
	mappings sync.Map // org + "/" + use case id -> *compiledMapping of its latest version
	// lookupAttrs are the attributes each org's configurations look entities up by.
	lookupAttrs lookupAttributes
	dedup       *dedupStore
	entities    *entityStore
	// instanceIDGiven: the operator set the instance id (a random one cannot be shared).
	instanceIDGiven bool
	// assigned counts the events partitions this instance maps (0: none yet, or more instances
	// than partitions).
	assigned atomic.Int64
	// refused counts the events partitions stopped at a forwarded event outside its org's
	// partition again; forwarded counts the events forwarded to their org's partition
	// (forwardedPending those of the open transaction; forwardLogged: logged this session).
	refused          atomic.Int64
	forwarded        prometheus.Counter
	forwardedPending int
	forwardLogged    atomic.Bool
	// mappedAwayTotal counts spread orgs' events this instance mapped for their org's partition
	// (mappedAwayPending those of the open transaction).
	mappedAwayTotal   prometheus.Counter
	mappedAwayPending int
	codecLogged       atomic.Bool // an extraction that could not travel was logged
	// ahead holds the extractions other instances made for map-ahead orgs' events of the
	// partitions this instance holds (nil: no map-ahead orgs); aheadMapped counts those this
	// instance made for others, aheadTaken those it took; memberID is its session's group member.
	ahead       *aheadCache
	aheadMapped prometheus.Counter
	aheadTaken  prometheus.Counter
	memberID    atomic.Value
	// ownWaiting is how many events wait in this instance's own partitions after its last poll:
	// past aheadYieldBacklog it maps nothing ahead for others.
	ownWaiting atomic.Int64
	// fresh are partitions given to this instance whose state is not caught up yet.
	fresh freshPartitions
	// catchUpGate, in tests, runs before each catch-up of fresh partitions.
	catchUpGate func(parts []int32)

	// Outcomes are counted when their transaction commits, so a retried batch counts once.
	pending   map[[2]string]int // (level, code) -> events in the open transaction
	outcomes  *prometheus.CounterVec
	aborts    prometheus.Counter
	restarts  prometheus.Counter
	early     prometheus.Counter
	batchTime prometheus.Histogram
	// progress is when a transaction last committed, or the consumer last found nothing to do
	// (unix ms): readiness reports a processor that has events and makes no progress.
	progress atomic.Int64
	// load is each org's mapping time, for the orgs over their share (session goroutine only);
	// overShare counts the orgs last said to be over it, held counts the holds said.
	load       *orgLoad
	loadLogged map[string]bool // orgs whose hold is logged
	overShare  atomic.Int64
	held       prometheus.Counter
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
		cfg.Group = DefaultGroup
	}
	if cfg.MaxPoll <= 0 {
		cfg.MaxPoll = 5000
	}
	if cfg.MaxRecordBytes <= 0 {
		cfg.MaxRecordBytes = 8<<20 - 64<<10
	}
	if cfg.EvalTimeout <= 0 {
		cfg.EvalTimeout = 2 * time.Second
	}
	if cfg.BatchBudget <= 0 {
		cfg.BatchBudget = 5 * time.Second
	}
	if cfg.MaxTransactionRecords <= 0 {
		cfg.MaxTransactionRecords = 50_000
	}
	if cfg.MaxEntityUpdatesPerEvent <= 0 {
		cfg.MaxEntityUpdatesPerEvent = 10_000
	}
	if cfg.MaxPruneScope <= 0 {
		cfg.MaxPruneScope = 100_000
	}
	if cfg.OrgMappingPerMinute == 0 {
		cfg.OrgMappingPerMinute = 30 * time.Second
	}
	if cfg.Engine == nil {
		cfg.Engine = jsonata.Default
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	instanceIDGiven := cfg.InstanceID != ""
	if !instanceIDGiven {
		cfg.InstanceID = ids.NewUUID()
	}
	if cfg.Standby && cfg.StateDir == "" {
		// In memory a standby would hold every org's states in the heap.
		return nil, errors.New("processor: standby needs the entity state on disk (ERPSTREAM_PROCESSOR_STATE_DIR, not memory)")
	}
	if cfg.StandbyInterval <= 0 {
		cfg.StandbyInterval = standbyInterval
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	log := cfg.Log.With("component", "processor")
	entities := newEntityStore(log, cfg.InstanceID)
	entities.dir = cfg.StateDir
	entities.topics = cfg.Topics
	p := &Processor{cfg: cfg, log: log, dedup: newDedupStore(log), entities: entities, pending: map[[2]string]int{}, instanceIDGiven: instanceIDGiven,
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpstream_processor_events_total",
			Help: "Events processed (committed), by monitoring level and code."}, []string{"level", "code"}),
		aborts: prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_processor_transaction_aborts_total",
			Help: "Transactions aborted; their batch is processed again."}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_processor_session_restarts_total",
			Help: "Consumer sessions that failed (broker away, fenced, transaction error) and were started again."}),
		early: prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_processor_early_commits_total",
			Help: "Transactions committed before their poll was mapped whole (time or record budget); the rest follows in the next."}),
		batchTime: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "erpstream_processor_batch_duration_seconds",
			Help: "Time from a batch's first record to its committed transaction.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	active := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_processor_active",
		Help: "1 while this instance maps events (holds events partitions), 0 while it has none."},
		func() float64 { return float64(min(p.assigned.Load(), 1)) })
	partitions := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_processor_assigned_partitions",
		Help: "Events partitions this instance maps."}, func() float64 { return float64(p.assigned.Load()) })
	refused := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_processor_refused_partitions",
		Help: "Events partitions this instance stopped at an event it cannot forward to its org's partition (processors place the org differently; the log says which)."},
		func() float64 { return float64(p.refused.Load()) })
	p.load, p.loadLogged = newOrgLoad(cfg.OrgMappingPerMinute, cfg.Topics.OrgLoad, p.owns), map[string]bool{}
	p.held = prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_processor_org_holds_total",
		Help: "Times this instance said an org takes more than its share of mapping time while other orgs wait (ingest holds its new events back; ERPSTREAM_ORG_MAPPING_SECONDS_PER_MIN)."})
	overShare := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_processor_orgs_over_share",
		Help: "Orgs this instance last said take more than their share of mapping time while other orgs wait."},
		func() float64 { return float64(p.overShare.Load()) })
	p.forwarded = prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_processor_forwarded_events_total",
		Help: "Events found outside their org's partition (a producer with another ERPSTREAM_ORG_PARTITIONS) and forwarded to it (committed)."})
	p.mappedAwayTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_processor_mapped_away_events_total",
		Help: "Events of spread orgs (ERPSTREAM_ORG_SPREAD) this instance mapped outside their org's partition and sent there to be applied (committed)."})
	p.aheadMapped = prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_processor_mapped_ahead_events_total",
		Help: "Events of map-ahead orgs (ERPSTREAM_ORG_MAP_AHEAD) this instance mapped ahead of the instance holding their partition (extractions written)."})
	p.aheadTaken = prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_processor_ahead_extractions_taken_total",
		Help: "Events of map-ahead orgs this instance applied with the extraction another instance made, instead of mapping them itself."})
	if len(cfg.MapAheadOrgs) > 0 {
		p.ahead = newAheadCache(aheadPolls * cfg.MaxPoll)
	}
	stateSize := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_entity_state_entities",
		Help: "Entities in this instance's entity state (restored from the compacted entity-state topic)."},
		func() float64 { return float64(p.entities.size()) })
	followed := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_entity_state_standby_records",
		Help: "State records of partitions this instance does not hold, read into its store by standby rounds (ERPSTREAM_PROCESSOR_STANDBY=true)."},
		func() float64 { return float64(p.entities.followed.Load()) })
	restored := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_entity_state_restored_records",
		Help: "State records this instance read catching up the partitions it was given: each partition from where its store had it (all of it in memory at the first assignment, what followed the checkpoint on disk)."},
		func() float64 { return float64(p.entities.restored.Load()) })
	marks := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_dedup_marks",
		Help: "Deduplication marks this instance holds (on disk, about: of every partition it has read, until they expire after 24 h of receipts)."},
		func() float64 { return float64(p.dedup.size()) })
	marksRestored := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_dedup_restored_records",
		Help: "Deduplication mark records this instance read catching up the partitions it was given (on disk: what followed the checkpoint)."},
		func() float64 { return float64(p.dedup.restored.Load()) })
	marksFollowed := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_dedup_standby_records",
		Help: "Deduplication mark records of partitions this instance does not hold, read into its store by standby rounds."},
		func() float64 { return float64(p.dedup.followed.Load()) })
	for _, c := range []prometheus.Collector{p.outcomes, p.aborts, p.restarts, p.early, p.batchTime, p.forwarded, p.mappedAwayTotal, p.aheadMapped, p.aheadTaken, active, partitions, refused, stateSize, restored, followed,
		marks, marksRestored, marksFollowed, p.held, overShare} {
		if err := cfg.Metrics.Register(c); err != nil {
			return nil, fmt.Errorf("processor metrics: %w", err)
		}
	}
	return p, nil
}

// process maps one event record into the records to produce, in a span continuing the trace the
// event's record carries (from the request that sent it); the records it yields carry it on.
func (p *Processor) process(ctx context.Context, rec *kgo.Record, ev *envelope.Event) []*kgo.Record {
	ctx, span := tracing.Tracer().Start(tracing.Extract(ctx, rec), "map event", trace.WithAttributes(
		attribute.String("erpstream.org", ev.OrgID), attribute.String("erpstream.integration", ev.IntegrationID),
		attribute.String("erpstream.event_id", ev.EventID)))
	defer span.End()
	outs := p.processEvent(ctx, rec, ev)
	tracing.Inject(ctx, outs...)
	return outs
}

func (p *Processor) processEvent(ctx context.Context, rec *kgo.Record, ev *envelope.Event) []*kgo.Record {
	if ev.DeduplicationID != "" && (!ev.Replay || ev.ReplayRun != "") {
		receivedMs := ev.ReceivedAtUs / 1000
		if ev.ReplayRun != "" {
			receivedMs = ev.ReplayedAtMs
		}
		if p.dedup.duplicate(rec.Partition, string(rec.Key), receivedMs) {
			return []*kgo.Record{p.monitoringRecord(ev, outcome{useCaseType: registry.TypeInbound, level: envelope.LevelInfo,
				code: "DUPLICATE_EVENT", message: "deduplication_id " + ev.DeduplicationID + " was accepted within the last 24 hours; not mapped again"})}
		}
		mark, _ := json.Marshal(dedupRecord{FirstSeenMs: receivedMs, EventID: ev.EventID})
		p.dedup.stage(rec.Partition, string(rec.Key), receivedMs)
		outs, o := p.mapEvent(ctx, ev, rec.Partition)
		outs = append(outs, &kgo.Record{Topic: p.cfg.Topics.Dedup, Partition: rec.Partition, Key: rec.Key, Value: mark})
		return append(outs, p.monitoringRecord(ev, o))
	}
	outs, o := p.mapEvent(ctx, ev, rec.Partition)
	return append(outs, p.monitoringRecord(ev, o))
}

type outcome struct {
	useCaseType string
	level       envelope.Level
	code        string
	message     string
	detail      map[string]any
}

func (p *Processor) mapEvent(ctx context.Context, ev *envelope.Event, partition int32) ([]*kgo.Record, outcome) {
	uc, res, o := p.extract(ctx, ev)
	if res == nil {
		return nil, o
	}
	app := &application{p: p, ev: ev, uc: uc, now: p.cfg.Now().UnixMilli(), version: uint64(ev.ReceivedAtUs),
		changed: map[string]*entityState{}, partition: partition}
	// event_type selects the modes (CREATE creates, DELETE deletes) unless the integration turns
	// that off with settings.honor_event_type: false.
	app.settings = p.integrationSettings(ev.OrgID, ev.IntegrationID)
	if app.settings.honorEventType {
		mapping.ApplyEventType(res, ev.EventType)
	}
	if f := app.entities(res.Entities); f != nil {
		o.level, o.code, o.message = envelope.LevelError, f.code, f.message
		return nil, o
	}
	if f := app.prunes(res.Prunes); f != nil {
		o.level, o.code, o.message = envelope.LevelError, f.code, f.message
		return nil, o
	}
	if f := app.meterReadings(res.MeterReadings, res.ReadingPrunes); f != nil {
		o.level, o.code, o.message = envelope.LevelError, f.code, f.message
		return nil, o
	}
	return app.finish(res)
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
	return envelope.MonitoringRecord(p.cfg.Topics.Monitoring, ev, &m)
}

// compiled returns the use case's mapping, compiling it once per use-case version; a new version
// replaces the old one's entry, so the cache holds one mapping per live use case.
func (p *Processor) compiled(uc *registry.UseCase) (*mapping.Mapping, error) {
	key := uc.OrgID + "/" + uc.ID // ids may repeat across orgs
	if v, ok := p.mappings.Load(key); ok {
		if c := v.(*compiledMapping); c.version == uc.Version {
			return c.m, c.err
		}
	}
	m, err := mapping.Compile(uc.Configuration, p.cfg.Engine)
	p.mappings.Store(key, &compiledMapping{version: uc.Version, m: m, err: err})
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
