package processor

import (
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
	if got := s.lookup("org-a", "contact", []lookupKey{k}, nil); len(got) != 1 {
		t.Fatalf("org A's own lookup: %v", got)
	}
	// Org B presents the very same key (as a colliding value would hash to).
	if got := s.lookup("org-b", "contact", []lookupKey{k}, nil); len(got) != 0 {
		t.Fatalf("org B found org A's entity: %v", got)
	}
}
