package kafkax

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config is how erpstream reaches Kafka.
type Config struct {
	Brokers     []string // KAFKA_BROKERS, comma-separated
	TopicPrefix string   // ERPSTREAM_TOPIC_PREFIX, default "erp"
	Partitions  int32    // ERPSTREAM_KAFKA_PARTITIONS for data topics, default 12
	Replication int16    // ERPSTREAM_KAFKA_REPLICATION, default 1
	ClientID    string
}

// BaseOpts are the options every client of erpstream shares.
func (c Config) BaseOpts(log *slog.Logger) []kgo.Opt {
	id := c.ClientID
	if id == "" {
		id = "erpstream"
	}
	return []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(id),
		kgo.WithLogger(slogAdapter{log.With("component", "kafka")}),
		kgo.MetadataMinAge(time.Second),
	}
}

// ProducerOpts makes a producer that only reports a record once every in-sync replica has it
// (acks=all) and never duplicates on retry (idempotence, franz-go's default).
func ProducerOpts(deliveryTimeout time.Duration) []kgo.Opt {
	return []kgo.Opt{
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(deliveryTimeout),
		kgo.ProducerLinger(2 * time.Millisecond),
		kgo.ProducerBatchMaxBytes(8 << 20),
		kgo.MaxBufferedBytes(256 << 20),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
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

// slogAdapter lets franz-go log through slog; its debug chatter stays out at info level.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Level() kgo.LogLevel {
	if a.l.Enabled(context.Background(), slog.LevelDebug) {
		return kgo.LogLevelDebug
	}
	return kgo.LogLevelWarn
}

func (a slogAdapter) Log(level kgo.LogLevel, msg string, keyvals ...any) {
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
