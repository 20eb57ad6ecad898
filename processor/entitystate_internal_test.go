package processor

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/lru"
	"github.com/erpstream/erpstream/mapping"
)

// Following the topic, an instance skips the states it wrote and applied at commit, but applies
// its own write when the store holds an older version (a commit it took for failed) and every
// other instance's write.
func TestOwnAppliedWritesAreSkippedWhenFollowing(t *testing.T) {
	s := newEntityStore(kafkatest.Quiet(), "me")
	s.putLocked("e1", &entityState{Schema: "contact", Version: 10})
	rec := func(writer string, version uint64) *kgo.Record {
		r := &kgo.Record{Key: []byte("e1")}
		other := &entityStore{writer: []byte(writer)}
		r.Headers = other.writtenBy(version)
		return r
	}
	if !s.appliedOwnWrite(rec("me", 10)) {
		t.Error("own write at the held version is not skipped")
	}
	if s.appliedOwnWrite(rec("me", 11)) {
		t.Error("own write newer than the store's is skipped")
	}
	if s.appliedOwnWrite(rec("someone-else", 10)) {
		t.Error("another instance's write is skipped")
	}
	if s.appliedOwnWrite(&kgo.Record{Key: []byte("e1")}) {
		t.Error("a write without headers is skipped")
	}
}

// On disk, a store restarted with its directory reads its partition of the topic only from its
// checkpoint, and holds every state; lookups and the back-indexes answer from disk.
func TestDiskStateRestartsFromItsCheckpoint(t *testing.T) {
	c := kafkatest.New(t)
	producer, err := kgo.NewClient(kgo.SeedBrokers(c.Config.Brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	home := kafkax.OrgPartition([]byte("org"), c.Config.Partitions) // the org's partition
	writeStates := func(from, n int) {
		for i := from; i < from+n; i++ {
			st := entityState{Org: "org", Schema: "contact", Version: uint64(10 + i),
				Keys:      attrKeys{{Attr: "email", Key: keyOf("org", "contact", "email", fmt.Sprint("k", i, "@example.com"))}},
				Relations: map[string][]mapping.ResolvedRelationItem{"company": {{EntityID: "company-1", Schema: "company"}}}}
			b, _ := json.Marshal(&st)
			if err := producer.ProduceSync(context.Background(), &kgo.Record{Topic: c.Topics.EntityState, Partition: home, Key: []byte(fmt.Sprint("e", i)), Value: b}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir := t.TempDir()
	open := func() *entityStore {
		s := newEntityStore(kafkatest.Quiet(), "me")
		s.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := s.open(ctx, c.Config, c.Topics.EntityState); err != nil {
			t.Fatal(err)
		}
		if err := s.catchUp(ctx, c.Config, c.Topics.EntityState, []int32{home}); err != nil {
			t.Fatal(err)
		}
		return s
	}
	writeStates(0, 100)
	first := open()
	if first.size() != 100 || first.restored.Load() != 100 {
		t.Fatalf("first start: %d entities from %d records", first.size(), first.restored.Load())
	}
	// More states arrive: a catch-up reads only them.
	writeStates(100, 5)
	if err := first.catchUp(context.Background(), c.Config, c.Topics.EntityState, []int32{home}); err != nil {
		t.Fatal(err)
	}
	if first.size() != 105 || first.restored.Load() != 105 {
		t.Fatalf("second catch-up: %d entities from %d records", first.size(), first.restored.Load())
	}
	if err := first.close(); err != nil {
		t.Fatal(err)
	}
	// Stopped; more states arrive while it is down.
	writeStates(105, 10)
	second := open()
	t.Cleanup(func() { _ = second.close() })
	if second.size() != 115 {
		t.Fatalf("restart: %d entities, want 115", second.size())
	}
	if n := second.restored.Load(); n > 15 {
		t.Fatalf("restart read %d records: not from its checkpoint", n)
	}
	if got := second.lookup("org", "contact", []lookupKey{keyOf("org", "contact", "email", "k42@example.com")}, nil, nil, 0); len(got) != 1 || got[0] != "e42" {
		t.Fatalf("lookup from disk: %v", got)
	}
	if got, ok := second.inScope("company-1", "contact", nil, 1000); !ok || len(got) != 115 {
		t.Fatalf("entities relating to company-1 from disk: %d", len(got))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// diskStoreWithOneState is a disk store in dir holding one contact's state and the changelog
// position 5 of partition 0, closed.
func diskStoreWithOneState(t *testing.T, dir, topicID string, before func(*pebbleStates)) {
	t.Helper()
	p, err := openPebbleStates(dir, topicID)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.apply([]stateChange{{id: "e1", st: &entityState{Schema: "contact", Version: 1}}}, map[int32]int64{0: 5}, true); err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(p)
	}
	_ = p.close()
}

// A store directory that is not a Pebble store (damaged) is rebuilt empty, and one made from
// another topic of the same name (a recreated topic) is discarded.
func TestDiskStoreThatCannotBeUsedIsRebuilt(t *testing.T) {
	dir := t.TempDir()
	diskStoreWithOneState(t, dir, "topic-a", nil)
	again, err := openPebbleStates(dir, "topic-a")
	if err != nil || again.size() != 1 || again.positions()[0] != 5 {
		t.Fatalf("reopened: %v, %d entities, positions %v", err, again.size(), again.positions())
	}
	_ = again.close()
	other, err := openPebbleStates(dir, "topic-b")
	if err != nil || other.size() != 0 || len(other.positions()) != 0 || other.get("e1") != nil {
		t.Fatalf("another topic's store was kept: %v %d", err, other.size())
	}
	if err := other.apply([]stateChange{{id: "e2", st: &entityState{Schema: "contact", Version: 1}}}, nil, true); err != nil {
		t.Fatal(err)
	}
	_ = other.close()
	manifests, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no manifest to damage")
	}
	for _, m := range manifests {
		if err := os.WriteFile(m, []byte("garbage"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	damaged, err := openPebbleStates(dir, "topic-b")
	if err != nil || damaged.size() != 0 {
		t.Fatalf("damaged store: %v", err)
	}
	_ = damaged.close()
}

// A store of an older format (format 1 did not index meter readings by external id and day) is
// discarded and read again from the topic, which indexes its readings as format 2 does.
func TestDiskStoreOfAnOlderFormatIsRebuilt(t *testing.T) {
	dir := t.TempDir()
	diskStoreWithOneState(t, dir, "topic-a", func(p *pebbleStates) {
		// What format 1 held under its identity key: the topic id alone.
		if err := p.db.Set([]byte(keyTopic), []byte("topic-a"), pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	})
	again, err := openPebbleStates(dir, "topic-a")
	if err != nil || again.size() != 0 || len(again.positions()) != 0 || again.get("e1") != nil {
		t.Fatalf("a format-1 store was kept: %v, %d entities, positions %v", err, again.size(), again.positions())
	}
	reading := &entityState{Schema: "meter_reading", Version: 1, Reading: &readingState{Group: "m/c", ExternalID: "r-1", Day: "2025-04-01"}}
	if err := again.apply([]stateChange{{id: "r1", st: reading}}, nil, true); err != nil {
		t.Fatal(err)
	}
	for _, k := range []lookupKey{readingExternalKey("m/c", "r-1"), readingDayKey("m/c", "2025-04-01", "")} {
		if n := again.countWithKey(k, 10); n != 1 {
			t.Errorf("reading indexed under %x: %d entries, want 1", k, n)
		}
	}
	_ = again.close()
}

// A state looked up before it exists (every new entity) is remembered as absent, and found once
// it is written, also by a lookup that the cache answers.
func TestAbsentStateIsFoundOnceWritten(t *testing.T) {
	p, err := openPebbleStates(t.TempDir(), "topic-a")
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if st := p.get("e1"); st != nil {
		t.Fatalf("a state before any write: %+v", st)
	}
	if st, cached := p.cache.Get("e1"); !cached || st != nil {
		t.Fatalf("the miss is not remembered as absent: %v %+v", cached, st)
	}
	if err := p.apply([]stateChange{{id: "e1", st: &entityState{Schema: "contact", Version: 7}}}, nil, true); err != nil {
		t.Fatal(err)
	}
	if st := p.get("e1"); st == nil || st.Version != 7 {
		t.Fatalf("after the write: %+v", st)
	}
	if p.size() != 1 {
		t.Errorf("%d entities counted, want 1 (the remembered absence is no entity)", p.size())
	}
}

// Two processes sharing a state directory get a store each; a released store is taken again.
func TestStoreDirsAreClaimedOnePerProcess(t *testing.T) {
	base := filepath.Join(t.TempDir(), "erp.entity-state")
	first, releaseFirst, err := claimStoreDir(base)
	if err != nil {
		t.Fatal(err)
	}
	second, releaseSecond, err := claimStoreDir(base)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseSecond()
	if first != base || second != base+".1" {
		t.Fatalf("claimed %s and %s, want %s and %s.1", first, second, base, base)
	}
	releaseFirst()
	again, releaseAgain, err := claimStoreDir(base)
	if err != nil {
		t.Fatal(err)
	}
	defer releaseAgain()
	if again != base {
		t.Fatalf("after a release: %s, want %s", again, base)
	}
}

// The disk store's block cache holds blocks beside the memtables Pebble reserves in it (the one
// written and one flushing): a cache no larger than they are cached nothing while a feed was
// written, and every read decompressed its blocks from the file again.
func TestDiskStoreCachesBlocksWhileWriting(t *testing.T) {
	states, err := openPebbleStates(t.TempDir(), "topic")
	if err != nil {
		t.Fatal(err)
	}
	defer states.close()
	pad := strings.Repeat("x", 200)
	batch := make([]stateChange, 0, 5000)
	for i := range 300_000 {
		batch = append(batch, stateChange{id: fmt.Sprintf("%036d", i), st: &entityState{Org: "org", Schema: "contact", Version: uint64(i + 1),
			raw: []byte(`{"o":"org","s":"contact","v":1,"pad":"` + pad + `"}`)}})
		if len(batch) == cap(batch) {
			if err := states.apply(batch, nil, true); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
			for j := range 1000 { // entities not written yet: new ones, as a feed looks them up
				if _, err := getValue(states.db, stateKey(fmt.Sprintf("new-%d-%d", i, j))); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	m := states.db.Metrics()
	if rate := float64(m.BlockCache.Hits) / float64(max(m.BlockCache.Hits+m.BlockCache.Misses, 1)); rate < 0.9 {
		t.Fatalf("block cache hit rate %.2f (%d hits, %d misses, %d blocks held)", rate, m.BlockCache.Hits, m.BlockCache.Misses, m.BlockCache.Count)
	}
}

// States read from the changelog (a catch-up, a standby round) do not push the instance's own
// hot states out of the cache; what the cache holds, absent entries too, is kept current.
func TestChangelogReadsKeepTheCachesHotStates(t *testing.T) {
	states, err := openPebbleStates(t.TempDir(), "topic")
	if err != nil {
		t.Fatal(err)
	}
	defer states.close()
	states.cache = lru.New[string, *entityState](10)
	var hot []stateChange
	for i := range 5 {
		hot = append(hot, stateChange{id: fmt.Sprint("hot-", i), st: &entityState{Org: "org", Schema: "contact", Version: 1}})
	}
	if err := states.apply(hot, nil, true); err != nil {
		t.Fatal(err)
	}
	if states.get("new-1") != nil { // looked up by an event, absent: cached as absent
		t.Fatal("new-1 found before it was written")
	}
	var followed []stateChange
	for i := range 100 {
		followed = append(followed, stateChange{id: fmt.Sprint("other-", i), st: &entityState{Org: "org-b", Schema: "contact", Version: 1}})
	}
	followed = append(followed, stateChange{id: "hot-0", st: &entityState{Org: "org", Schema: "contact", Version: 2}},
		stateChange{id: "new-1", st: &entityState{Org: "org", Schema: "contact", Version: 3}})
	if err := states.apply(followed, map[int32]int64{1: 102}, false); err != nil {
		t.Fatal(err)
	}
	if n := states.cache.Len(); n != 6 {
		t.Fatalf("%d states cached after a changelog read of 102, want the 6 held before", n)
	}
	for i := range 5 {
		if _, ok := states.cache.Get(fmt.Sprint("hot-", i)); !ok {
			t.Errorf("hot-%d was pushed out of the cache", i)
		}
	}
	if st := states.get("hot-0"); st == nil || st.Version != 2 {
		t.Errorf("hot-0 from the cache: %+v, want the version read from the changelog", st)
	}
	if st := states.get("new-1"); st == nil || st.Version != 3 {
		t.Errorf("new-1, cached as absent: %+v, want the state read from the changelog", st)
	}
	if st := states.get("other-7"); st == nil || st.Org != "org-b" {
		t.Errorf("other-7 is not on disk: %+v", st)
	}
}
