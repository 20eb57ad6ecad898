package app

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
)

// Status names the orgs held back now: the last word on each, if its hold has not ended.
func TestStatusNamesTheOrgsHeldBackForMappingTime(t *testing.T) {
	c := kafkatest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	heldOrgs(ctx, c.Config, kafkatest.Quiet(), &out, c.Topics.OrgLoad, time.Now())
	if out.String() != "orgs held back for mapping time: none\n" {
		t.Fatalf("an empty topic: %q", out.String())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	now := time.Now()
	say := func(at time.Time, l envelope.OrgLoad) {
		v, _ := json.Marshal(l)
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: c.Topics.OrgLoad, Key: []byte(l.Org), Value: v, Timestamp: at}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	say(now.Add(-time.Second), envelope.OrgLoad{Org: "big", MappingMs: 45_000, LimitMs: 30_000, HoldMs: 15_000})
	say(now.Add(-time.Minute), envelope.OrgLoad{Org: "earlier", MappingMs: 40_000, LimitMs: 30_000, HoldMs: 15_000})
	say(now.Add(-10*time.Second), envelope.OrgLoad{Org: "released", MappingMs: 40_000, LimitMs: 30_000, HoldMs: 15_000})
	say(now.Add(-5*time.Second), envelope.OrgLoad{Org: "released", MappingMs: 20_000, LimitMs: 30_000})
	out.Reset()
	heldOrgs(ctx, c.Config, kafkatest.Quiet(), &out, c.Topics.OrgLoad, now)
	want := "org big: held back for mapping time (45.0 s of a processor's last minute, share 30 s; 14s more unless said again; ERPSTREAM_ORG_MAPPING_SECONDS_PER_MIN)\n"
	if out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
}
