package processor

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
)

// Lookup keys are hashes of (org, schema, attribute, value); a collision crafted by another org
// (or any) must not return an entity across orgs: the state carries its org and lookups check it.
func TestLookupsNeverCrossOrgsEvenOnAKeyCollision(t *testing.T) {
	s := newEntityStore(slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	k := keyOf("org-a", "contact", "email", "lena@example.com")
	s.mu.Lock()
	s.putLocked("entity-of-a", &entityState{Org: "org-a", Schema: "contact", Version: 1, Keys: attrKeys{{Attr: "email", Key: k}}})
	s.mu.Unlock()
	if got := s.lookup("org-a", "contact", []lookupKey{k}, nil, nil, 0); len(got) != 1 {
		t.Fatalf("org A's own lookup: %v", got)
	}
	// Org B presents the very same key (as a colliding value would hash to).
	if got := s.lookup("org-b", "contact", []lookupKey{k}, nil, nil, 0); len(got) != 0 {
		t.Fatalf("org B found org A's entity: %v", got)
	}
}

// visitCounter counts the index entries a lookup reads from the committed states.
type visitCounter struct {
	committedStates
	visited int
}

func (v *visitCounter) eachWithKey(k lookupKey, fn func(id string) bool) {
	v.committedStates.eachWithKey(k, func(id string) bool { v.visited++; return fn(id) })
}

// Thousands of entities can share an indexed value (an empty e-mail address): a lookup that only
// needs to know whether more than one matches reads two of them, and one that names a rarer value
// too reads the entities of that value only.
func TestLookupsReadOnlyTheEntitiesTheyNeed(t *testing.T) {
	s := newEntityStore(slog.New(slog.NewTextHandler(io.Discard, nil)), "test")
	shared := keyOf("org", "contact", "email", "")
	number := func(i int) lookupKey { return keyOf("org", "contact", "customer_number", fmt.Sprint(i)) }
	s.mu.Lock()
	for i := range 5000 {
		s.putLocked(fmt.Sprint("c-", i), &entityState{Org: "org", Schema: "contact", Version: 1,
			Keys: attrKeys{{Attr: "email", Key: shared}, {Attr: "customer_number", Key: number(i)}}})
	}
	s.mu.Unlock()
	counter := &visitCounter{committedStates: s.committed}
	s.committed = counter
	lookup := func(limit int, keys ...lookupKey) (found, visited int) {
		counter.visited = 0
		return len(s.lookup("org", "contact", keys, nil, nil, limit)), counter.visited
	}
	if found, visited := lookup(2, shared); found != 2 || visited != 2 {
		t.Errorf("is there more than one entity with the shared value: %d found, %d read; want 2 and 2", found, visited)
	}
	if found, visited := lookup(0, shared); found != 5000 || visited != 5000 {
		t.Errorf("all entities with the shared value: %d found, %d read; want 5000", found, visited)
	}
	if found, visited := lookup(2, shared, number(42)); found != 1 || visited != 1 {
		t.Errorf("the shared value and a customer number: %d found, %d read; want 1 and 1", found, visited)
	}
	if found, _ := lookup(2, number(42), number(43)); found != 0 {
		t.Errorf("two customer numbers of different entities: %d found", found)
	}
}
