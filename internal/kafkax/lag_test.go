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
	"github.com/twmb/franz-go/pkg/kmsg"
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
	// A member that joins and commits only when told, as a consumer that may block inside its
	// client would.
	member, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup("g"), kgo.ConsumeTopics("in"),
		kgo.DisableAutoCommit(), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	member.PollFetches(pctx)
	pcancel()
	commit := func(at int64) {
		t.Helper()
		var cerr error
		member.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{"in": {0: {Epoch: -1, Offset: at}}},
			func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) { cerr = err })
		if cerr != nil {
			t.Fatal(cerr)
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

// A group nobody has joined is reported once StallAfter has passed, whatever its commits say.
func TestLagMonitorReportsAGroupWithoutMembers(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	os := kadm.Offsets{}
	os.Add(kadm.Offset{Topic: "in", Partition: 0, At: 0, LeaderEpoch: -1})
	if err := kadm.NewClient(cl).CommitAllOffsets(context.Background(), "h", os); err != nil {
		t.Fatal(err)
	}
	m, err := NewLagMonitor(cl, []string{"h"}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	m.now = func() time.Time { return now }
	m.measure(context.Background())
	if err := m.Check(); err != nil {
		t.Fatalf("just seen: %v", err)
	}
	now = now.Add(31 * time.Second)
	m.measure(context.Background())
	if err := m.Check(); err == nil || !strings.Contains(err.Error(), "no consumer has joined") {
		t.Fatalf("after 31 s without a member: %v", err)
	}
}
