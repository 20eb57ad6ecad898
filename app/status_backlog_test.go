package app

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
)

// Status reads the waiting events of the two partitions lagging most, at most 10,000 each from
// the processors' committed offset, and names whose they are.
func TestStatusSaysWhoseEventsWaitInTheLaggingPartitions(t *testing.T) {
	c := kafkatest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	producer, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	ends := map[int32]int64{}
	send := func(part int32, org string, n int) {
		for i := range n {
			r := envelope.EventRecord(c.Topics.Events, &envelope.Event{OrgID: org, IntegrationID: "int", UseCaseID: "uc",
				EventID: fmt.Sprintf("%s-%d-%d", org, part, i), Payload: []byte(`{}`)})
			r.Partition = part
			producer.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					t.Error(err)
				}
			})
		}
		ends[part] += int64(n)
	}
	send(0, "big", 30)
	send(0, "acme", 5)
	send(0, "a", 1)
	send(0, "b", 1)
	send(0, "c", 1)
	send(1, "x", 3)
	send(2, "flood", backlogSample+50)
	if err := producer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	lag := func(part int32, commit int64) kadm.GroupMemberLag {
		from := max(commit, 0)
		return kadm.GroupMemberLag{Topic: c.Topics.Events, Partition: part, Commit: kadm.Offset{At: commit},
			End: kadm.ListedOffset{Offset: ends[part]}, Lag: ends[part] - from}
	}
	lags := map[int32]kadm.GroupMemberLag{0: lag(0, 2), 1: lag(1, -1), 2: lag(2, -1), 3: lag(3, 0)}
	var out strings.Builder
	backlogByOrg(ctx, c.Config, kafkatest.Quiet(), &out, c.Topics.Events, lags)
	want := fmt.Sprintf("  backlog erp.events partition 2: of the first %d waiting, org flood %d\n", backlogSample, backlogSample) +
		"  backlog erp.events partition 0: of the first 36 waiting, org big 28, org acme 5, org a 1, 2 more orgs 2\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}
