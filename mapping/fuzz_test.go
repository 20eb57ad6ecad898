package mapping

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// FuzzSimulate feeds arbitrary configurations and payloads through compile and simulation: either
// may refuse, neither may panic or hang (every golden case seeds it).
func FuzzSimulate(f *testing.F) {
	files, _ := filepath.Glob("testdata/golden/*.json")
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		var gc struct {
			Configuration json.RawMessage `json:"configuration"`
			Payload       json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(raw, &gc) == nil && gc.Configuration != nil {
			f.Add([]byte(gc.Configuration), []byte(gc.Payload))
		}
	}
	f.Fuzz(func(t *testing.T, cfg, payload []byte) {
		m, err := Compile(cfg, jsonata.Default)
		if err != nil {
			return
		}
		p, err := ParsePayload(payload, "json")
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if sim, err := m.Simulate(ctx, p, time.Unix(1_700_000_000, 0)); err == nil {
			if _, err := json.Marshal(sim); err != nil {
				t.Fatalf("simulation does not marshal: %v", err)
			}
		}
	})
}
