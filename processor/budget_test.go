package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/processor"
)

// A slow event fails alone, within its own deadline, with a message naming use case, entity and
// field; and transactions that commit early (here after every event, the smallest budget) map
// every event exactly once: processProduced fails on a second monitoring row for an event.
func TestSlowEventsFailAloneAndEarlyCommitsLoseNothing(t *testing.T) {
	slow := json.RawMessage(`{"entities":[{"entity_schema":"contact","unique_ids":["no"],"jsonataExpression":"items","fields":[
		{"attribute":"no","field":"no"},
		{"attribute":"flag","jsonataExpression":"$contains($$.s, /a.*a.*a.*z/) ? 'y' : 'n'"}]}]}`)
	c, reg := withUseCases(t, map[string]json.RawMessage{"fast": json.RawMessage(mappingConfig), "slow": slow})
	var seq eventSeq
	var events []envelope.Event
	for i := range 30 {
		events = append(events, seq.ev(fmt.Sprintf("f%d", i), "fast", fmt.Sprintf(`{"no":"K-%d","name":"x"}`, i)))
		if i == 10 {
			var items []string
			for j := range 400 {
				items = append(items, fmt.Sprintf(`{"no":"S-%d"}`, j))
			}
			events = append(events, seq.ev("slow", "slow", `{"s":"`+strings.Repeat("a", 40)+`","items":[`+strings.Join(items, ",")+`]}`))
		}
	}
	produceEvents(t, c, events)
	start := time.Now()
	monitoring, writes := processProduced(t, c, reg, events, func(cfg *processor.Config) {
		cfg.EvalTimeout = 150 * time.Millisecond
		cfg.BatchBudget = time.Nanosecond
	})
	t.Logf("31 events in %v", time.Since(start))
	m := monitoring["slow"]
	if m.Code != "MAPPING_TIMEOUT" || m.Level != envelope.LevelError {
		t.Fatalf("slow event: %s %s (%s)", m.Level, m.Code, m.Message)
	}
	for _, want := range []string{"use case slow", "entity contact", "(flag)"} {
		if !strings.Contains(m.Message, want) {
			t.Errorf("message %q does not name %q", m.Message, want)
		}
	}
	for i := range 30 {
		if m := monitoring[fmt.Sprintf("f%d", i)]; m.Code != "ENTITY_CREATED" {
			t.Errorf("f%d: %s (%s)", i, m.Code, m.Message)
		}
	}
	if len(writes) != 30 {
		t.Errorf("%d entity writes, want 30 (the slow event writes none)", len(writes))
	}
}

// A transaction that commits early commits the offset of its first unmapped event, not the end
// of its poll: a processor stopped after a few early commits leaves the rest to the next one,
// which maps every remaining event once (a lost tail or a second row fails processProduced).
func TestEarlyCommitsKeepTheRestOfThePollUncommitted(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{"fast": json.RawMessage(mappingConfig)})
	var seq eventSeq
	var events []envelope.Event
	for i := range 200 {
		events = append(events, seq.ev(fmt.Sprintf("e%d", i), "fast", fmt.Sprintf(`{"no":"K-%d","name":"x"}`, i)))
	}
	produceEvents(t, c, events)

	first, err := processor.New(processor.Config{Kafka: c.Config, Topics: c.Topics, Registry: reg, Log: kafkatest.Quiet(), BatchBudget: time.Nanosecond})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	consumer, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.ConsumeTopics(c.Topics.Monitoring),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	must(t, err)
	seen := 0
	for seen < 20 {
		seen += consumer.PollFetches(ctx).NumRecords()
	}
	consumer.Close()
	cancel()
	must(t, <-done)
	t.Logf("first processor stopped after at least %d of 200 events", seen)

	monitoring, _ := processProduced(t, c, reg, events)
	if len(monitoring) != 200 {
		t.Fatalf("%d of 200 events mapped", len(monitoring))
	}
}

// An event carries the configuration position it was accepted under; a processor whose registry
// has not reached it yet waits (bounded) instead of failing the event with USE_CASE_NOT_FOUND.
func TestEventsWaitForTheConfigurationTheyWereAcceptedUnder(t *testing.T) {
	c, reg := withUseCases(t, map[string]json.RawMessage{})
	var seq eventSeq
	ev := seq.ev("e1", "late", `{"no":"K-1","name":"x"}`)
	ev.ConfigPosition = reg.Snapshot().Position() + 1 // the use case's record, not written yet
	produceEvents(t, c, []envelope.Event{ev})
	go func() {
		time.Sleep(time.Second)
		_ = reg.PutUseCase(context.Background(), &registry.UseCase{ID: "late", OrgID: "org", IntegrationID: "int", Name: "late", Slug: "late",
			Type: registry.TypeInbound, Enabled: true, Version: 1, Configuration: json.RawMessage(mappingConfig)})
	}()
	monitoring, _ := processProduced(t, c, reg, []envelope.Event{ev})
	if m := monitoring["e1"]; m.Code != "ENTITY_CREATED" {
		t.Fatalf("event accepted under a newer configuration: %s (%s)", m.Code, m.Message)
	}
}
