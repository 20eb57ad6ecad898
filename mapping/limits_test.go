package mapping_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/mapping"
)

// slowItems maps n items whose field runs a backtracking regex over 40 a's: about 2.5 ms each
// (about 60 ms under the race detector), far below the 200 ms per-match limit.
func slowItems(t *testing.T, n int) (*mapping.Mapping, any) {
	t.Helper()
	cfg := `{"entities":[{"entity_schema":"contact","unique_ids":["no"],"jsonataExpression":"items","fields":[
		{"attribute":"no","field":"no"},
		{"attribute":"flag","jsonataExpression":"$contains($$.s, /a.*a.*a.*z/) ? 'y' : 'n'"}]}]}`
	m, err := mapping.Compile(json.RawMessage(cfg), jsonata.Default)
	if err != nil {
		t.Fatal(err)
	}
	var items []string
	for i := range n {
		items = append(items, `{"no":"K-`+string(rune('a'+i%26))+`"}`)
	}
	payload, err := jsonata.DecodeJSON([]byte(`{"s":"` + strings.Repeat("a", 40) + `","items":[` + strings.Join(items, ",") + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	return m, payload
}

// The event's deadline holds in wall time: many expressions that each take a while (below the
// per-expression limit, and few evaluation steps) used to run on past it, one after the other.
// 2,000 slow items take about 5 s unbounded; under a 200 ms deadline the extraction ends within a
// few hundred ms (the regex engine's clock has a resolution of about 100 ms). The bound allows a
// loaded CI machine ten times the deadline, still far below the unbounded run.
func TestSlowMappingStopsAtTheEventsDeadline(t *testing.T) {
	m, payload := slowItems(t, 2000)
	const limit = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	_, err := m.Extract(ctx, payload, &jsonata.Env{})
	elapsed := time.Since(start)
	t.Logf("deadline %v, extraction ended after %v: %v", limit, elapsed, err)
	var me *mapping.Error
	if !errors.As(err, &me) || me.Code != "MAPPING_TIMEOUT" {
		t.Fatalf("want MAPPING_TIMEOUT, got %v", err)
	}
	if msg := me.Error(); !strings.Contains(msg, "entity contact") || !strings.Contains(msg, "entities[0]") {
		t.Errorf("message %q does not name entity and path", msg)
	}
	if elapsed > 10*limit {
		t.Errorf("extraction ran %v past a %v deadline", elapsed, limit)
	}
}

// One event may map to at most Limits.MaxUpdates entity updates: a 7-byte payload with a range
// expression fails fast instead of writing 20,000 entities.
func TestFanOutIsBounded(t *testing.T) {
	cfg := `{"entities":[{"entity_schema":"contact","unique_ids":["no"],"jsonataExpression":"[1..20000].{\"no\": $string($)}",
		"fields":[{"attribute":"no","field":"no"}]}]}`
	m, err := mapping.Compile(json.RawMessage(cfg), jsonata.Default)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := jsonata.DecodeJSON([]byte(`{"a":1}`))
	_, err = m.ExtractWithin(context.Background(), payload, &jsonata.Env{}, mapping.Limits{MaxUpdates: 1000})
	var me *mapping.Error
	if !errors.As(err, &me) || me.Code != "MAPPING_LIMIT_EXCEEDED" || !strings.Contains(me.Error(), "1000") {
		t.Fatalf("want MAPPING_LIMIT_EXCEEDED naming the limit, got %v", err)
	}
	if _, err := m.ExtractWithin(context.Background(), payload, &jsonata.Env{}, mapping.Limits{MaxUpdates: 30000}); err != nil {
		t.Fatalf("within a larger limit: %v", err)
	}
}
