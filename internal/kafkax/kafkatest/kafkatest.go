// Package kafkatest starts an in-process Kafka (kfake) with erpstream's topics for unit tests.
package kafkatest

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/kafkax"
)

// Cluster is a kfake cluster with erpstream's topics created.
type Cluster struct {
	*kfake.Cluster
	Config kafkax.Config
	Topics kafkax.Topics
}

// New starts a cluster that is closed when the test ends.
func New(t testing.TB) *Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	cfg := kafkax.Config{Brokers: c.ListenAddrs(), TopicPrefix: "erp", Partitions: 4, Replication: 1}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics := kafkax.NewTopics(cfg.TopicPrefix)
	if err := kafkax.EnsureTopics(ctx, kadm.NewClient(cl), topics.Specs(cfg.Partitions), 1); err != nil {
		t.Fatalf("ensure topics: %v", err)
	}
	return &Cluster{Cluster: c, Config: cfg, Topics: topics}
}

// Quiet is a logger for tests that only shows warnings and errors.
func Quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}
