package replay

import (
	"encoding/base64"
	"encoding/json"
	"errors"
)

// bulkReplayRequest is POST …/events/replay/bulk: a time range, or the cursor of a progress line
// to resume a run that stopped (the cursor carries the range and filters).
type bulkReplayRequest struct {
	FromDate      string `json:"from_date"`
	ToDate        string `json:"to_date"`
	CorrelationID string `json:"correlation_id"`
	EventName     string `json:"event_name"`
	// Status "error" replays only the events whose mapping failed (erpstream's addition).
	Status string `json:"status"`
	Cursor string `json:"cursor"`
}

// bulkReplayCursor is where a bulk replay run stands: after the stored event (AfterUs,
// AfterEventID) in the run's order. Resuming keeps the run id, so events replayed again because
// their progress line never reached the client are duplicates of the run, not second mappings.
type bulkReplayCursor struct {
	Run           string `json:"run"`
	OrgID         string `json:"org"`
	IntegrationID string `json:"integration"`
	From          string `json:"from"`
	To            string `json:"to,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	EventName     string `json:"event_name,omitempty"`
	Failed        bool   `json:"failed,omitempty"`
	AfterUs       int64  `json:"after_us"`
	AfterEventID  string `json:"after_event_id"`
}

func (c bulkReplayCursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeBulkReplayCursor reads a cursor of this org's integration; any other is refused.
func decodeBulkReplayCursor(s, org, integrationID string) (*bulkReplayCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, errors.New("not a cursor of this route")
	}
	var c bulkReplayCursor
	if err := json.Unmarshal(b, &c); err != nil || c.Run == "" || c.From == "" {
		return nil, errors.New("not a cursor of this route")
	}
	if c.OrgID != org || c.IntegrationID != integrationID {
		return nil, errors.New("the cursor belongs to another integration")
	}
	return &c, nil
}
