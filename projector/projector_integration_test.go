//go:build integration

// Integration tests of the projector on the real services: exactly-once counts across a crash
// between insert and commit, re-inserted batches, and patch semantics of entity writes.
package projector_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/projector"
	"github.com/erpstream/erpstream/query"
)

var errSimulatedCrash = errors.New("simulated crash between insert and offset commit")

// The projector dies after ClickHouse took a batch and before the offsets were committed; the
// restarted projector reads the batch again. Counts stay exact everywhere: the rows (without
// FINAL, so nothing relies on a merge), and the per-minute and per-hour aggregates, which a
// second insert would double for good.
func TestIntegrationProjectorCrashBetweenInsertAndCommit(t *testing.T) {
	e := apptest.New(t)
	var crashed atomic.Bool
	e.AfterInsert = func() error {
		if crashed.Load() {
			return nil
		}
		var n uint64
		if err := e.Conn.QueryRow(context.Background(), "SELECT count() FROM monitoring_events").Scan(&n); err != nil || n == 0 {
			return nil
		}
		crashed.Store(true)
		return errSimulatedCrash
	}
	e.Start()
	status, integ := e.Call("POST", "/v2/integrations", apptest.IntegrationBody)
	if status != http.StatusCreated {
		t.Fatalf("create integration: %d %v", status, integ)
	}
	id := integ["id"].(string)
	var events []string
	for i := 0; i < 200; i++ {
		events = append(events, apptest.CustomerEvent(i, "Kim", fmt.Sprintf("crash-%d", i)))
	}
	e.SendBatch(id, "crash", events[:100])
	e.SendBatch(id, "crash", events[100:])

	select {
	case err := <-e.Exited():
		if !errors.Is(err, errSimulatedCrash) {
			t.Fatalf("pipeline stopped with %v, want the simulated crash", err)
		}
	case <-time.After(90 * time.Second):
		t.Fatal("the projector never inserted monitoring rows")
	}
	stored := e.Scalar("SELECT count() FROM monitoring_events")
	t.Logf("crashed after inserting %d monitoring rows without committing their offsets", stored)

	e.AfterInsert = nil
	e.Start()
	st := e.WaitStats(id, 200)
	time.Sleep(2 * time.Second) // a double insert would land within the next flushes
	st = e.WaitStats(id, 200)
	if st["total_events"] != 200.0 || st["success_count"] != 200.0 {
		t.Fatalf("stats after the crash = %v, want exactly 200 successes", st)
	}
	if n := e.Scalar("SELECT count() FROM monitoring_events"); n != 200 {
		t.Errorf("%d monitoring rows stored, want 200 (the crashed batch was inserted again)", n)
	}
	if n := e.Scalar("SELECT toUInt64(countMerge(events)) FROM monitoring_minute WHERE integration_id = ?", id); n != 200 {
		t.Errorf("monitoring_minute counts %d events, want 200", n)
	}
	if n := e.Scalar("SELECT toUInt64(countMerge(events)) FROM monitoring_hour WHERE integration_id = ?", id); n != 200 {
		t.Errorf("monitoring_hour counts %d events, want 200", n)
	}
	if n := e.Scalar("SELECT count() FROM raw_events FINAL WHERE integration_id = ?", id); n != 200 {
		t.Errorf("raw_events holds %d events, want 200", n)
	}
	// A range of whole hours is answered from monitoring_hour; it agrees with the rows.
	now := time.Now().UTC()
	status, wide := e.Call("POST", "/v2/integrations/"+id+"/monitoring/stats", `{"from_date":"`+now.Add(-5*time.Hour).Format(time.RFC3339)+
		`","to_date":"`+now.Add(4*time.Hour).Truncate(time.Hour).Format(time.RFC3339)+`"}`)
	if status != http.StatusOK || wide["total_events"] != 200.0 {
		t.Errorf("stats over whole hours: %d %v, want 200", status, wide)
	}
}

// The projector re-inserts a batch when it dies between insert and offset commit. The tables
// collapse such duplicates, so what users see is counted once.
func TestIntegrationReinsertedBatchesCountOnce(t *testing.T) {
	e := apptest.New(t)
	ctx := context.Background()
	if err := app.Migrate(ctx, e.CH, e.Log); err != nil {
		t.Fatal(err)
	}
	sink := &projector.ClickHouseSink{Conn: e.Conn}
	now := time.Now().UnixMilli()
	var rows []envelope.MonitoringEvent
	var writes []envelope.EntityWrite
	for i := 0; i < 50; i++ {
		rows = append(rows, envelope.MonitoringEvent{ID: fmt.Sprintf("m-%d-%s", i, strings.Repeat("x", 36)), OrgID: "o", IntegrationID: "i", EventID: fmt.Sprintf("e-%d", i),
			Level: envelope.LevelSuccess, Code: "ENTITY_UPDATED", CreatedAtMs: now})
		writes = append(writes, envelope.EntityWrite{OrgID: "o", EntitySchema: "contact", EntityID: fmt.Sprintf("c-%d", i), Op: envelope.OpUpsert,
			UniqueIdentifiers: json.RawMessage(`{}`), Attributes: json.RawMessage(`{"n":1}`), Version: 1, WrittenAtMs: now})
	}
	for attempt := 0; attempt < 2; attempt++ {
		if err := sink.WriteMonitoring(ctx, rows); err != nil {
			t.Fatal(err)
		}
		if err := sink.WriteEntities(ctx, writes); err != nil {
			t.Fatal(err)
		}
	}
	// The projector's check for rows an earlier attempt stored asks about a whole batch; 10,000
	// ids of 40 characters are far over one query's size limit.
	var batch []envelope.MonitoringEvent
	for i := 0; i < 10000; i++ {
		batch = append(batch, envelope.MonitoringEvent{ID: fmt.Sprintf("big-%036d", i), OrgID: "o2", IntegrationID: "i", Level: envelope.LevelSuccess, CreatedAtMs: now + int64(i)})
	}
	if err := sink.WriteMonitoring(ctx, batch[:7000]); err != nil {
		t.Fatal(err)
	}
	existing, err := (&projector.ClickHouseStored{Conn: e.Conn}).ExistingMonitoring(ctx, batch)
	if err != nil || len(existing) != 7000 || !existing[batch[6999].ID] || existing[batch[7000].ID] {
		t.Fatalf("ExistingMonitoring found %d of the 7,000 stored rows (err %v)", len(existing), err)
	}
	store := &query.ClickHouseStore{Conn: e.Conn}
	st, err := store.Stats(ctx, query.Filter{OrgID: "o", IntegrationID: "i", From: time.UnixMilli(now - 1000), To: time.UnixMilli(now + 1000)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Total != 50 {
		t.Errorf("stats count %d after inserting one batch twice, want 50", st.Total)
	}
	var entities uint64
	if err := e.Conn.QueryRow(ctx, "SELECT count() FROM entities FINAL WHERE org_id = 'o'").Scan(&entities); err != nil {
		t.Fatal(err)
	}
	if entities != 50 {
		t.Errorf("%d entities after inserting one batch twice, want 50", entities)
	}
}

// Patch semantics on the real services: two use cases map different attributes
// of one contact, and an event that leaves an attribute undefined keeps its stored value.
func TestIntegrationEntityWritesPatchTheStoredAttributes(t *testing.T) {
	e := apptest.New(t)
	e.Start()
	body := `{"name":"SAP","use_cases":[
	 {"name":"Master data","slug":"master","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contact",
	  "unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"nr"},
	  {"attribute":"first_name","field":"vorname"},{"attribute":"city","field":"$.adresse.ort"}]}]}},
	 {"name":"Scoring","slug":"scoring","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contact",
	  "unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"nr"},{"attribute":"segment","field":"segment"}]}]}}]}`
	id := e.CreateIntegration(body)
	send := func(slug, payload string) { e.SendOne(id, slug, payload) }
	send("master", `{"nr":"K-1","vorname":"Ann","adresse":{"ort":"Köln"}}`)
	e.WaitStats(id, 1)
	send("scoring", `{"nr":"K-1","segment":"gold"}`)
	e.WaitStats(id, 2)
	send("master", `{"nr":"K-1","vorname":"Anna"}`)
	e.WaitStats(id, 3)
	var attrs map[string]any
	apptest.WaitFor(t, func() bool {
		var raw string
		_ = e.Conn.QueryRow(context.Background(), `SELECT attributes FROM entities FINAL WHERE entity_schema = 'contact'`).Scan(&raw)
		attrs = nil
		_ = json.Unmarshal([]byte(raw), &attrs)
		return attrs["first_name"] == "Anna"
	})
	if attrs["city"] != "Köln" || attrs["segment"] != "gold" || attrs["customer_number"] != "K-1" {
		t.Errorf("contact K-1 = %v; want first_name Anna, city Köln kept, segment gold kept", attrs)
	}
	if n := e.Scalar("SELECT count() FROM entity_changes WHERE entity_schema = 'contact'"); n != 3 {
		t.Errorf("%d entity changes, want 3", n)
	}
}
