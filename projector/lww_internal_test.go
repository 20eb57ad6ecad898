package projector

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
)

func attrs(t *testing.T, w envelope.EntityWrite) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(w.Attributes, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// Writes of one entity arriving out of order end as if in order: each attribute holds the
// value of the newest write that set it; deletes, restores and purges follow the newest decision.
func TestOutOfOrderWritesMergePerAttribute(t *testing.T) {
	up := func(v uint64, a string) envelope.EntityWrite {
		return envelope.EntityWrite{EntityID: "e", Version: v, Op: envelope.OpUpsert, Attributes: json.RawMessage(a)}
	}
	del := func(v uint64, op envelope.EntityOp) envelope.EntityWrite {
		return envelope.EntityWrite{EntityID: "e", Version: v, Op: op, Attributes: json.RawMessage(`{}`)}
	}
	cases := []struct {
		name        string
		writes      []envelope.EntityWrite // in arrival order, one batch each
		wantAttrs   string
		wantDeleted bool
		wantRows    int
	}{
		{"older write adds what the newer did not set", []envelope.EntityWrite{up(20, `{"phone":"2"}`), up(10, `{"name":"A","phone":"1"}`)},
			`{"phone":"2","name":"A"}`, false, 2},
		{"older write of newer attributes only", []envelope.EntityWrite{up(20, `{"name":"B"}`), up(10, `{"name":"A"}`)},
			`{"name":"B"}`, false, 1},
		{"a write applied twice", []envelope.EntityWrite{up(10, `{"name":"A"}`), up(10, `{"name":"A"}`)},
			`{"name":"A"}`, false, 1},
		{"older upsert under a newer delete", []envelope.EntityWrite{up(10, `{"name":"A"}`), del(30, envelope.OpDelete), up(20, `{"city":"X"}`)},
			`{"name":"A","city":"X"}`, true, 3},
		{"older upsert under a newer purge", []envelope.EntityWrite{up(10, `{"name":"A"}`), del(30, envelope.OpPurge), up(20, `{"city":"X"}`)},
			`{}`, true, 2},
		{"restore after a purge", []envelope.EntityWrite{up(10, `{"name":"A"}`), del(30, envelope.OpPurge), up(40, `{"city":"Y"}`)},
			`{"city":"Y"}`, false, 3},
		{"older delete under a newer restore", []envelope.EntityWrite{up(30, `{"name":"A"}`), del(20, envelope.OpDelete)},
			`{"name":"A"}`, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := storedSink{stored: map[string]StoredEntity{}}
			p := patcher(t, sink)
			rows := 0
			var last envelope.EntityWrite
			for _, w := range tc.writes {
				out, _, err := p.patch(context.Background(), []envelope.EntityWrite{w})
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range out {
					rows++
					if r.Version <= last.Version {
						t.Errorf("row version %d not above the stored %d", r.Version, last.Version)
					}
					last = r
					sink.stored["e"] = StoredEntity{Version: r.Version, Deleted: r.Op != envelope.OpUpsert, Attributes: r.Attributes,
						AttributeVersions: r.AttributeVersions}
				}
			}
			var got, want map[string]any
			_ = json.Unmarshal(last.Attributes, &got)
			_ = json.Unmarshal([]byte(tc.wantAttrs), &want)
			if len(got) != len(want) {
				t.Fatalf("attributes %s, want %s", last.Attributes, tc.wantAttrs)
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("attributes %s, want %s", last.Attributes, tc.wantAttrs)
				}
			}
			if deleted := last.Op != envelope.OpUpsert; deleted != tc.wantDeleted {
				t.Errorf("deleted = %v, want %v", deleted, tc.wantDeleted)
			}
			if rows != tc.wantRows {
				t.Errorf("%d rows written, want %d", rows, tc.wantRows)
			}
		})
	}
}
