package processor

import (
	"encoding/json"
	"testing"

	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/registry"
)

func TestMappingCacheKeepsOneVersionPerUseCase(t *testing.T) {
	p := &Processor{cfg: Config{Engine: jsonata.Default}}
	cfg := func(attr string) json.RawMessage {
		return json.RawMessage(`{"entities":[{"entity_schema":"c","unique_ids":["` + attr + `"],"fields":[{"attribute":"` + attr + `","field":"x"}]}]}`)
	}
	v1, err := p.compiled(&registry.UseCase{ID: "uc", Version: 1, Configuration: cfg("a")})
	if err != nil {
		t.Fatal(err)
	}
	again, _ := p.compiled(&registry.UseCase{ID: "uc", Version: 1, Configuration: cfg("ignored: version 1 is cached")})
	if again != v1 {
		t.Error("the same version was compiled twice")
	}
	v2, err := p.compiled(&registry.UseCase{ID: "uc", Version: 2, Configuration: cfg("b")})
	if err != nil || v2 == v1 {
		t.Fatalf("version 2 not compiled: %v", err)
	}
	entries := 0
	p.mappings.Range(func(any, any) bool { entries++; return true })
	if entries != 1 {
		t.Errorf("%d cache entries for one use case, want 1", entries)
	}
}
