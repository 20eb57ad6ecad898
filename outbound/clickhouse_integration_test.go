//go:build integration

package outbound_test

import (
	"context"
	"testing"

	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/outbound"
	"github.com/erpstream/erpstream/projector/schema"
)

// Two changes of one entity read in one poll: each delivery shows the entity as its own write
// left it (entity_changes at its version), a write the projector did not store reads the newest
// row, and another org's entity with the same id is not read.
func TestIntegrationEachChangeReadsItsOwnVersion(t *testing.T) {
	e := apptest.New(t)
	ctx := context.Background()
	apptest.Must(t, schema.Migrate(ctx, e.Conn, e.Log))
	for _, row := range []struct {
		org     string
		version uint64
		attrs   string
	}{{"org-a", 100, `{"first_name":"One"}`}, {"org-a", 200, `{"first_name":"Two"}`}, {"org-b", 300, `{"first_name":"Other org"}`}} {
		b, err := e.Conn.PrepareBatch(ctx, `INSERT INTO entities (org_id, entity_schema, entity_id, version, deleted, unique_identifiers,
			attributes, integration_id, use_case_id, event_id, correlation_id, written_at_ms)`)
		apptest.Must(t, err)
		apptest.Must(t, b.Append(row.org, "contact", "e-1", row.version, uint8(0), "{}", row.attrs, "i", "u", "ev", "c", uint64(1000)))
		apptest.Must(t, b.Send())
	}
	got, err := (&outbound.ClickHouseEntities{Conn: e.Conn}).Changed(ctx, "org-a", "contact",
		[]outbound.EntityVersion{{ID: "e-1", Version: 100}, {ID: "e-1", Version: 200}, {ID: "e-1", Version: 150}})
	apptest.Must(t, err)
	for v, want := range map[uint64]string{100: `{"first_name":"One"}`, 200: `{"first_name":"Two"}`, 150: `{"first_name":"Two"}`} {
		if s := string(got[outbound.EntityVersion{ID: "e-1", Version: v}].Attributes); s != want {
			t.Errorf("version %d: %s, want %s", v, s, want)
		}
	}
	none, err := (&outbound.ClickHouseEntities{Conn: e.Conn}).Changed(ctx, "org-a", "contact", []outbound.EntityVersion{{ID: "e-1", Version: 300}})
	apptest.Must(t, err)
	if len(none) != 0 {
		t.Errorf("org-b's newer row answered for org-a: %v", none)
	}
}
