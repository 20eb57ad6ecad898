package kafkax

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A group with lag whose commits stop moving is reported stalled after StallAfter; commits that
// move, or no lag, are healthy.
func TestLagMonitorReportsAStalledGroup(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	adm := kadm.NewClient(cl)
	commit := func(at int64) {
		t.Helper()
		os := kadm.Offsets{}
		os.Add(kadm.Offset{Topic: "in", Partition: 0, At: at, LeaderEpoch: -1})
		if err := adm.CommitAllOffsets(ctx, "g", os); err != nil {
			t.Fatal(err)
		}
	}
	commit(2)
	m, err := NewLagMonitor(cl, []string{"g"}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	m.now = func() time.Time { return now }
	m.measure(ctx)
	if err := m.Check(); err != nil {
		t.Fatalf("just seen: %v", err)
	}
	now = now.Add(31 * time.Second)
	m.measure(ctx)
	err = m.Check()
	if err == nil || !strings.Contains(err.Error(), "g: 8 records behind") {
		t.Fatalf("after 31 s without a commit: %v", err)
	}
	commit(5) // progress clears it
	now = now.Add(time.Second)
	m.measure(ctx)
	if err := m.Check(); err != nil {
		t.Fatalf("after a commit: %v", err)
	}
	commit(10) // caught up: no lag, never stalled however long it stays so
	now = now.Add(time.Minute)
	m.measure(ctx)
	now = now.Add(time.Minute)
	m.measure(ctx)
	if err := m.Check(); err != nil {
		t.Fatalf("caught up: %v", err)
	}
}
