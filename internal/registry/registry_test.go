package registry_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
)

func TestPutIsVisibleAtOnceAndSurvivesARestart(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	now := time.Now().UTC()
	integ := &registry.Integration{ID: "i-1", OrgID: "org-a", Name: "SAP", CreatedAt: now, UpdatedAt: now,
		Fields: map[string]json.RawMessage{"description": json.RawMessage(`"ERP"`)}}
	if err := reg.PutIntegration(ctx, integ); err != nil {
		t.Fatal(err)
	}
	uc := &registry.UseCase{ID: "u-1", OrgID: "org-a", IntegrationID: "i-1", Name: "Customers", Slug: "customer",
		Type: registry.TypeInbound, Enabled: true, Version: 1, CreatedAt: now, UpdatedAt: now}
	if err := reg.PutUseCase(ctx, uc); err != nil {
		t.Fatal(err)
	}
	// Read-your-writes: visible as soon as Put returns.
	if _, ok := reg.Snapshot().UseCaseBySlug("org-a", "i-1", "customer"); !ok {
		t.Fatal("use case not visible after PutUseCase returned")
	}
	if _, ok := reg.Snapshot().Integration("org-b", "i-1"); ok {
		t.Fatal("another org sees the integration")
	}

	// A second registry (a restarted service) rebuilds the same state from the topic.
	again := registrytest.Start(t, c)
	got, ok := again.Snapshot().Integration("org-a", "i-1")
	if !ok || got.Name != "SAP" || string(got.Fields["description"]) != `"ERP"` {
		t.Fatalf("after restart: %+v %v", got, ok)
	}
	if u, ok := again.Snapshot().UseCaseBySlug("org-a", "i-1", "customer"); !ok || u.ID != "u-1" {
		t.Fatalf("use case after restart: %+v %v", u, ok)
	}

	// Deleting the integration removes its use cases for every reader.
	if err := reg.DeleteIntegration(ctx, "org-a", "i-1"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, iok := again.Snapshot().Integration("org-a", "i-1")
		_, uok := again.Snapshot().UseCase("org-a", "u-1")
		if !iok && !uok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("other reader still sees deleted configuration after 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFirstSlugClaimWins(t *testing.T) {
	c := kafkatest.New(t)
	reg := registrytest.Start(t, c)
	ctx := context.Background()
	for _, id := range []string{"u-first", "u-second"} {
		if err := reg.PutUseCase(ctx, &registry.UseCase{ID: id, OrgID: "o", IntegrationID: "i", Name: id, Slug: "dup", Type: registry.TypeInbound}); err != nil {
			t.Fatal(err)
		}
	}
	if u, _ := reg.Snapshot().UseCaseBySlug("o", "i", "dup"); u == nil || u.ID != "u-first" {
		t.Fatalf("slug owner = %+v, want u-first", u)
	}
	// Once the owner is deleted, the slug is free; the loser is not promoted silently.
	if err := reg.DeleteUseCase(ctx, "o", "u-first"); err != nil {
		t.Fatal(err)
	}
	if u, ok := reg.Snapshot().UseCaseBySlug("o", "i", "dup"); ok {
		t.Fatalf("slug still resolves to %s after its owner was deleted", u.ID)
	}
}
