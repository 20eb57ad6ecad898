package outbound

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/connector"
	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/quota"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/secrets"
)

// DefaultGroup is the consumer group of the outbound service.
const DefaultGroup = "erpstream-outbound"

// Defaults of Config.
const (
	DefaultDestinationConcurrency = 8
	DefaultDestinationQueue       = 10_000
	DefaultDestinationQueueBytes  = 64 << 20
	DefaultTimeout                = 15 * time.Second
	DefaultEntityWait             = time.Minute
	DefaultAckWindow              = 24 * time.Hour
	DefaultMaxPendingAcksPerOrg   = 100_000
)

// EntityReader reads entities as the projector stored them; implemented by ClickHouseEntities.
type EntityReader interface {
	// Changed returns the stored state of entities after the given writes: per write the row
	// the write produced, or a newer one; writes not projected yet are missing.
	Changed(ctx context.Context, org, schema string, writes []EntityVersion) (map[EntityVersion]StoredEntity, error)
	// Entity returns one entity's latest row (trigger); found is false when there is none.
	Entity(ctx context.Context, org, id string) (schema string, e StoredEntity, found bool, err error)
}

// EntityVersion names one write of an entity: what a change's delivery shows is the entity as that
// write left it, not as a later change of the same poll did.
type EntityVersion struct {
	ID      string
	Version uint64
}

// Config of the outbound service.
type Config struct {
	Kafka    kafkax.Config
	Topics   kafkax.Topics
	Group    string
	Registry *registry.Registry
	Secrets  *secrets.Box
	Egress   *egress.Client
	Auth     *connector.Authorizer
	Entities EntityReader
	// Producer writes retries, dead letters, acknowledgements and monitoring rows.
	Producer *kgo.Client
	Acks     *AckTable
	// DestinationConcurrency is how many requests one destination (an org's webhook) has
	// open at once; DestinationQueue how many deliveries (DestinationQueueBytes: how many payload
	// bytes) may wait for it before further ones are deferred to the first retry topic, without
	// counting as an attempt.
	DestinationConcurrency, DestinationQueue int
	DestinationQueueBytes                    int64
	// DispatchWait is how long a delivery waits for room in a full lane before its destination
	// counts as saturated (default 1 s).
	DispatchWait time.Duration
	// OrgConcurrency caps each org's open outbound requests in this process (shared with managed
	// calls and the secure proxy).
	OrgConcurrency *quota.Concurrency
	// Timeout bounds one attempt (default 15 s).
	Timeout time.Duration
	// EntityWait is how long a change waits for the projector to store the entity before it is
	// delivered with the entity as stored then (default 1 min; a ClickHouse outage waits on).
	EntityWait time.Duration
	// ProjectorGroup is the projector's consumer group (default erpstream-projector): its
	// committed offsets say when a change is in ClickHouse.
	ProjectorGroup string
	// RetryDelays replace the waits of kafkax.OutboundRetryDelays, one per retry topic (tests
	// shorten them); MaxAttempts (default 7).
	RetryDelays []time.Duration
	MaxAttempts int
	Log         *slog.Logger
	Metrics     prometheus.Registerer
	Now         func() time.Time
}

// Service is the outbound delivery service.
type Service struct {
	cfg       Config
	log       *slog.Logger
	matcher   *matcher
	dests     *destinations
	metrics   *metrics
	projected *projectedWatch
}

// New validates cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Registry == nil || cfg.Egress == nil || cfg.Producer == nil || cfg.Entities == nil || cfg.Acks == nil {
		return nil, errors.New("outbound: registry, egress, producer, entities and acks are required")
	}
	if cfg.Group == "" {
		cfg.Group = DefaultGroup
	}
	if cfg.ProjectorGroup == "" {
		cfg.ProjectorGroup = DefaultProjectorGroup
	}
	if cfg.Auth == nil {
		cfg.Auth = connector.NewAuthorizer(cfg.Egress)
	}
	if cfg.DestinationConcurrency <= 0 {
		cfg.DestinationConcurrency = DefaultDestinationConcurrency
	}
	if cfg.DestinationQueue <= 0 {
		cfg.DestinationQueue = DefaultDestinationQueue
	}
	if cfg.DestinationQueueBytes <= 0 {
		cfg.DestinationQueueBytes = DefaultDestinationQueueBytes
	}
	if cfg.DispatchWait <= 0 {
		cfg.DispatchWait = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.EntityWait <= 0 {
		cfg.EntityWait = DefaultEntityWait
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = len(kafkax.OutboundRetryDelays) + 2
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	if cfg.RetryDelays == nil {
		cfg.RetryDelays = kafkax.OutboundRetryDelays
	}
	if len(cfg.RetryDelays) != len(kafkax.OutboundRetryDelays) {
		return nil, fmt.Errorf("outbound: %d retry delays for %d retry topics", len(cfg.RetryDelays), len(kafkax.OutboundRetryDelays))
	}
	if len(cfg.Topics.OutboundRetries) != len(kafkax.OutboundRetryDelays) {
		return nil, fmt.Errorf("outbound: %d retry topics for %d delays", len(cfg.Topics.OutboundRetries), len(kafkax.OutboundRetryDelays))
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Log.With("component", "outbound"), matcher: newMatcher(), metrics: m}
	s.dests = newDestinations(s)
	s.projected = newProjectedWatch(kadm.NewClient(cfg.Producer), cfg.ProjectorGroup, cfg.Topics.Entities)
	return s, nil
}

func (s *Service) now() time.Time { return s.cfg.Now() }

type metrics struct {
	attempts *prometheus.CounterVec
	latency  prometheus.Histogram
	deferred prometheus.Counter
	lag      prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpstream_outbound_attempts_total",
			Help: "Webhook delivery attempts by result (delivered, retrying, failed, mapping_failed, skipped)."}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "erpstream_outbound_request_seconds",
			Help: "Time a webhook took to answer.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 13)}),
		deferred: prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_outbound_deferred_total",
			Help: "Deliveries moved to the first retry topic without an attempt: their destination or org had too many waiting."}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "erpstream_outbound_change_delay_seconds",
			Help: "From an entity write to its first delivery attempt.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 14)}),
	}
	for _, r := range []string{"delivered", "retrying", "failed", "mapping_failed", "skipped"} {
		m.attempts.WithLabelValues(r) // exported from the start, so dashboards and alerts see zeros
	}
	for _, c := range []prometheus.Collector{m.attempts, m.latency, m.deferred, m.lag} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("outbound metrics: %w", err)
		}
	}
	return m, nil
}
