//go:build integration

package app_test

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/app"
)

// Two processor instances on Apache Kafka: the one that joined first maps every event, the other
// stands by, and takes over when the first stops; every event is counted once.
func TestIntegrationProcessorsRunActiveStandby(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- app.Run(ctx, app.Config{Services: []string{app.Process}, Kafka: e.kafka, ClickHouse: e.ch, Log: e.log,
			InstanceID: "standalone", OnReady: func(a string) { ready <- a }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("process-only instance: %v", err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	defer func() { _ = stop() }()
	time.Sleep(4 * time.Second) // it joins the group first (the broker delays a new group's first rebalance 3 s)
	e.start()
	// Both instances in the group, its rebalance done, before any event is sent.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kafka.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	waitFor(t, func() bool {
		groups, err := kadm.NewClient(cl).DescribeGroups(context.Background(), "erpstream-processor")
		if err != nil {
			return false
		}
		g := groups["erpstream-processor"]
		return g.State == "Stable" && len(g.Members) == 2
	})
	id := e.createIntegration(integrationBody)
	processedHere := func() string {
		resp, err := e.metrics()
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "erpstream_processor_events_total{") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "; ")
	}
	batch := func(from, n int) []string {
		var events []string
		for i := from; i < from+n; i++ {
			events = append(events, customerEvent(i, "Ada", fmt.Sprintf("standby-%d", i)))
		}
		return events
	}
	e.sendBatch(id, "standby-1", batch(0, 20))
	if st := e.waitStats(id, 20); st["total_events"] != 20.0 {
		t.Fatalf("stats after the first batch: %v", st)
	}
	if got := processedHere(); got != "" {
		t.Errorf("the instance that joined second mapped events while the first was active: %s", got)
	}
	if err := stop(); err != nil {
		t.Errorf("process-only instance stopped with %v", err)
	}
	e.sendBatch(id, "standby-2", batch(20, 10))
	if st := e.waitStats(id, 30); st["total_events"] != 30.0 {
		t.Fatalf("stats after the takeover: %v", st)
	}
	if got := processedHere(); !strings.Contains(got, `code="ENTITY_UPDATED",level="success"} 10`) {
		t.Errorf("after the takeover this instance mapped: %q, want the 10 new events", got)
	}
	if n := e.scalar("SELECT count() FROM monitoring_events WHERE integration_id = ?", id); n != 30 {
		t.Errorf("%d monitoring rows, want 30 (each event once)", n)
	}
}
