package kafkax

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is how erpstream reaches Kafka.
type Config struct {
	Brokers     []string // KAFKA_BROKERS, comma-separated
	TopicPrefix string   // ERPSTREAM_TOPIC_PREFIX, default "erp"
	Partitions  int32    // ERPSTREAM_KAFKA_PARTITIONS for data topics, default 12
	Replication int16    // ERPSTREAM_KAFKA_REPLICATION, default 1
	// OrgPartitions pins orgs to events partitions of their own (ERPSTREAM_ORG_PARTITIONS).
	OrgPartitions Placement
	// SpreadOrgs are the orgs whose events every processor instance maps (ERPSTREAM_ORG_SPREAD).
	SpreadOrgs map[string]bool
	ClientID   string
	// Security: TLS and SASL (KAFKA_TLS*, KAFKA_SASL_*); validated at start-up (Validate).
	Security Security
	// Metrics, when set, receives the Kafka client metrics of clients made with ClientOpts.
	Metrics prometheus.Registerer
}

// Topics are erpstream's topics under the configured prefix, with the configured placement.
func (c Config) Topics() Topics {
	return NewTopics(c.TopicPrefix).WithPlacement(c.OrgPartitions).WithSpread(c.SpreadOrgs)
}

// BaseOpts are the options every client of erpstream shares.
func (c Config) BaseOpts(log *slog.Logger) []kgo.Opt {
	id := c.ClientID
	if id == "" {
		id = "erpstream"
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(id),
		kgo.WithLogger(&slogAdapter{l: log.With("component", "kafka"), last: map[string]time.Time{}}),
		kgo.MetadataMinAge(time.Second),
		// Retries back off to at most a second (franz-go's default reaches 5 s for group
		// management), so consumers resume within about a second of a broker coming back.
		kgo.RetryBackoffFn(func(tries int) time.Duration {
			d := min(100*time.Millisecond<<min(tries, 4), time.Second)
			return d/2 + rand.N(d/2+1)
		}),
	}
	// Validated at start-up; a setting broken since then fails the connection, not the process.
	tc, m, err := c.Security.build()
	if err != nil {
		log.Error("kafka security settings", "err", err)
	}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts
}

// ProducerOpts makes a producer that only reports a record once every in-sync replica has it
// (acks=all), never duplicates on retry (idempotence, franz-go's default) and places records as
// erpstream's topics need (Topics.Partitioner).
func ProducerOpts(t Topics, deliveryTimeout time.Duration) []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(deliveryTimeout),
		kgo.ProducerLinger(2 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(8 << 20),
		kgo.MaxBufferedBytes(256 << 20),
		kgo.RecordPartitioner(t.Partitioner()),
	}
}

// Embedded is an in-process broker (franz-go's kfake) for `make run` without KAFKA_BROKERS.
type Embedded struct {
	cluster *kfake.Cluster
}

// StartEmbedded starts kfake on 127.0.0.1:port, keeping its data in dir so a restart loses nothing.
func StartEmbedded(dir string, port int) (*Embedded, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded kafka data dir: %w", err)
	}
	abs, _ := filepath.Abs(dir)
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.Ports(port),
		kfake.DataDir(abs),
	)
	if err != nil {
		return nil, fmt.Errorf("start embedded kafka: %w", err)
	}
	return &Embedded{cluster: c}, nil
}

// Brokers returns the addresses clients connect to.
func (e *Embedded) Brokers() []string { return e.cluster.ListenAddrs() }

// Close stops the broker and flushes its data to disk.
func (e *Embedded) Close() { e.cluster.Close() }

// Ping waits until the cluster answers a metadata request.
func Ping(ctx context.Context, cl *kgo.Client) error {
	return cl.Ping(ctx)
}

// slogAdapter lets franz-go log through slog; its debug chatter stays out at info level. While a
// broker is away the client repeats the same warning many times a second: each message is
// logged at most once per logEvery, with the count of those left out.
type slogAdapter struct {
	l *slog.Logger

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

const logEvery = 10 * time.Second

func (a *slogAdapter) Level() kgo.LogLevel {
	if a.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

func (a *slogAdapter) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if level <= kgo.LogLevelWarn && level != kgo.LogLevelNone {
		a.mu.Lock()
		now := time.Now()
		if now.Sub(a.last[msg]) < logEvery {
			if a.suppressed == nil {
				a.suppressed = map[string]int{}
			}
			a.suppressed[msg]++
			a.mu.Unlock()
			return
		}
		a.last[msg] = now
		if n := a.suppressed[msg]; n > 0 {
			keyvals = append(keyvals, "repeated_since_last_logged", n)
			delete(a.suppressed, msg)
		}
		a.mu.Unlock()
	}
	var l slog.Level
	switch level {
	case kgo.LogLevelError:
		l = slog.LevelError
	case kgo.LogLevelWarn:
		l = slog.LevelWarn
	case kgo.LogLevelInfo:
		l = slog.LevelInfo
	default:
		l = slog.LevelDebug
	}
	a.l.Log(context.Background(), l, msg, keyvals...)
}
