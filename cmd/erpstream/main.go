// Command erpstream runs the ERP integration pipeline.
//
//	erpstream serve                 all services in one process
//	erpstream ingest|process|project|query   one service each, to scale them apart
//	erpstream admin ensure-topics   create and verify the Kafka topics
//	erpstream admin migrate         apply the ClickHouse migrations
//
// Configuration comes from the environment; see the README's table.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/chx"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/processor"
)

const usage = `usage: erpstream <command>

commands:
  serve                  run every service in one process (ingest, process, project, query, outbound) and the console
  status [--org O ...]   topics, schema version, consumer groups (members, their partitions, lag);
                         per org: its events partition, the processor instance mapping it, its lag
  version                print the version (module version, commit, build time)
  healthcheck [--live] [--url U]   exit 0 when this host's erpstream is ready (/readyz), 1 otherwise
  ingest                 HTTP API for events and configuration
  process                map events into entity writes and monitoring events
  project                write entities and monitoring events into ClickHouse
  query                  HTTP monitoring API served from ClickHouse
  outbound               deliver entity changes to webhooks; acknowledgements, trigger, outbound status
  console                the operator console (/console) with the HTTP routes of ingest and query it calls
  admin init             ensure-topics, then migrate (a deployment's one-shot job)
  admin ensure-topics    create and verify the Kafka topics
  admin migrate          apply the ClickHouse schema migrations
  admin relayout         move entity states and dedup marks to their org's partition (once, upgrading from active/standby processors)
  admin token create --org O --name N [--perm erp:read,erp:events,...]   create an API token (printed once)
  admin token list --org O | revoke --org O --id ID
  admin env set --org O --key K [--secret] [--description D]   value read from stdin
  admin secure-proxy set-allowlist --org O --use-case ID [--domains a.com,*.b.com] [--ips 10.0.0.0/8,...]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "healthcheck":
		os.Exit(healthcheck(os.Args[2:]))
	case "version", "--version":
		fmt.Println(version())
		return
	}
	log := newLogger()
	if os.Getenv("GOGC") == "" {
		// The stages allocate briskly and keep small heaps (the processor's entity state is on
		// disk): at Go's default of 100 a tenth of their CPU went to the garbage collector.
		// GOGC (and GOMEMLIMIT) set by the operator win.
		debug.SetGCPercent(200)
	}
	setMemoryLimitFromContainer(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := configFromEnv(log)
	if err != nil {
		log.Error("configuration", "err", err)
		os.Exit(2)
	}
	switch cmd := os.Args[1]; cmd {
	case "serve":
		cfg.Services = app.AllServices
	case app.Ingest, app.Process, app.Project, app.Query, app.Outbound:
		cfg.Services = []string{cmd}
	case "console":
		cfg.Services = app.ConsoleServices
	case "admin":
		err = admin(ctx, cfg, log, os.Args[2:])
		exit(log, err)
		return
	case "status":
		orgs, err := statusOrgs(os.Args[2:])
		if err != nil {
			exit(log, err)
			return
		}
		exit(log, app.Status(ctx, cfg, log, os.Stdout, orgs...))
		return
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if path := os.Getenv("ERPSTREAM_CPU_PROFILE"); path != "" {
		defer startCPUProfile(log, path)()
	}
	if path := os.Getenv("ERPSTREAM_HEAP_PROFILE"); path != "" {
		go writeHeapProfiles(ctx, log, path, 10*time.Second)
	}
	exit(log, app.Run(ctx, cfg))
}

func admin(ctx context.Context, cfg app.Config, log *slog.Logger, args []string) error {
	if len(args) == 0 {
		return errors.New("admin needs one of: init, ensure-topics, migrate, relayout, partitions, token, env, secure-proxy")
	}
	switch args[0] {
	case "token", "env", "secure-proxy":
		return app.AdminConfig(ctx, cfg, log, args, os.Stdin, os.Stdout)
	case "ensure-topics":
		if len(cfg.Kafka.Brokers) == 0 {
			return errors.New("KAFKA_BROKERS is required for admin ensure-topics")
		}
		_, err := app.PrepareTopics(ctx, cfg.Kafka, log)
		return err
	case "migrate":
		return app.Migrate(ctx, cfg.ClickHouse, log)
	case "relayout":
		if len(cfg.Kafka.Brokers) == 0 {
			return errors.New("KAFKA_BROKERS is required for admin relayout")
		}
		rep, err := processor.Relayout(ctx, cfg.Kafka, cfg.Kafka.Topics(), log)
		if err != nil {
			return err
		}
		fmt.Printf("moved %d entity states and %d deduplication marks to their org's partition; %d states without an org left in place\n",
			rep.StatesMoved, rep.MarksMoved, rep.Unplaceable)
		return nil
	case "partitions":
		if len(cfg.Kafka.Brokers) == 0 {
			return errors.New("KAFKA_BROKERS is required for admin partitions")
		}
		usage := errors.New("admin partitions needs the partition count to grow the events topic to: erpstream admin partitions 16")
		if len(args) != 2 {
			return usage
		}
		n, err := strconv.ParseInt(args[1], 10, 32)
		if err != nil || n < 1 {
			return usage
		}
		rep, err := processor.GrowPartitions(ctx, cfg.Kafka, cfg.Kafka.Topics(), int32(n), log)
		if err != nil {
			return err
		}
		fmt.Printf("%s, %s, %s: %d -> %d partitions; moved %d entity states and %d deduplication marks to their org's partition\n",
			cfg.Kafka.Topics().Events, cfg.Kafka.Topics().EntityState, cfg.Kafka.Topics().Dedup, rep.From, rep.To,
			rep.Relayout.StatesMoved, rep.Relayout.MarksMoved)
		if rep.Unmapped > 0 {
			fmt.Printf("%d events were not mapped yet: the processors forward those now outside their org's partition there\n", rep.Unmapped)
		}
		fmt.Println("restart every service (ingest, process, …): until then each places orgs among the partitions it started with")
		return nil
	case "init":
		if len(cfg.Kafka.Brokers) == 0 {
			return errors.New("KAFKA_BROKERS is required for admin init")
		}
		if _, err := app.PrepareTopics(ctx, cfg.Kafka, log); err != nil {
			return err
		}
		return app.Migrate(ctx, cfg.ClickHouse, log)
	default:
		return fmt.Errorf("unknown admin command %q", args[0])
	}
}

func exit(log *slog.Logger, err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("erpstream stopped", "err", err)
		os.Exit(1)
	}
}

func newLogger() *slog.Logger {
	var level slog.Level
	if v := os.Getenv("ERPSTREAM_LOG_LEVEL"); v != "" {
		if err := level.UnmarshalText([]byte(v)); err != nil {
			fmt.Fprintf(os.Stderr, "ERPSTREAM_LOG_LEVEL=%q: not debug, info, warn or error; using info\n", v)
			level = slog.LevelInfo
		}
	}
	var h slog.Handler
	if os.Getenv("ERPSTREAM_LOG_FORMAT") == "json" {
		h = slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	} else {
		h = slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})
	}
	return slog.New(h)
}

func env(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}

// processorStateDir is where the processor keeps its entity states: on disk unless the operator
// asks for memory, so an instance's heap stays flat as entities grow without a setting to forget.
// The store is a cache of the state topic; a lost directory costs a restore, never data.
func processorStateDir() string {
	switch v := os.Getenv("ERPSTREAM_PROCESSOR_STATE_DIR"); v {
	case "memory":
		return ""
	case "":
		return filepath.Join(env("ERPSTREAM_DATA_DIR", ".run"), "processor-state")
	default:
		return v
	}
}

func configFromEnv(log *slog.Logger) (app.Config, error) {
	cfg := app.Config{
		HTTPAddr:     env("ERPSTREAM_HTTP_ADDR", "127.0.0.1:8080"),
		MetricsAddr:  os.Getenv("ERPSTREAM_METRICS_ADDR"),
		MetricsToken: os.Getenv("ERPSTREAM_METRICS_TOKEN"),
		// The console is on unless switched off.
		ConsoleDisabled:   os.Getenv("ERPSTREAM_CONSOLE") == "off",
		ProcessorStateDir: processorStateDir(),
		Kafka: kafkax.Config{
			TopicPrefix: env("ERPSTREAM_TOPIC_PREFIX", "erp"),
		},
		EmbeddedKafkaDir: env("ERPSTREAM_DATA_DIR", ".run") + "/kafka-embedded",
		ClickHouse: chx.Config{
			Addr:     env("CLICKHOUSE_ADDR", "127.0.0.1:19000"),
			Database: env("CLICKHOUSE_DATABASE", "erpstream"),
			User:     env("CLICKHOUSE_USER", "default"),
			Password: os.Getenv("CLICKHOUSE_PASSWORD"),
		},
		DevToken:  env("ERPSTREAM_DEV_TOKEN", "dev-token"),
		APITokens: os.Getenv("ERPSTREAM_API_TOKENS"),
		JWT: auth.JWTConfig{
			HS256Secret: []byte(os.Getenv("ERPSTREAM_JWT_HS256_SECRET")),
			JWKSFile:    os.Getenv("ERPSTREAM_JWKS_FILE"),
			JWKSURL:     os.Getenv("ERPSTREAM_JWKS_URL"),
			Issuer:      os.Getenv("ERPSTREAM_JWT_ISSUER"),
			Audience:    os.Getenv("ERPSTREAM_JWT_AUDIENCE"),
		},
		SecretsKey:       os.Getenv("ERPSTREAM_SECRETS_KEY"),
		InstanceID:       os.Getenv("ERPSTREAM_INSTANCE_ID"),
		FileProxyBaseURL: os.Getenv("ERPSTREAM_FILE_PROXY_BASE_URL"),
		EgressProxy:      os.Getenv("ERPSTREAM_EGRESS_PROXY"),

		FileProxyKeyID:             os.Getenv("ERPSTREAM_FILE_PROXY_KEY_ID"),
		SecureProxyStaticIPProxy:   os.Getenv("ERPSTREAM_SECURE_PROXY_STATIC_IP_PROXY"),
		SecureProxySecureLinkProxy: os.Getenv("ERPSTREAM_SECURE_PROXY_SECURE_LINK_PROXY"),
		Log:                        log,
	}
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		for _, s := range strings.Split(b, ",") {
			if s = strings.TrimSpace(s); s != "" {
				cfg.Kafka.Brokers = append(cfg.Kafka.Brokers, s)
			}
		}
	}
	var err error
	if err := secureConnections(&cfg); err != nil {
		return cfg, err
	}
	if v := os.Getenv("ERPSTREAM_OUTBOUND_RETRY_DELAYS"); v != "" {
		if cfg.Outbound.RetryDelays, err = retryDelays(v); err != nil {
			return cfg, err
		}
	}
	for _, id := range strings.Split(os.Getenv("ERPSTREAM_FILE_PROXY_PREVIOUS_KEY_IDS"), ",") {
		if id = strings.TrimSpace(id); id != "" {
			cfg.FileProxyPreviousKeyIDs = append(cfg.FileProxyPreviousKeyIDs, id)
		}
	}
	if cfg.Kafka.OrgPartitions, err = kafkax.ParsePlacement(os.Getenv("ERPSTREAM_ORG_PARTITIONS")); err != nil {
		return cfg, fmt.Errorf("ERPSTREAM_ORG_PARTITIONS: %w", err)
	}
	if cfg.Kafka.SpreadOrgs, err = kafkax.ParseOrgs(os.Getenv("ERPSTREAM_ORG_SPREAD")); err != nil {
		return cfg, fmt.Errorf("ERPSTREAM_ORG_SPREAD: %w", err)
	}
	if cfg.MapAheadOrgs, err = kafkax.ParseOrgs(os.Getenv("ERPSTREAM_ORG_MAP_AHEAD")); err != nil {
		return cfg, fmt.Errorf("ERPSTREAM_ORG_MAP_AHEAD: %w", err)
	}
	for org := range cfg.MapAheadOrgs {
		if cfg.Kafka.SpreadOrgs[org] {
			return cfg, fmt.Errorf("ERPSTREAM_ORG_MAP_AHEAD: org %s is spread too (ERPSTREAM_ORG_SPREAD): choose one", org)
		}
	}
	if cfg.EgressAllowCIDRs, err = egress.ParseCIDRs(os.Getenv("ERPSTREAM_EGRESS_ALLOW_CIDRS")); err != nil {
		return cfg, fmt.Errorf("ERPSTREAM_EGRESS_ALLOW_CIDRS: %w", err)
	}
	if cfg.DevMode, err = boolEnv("ERPSTREAM_DEV_MODE"); err != nil {
		return cfg, err
	}
	if cfg.ProcessorStandby, err = boolEnv("ERPSTREAM_PROCESSOR_STANDBY"); err != nil {
		return cfg, err
	}
	ints := []struct {
		key string
		def int
		set func(int)
	}{
		{"ERPSTREAM_KAFKA_PARTITIONS", 12, func(v int) { cfg.Kafka.Partitions = int32(v) }},
		{"ERPSTREAM_KAFKA_REPLICATION", 1, func(v int) { cfg.Kafka.Replication = int16(v) }},
		{"ERPSTREAM_EMBEDDED_KAFKA_PORT", 29092, func(v int) { cfg.EmbeddedKafkaPort = v }},
		{"ERPSTREAM_ACK_TIMEOUT_MS", 10000, func(v int) { cfg.AckTimeout = time.Duration(v) * time.Millisecond }},
		{"ERPSTREAM_PROJECTOR_FLUSH_MS", 1000, func(v int) { cfg.ProjectorFlushInterval = time.Duration(v) * time.Millisecond }},
		{"ERPSTREAM_PROJECTOR_ENTITY_CACHE", 100_000, func(v int) { cfg.ProjectorEntityCache = v }},
		{"ERPSTREAM_RATE_LIMIT_PER_MIN", 1000, func(v int) { cfg.RateLimitPerMinute = v }},
		{"ERPSTREAM_ORG_EVENTS_PER_MIN", 600_000, func(v int) { cfg.OrgBudgets.EventsPerMinute = v }},
		{"ERPSTREAM_ORG_MB_PER_MIN", 2048, func(v int) { cfg.OrgBudgets.BytesPerMinute = int64(v) << 20 }},
		{"ERPSTREAM_ORG_INFLIGHT_MB", 32, func(v int) { cfg.OrgBudgets.InFlightBytes = int64(v) << 20 }},
		{"ERPSTREAM_ORG_OUTBOUND_CONCURRENCY", 32, func(v int) { cfg.OrgOutboundConcurrency = v }},
		{"ERPSTREAM_ORG_MAPPING_SECONDS_PER_MIN", 30, func(v int) { cfg.OrgMappingPerMinute = time.Duration(v) * time.Second }},
		{"ERPSTREAM_FILE_PROXY_LINK_TTL_HOURS", 0, func(v int) { cfg.FileProxyLinkTTL = time.Duration(v) * time.Hour }},
		{"ERPSTREAM_FILE_PROXY_MAX_MB", 50, func(v int) { cfg.FileProxyMaxBytes = int64(v) << 20 }},
		{"ERPSTREAM_OUTBOUND_DESTINATION_CONCURRENCY", 8, func(v int) { cfg.Outbound.DestinationConcurrency = v }},
		{"ERPSTREAM_OUTBOUND_DESTINATION_QUEUE", 10_000, func(v int) { cfg.Outbound.DestinationQueue = v }},
		{"ERPSTREAM_OUTBOUND_TIMEOUT_SECONDS", 15, func(v int) { cfg.Outbound.Timeout = time.Duration(v) * time.Second }},
		{"ERPSTREAM_ACK_WINDOW_MINUTES", 1440, func(v int) { cfg.Outbound.AckWindow = time.Duration(v) * time.Minute }},
		{"ERPSTREAM_ACK_MAX_PENDING_PER_ORG", 100_000, func(v int) { cfg.Outbound.MaxPendingAcksPerOrg = v }},
	}
	disableable := map[string]bool{"ERPSTREAM_RATE_LIMIT_PER_MIN": true, "ERPSTREAM_ORG_EVENTS_PER_MIN": true,
		"ERPSTREAM_ORG_MB_PER_MIN": true, "ERPSTREAM_ORG_INFLIGHT_MB": true, "ERPSTREAM_ORG_OUTBOUND_CONCURRENCY": true,
		"ERPSTREAM_PROJECTOR_ENTITY_CACHE": true, "ERPSTREAM_ORG_MAPPING_SECONDS_PER_MIN": true}
	for _, i := range ints {
		v, err := strconv.Atoi(env(i.key, strconv.Itoa(i.def)))
		if disableable[i.key] && err == nil && v < 0 {
			i.set(v) // negative disables the limit (README)
			continue
		}
		if i.key == "ERPSTREAM_FILE_PROXY_LINK_TTL_HOURS" && err == nil && v == 0 {
			continue // 0: links do not expire
		}
		if err != nil || v <= 0 {
			return cfg, fmt.Errorf("%s: want a positive integer", i.key)
		}
		i.set(v)
	}
	if cfg.DevMode && cfg.APITokens == "" && !strings.HasPrefix(cfg.HTTPAddr, "127.") && !strings.HasPrefix(cfg.HTTPAddr, "localhost") {
		log.Warn("dev mode on a non-loopback address: anyone who can reach it can use the dev token", "addr", cfg.HTTPAddr)
	}
	return cfg, nil
}

func boolEnv(key string) (bool, error) {
	v := os.Getenv(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: want true or false", key)
	}
	return b, nil
}

// version is the binary's module version and the commit it was built from.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "erpstream (unknown version)"
	}
	v := "erpstream " + info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " commit " + s.Value
		case "vcs.time":
			v += " built from a commit of " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				v += " (with local changes)"
			}
		}
	}
	return v + " " + info.GoVersion
}

// statusOrgs reads status's flags: --org O, repeatable.
func statusOrgs(args []string) ([]string, error) {
	var orgs []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == "--org" && i+1 < len(args) && args[i+1] != "":
			orgs = append(orgs, args[i+1])
			i++
		case strings.HasPrefix(args[i], "--org=") && len(args[i]) > len("--org="):
			orgs = append(orgs, strings.TrimPrefix(args[i], "--org="))
		default:
			return nil, fmt.Errorf("status: unknown argument %q (status [--org O ...])", args[i])
		}
	}
	return orgs, nil
}
