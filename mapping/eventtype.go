package mapping

import "strings"

// Event types (the product's definition): CREATE creates an entity and fails if it exists,
// UPDATE updates or creates it, DELETE marks it deleted. An event without a type is an UPDATE.
const (
	EventCreate = "CREATE"
	EventUpdate = "UPDATE"
	EventDelete = "DELETE"
)

// ModeCreate is an upsert that fails the event with ENTITY_ALREADY_EXISTS when the entity is
// live; a CREATE event turns its mapping's upserts into it.
const ModeCreate = "create"

// ApplyEventType rewrites an extraction for the event's type, so the pipeline and the simulation
// show and apply the same thing: DELETE turns every entity and meter-reading write into a delete
// (a purge stays a purge) and drops prune-scope plans, since nothing is kept; CREATE turns
// upserts into creates; UPDATE and no type leave the mapping's modes as they are.
func ApplyEventType(res *Extraction, eventType string) {
	switch strings.ToUpper(eventType) {
	case EventDelete:
		for i := range res.Entities {
			if res.Entities[i].Mode != "purge" {
				res.Entities[i].Mode = "delete"
			}
		}
		for i := range res.MeterReadings {
			res.MeterReadings[i].Mode = "delete"
		}
		res.Prunes, res.ReadingPrunes = nil, nil
	case EventCreate:
		for i := range res.Entities {
			if m := res.Entities[i].Mode; m == "upsert" || m == "" {
				res.Entities[i].Mode = ModeCreate
			}
		}
	}
}
