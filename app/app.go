// Package app is erpstream's composition root: it connects to Kafka and ClickHouse, prepares
// topics and schema, and runs the chosen services in one process (all of them for `serve`).
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/api"
	"github.com/erpstream/erpstream/console"
	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/fileproxy"
	"github.com/erpstream/erpstream/ingest"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/chx"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/logctx"
	"github.com/erpstream/erpstream/internal/quota"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/secrets"
	"github.com/erpstream/erpstream/internal/tracing"
	"github.com/erpstream/erpstream/processor"
	"github.com/erpstream/erpstream/projector/schema"
)

// Service names, as the subcommands call them.
const (
	Ingest  = "ingest"
	Process = "process"
	Project = "project"
	Query   = "query"
	// Outbound delivers entity changes to webhooks and serves acknowledgements and the trigger.
	Outbound = "outbound"
)

// Retention: raw payloads 14 days, monitoring 90 days.
const (
	RawRetentionDays        = 14
	MonitoringRetentionDays = 90
)

// ConsoleServices is what `erpstream console` runs: the console calls these services' routes
// in its process (both only answer requests: no consumer runs with them).
var ConsoleServices = []string{Ingest, Query}

// AllServices is what `erpstream serve` runs.
var AllServices = []string{Ingest, Process, Project, Query, Outbound}

// Config of one erpstream process.
type Config struct {
	Services []string
	HTTPAddr string // ERPSTREAM_HTTP_ADDR, default 127.0.0.1:8080
	// MetricsAddr serves GET /metrics (Prometheus) and GET /healthz on a listener of its own
	// (ERPSTREAM_METRICS_ADDR), meant for a private network.
	MetricsAddr string
	// MetricsToken, when set, also serves /metrics on the API port to requests bearing it
	// (ERPSTREAM_METRICS_TOKEN); without it the API port serves no metrics.
	MetricsToken string
	// ProcessorStateDir keeps the processor's entity states on disk (Pebble) with a bounded cache,
	// restarting from the store's checkpoint. Empty: in memory (tests); the command line always
	// names a directory unless ERPSTREAM_PROCESSOR_STATE_DIR=memory.
	ProcessorStateDir string
	// ProcessorStandby also keeps the states of the partitions the instance does not hold current
	// on its disk, so taking one over is quick (ERPSTREAM_PROCESSOR_STANDBY=true; docs/scaling.md).
	ProcessorStandby bool
	// MapAheadOrgs are orgs whose events the processor instances that do not apply them map
	// ahead of the one that does, order kept (ERPSTREAM_ORG_MAP_AHEAD; docs/scaling.md).
	MapAheadOrgs map[string]bool
	// ProjectorEntityCache is how many recently stored entities the projector keeps to patch
	// their next writes without a ClickHouse read (ERPSTREAM_PROJECTOR_ENTITY_CACHE, 100,000;
	// negative: none).
	ProjectorEntityCache int
	// ConsoleDisabled turns the operator console at /console off (ERPSTREAM_CONSOLE=off).
	ConsoleDisabled bool
	Listener        net.Listener // tests pass their own; else HTTPAddr is listened on

	Kafka kafkax.Config
	// Without Kafka.Brokers an embedded broker (kfake) keeps its data in EmbeddedKafkaDir.
	EmbeddedKafkaDir  string
	EmbeddedKafkaPort int

	ClickHouse chx.Config

	DevMode   bool   // ERPSTREAM_DEV_MODE: DevToken acts for org dev-org with every permission
	DevToken  string // ERPSTREAM_DEV_TOKEN, default dev-token
	APITokens string // ERPSTREAM_API_TOKENS: token=org[:perm+perm],...
	JWT       auth.JWTConfig
	// SecretsKey seals SecretString environment values (ERPSTREAM_SECRETS_KEY, base64 of 32 bytes).
	// In dev mode without one, a key is generated once and kept in <EmbeddedKafkaDir>/../secrets.key.
	SecretsKey string
	// RateLimitPerMinute caps API requests per org and process (ERPSTREAM_RATE_LIMIT_PER_MIN,
	// default 1000; negative disables).
	RateLimitPerMinute int
	// OrgBudgets are each org's budgets in events and bytes a minute and bytes in flight
	// (ERPSTREAM_ORG_EVENTS_PER_MIN, ERPSTREAM_ORG_MB_PER_MIN, ERPSTREAM_ORG_INFLIGHT_MB;
	// zero takes the defaults, negative disables).
	OrgBudgets quota.Limits
	// OrgMappingPerMinute is an org's share of a processor instance's mapping time a minute
	// while other orgs' events wait (ERPSTREAM_ORG_MAPPING_SECONDS_PER_MIN, default 30 s;
	// negative disables): past it ingest holds the org's new events back (processor/orgload.go).
	OrgMappingPerMinute time.Duration

	// EgressAllowCIDRs are the ranges outbound requests may reach although private, loopback or
	// link-local (ERPSTREAM_EGRESS_ALLOW_CIDRS, empty by default, also in dev mode).
	EgressAllowCIDRs []netip.Prefix
	// EgressProxy sends every outbound request through a forward proxy (ERPSTREAM_EGRESS_PROXY,
	// http://host:port, HTTP CONNECT).
	EgressProxy string
	// EgressTimeout bounds one outbound request (default 25 s); tests shorten it.
	EgressTimeout time.Duration
	// SecureProxyStaticIPProxy and SecureProxySecureLinkProxy are the forward proxies of the secure
	// proxy's two modes (ERPSTREAM_SECURE_PROXY_STATIC_IP_PROXY, ERPSTREAM_SECURE_PROXY_SECURE_LINK_PROXY;
	// unset: that mode goes out directly).
	SecureProxyStaticIPProxy, SecureProxySecureLinkProxy string
	// OrgOutboundConcurrency caps each org's open managed calls and proxied requests per process
	// (ERPSTREAM_ORG_OUTBOUND_CONCURRENCY, default 32; negative: unlimited).
	OrgOutboundConcurrency int

	// FileProxyKeyID names the key download links are signed with (ERPSTREAM_FILE_PROXY_KEY_ID,
	// default k1); links of FileProxyPreviousKeyIDs (ERPSTREAM_FILE_PROXY_PREVIOUS_KEY_IDS) still
	// verify. FileProxyLinkTTL gives links an expiry (ERPSTREAM_FILE_PROXY_LINK_TTL_HOURS; 0: none).
	FileProxyKeyID          string
	FileProxyPreviousKeyIDs []string
	FileProxyLinkTTL        time.Duration
	// FileProxyMaxBytes caps one downloaded file (ERPSTREAM_FILE_PROXY_MAX_MB, default 50).
	FileProxyMaxBytes int64

	// Outbound tunes the outbound service (ERPSTREAM_OUTBOUND_*; zero values take its defaults).
	Outbound OutboundConfig

	// FileProxyBaseURL is the base of the download URLs file_proxy_url fields build
	// (ERPSTREAM_FILE_PROXY_BASE_URL, default http://<HTTPAddr>).
	FileProxyBaseURL string

	InstanceID string // ERPSTREAM_INSTANCE_ID, default a random id
	AckTimeout time.Duration
	// RequestTimeout bounds reading and answering one request (default 60 s); tests shorten it.
	RequestTimeout time.Duration
	// ProjectorFlushInterval bounds how long a projector batch waits for more rows.
	ProjectorFlushInterval time.Duration
	// ProjectorAfterInsert is the projector's crash hook for tests (projector.Config.AfterInsert).
	ProjectorAfterInsert func() error

	Log *slog.Logger
	// Now is ingest's clock (receive times, and so the deduplication window); tests inject one.
	Now func() time.Time
	// OnReady is called with the HTTP address once every service is ready.
	OnReady func(httpAddr string)
}

// Run runs the configured services until ctx ends or one of them fails.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	// Every line logged with a request's context names its request id and correlation id.
	log := slog.New(logctx.Handler{Next: cfg.Log.Handler()})
	cfg.Log = log
	svcs, err := selectServices(cfg.Services)
	if err != nil {
		return err
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:8080"
	}
	if cfg.FileProxyBaseURL == "" {
		cfg.FileProxyBaseURL = "http://" + cfg.HTTPAddr
	}
	embedded := len(cfg.Kafka.Brokers) == 0
	if embedded {
		emb, err := kafkax.StartEmbedded(cfg.EmbeddedKafkaDir, cfg.EmbeddedKafkaPort)
		if err != nil {
			return err
		}
		defer emb.Close()
		cfg.Kafka.Brokers = emb.Brokers()
		log.Info("embedded kafka (kfake) started", "brokers", cfg.Kafka.Brokers, "data_dir", cfg.EmbeddedKafkaDir)
	}
	if err := waitReachable(ctx, log, "kafka", func(ctx context.Context) error { return pingKafka(ctx, cfg.Kafka, log) }); err != nil {
		return nil // ctx ended while waiting
	}
	eventsPartitions, err := PrepareTopics(ctx, cfg.Kafka, log)
	if err != nil {
		return err
	}
	topics := cfg.Kafka.Topics().PlacedAmong(eventsPartitions)
	if embedded {
		if err := relayoutEmbedded(ctx, cfg, topics, log); err != nil {
			return err
		}
	}

	authn := &auth.StaticTokens{}
	if cfg.DevMode {
		if cfg.DevToken == "" {
			cfg.DevToken = "dev-token"
		}
		authn.Add(cfg.DevToken, auth.DevPrincipal(cfg.DevToken))
		log.Warn("dev mode: one token acts for org dev-org with every permission; never use in production")
	}
	if err := auth.ParseStaticTokens(cfg.APITokens, authn); err != nil {
		return fmt.Errorf("ERPSTREAM_API_TOKENS: %w", err)
	}

	var ch driver.Conn
	if anyService(svcs, func(s service) bool { return s.clickHouse }) {
		var conn driver.Conn
		if err := waitReachable(ctx, log, "clickhouse", func(ctx context.Context) error {
			c, err := chx.Open(ctx, cfg.ClickHouse)
			conn = c
			return err
		}); err != nil {
			return nil // ctx ended while waiting
		}
		defer conn.Close()
		if err := schema.Migrate(ctx, conn, log); err != nil {
			return err
		}
		ch = conn
		log.Info("clickhouse ready", "addr", cfg.ClickHouse.Addr, "database", cfg.ClickHouse.Database)
	}

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo(cfg.Services))
	// The long-lived clients export franz-go's client metrics (kprom) as erpstream_kafka_*.
	cfg.Kafka.Metrics = metrics
	reg, err := registry.New(registry.Config{Topic: topics.Config, Opts: cfg.Kafka.BaseOpts(log), Log: log})
	if err != nil {
		return err
	}
	defer reg.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Every outbound request of this process goes through one egress client.
	outbound, err := egress.New(egress.Config{AllowCIDRs: cfg.EgressAllowCIDRs, Proxy: cfg.EgressProxy, Timeout: cfg.EgressTimeout,
		Metrics: metrics})
	if err != nil {
		return err
	}
	// Traces go to the operator's OTLP endpoint (OTEL_EXPORTER_OTLP_ENDPOINT) through egress too:
	// the endpoint is the operator's own setting, so any address is allowed for it.
	shutdownTracing, err := tracing.Setup(ctx, cfg.Services, outbound.HTTPClient(egress.Policy{Purpose: "otlp",
		Allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}}))
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		_ = shutdownTracing(sctx)
	}()
	jwtVerifier, err := auth.NewJWTVerifier(ctx, cfg.JWT, outbound.HTTPClient(egress.Policy{Purpose: "jwks"}))
	if err != nil {
		return err
	}
	box, err := secretsBox(cfg, log)
	if err != nil {
		return err
	}
	g := &group{cancel: cancel}
	g.Go("registry", func() error { return reg.Run(ctx) })
	select {
	case <-reg.Ready():
	case <-ctx.Done():
		return g.Wait()
	}

	metricsHandler := promhttp.HandlerFor(metrics, promhttp.HandlerOpts{})
	// Consumers are watched from the broker's side: one that blocks inside its client logs
	// nothing, so readiness and erpstream_consumer_stalled come from its committed offsets.
	var progress *kafkax.LagMonitor
	var watched []string
	for _, s := range svcs {
		if s.consumerGroup != "" {
			watched = append(watched, s.consumerGroup)
		}
	}
	if len(watched) > 0 {
		admin, err := kgo.NewClient(cfg.Kafka.BaseOpts(log)...)
		if err != nil {
			return fmt.Errorf("kafka admin client: %w", err)
		}
		defer admin.Close()
		if progress, err = kafkax.NewLagMonitor(admin, watched, log, metrics); err != nil {
			return err
		}
		g.Go("lag-monitor", func() error { return progress.Run(ctx) })
	}
	ready := newReadiness()
	ready.progress = progress
	probeClient, err := kgo.NewClient(cfg.Kafka.BaseOpts(log)...)
	if err != nil {
		return fmt.Errorf("kafka probe client: %w", err)
	}
	defer probeClient.Close()
	g.Go("probe-kafka", func() error { ready.probe(ctx, "kafka", 5*time.Second, probeClient.Ping); return nil })
	if ch != nil {
		g.Go("probe-clickhouse", func() error { ready.probe(ctx, "clickhouse", 5*time.Second, ch.Ping); return nil })
	}

	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metricsHandler)
		mux.HandleFunc("/livez", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		readyz := func(w http.ResponseWriter, _ *http.Request) {
			if err := ready.check(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		}
		mux.HandleFunc("/readyz", readyz)
		mux.HandleFunc("/healthz", readyz) // the name of earlier versions
		msrv := &http.Server{Addr: cfg.MetricsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		g.Go("metrics", func() error {
			if err := msrv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("metrics on %s: %w", cfg.MetricsAddr, err)
			}
			return nil
		})
		g.Go("metrics-shutdown", func() error {
			<-ctx.Done()
			return msrv.Close()
		})
	}

	rt := &runtime{cfg: cfg, log: log, topics: topics, registry: reg, ch: ch, metrics: metrics, group: g, secrets: box, egress: outbound,
		orgOutbound: quota.NewConcurrency(cfg.OrgOutboundConcurrency)}
	if box != nil {
		if rt.links, err = fileproxy.NewSigner(box, cfg.FileProxyKeyID, cfg.FileProxyPreviousKeyIDs, cfg.FileProxyLinkTTL); err != nil {
			return err
		}
	} else {
		log.Warn("no secrets key: file_proxy_url links are written unsigned and the download route refuses them")
	}
	for _, s := range svcs {
		if s.start != nil {
			if err := s.start(ctx, rt); err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
		}
	}

	if anyService(svcs, func(s service) bool { return s.routes != nil }) {
		engine := httpapi.NewEngine(log)
		engine.Use(httpapi.RequestMetrics(metrics))
		if cfg.MetricsToken != "" {
			// On the public API port metrics need their own bearer token: they name orgs'
			// integrations and reveal load. Without one, only ERPSTREAM_METRICS_ADDR serves them.
			engine.GET("/metrics", httpapi.RequireBearer(cfg.MetricsToken), gin.WrapH(metricsHandler))
		}
		engine.GET("/livez", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
		readyz := func(c *gin.Context) {
			if err := ready.check(); err != nil {
				httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, err.Error())
				return
			}
			c.JSON(http.StatusOK, gin.H{"status": "ok", "services": cfg.Services})
		}
		engine.GET("/readyz", readyz)
		engine.GET("/healthz", readyz)
		// Tokens: dev and static tokens, then API tokens (hashed, in the config log), then JWTs.
		chain := auth.Chain{authn, reg}
		if jwtVerifier.Enabled() {
			chain = append(chain, jwtVerifier)
		}
		perMinute := cfg.RateLimitPerMinute
		if perMinute == 0 {
			perMinute = 1000
		}
		limiter := &httpapi.RateLimiter{PerMinute: perMinute}
		producer, err := kgo.NewClient(append(cfg.Kafka.ClientOpts(log, "api-producer"), kafkax.ProducerOpts(topics, 30*time.Second)...)...)
		if err != nil {
			return fmt.Errorf("kafka producer: %w", err)
		}
		defer producer.Close()
		rt.producer, rt.budgets = producer, quota.New(cfg.OrgBudgets)
		loadWatch, err := kgo.NewClient(append(cfg.Kafka.ClientOpts(log, "org-load"), kgo.ConsumeTopics(topics.OrgLoad),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
		if err != nil {
			return fmt.Errorf("kafka org-load consumer: %w", err)
		}
		defer loadWatch.Close()
		watch := ingest.NewOrgLoadWatch(ctx, loadWatch, topics.OrgLoad, rt.budgets, log)
		g.Go("org-load", func() error { return watch.Run(ctx) })
		access := &accessLogProducer{client: producer, topic: topics.Access, log: log,
			dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "erpstream_access_log_dropped_total",
				Help: "Access log entries dropped because the producer buffer was full or Kafka unreachable."})}
		metrics.MustRegister(access.dropped)
		rt.public = engine
		engine.GET("/openapi.json", openAPIHandler(engine))
		api := engine.Group("/", httpapi.RequireAuth(chain, log), httpapi.AccessLog(access.record), limiter.Middleware())
		for _, s := range svcs {
			if s.routes != nil {
				if err := s.routes(rt, api); err != nil {
					return fmt.Errorf("%s: %w", s.name, err)
				}
			}
		}
		if !cfg.ConsoleDisabled {
			if err := mountConsole(engine, chain, box, log); err != nil {
				return err
			}
		}
		ln := cfg.Listener
		if ln == nil {
			if ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
				return fmt.Errorf("listen %s: %w", cfg.HTTPAddr, err)
			}
		}
		// A request has RequestTimeout to be read and answered; streaming routes replace it with
		// idle deadlines per line (httpapi.StreamIn/StreamOut).
		timeout := cfg.RequestTimeout
		if timeout <= 0 {
			timeout = 60 * time.Second
		}
		srv := &http.Server{Handler: engine, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: timeout,
			WriteTimeout: timeout, IdleTimeout: 120 * time.Second}
		g.Go("http", func() error {
			err := srv.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		})
		g.Go("http-shutdown", func() error {
			<-ctx.Done()
			// In-flight requests finish (their events are acknowledged or answered 503) before exit.
			sctx, scancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer scancel()
			return srv.Shutdown(sctx)
		})
		cfg.HTTPAddr = ln.Addr().String()
	}
	ready.started.Store(true)
	log.Info("erpstream ready", "services", cfg.Services, "http", cfg.HTTPAddr)
	if cfg.OnReady != nil {
		cfg.OnReady(cfg.HTTPAddr)
	}
	return g.Wait()
}

// waitReachable retries reach until it succeeds or ctx ends: a process started while Kafka or
// ClickHouse is away (a host booting, a restart in progress) waits for it, saying so, instead of
// exiting.
func waitReachable(ctx context.Context, log *slog.Logger, what string, reach func(context.Context) error) error {
	backoff := time.Second
	for {
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := reach(rctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Warn(what+" unreachable; waiting for it", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

func pingKafka(ctx context.Context, kc kafkax.Config, log *slog.Logger) error {
	cl, err := kgo.NewClient(kc.BaseOpts(log)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.Ping(ctx)
}

// PrepareTopics creates missing topics, verifies them against the topic table and returns the
// events topic's partition count, which the services place orgs among until they restart
// (kafkax.Topics.PlacedAmong).
func PrepareTopics(ctx context.Context, kc kafkax.Config, log *slog.Logger) (eventsPartitions int32, err error) {
	cl, err := kgo.NewClient(kc.BaseOpts(log)...)
	if err != nil {
		return 0, fmt.Errorf("kafka: %w", err)
	}
	defer cl.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.Ping(pctx); err != nil {
		return 0, fmt.Errorf("kafka %v unreachable: %w", kc.Brokers, err)
	}
	partitions := kc.Partitions
	if partitions <= 0 {
		partitions = 12
	}
	replication := kc.Replication
	if replication <= 0 {
		replication = 1
	}
	topics := kc.Topics()
	specs := topics.Specs(partitions)
	adm := kadm.NewClient(cl)
	if err := kafkax.EnsureTopics(pctx, adm, specs, replication); err != nil {
		return 0, err
	}
	details, err := adm.ListTopics(pctx, topics.Events)
	if err != nil {
		return 0, fmt.Errorf("list topic %s: %w", topics.Events, err)
	}
	eventsPartitions = int32(len(details[topics.Events].Partitions))
	if err := kc.OrgPartitions.Check(eventsPartitions); err != nil {
		return 0, err
	}
	log.Info("kafka topics ready", "brokers", kc.Brokers, "prefix", kc.TopicPrefix, "events_partitions", eventsPartitions)
	return eventsPartitions, nil
}

// Migrate applies the ClickHouse migrations (erpstream admin migrate).
func Migrate(ctx context.Context, cfg chx.Config, log *slog.Logger) error {
	conn, err := chx.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	return schema.Migrate(ctx, conn, log)
}

// group runs goroutines; the first failure cancels the others and is returned by Wait.
type group struct {
	wg     sync.WaitGroup
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

func (g *group) Go(name string, fn func() error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := fn(); err != nil {
			g.once.Do(func() {
				g.err = fmt.Errorf("%s: %w", name, err)
				g.cancel()
			})
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	return g.err
}

// secretsBox opens the key that seals SecretString values.
func secretsBox(cfg Config, log *slog.Logger) (*secrets.Box, error) {
	key := cfg.SecretsKey
	if key == "" && cfg.DevMode && cfg.EmbeddedKafkaDir != "" {
		path := filepath.Join(filepath.Dir(cfg.EmbeddedKafkaDir), "secrets.key")
		if b, err := os.ReadFile(path); err == nil {
			key = strings.TrimSpace(string(b))
		} else {
			key = secrets.NewKey()
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err == nil {
				_ = os.WriteFile(path, []byte(key+"\n"), 0o600)
			}
			log.Warn("dev mode: generated a secrets key", "file", path)
		}
	}
	if key == "" {
		log.Warn("no ERPSTREAM_SECRETS_KEY: SecretString environment values cannot be stored")
		return nil, nil
	}
	return secrets.NewBox(key)
}

// accessLogProducer hands access log entries to Kafka without ever blocking a request: when the
// producer's buffer is full the entry is dropped and counted (the API call itself succeeded).
type accessLogProducer struct {
	client  *kgo.Client
	topic   string
	log     *slog.Logger
	dropped prometheus.Counter
	drops   atomic.Int64
}

func (a *accessLogProducer) record(e envelope.AccessLog) {
	value, _ := json.Marshal(&e)
	a.client.TryProduce(context.Background(), &kgo.Record{Topic: a.topic, Key: []byte(e.OrgID), Value: value}, func(_ *kgo.Record, err error) {
		if err != nil {
			// Log the first drop and then every 1,000th, so a broker outage does not flood the log.
			a.dropped.Inc()
			if n := a.drops.Add(1); n == 1 || n%1000 == 0 {
				a.log.Warn("access log entries dropped", "dropped_total", n, "err", err)
			}
		}
	})
}

// openAPIHandler serves erpstream's OpenAPI document with the routes this process has registered
// (built on the first request, when every route is in place).
func openAPIHandler(engine *gin.Engine) gin.HandlerFunc {
	var once sync.Once
	var doc []byte
	var err error
	return func(c *gin.Context) {
		once.Do(func() {
			var routes []api.Operation
			for _, r := range engine.Routes() {
				if r.Path == console.Prefix || strings.HasPrefix(r.Path, console.Prefix+"/") {
					continue // the console's pages are not API operations
				}
				routes = append(routes, api.FromGin(r.Method, r.Path))
			}
			doc, err = api.Document(routes)
		})
		if err != nil {
			httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "the API document cannot be built")
			return
		}
		c.Data(http.StatusOK, "application/json", doc)
	}
}

// relayoutEmbedded runs, once per data dir, the upgrade step operators run by hand (erpstream
// admin relayout): the embedded broker's data dir may hold states of a version before events were
// partitioned by org, and this process is its only processor and has not started yet. A marker
// in the data dir records that it ran, so later starts do not read both state topics again.
func relayoutEmbedded(ctx context.Context, cfg Config, topics kafkax.Topics, log *slog.Logger) error {
	marker := filepath.Join(cfg.EmbeddedKafkaDir, "layout-by-org")
	if cfg.EmbeddedKafkaDir == "" { // a broker in memory starts empty
		return nil
	}
	if _, err := os.Stat(marker); err == nil {
		return nil
	}
	rep, err := processor.Relayout(ctx, cfg.Kafka, topics, log)
	if err != nil {
		return fmt.Errorf("embedded kafka: relayout of the entity state: %w", err)
	}
	if rep.StatesMoved+rep.MarksMoved > 0 {
		log.Info("embedded kafka: states of the earlier layout moved to their org's partition",
			"states", rep.StatesMoved, "dedup_marks", rep.MarksMoved, "without_org", rep.Unplaceable)
	}
	if err := os.WriteFile(marker, []byte("entity states and dedup marks are in their org's partition (erpstream admin relayout ran)\n"), 0o644); err != nil {
		log.Warn("embedded kafka: relayout marker not written; the next start checks the layout again", "err", err)
	}
	return nil
}
