package projector_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/projector"
)

// flakySink fails its first writes, as a ClickHouse outage would, then stores everything.
type flakySink struct {
	mu         sync.Mutex
	failures   int
	monitoring []envelope.MonitoringEvent
	entities   []envelope.EntityWrite
}

func (s *flakySink) WriteEntities(_ context.Context, rows []envelope.EntityWrite) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		return errors.New("clickhouse down")
	}
	s.entities = append(s.entities, rows...)
	return nil
}

func (s *flakySink) WriteMonitoring(_ context.Context, rows []envelope.MonitoringEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.monitoring = append(s.monitoring, rows...)
	return nil
}

func (s *flakySink) WriteRawEvents(context.Context, []envelope.Event) error      { return nil }
func (s *flakySink) WriteAccessLogs(context.Context, []envelope.AccessLog) error { return nil }
func (s *flakySink) CurrentEntities(context.Context, map[projector.EntityScope][]string) (map[string]projector.StoredEntity, error) {
	return map[string]projector.StoredEntity{}, nil
}
func (s *flakySink) ExistingMonitoring(_ context.Context, rows []envelope.MonitoringEvent) (map[string]bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	have := map[string]bool{}
	for _, m := range s.monitoring {
		have[m.ID] = true
	}
	found := map[string]bool{}
	for _, r := range rows {
		if have[r.ID] {
			found[r.ID] = true
		}
	}
	return found, nil
}

func (s *flakySink) counts() (int, int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures, len(s.entities), len(s.monitoring)
}

func committed(t *testing.T, adm *kadm.Client, group string) int64 {
	t.Helper()
	offs, err := adm.FetchOffsets(context.Background(), group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) { n += o.At })
	return n
}

func TestOffsetsAreCommittedOnlyAfterTheSinkTookTheBatch(t *testing.T) {
	c := kafkatest.New(t)
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for i := 0; i < 20; i++ {
		w, _ := json.Marshal(envelope.EntityWrite{OrgID: "o", EntityID: "e", Version: uint64(i)})
		m, _ := json.Marshal(envelope.MonitoringEvent{ID: fmt.Sprintf("m-%d", i), OrgID: "o"})
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: c.Topics.Entities, Value: w}, &kgo.Record{Topic: c.Topics.Monitoring, Value: m}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	sink := &flakySink{failures: 3}
	p, err := projector.New(projector.Config{Kafka: c.Config, Topics: c.Topics, Group: "proj-test", Sink: sink, Stored: sink,
		FlushInterval: 50 * time.Millisecond, Log: kafkatest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()

	// While the sink fails, nothing is committed.
	deadline := time.Now().Add(20 * time.Second)
	for {
		failures, ents, mons := sink.counts()
		if failures == 0 && ents == 20 && mons == 20 {
			break
		}
		if failures > 0 && committed(t, adm, "proj-test") > 0 {
			t.Fatal("offsets committed while the sink was failing")
		}
		if time.Now().After(deadline) {
			t.Fatalf("sink has %d entities / %d monitoring rows after 20s, want 20/20", ents, mons)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for committed(t, adm, "proj-test") < 40 {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d offsets, want 40", committed(t, adm, "proj-test"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, ents, mons := sink.counts(); ents != 20 || mons != 20 {
		t.Errorf("sink holds %d/%d rows, want each written once: 20/20", ents, mons)
	}
}

// batchSink records the size of every entity insert.
type batchSink struct {
	flakySink
	batches []int
}

func (s *batchSink) WriteEntities(ctx context.Context, rows []envelope.EntityWrite) error {
	s.mu.Lock()
	s.batches = append(s.batches, len(rows))
	s.mu.Unlock()
	return s.flakySink.WriteEntities(ctx, rows)
}

func TestBatchesAreBoundedByBytes(t *testing.T) {
	c := kafkatest.New(t)
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	big := json.RawMessage(`{"note":"` + fmt.Sprintf("%01000d", 0) + `"}`)
	recordBytes := 0
	for i := 0; i < 40; i++ { // ~1.1 KB each, one record batch each
		w, _ := json.Marshal(envelope.EntityWrite{OrgID: "o", EntityID: fmt.Sprint(i), Attributes: big})
		recordBytes = len(w)
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: c.Topics.Entities, Partition: 0, Value: w}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	sink := &batchSink{}
	p, err := projector.New(projector.Config{Kafka: c.Config, Topics: c.Topics, Group: "proj-bytes", Sink: sink, Stored: sink,
		MaxBytes: 4 << 10, FlushInterval: time.Second, Log: kafkatest.Quiet()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, ents, _ := sink.counts(); ents == 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not all 40 entity writes were stored within 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, n := range sink.batches {
		// The budget may be overshot by the last poll, never doubled.
		if n*recordBytes > 2*(4<<10) {
			t.Errorf("a batch of %d records of %d bytes (%v); the budget is 4 KB", n, recordBytes, sink.batches)
		}
	}
	t.Logf("batch sizes %v", sink.batches)
}
