package kafkax_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/kafkax"
)

func adminFor(t *testing.T) *kadm.Client {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.MetadataMinAge(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func TestEnsureTopicsCreatesTheTableAndIsIdempotent(t *testing.T) {
	adm := adminFor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics := kafkax.NewTopics("t1")
	specs := topics.Specs(6)
	for i := 0; i < 2; i++ {
		if err := kafkax.EnsureTopics(ctx, adm, specs, 1); err != nil {
			t.Fatalf("ensure #%d: %v", i+1, err)
		}
	}
	details, err := adm.ListTopics(ctx, topics.Events, topics.Config)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(details[topics.Events].Partitions); n != 6 {
		t.Errorf("events partitions = %d, want 6", n)
	}
	if n := len(details[topics.Config].Partitions); n != 1 {
		t.Errorf("config partitions = %d, want 1", n)
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, topics.Config)
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := cfgs.On(topics.Config, nil)
	var policy string
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.Value != nil {
			policy = *c.Value
		}
	}
	if policy != "compact" {
		t.Errorf("config topic cleanup.policy = %q, want compact", policy)
	}
}

func TestVerifyRefusesAConfigTopicWithSeveralPartitions(t *testing.T) {
	adm := adminFor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics := kafkax.NewTopics("t2")
	if _, err := adm.CreateTopic(ctx, 3, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topics.Config); err != nil {
		t.Fatal(err)
	}
	err := kafkax.EnsureTopics(ctx, adm, topics.Specs(2), 1)
	if err == nil || !strings.Contains(err.Error(), "must have exactly 1") {
		t.Fatalf("want a partition-count error, got %v", err)
	}
}

func TestVerifyRefusesAConfigTopicThatIsNotCompacted(t *testing.T) {
	adm := adminFor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	topics := kafkax.NewTopics("t3")
	if _, err := adm.CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("delete")}, topics.Config); err != nil {
		t.Fatal(err)
	}
	err := kafkax.EnsureTopics(ctx, adm, topics.Specs(2), 1)
	if err == nil || !strings.Contains(err.Error(), "cleanup.policy") {
		t.Fatalf("want a cleanup.policy error, got %v", err)
	}
}

// One topic per retry delay, named after it: two delays sharing a topic would put short waits
// behind long ones.
func TestRetryTopicsAreOnePerDelay(t *testing.T) {
	got := kafkax.NewTopics("erp").OutboundRetries
	want := []string{"erp.outbound-retry-10s", "erp.outbound-retry-1m", "erp.outbound-retry-10m", "erp.outbound-retry-1h", "erp.outbound-retry-4h"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("retry topics %v, want %v", got, want)
	}
}
