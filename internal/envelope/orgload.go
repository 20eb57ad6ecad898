package envelope

// OrgLoad is what a processor says of an org on the org-load topic (keyed by org): that its
// events take more than its share of the processor's mapping time while other orgs' events wait,
// so ingest holds its new events back for HoldMs, or (HoldMs 0) that they no longer do.
type OrgLoad struct {
	Org string `json:"org"`
	// MappingMs is the org's mapping time in the last minute on the instance; LimitMs its share.
	MappingMs int64 `json:"mapping_ms"`
	LimitMs   int64 `json:"limit_ms"`
	// HoldMs is how long from its record's time ingest holds the org's new events back.
	HoldMs int64 `json:"hold_ms"`
}
