package projector

import (
	"context"
	"testing"

	"github.com/erpstream/erpstream/internal/envelope"
)

// storedSink answers CurrentEntities from a map; ExistingMonitoring is unused here.
type storedSink struct {
	Stored
	stored map[string]StoredEntity
}

func (s storedSink) CurrentEntities(context.Context, map[EntityScope][]string) (map[string]StoredEntity, error) {
	out := map[string]StoredEntity{}
	for k, v := range s.stored {
		out[k] = v
	}
	return out, nil
}

func TestPatchLaysWritesOverTheStoredAttributesInVersionOrder(t *testing.T) {
	p := patcher(t, storedSink{stored: map[string]StoredEntity{
		"e1": {Version: 10, Attributes: []byte(`{"no":"K-1","name":"Lena","city":"Köln"}`)},
		"e2": {Version: 50, Attributes: []byte(`{"no":"K-2","name":"new"}`)},
	}})
	writes := []envelope.EntityWrite{
		{EntityID: "e1", Version: 30, Attributes: []byte(`{"no":"K-1","city":"Bonn","tags":["a"]}`)},
		{EntityID: "e1", Version: 20, Attributes: []byte(`{"name":"Lea"}`)},
		{EntityID: "e2", Version: 40, Attributes: []byte(`{"name":"older than stored"}`)},
		{EntityID: "e3", Version: 5, Attributes: []byte(`{"no":"K-3"}`)},
	}
	out, _, err := p.patch(context.Background(), writes)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint64]string{}
	for _, w := range out {
		got[w.Version] = w.EntityID + " " + string(w.Attributes)
	}
	want := map[uint64]string{
		20: `e1 {"no":"K-1","name":"Lea","city":"Köln"}`,
		30: `e1 {"no":"K-1","name":"Lea","city":"Bonn","tags":["a"]}`,
		5:  `e3 {"no":"K-3"}`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v (the write older than the stored row dropped)", got, want)
	}
	for v, w := range want {
		if got[v] != w {
			t.Errorf("version %d: %s, want %s", v, got[v], w)
		}
	}
	// Merging again (a batch re-written after a crash) writes nothing: the row holds it already.
	p.cfg.Stored = storedSink{stored: map[string]StoredEntity{"e1": {Version: 30, Attributes: []byte(`{"no":"K-1","name":"Lea","city":"Bonn","tags":["a"]}`)}}}
	if again, _, _ := p.patch(context.Background(), writes[:1]); len(again) != 0 {
		t.Errorf("re-merge wrote %s", again[0].Attributes)
	}
}

// An entity found by another unique id keeps the identifiers it was written with; all of them
// are its unique identifiers.
func TestPatchMergesUniqueIdentifiers(t *testing.T) {
	p := patcher(t, storedSink{stored: map[string]StoredEntity{
		"e1": {Version: 10, UniqueIdentifiers: []byte(`{"customer_number":"K-1"}`), Attributes: []byte(`{"customer_number":"K-1"}`)},
	}})
	out, _, err := p.patch(context.Background(), []envelope.EntityWrite{
		{EntityID: "e1", Version: 20, UniqueIdentifiers: []byte(`{"email":"a@x.de"}`), Attributes: []byte(`{"first_name":"Ann"}`)},
		{EntityID: "e1", Version: 30, Op: envelope.OpDelete, UniqueIdentifiers: []byte(`{}`), Attributes: []byte(`{}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range out {
		if string(w.UniqueIdentifiers) != `{"customer_number":"K-1","email":"a@x.de"}` {
			t.Errorf("version %d: unique identifiers %s", w.Version, w.UniqueIdentifiers)
		}
	}
}
