package processor

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
)

// States and dedup marks of an earlier layout (by entity id and deduplication id) are moved to
// their org's partition, a tombstone left behind; a second run moves nothing. The same with the
// index of the keys to move on disk (a partition with more keys than relayoutMemoryKeys), and
// in memory when there is no temporary directory for it.
func TestRelayoutMovesStatesAndMarksToTheirOrgsPartition(t *testing.T) {
	defaultKeys := relayoutMemoryKeys
	t.Cleanup(func() { relayoutMemoryKeys = defaultKeys })
	for _, tc := range []struct {
		name       string
		memoryKeys int
		noTempDir  bool
		wantLog    string
	}{
		{name: "index in memory", memoryKeys: defaultKeys},
		{name: "index on disk", memoryKeys: 1, wantLog: "continues on disk"},
		{name: "no temporary directory", memoryKeys: 1, noTempDir: true, wantLog: "stays in memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relayoutMemoryKeys = tc.memoryKeys
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			if tc.noTempDir {
				t.Setenv("TMPDIR", filepath.Join(tmp, "missing"))
			}
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			relayoutStatesAndMarks(t, log)
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log %q, want %q", logs.String(), tc.wantLog)
			}
			if left, _ := os.ReadDir(tmp); len(left) != 0 {
				t.Errorf("the index left %v in the temporary directory", left)
			}
		})
	}
}

func relayoutStatesAndMarks(t *testing.T, log *slog.Logger) {
	c := kafkatest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	producer := manualProducer(t, c)
	home := kafkax.OrgPartition([]byte("org-a"), c.Config.Partitions)
	away := (home + 1) % c.Config.Partitions
	state, _ := json.Marshal(&entityState{Org: "org-a", Schema: "contact", Version: 7})
	placed, _ := json.Marshal(&entityState{Org: "org-a", Schema: "contact", Version: 8})
	legacy, _ := json.Marshal(&entityState{Schema: "contact", Version: 9}) // before states carried their org
	older, _ := json.Marshal(&entityState{Org: "org-a", Schema: "contact", Version: 5})
	newer, _ := json.Marshal(&entityState{Org: "org-a", Schema: "contact", Version: 6})
	for _, r := range []*kgo.Record{
		{Topic: c.Topics.EntityState, Partition: away, Key: []byte("e-twice"), Value: older},
		{Topic: c.Topics.EntityState, Partition: away, Key: []byte("e-moved"), Value: state},
		{Topic: c.Topics.EntityState, Partition: away, Key: []byte("e-twice"), Value: newer},
		{Topic: c.Topics.EntityState, Partition: home, Key: []byte("e-placed"), Value: placed},
		{Topic: c.Topics.EntityState, Partition: away, Key: []byte("e-legacy"), Value: legacy},
		{Topic: c.Topics.Dedup, Partition: away, Key: []byte("org-a/int/dedup/d-1"), Value: []byte(`{"first_seen_ms":1,"event_id":"e"}`)},
	} {
		if err := producer.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// A processor given the partition refuses to map with the org's states elsewhere.
	catchUpAway := func() error {
		s := newEntityStore(kafkatest.Quiet(), "me")
		if err := s.open(ctx, c.Config, c.Topics.EntityState); err != nil {
			t.Fatal(err)
		}
		return s.catchUp(ctx, c.Config, c.Topics.EntityState, []int32{away})
	}
	if err := catchUpAway(); err == nil || !strings.Contains(err.Error(), "erpstream admin relayout") {
		t.Fatalf("catching up a partition of the earlier layout: %v, want a refusal naming admin relayout", err)
	}
	rep, err := Relayout(ctx, c.Config, c.Topics, log)
	if err != nil {
		t.Fatal(err)
	}
	if rep != (RelayoutReport{StatesMoved: 2, MarksMoved: 1, Unplaceable: 1}) {
		t.Fatalf("report %+v", rep)
	}
	if err := catchUpAway(); err != nil {
		t.Fatalf("after relayout: %v", err)
	}
	// The org's partition alone now holds both its states.
	s := newEntityStore(kafkatest.Quiet(), "me")
	if err := s.open(ctx, c.Config, c.Topics.EntityState); err != nil {
		t.Fatal(err)
	}
	if err := s.catchUp(ctx, c.Config, c.Topics.EntityState, []int32{home}); err != nil {
		t.Fatal(err)
	}
	if st := s.get("e-moved"); st == nil || st.Version != 7 {
		t.Fatalf("moved state in the org's partition: %+v", st)
	}
	if s.get("e-placed") == nil {
		t.Fatal("the state already in place is gone")
	}
	if st := s.get("e-twice"); st == nil || st.Version != 6 {
		t.Fatalf("a state written twice, moved: %+v, want its last version (6)", st)
	}
	marks := map[int32][]*kgo.Record{}
	reader, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.ConsumeTopics(c.Topics.Dedup, c.Topics.EntityState),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for seen := 0; seen < 12; { // the 6 written, a copy of the last of each moved state and of the mark, a tombstone for each
		fs := reader.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records, want 12", seen)
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen++
			if r.Topic == c.Topics.Dedup {
				marks[r.Partition] = append(marks[r.Partition], r)
			}
		})
	}
	if len(marks[home]) != 1 || len(marks[away]) != 2 || marks[away][1].Value != nil {
		t.Fatalf("dedup marks: home %d, away %d (want 1, and the original then a tombstone)", len(marks[home]), len(marks[away]))
	}
	again, err := Relayout(ctx, c.Config, c.Topics, log)
	if err != nil {
		t.Fatal(err)
	}
	if again.StatesMoved != 0 || again.MarksMoved != 0 || again.Unplaceable != 1 {
		t.Fatalf("second run moved %+v", again)
	}
}

// Pinning an org (ERPSTREAM_ORG_PARTITIONS) moves it away from its states: a processor with the
// placement refuses the partition they are in until relayout, with the same placement, moved
// them and the org's deduplication marks to the pinned partition.
func TestRelayoutMovesAPinnedOrgsStatesToItsPartition(t *testing.T) {
	c := kafkatest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	producer := manualProducer(t, c)
	hashed := kafkax.OrgPartition([]byte("big"), c.Config.Partitions)
	pin := (hashed + 1) % c.Config.Partitions
	pinned := c.Topics.WithPlacement(kafkax.Placement{"big": pin})
	state, _ := json.Marshal(&entityState{Org: "big", Schema: "contact", Version: 7})
	for _, r := range []*kgo.Record{
		{Topic: c.Topics.EntityState, Partition: hashed, Key: []byte("e-1"), Value: state},
		{Topic: c.Topics.Dedup, Partition: hashed, Key: []byte("big/int/dedup/d-1"), Value: []byte(`{"first_seen_ms":1,"event_id":"e"}`)},
	} {
		if err := producer.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	catchUp := func(part int32) (*entityStore, error) {
		s := newEntityStore(kafkatest.Quiet(), "me")
		s.topics = pinned
		if err := s.open(ctx, c.Config, c.Topics.EntityState); err != nil {
			t.Fatal(err)
		}
		return s, s.catchUp(ctx, c.Config, c.Topics.EntityState, []int32{part})
	}
	if _, err := catchUp(hashed); err == nil || !strings.Contains(err.Error(), "erpstream admin relayout") {
		t.Fatalf("catching up the org's old partition with the placement: %v, want a refusal naming admin relayout", err)
	}
	rep, err := Relayout(ctx, c.Config, pinned, kafkatest.Quiet())
	if err != nil {
		t.Fatal(err)
	}
	if rep != (RelayoutReport{StatesMoved: 1, MarksMoved: 1}) {
		t.Fatalf("report %+v", rep)
	}
	if _, err := catchUp(hashed); err != nil {
		t.Fatalf("the old partition after relayout: %v", err)
	}
	s, err := catchUp(pin)
	if err != nil {
		t.Fatal(err)
	}
	if st := s.get("e-1"); st == nil || st.Version != 7 {
		t.Fatalf("the org's state in its pinned partition: %+v", st)
	}
	if rep, err := Relayout(ctx, c.Config, pinned, kafkatest.Quiet()); err != nil || rep != (RelayoutReport{}) {
		t.Fatalf("a second run: %+v, %v; want nothing moved", rep, err)
	}
	beyond := c.Topics.WithPlacement(kafkax.Placement{"big": c.Config.Partitions})
	if _, err := Relayout(ctx, c.Config, beyond, kafkatest.Quiet()); err == nil || !strings.Contains(err.Error(), "pinned to partition") {
		t.Fatalf("relayout with a pin beyond the partitions: %v, want refused", err)
	}
}

// syncBuffer is a log the Kafka client's goroutines write to as well.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// manualProducer writes records to the partition each names (Record.Partition).
func manualProducer(t *testing.T, c *kafkatest.Cluster) *kgo.Client {
	t.Helper()
	producer, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(producer.Close)
	return producer
}

// Relayout refuses while a processor consumes the events (its writes after a state's move would
// stay where the state was), not for a member of the same group name consuming another
// deployment's events topic (another topic prefix on the cluster).
func TestRelayoutRefusesWhileAProcessorConsumesTheEvents(t *testing.T) {
	c := kafkatest.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other := kafkax.NewTopics("staging")
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafkax.EnsureTopics(ctx, kadm.NewClient(cl), other.Specs(c.Config.Partitions), 1); err != nil {
		t.Fatal(err)
	}
	join := func(events string) func() {
		member, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.ConsumerGroup(DefaultGroup), kgo.ConsumeTopics(events))
		if err != nil {
			t.Fatal(err)
		}
		adm := kadm.NewClient(cl)
		for { // a member once the group is stable with it
			pollCtx, stop := context.WithTimeout(ctx, 100*time.Millisecond)
			member.PollFetches(pollCtx)
			stop()
			groups, err := adm.DescribeGroups(ctx, DefaultGroup)
			if g := groups[DefaultGroup]; err == nil && g.State == "Stable" && len(g.Members) == 1 {
				break
			}
			if ctx.Err() != nil {
				t.Fatal("the member did not join")
			}
		}
		return member.Close
	}
	leave := join(other.Events)
	if _, err := Relayout(ctx, c.Config, c.Topics, kafkatest.Quiet()); err != nil {
		t.Fatalf("with another deployment's processor in the group: %v, want it to run", err)
	}
	leave()
	leave = join(c.Topics.Events)
	defer leave()
	_, err = Relayout(ctx, c.Config, c.Topics, kafkatest.Quiet())
	if err == nil || !strings.Contains(err.Error(), "stop every processor first") || !strings.Contains(err.Error(), c.Topics.Events) {
		t.Fatalf("with a processor consuming %s: %v, want refused naming the topic", c.Topics.Events, err)
	}
}
