//go:build integration

package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// An org pinned to a partition (ERPSTREAM_ORG_PARTITIONS) on the real broker: ingest writes its
// events there and nowhere else, the processor maps them (every event an entity and a success),
// forwards an event a producer without the placement wrote elsewhere, status says the org is
// pinned, and a placement the events topic cannot hold is refused at start.
func TestIntegrationAPinnedOrgsEventsGoToItsPartition(t *testing.T) {
	e := apptest.New(t)
	pin := (kafkax.OrgPartition([]byte("dev-org"), 4) + 1) % 4
	e.Kafka.OrgPartitions = kafkax.Placement{"dev-org": pin}
	e.Start()
	id := e.CreateIntegration(apptest.IntegrationBody)
	events := make([]string, 30)
	for i := range events {
		events[i] = apptest.CustomerEvent(i, "Anna", fmt.Sprint("pin-", i))
	}
	e.Send(id, "pinned", events)
	if st := e.WaitStats(id, 30); st["success_count"].(float64) != 30 {
		t.Fatalf("stats %v, want 30 successes", st)
	}
	if _, count := e.Entity("K-29"); count != 30 {
		t.Fatalf("%d contacts stored, want 30", count)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(e.Kafka.Brokers...))
	apptest.Must(t, err)
	defer cl.Close()
	topics := e.Kafka.Topics()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), topics.Events)
	apptest.Must(t, err)
	ends.Each(func(o kadm.ListedOffset) {
		want := int64(0)
		if o.Partition == pin {
			want = 30
		}
		if o.Offset != want {
			t.Errorf("events partition %d holds %d events, want %d (the org is pinned to %d)", o.Partition, o.Offset, want, pin)
		}
	})

	// An event a producer without the placement wrote (here: a copy of an accepted one, under a
	// new id, for a new customer) lands where the org's hash says; the processor forwards it to the
	// pinned partition, where it is mapped once.
	consumer, err := kgo.NewClient(kgo.SeedBrokers(e.Kafka.Brokers...), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
		topics.Events: {pin: kgo.NewOffset().AtStart()}}))
	apptest.Must(t, err)
	fetches := consumer.PollRecords(t.Context(), 1)
	consumer.Close()
	if fetches.NumRecords() != 1 {
		t.Fatalf("no event read back: %v", fetches.Errors())
	}
	var ev envelope.Event
	apptest.Must(t, json.Unmarshal(fetches.Records()[0].Value, &ev))
	ev.EventID, ev.DeduplicationID = "forwarded-1", ""
	ev.Payload = json.RawMessage(`{"customerNumber":"K-500","firstName":"Forwarded","lastName":"Meyer","address":{"city":"Köln"}}`)
	unaware, err := kgo.NewClient(append(kafkax.ProducerOpts(kafkax.NewTopics(e.Kafka.TopicPrefix), 10*time.Second), kgo.SeedBrokers(e.Kafka.Brokers...))...)
	apptest.Must(t, err)
	r, err := unaware.ProduceSync(t.Context(), envelope.EventRecord(topics.Events, &ev)).First()
	unaware.Close()
	apptest.Must(t, err)
	if r.Partition == pin {
		t.Fatalf("the unaware producer used the pinned partition %d", pin)
	}
	if st := e.WaitStats(id, 31); st["success_count"].(float64) != 31 || st["total_events"].(float64) != 31 {
		t.Fatalf("stats %v, want 31 successes: the forwarded event mapped once", st)
	}
	if attrs, count := e.Entity("K-500"); count != 31 || attrs["first_name"] != "Forwarded" {
		t.Fatalf("the forwarded event's contact: %v (%d contacts), want K-500 among 31", attrs, count)
	}
	ends, err = kadm.NewClient(cl).ListEndOffsets(context.Background(), topics.Events)
	apptest.Must(t, err)
	ends.Each(func(o kadm.ListedOffset) {
		// The pinned partition: 30 events, the forwarded copy and its transaction's marker.
		if o.Partition == pin && o.Offset != 32 || o.Partition == r.Partition && o.Offset != 1 {
			t.Errorf("events partition %d ends at %d", o.Partition, o.Offset)
		}
	})

	var out strings.Builder
	apptest.Must(t, app.Status(t.Context(), app.Config{Kafka: e.Kafka, ClickHouse: e.CH}, e.Log, &out, "dev-org"))
	if want := fmt.Sprintf("org dev-org: %s partition %d of 4 (pinned), mapped by member ", topics.Events, pin); !strings.Contains(out.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, out.String())
	}

	beyond := e.Kafka
	beyond.OrgPartitions = kafkax.Placement{"dev-org": 4}
	if _, err := app.PrepareTopics(t.Context(), beyond, e.Log); err == nil || !strings.Contains(err.Error(), "pinned to partition 4, the events topic has 4") {
		t.Fatalf("a pin beyond the partitions: %v, want refused", err)
	}
}
