//go:build integration

package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// An org pinned to a partition (ERPSTREAM_ORG_PARTITIONS) on the real broker: ingest writes its
// events there and nowhere else, the processor maps them (every event an entity and a success),
// status says the org is pinned, and a placement the events topic cannot hold is refused at start.
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

	var out strings.Builder
	apptest.Must(t, app.Status(t.Context(), app.Config{Kafka: e.Kafka, ClickHouse: e.CH}, e.Log, &out, "dev-org"))
	if want := fmt.Sprintf("org dev-org: %s partition %d of 4 (pinned), mapped by member ", topics.Events, pin); !strings.Contains(out.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, out.String())
	}

	beyond := e.Kafka
	beyond.OrgPartitions = kafkax.Placement{"dev-org": 4}
	if err := app.PrepareTopics(t.Context(), beyond, e.Log); err == nil || !strings.Contains(err.Error(), "pinned to partition 4, the events topic has 4") {
		t.Fatalf("a pin beyond the partitions: %v, want refused", err)
	}
}
