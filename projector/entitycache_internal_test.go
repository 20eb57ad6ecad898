package projector

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// patcher is a projector for patch and flush tests: no Kafka, the given stored state.
func patcher(t *testing.T, stored Stored) *Projector {
	t.Helper()
	p, err := New(Config{Sink: failingSink{}, Stored: stored, Topics: kafkax.NewTopics(""), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// countingStored answers CurrentEntities from a map and counts the entities asked for.
type countingStored struct {
	storedSink
	asked *atomic.Int64
}

func (s countingStored) CurrentEntities(ctx context.Context, ids map[EntityScope][]string) (map[string]StoredEntity, error) {
	for _, list := range ids {
		s.asked.Add(int64(len(list)))
	}
	return s.storedSink.CurrentEntities(ctx, ids)
}

// failingSink fails every insert.
type failingSink struct{ Sink }

func (failingSink) WriteEntities(context.Context, []envelope.EntityWrite) error {
	return errors.New("clickhouse away")
}

// An entity the projector stored lately is patched from the cache, with the same result as from
// ClickHouse; one it never stored, or after partitions moved, is read from ClickHouse.
func TestPatchReadsRecentlyStoredEntitiesFromTheCache(t *testing.T) {
	row := StoredEntity{Version: 10, Attributes: []byte(`{"no":"K-1","name":"Lena","city":"Köln"}`)}
	asked := &atomic.Int64{}
	p := patcher(t, countingStored{storedSink{stored: map[string]StoredEntity{"e1": row}}, asked})
	first := []envelope.EntityWrite{{EntityID: "e1", Version: 20, Attributes: []byte(`{"city":"Bonn"}`)}}
	out, current, err := p.patch(context.Background(), first)
	if err != nil || len(out) != 1 || asked.Load() != 1 {
		t.Fatalf("first patch: %v, %d rows, %d asked", err, len(out), asked.Load())
	}
	for id, row := range current { // what flush does once ClickHouse took the batch
		p.cache.Put(id, row)
	}

	next := []envelope.EntityWrite{{EntityID: "e1", Version: 30, Attributes: []byte(`{"name":"Lea"}`)}}
	fromCache, _, err := p.patch(context.Background(), next)
	if err != nil || asked.Load() != 1 {
		t.Fatalf("second patch asked ClickHouse (%d) or failed: %v", asked.Load(), err)
	}
	// The same write patched against what ClickHouse would answer by then.
	fromClickHouse, _, _ := patcher(t, storedSink{stored: map[string]StoredEntity{"e1": current["e1"]}}).patch(context.Background(), next)
	if len(fromCache) != 1 || len(fromClickHouse) != 1 || string(fromCache[0].Attributes) != string(fromClickHouse[0].Attributes) ||
		fromCache[0].Version != fromClickHouse[0].Version || string(fromCache[0].Attributes) != `{"no":"K-1","name":"Lea","city":"Bonn"}` {
		t.Fatalf("from the cache %+v, from ClickHouse %+v", fromCache, fromClickHouse)
	}

	p.cache.Clear() // partitions moved
	if _, _, err := p.patch(context.Background(), next); err != nil || asked.Load() != 2 {
		t.Fatalf("after clear: %v, %d asked (want ClickHouse asked again)", err, asked.Load())
	}
}

// A batch ClickHouse did not take leaves nothing in the cache: its retry must patch against
// what is stored, not against what it failed to store.
func TestAFailedInsertLeavesTheCacheAlone(t *testing.T) {
	p := patcher(t, storedSink{stored: map[string]StoredEntity{}})
	ctx, cancel := context.WithCancel(context.Background())
	p.cfg.Sink = cancelingSink{cancel}
	w := envelope.EntityWrite{OrgID: "o", EntitySchema: "contact", EntityID: "e1", Version: 5, Attributes: []byte(`{"a":1}`)}
	rec := &kgo.Record{Topic: p.cfg.Topics.Entities, Value: w.AppendJSON(nil)}
	if err := p.flush(ctx, []*kgo.Record{rec}); err == nil {
		t.Fatal("flush succeeded against a failing sink")
	}
	if n := p.cache.Len(); n != 0 {
		t.Errorf("%d entities cached after a failed insert", n)
	}
}

// cancelingSink fails the insert and ends the flush's context, so flush stops retrying.
type cancelingSink struct{ cancel context.CancelFunc }

func (s cancelingSink) WriteEntities(context.Context, []envelope.EntityWrite) error {
	s.cancel()
	return errors.New("clickhouse away")
}
func (cancelingSink) WriteRawEvents(context.Context, []envelope.Event) error            { return nil }
func (cancelingSink) WriteMonitoring(context.Context, []envelope.MonitoringEvent) error { return nil }
func (cancelingSink) WriteAccessLogs(context.Context, []envelope.AccessLog) error       { return nil }
