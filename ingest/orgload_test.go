package ingest_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/ingest"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/quota"
)

// Ingest holds an org back for the hold the processors' last word on it names, from when it
// reads the word (a processor whose clock is behind still holds it back), and releases it at a
// release; a hold from well before it started is over already.
func TestIngestHoldsBackTheOrgsTheProcessorsName(t *testing.T) {
	c := kafkatest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	producer, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	say := func(at time.Time, l envelope.OrgLoad) {
		v, _ := json.Marshal(l)
		if err := producer.ProduceSync(ctx, &kgo.Record{Topic: c.Topics.OrgLoad, Key: []byte(l.Org), Value: v, Timestamp: at}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	say(time.Now().Add(-time.Hour), envelope.OrgLoad{Org: "yesterday", MappingMs: 50_000, LimitMs: 30_000, HoldMs: 15_000})

	budgets := quota.New(quota.Limits{})
	watch, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.ConsumeTopics(c.Topics.OrgLoad),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	done := make(chan error, 1)
	w := ingest.NewOrgLoadWatch(ctx, watch, c.Topics.OrgLoad, budgets, kafkatest.Quiet())
	go func() { done <- w.Run(ctx) }()

	waitUntil := func(what string, cond func() bool) {
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("%s: not within the test's time", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	say(time.Now().Add(-time.Minute), envelope.OrgLoad{Org: "big", MappingMs: 45_000, LimitMs: 30_000, HoldMs: 15_000})
	waitUntil("big held back", func() bool { return budgets.HeldBack("big") > 14*time.Second })
	if budgets.HeldBack("yesterday") != 0 || budgets.HeldBack("small") != 0 {
		t.Fatalf("held back: yesterday %v, small %v; want neither", budgets.HeldBack("yesterday"), budgets.HeldBack("small"))
	}
	if wait := budgets.Take("big", 1, 10); wait == 0 {
		t.Fatal("big took its budget while held back")
	}
	say(time.Now(), envelope.OrgLoad{Org: "big", MappingMs: 20_000, LimitMs: 30_000})
	waitUntil("big released", func() bool { return budgets.HeldBack("big") == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("the watcher ended with %v", err)
	}
}
