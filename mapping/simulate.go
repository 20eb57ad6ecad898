package mapping

import (
	"context"
	"strings"
	"time"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// Simulation is MappingSimulationResponse: what the pipeline would write for one payload.
type Simulation struct {
	EntityUpdates        []EntityUpdate       `json:"entity_updates"`
	MeterReadingsUpdates []MeterReadingUpdate `json:"meter_readings_updates"`
	// PruneScopeUpdates are the upsert-prune-scope plans (beyond 0.58.0; later API versions' shape).
	PruneScopeUpdates []PruneScopeUpdate `json:"prune_scope_updates,omitempty"`
	// MeterReadingPruneUpdates are the meter readings' upsert-prune-scope plans (additive, like
	// prune_scope_updates).
	MeterReadingPruneUpdates []ReadingPrune `json:"meter_reading_prune_updates,omitempty"`
	Warnings                 []Warning      `json:"warnings"`
}

// Warning is MappingSimulationWarning.
type Warning struct {
	EntitySchema string `json:"entity_schema"`
	Field        string `json:"field"`
	Message      string `json:"message"`
}

// Simulate maps one payload exactly as the pipeline's extraction stage does (the same compiled
// Mapping and evaluation), without writing or looking anything up: relations stay unresolved
// envelopes. now stands in for the event's receive time ($now()).
func (m *Mapping) Simulate(ctx context.Context, payload any, now time.Time) (*Simulation, error) {
	return m.SimulateEvent(ctx, payload, now, "")
}

// SimulateEvent is Simulate for an event of a type (CREATE, UPDATE, DELETE; "" is UPDATE): the
// modes shown are those the type selects, as the pipeline applies them (ApplyEventType).
func (m *Mapping) SimulateEvent(ctx context.Context, payload any, now time.Time, eventType string) (*Simulation, error) {
	res, err := m.Extract(ctx, payload, &jsonata.Env{Now: now})
	if err != nil {
		return nil, err
	}
	ApplyEventType(res, eventType)
	sim := &Simulation{EntityUpdates: res.Entities, MeterReadingsUpdates: res.MeterReadings, PruneScopeUpdates: res.Prunes,
		MeterReadingPruneUpdates: res.ReadingPrunes, Warnings: append([]Warning{}, res.Warnings...)}
	if sim.EntityUpdates == nil {
		sim.EntityUpdates = []EntityUpdate{}
	}
	for i := range sim.EntityUpdates {
		u := &sim.EntityUpdates[i]
		u.Attributes = withoutFileProxyURLs(u.Attributes)
		if u.Pricing != nil && (u.Mode == "upsert" || u.Mode == ModeCreate || strings.HasPrefix(u.Mode, "upsert-prune-scope-")) {
			if err := simulatePricing(u, sim); err != nil {
				return nil, err
			}
		}
	}
	if sim.MeterReadingsUpdates == nil {
		sim.MeterReadingsUpdates = []MeterReadingUpdate{}
	}
	return sim, nil
}
