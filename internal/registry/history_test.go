package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
)

// History holds entries without their configurations in memory (a busy use case would otherwise
// keep megabytes per update in every process); a page reads them from the config log by offset.
// A use case keeps its newest MaxHistoryPerUseCase entries.
func TestHistoryKeepsConfigurationsInTheLogAndIsCapped(t *testing.T) {
	old := registry.MaxHistoryPerUseCase
	registry.MaxHistoryPerUseCase = 5
	defer func() { registry.MaxHistoryPerUseCase = old }()
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	big := `{"padding":"` + strings.Repeat("x", 64<<10) + `","v":%d}`
	at := time.Unix(1_700_000_000, 0)
	for i := range 8 {
		must(t, reg.PutHistory(ctx, &registry.HistoryEntry{ID: fmt.Sprintf("h%d", i), OrgID: "org", UseCaseID: "uc", Name: "x",
			Configuration: json.RawMessage(fmt.Sprintf(big, i)), HistoryCreatedAt: at.Add(time.Duration(i) * time.Second)}))
		// Another use case's entries are interleaved in the log.
		must(t, reg.PutHistory(ctx, &registry.HistoryEntry{ID: fmt.Sprintf("o%d", i), OrgID: "org", UseCaseID: "other", Name: "y",
			Configuration: json.RawMessage(`{"other":true}`), HistoryCreatedAt: at}))
	}
	entries := reg.Snapshot().History("org", "uc")
	if len(entries) != 5 || entries[0].ID != "h7" || entries[4].ID != "h3" {
		t.Fatalf("history %d entries (newest %v), want h7..h3", len(entries), ids(entries))
	}
	for _, h := range entries {
		if h.Configuration != nil {
			t.Fatalf("entry %s holds its configuration in memory", h.ID)
		}
	}
	configs, err := reg.HistoryConfigurations(ctx, entries[1:4])
	must(t, err)
	for i, h := range entries[1:4] {
		var v struct{ V int }
		if err := json.Unmarshal(configs[h.ID], &v); err != nil || v.V != 6-i {
			t.Errorf("configuration of %s: v=%d (%v), want %d", h.ID, v.V, err, 6-i)
		}
	}
	if got := reg.Snapshot().History("org", "nobody"); len(got) != 0 {
		t.Errorf("history of an unknown use case: %v", ids(got))
	}
}

func ids(hs []*registry.HistoryEntry) []string {
	var out []string
	for _, h := range hs {
		out = append(out, h.ID)
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
