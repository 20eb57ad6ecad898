package app

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/configapi"
	"github.com/erpstream/erpstream/connector"
	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/fileproxy"
	"github.com/erpstream/erpstream/ingest"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/quota"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/secrets"
	"github.com/erpstream/erpstream/managedcall"
	"github.com/erpstream/erpstream/outbound"
	"github.com/erpstream/erpstream/processor"
	"github.com/erpstream/erpstream/projector"
	"github.com/erpstream/erpstream/query"
	"github.com/erpstream/erpstream/replay"
	"github.com/erpstream/erpstream/secureproxy"
)

// A service is one part of erpstream as a process runs it: what it needs from the process, the
// background work it starts and the HTTP routes it serves.
type service struct {
	name string
	// clickHouse: the process waits for ClickHouse and migrates its schema before starting it.
	clickHouse bool
	// consumerGroup is watched from the broker's side for lag (readiness, erpstream_consumer_stalled).
	consumerGroup string
	// start constructs the service and runs its background work in the process's group (nil: none).
	start func(ctx context.Context, rt *runtime) error
	// routes mounts its HTTP routes on the authenticated API (nil: none).
	routes func(rt *runtime, api *gin.RouterGroup) error
}

// services is erpstream, service by service, in the order a process starts them.
var services = []service{
	{name: Ingest, routes: ingestRoutes},
	{name: Process, consumerGroup: processor.DefaultGroup, start: startProcessor},
	{name: Project, clickHouse: true, consumerGroup: projector.DefaultGroup, start: startProjector},
	{name: Query, clickHouse: true, routes: queryRoutes},
	{name: Outbound, clickHouse: true, consumerGroup: outbound.DefaultGroup, start: startOutbound, routes: outboundRoutes},
}

// runtime is what the services of one process share.
type runtime struct {
	cfg      Config
	log      *slog.Logger
	topics   kafkax.Topics
	registry *registry.Registry
	ch       driver.Conn // set when a service needs ClickHouse
	metrics  *prometheus.Registry
	group    *group
	egress   *egress.Client    // every outbound HTTP request
	links    *fileproxy.Signer // signs download links (nil: no secrets key)
	public   gin.IRouter       // the HTTP routes without authentication (signed download links)
	// Set when a service serves HTTP: one producer serves ingestion, replay and the access log.
	producer *kgo.Client
	budgets  *quota.Budgets
	secrets  *secrets.Box
	// outbound is set when the outbound service runs (its routes need it).
	outbound *outbound.Service
	acks     *outbound.AckTable
	// orgOutbound caps each org's open outbound requests: managed calls, proxied requests and
	// webhook deliveries share it.
	orgOutbound *quota.Concurrency
}

// selectServices returns the named services in start order; an unknown name is an error.
func selectServices(names []string) ([]service, error) {
	for _, n := range names {
		if !slices.ContainsFunc(services, func(s service) bool { return s.name == n }) {
			return nil, fmt.Errorf("unknown service %q (one of %s, %s, %s, %s, %s)", n, Ingest, Process, Project, Query, Outbound)
		}
	}
	var out []service
	for _, s := range services {
		if slices.Contains(names, s.name) {
			out = append(out, s)
		}
	}
	return out, nil
}

func anyService(svcs []service, pred func(service) bool) bool { return slices.ContainsFunc(svcs, pred) }

func ingestRoutes(rt *runtime, api *gin.RouterGroup) error {
	svc, err := ingest.New(ingest.Config{Topics: rt.topics, Producer: rt.producer, Registry: rt.registry, AckTimeout: rt.cfg.AckTimeout,
		Log: rt.log, Now: rt.cfg.Now, Metrics: rt.metrics, Budgets: rt.budgets})
	if err != nil {
		return err
	}
	svc.Register(api.Group("/", httpapi.Service("ingest")))
	(&configapi.API{Registry: rt.registry, Secrets: rt.secrets, CheckURL: rt.egress.CheckLiteral}).Register(api.Group("/", httpapi.Service("config")))
	callOutRoutes(rt, api)
	if rt.links != nil {
		(&fileproxy.Service{Registry: rt.registry, Secrets: rt.secrets, Signer: rt.links, Egress: rt.egress, Auth: connector.NewAuthorizer(rt.egress),
			Proxies: secureProxies(rt), Producer: rt.producer, Topics: rt.topics, MaxFileBytes: rt.cfg.FileProxyMaxBytes, Log: rt.log}).
			Register(rt.public)
	}
	return nil
}

func secureProxies(rt *runtime) secureproxy.Proxies {
	return secureproxy.Proxies{StaticIP: rt.cfg.SecureProxyStaticIPProxy, SecureLink: rt.cfg.SecureProxySecureLinkProxy}
}

// callOutRoutes serve the calls erpstream makes on a tenant's behalf: managed calls and the secure
// proxy. They sit with ingestion (the write side: a managed call may queue an inbound event).
func callOutRoutes(rt *runtime, api *gin.RouterGroup) {
	proxies := secureProxies(rt)
	orgOutbound := rt.orgOutbound
	(&managedcall.Service{Registry: rt.registry, Secrets: rt.secrets, Egress: rt.egress, Auth: connector.NewAuthorizer(rt.egress),
		Proxies: proxies, Producer: rt.producer, Topics: rt.topics, Outbound: orgOutbound, Log: rt.log}).
		Register(api.Group("/", httpapi.Service("managed_call")))
	(&secureproxy.Service{Registry: rt.registry, Egress: rt.egress, Proxies: proxies, Producer: rt.producer, Topics: rt.topics,
		Outbound: orgOutbound, Log: rt.log}).Register(api.Group("/", httpapi.Service("secure_proxy")))
}

// queryRoutes serves monitoring, and replay beside it: replay reads the raw payloads the query
// side keeps in ClickHouse, so it runs where ClickHouse is reachable, but writes through the
// producer like ingestion.
func queryRoutes(rt *runtime, api *gin.RouterGroup) error {
	store := &query.ClickHouseStore{Conn: rt.ch}
	monitoring := api.Group("/", httpapi.Service("monitoring"))
	(&query.Service{Store: store, Registry: rt.registry, Log: rt.log}).Register(monitoring)
	(&replay.Service{Source: store, Registry: rt.registry, Producer: rt.producer, Topics: rt.topics, Log: rt.log,
		Budgets: rt.budgets}).Register(monitoring)
	return nil
}

func startProcessor(ctx context.Context, rt *runtime) error {
	p, err := processor.New(processor.Config{Kafka: rt.cfg.Kafka, Topics: rt.topics, InstanceID: rt.cfg.InstanceID, Registry: rt.registry,
		Log: rt.log, Metrics: rt.metrics, FileProxyBaseURL: rt.cfg.FileProxyBaseURL, SignLink: signLink(rt.links),
		StateDir: rt.cfg.ProcessorStateDir, Standby: rt.cfg.ProcessorStandby, MapAheadOrgs: rt.cfg.MapAheadOrgs, OrgMappingPerMinute: rt.cfg.OrgMappingPerMinute})
	if err != nil {
		return err
	}
	rt.group.Go("processor", func() error { return p.Run(ctx) })
	return nil
}

func startProjector(ctx context.Context, rt *runtime) error {
	p, err := projector.New(projector.Config{Kafka: rt.cfg.Kafka, Topics: rt.topics,
		Sink: &projector.ClickHouseSink{Conn: rt.ch}, Stored: &projector.ClickHouseStored{Conn: rt.ch},
		FlushInterval: rt.cfg.ProjectorFlushInterval, EntityCache: rt.cfg.ProjectorEntityCache, Log: rt.log, AfterInsert: rt.cfg.ProjectorAfterInsert, Metrics: rt.metrics,
		Retention: projector.Retention(rt.ch, RawRetentionDays, MonitoringRetentionDays, time.Now)})
	if err != nil {
		return err
	}
	rt.group.Go("projector", func() error { return p.Run(ctx) })
	return nil
}

// OutboundConfig tunes webhook delivery (docs/outbound.md).
type OutboundConfig struct {
	// DestinationConcurrency: open requests per destination (ERPSTREAM_OUTBOUND_DESTINATION_CONCURRENCY, 8).
	DestinationConcurrency int
	// DestinationQueue: deliveries waiting per destination before further ones are deferred
	// (ERPSTREAM_OUTBOUND_DESTINATION_QUEUE, 512).
	DestinationQueue int
	// Timeout of one attempt (ERPSTREAM_OUTBOUND_TIMEOUT_SECONDS, 15).
	Timeout time.Duration
	// AckWindow: how long an acknowledgement may take (ERPSTREAM_ACK_WINDOW_MINUTES, 1440).
	AckWindow time.Duration
	// MaxPendingAcksPerOrg (ERPSTREAM_ACK_MAX_PENDING_PER_ORG, 100000).
	MaxPendingAcksPerOrg int
	// EntityWait: how long a change waits for its entity to be stored (tests shorten it).
	EntityWait time.Duration
	// RetryDelays replace the retry topics' waits (tests shorten them).
	RetryDelays []time.Duration
}

// startOutbound runs the acknowledgement table and the delivery consumer. The service has a
// producer of its own: retries, dead letters and acks are written before their source record
// counts as done, so they never wait behind the API's traffic.
func startOutbound(ctx context.Context, rt *runtime) error {
	producer, err := kgo.NewClient(append(rt.cfg.Kafka.ClientOpts(rt.log, "outbound-producer"), kafkax.ProducerOpts(rt.topics, 30*time.Second)...)...)
	if err != nil {
		return fmt.Errorf("outbound producer: %w", err)
	}
	rt.acks = &outbound.AckTable{Kafka: rt.cfg.Kafka, Topics: rt.topics, Producer: producer, Log: rt.log,
		Window: rt.cfg.Outbound.AckWindow, MaxPendingPerOrg: rt.cfg.Outbound.MaxPendingAcksPerOrg, Metrics: rt.metrics}
	svc, err := outbound.New(outbound.Config{Kafka: rt.cfg.Kafka, Topics: rt.topics, Registry: rt.registry, Secrets: rt.secrets,
		Egress: rt.egress, Entities: &outbound.ClickHouseEntities{Conn: rt.ch}, Producer: producer, Acks: rt.acks,
		DestinationConcurrency: rt.cfg.Outbound.DestinationConcurrency, DestinationQueue: rt.cfg.Outbound.DestinationQueue,
		OrgConcurrency: rt.orgOutbound, Timeout: rt.cfg.Outbound.Timeout, EntityWait: rt.cfg.Outbound.EntityWait,
		RetryDelays: rt.cfg.Outbound.RetryDelays, ProjectorGroup: projector.DefaultGroup,
		Log: rt.log, Metrics: rt.metrics})
	if err != nil {
		producer.Close()
		return err
	}
	rt.outbound = svc
	rt.group.Go("outbound-acks", func() error { return rt.acks.Run(ctx) })
	rt.group.Go("outbound", func() error {
		defer producer.Close()
		return svc.Run(ctx)
	})
	return nil
}

func outboundRoutes(rt *runtime, api *gin.RouterGroup) error {
	rt.acks.RegisterPublic(rt.public)
	rt.outbound.Register(api.Group("/", httpapi.Service("outbound")))
	return nil
}

// signLink is the processor's link signer (nil without a secrets key).
func signLink(s *fileproxy.Signer) func(org, link string) string {
	if s == nil {
		return nil
	}
	return s.Sign
}
