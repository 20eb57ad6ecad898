package mapping

import (
	"encoding/json"

	"github.com/erpstream/erpstream/internal/jsonata"

	"github.com/erpstream/erpstream/internal/xmljson"
)

// Payload parsing is on the pipeline's hot path (every event) and the simulation's alike.

// PayloadError is a payload that does not parse in its format.
type PayloadError struct{ Msg string }

func (e *PayloadError) Error() string { return e.Msg }

// ParsePayload turns an API payload into an engine value: a JSON object is used as it is; a
// string is parsed as JSON (format json) or converted from XML (format xml).
func ParsePayload(raw json.RawMessage, format string) (any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, &PayloadError{Msg: "payload: required"}
	}
	var doc []byte
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		doc = []byte(s)
	} else if format == "xml" {
		return nil, &PayloadError{Msg: "payload: an XML payload must be a string"}
	} else {
		doc = raw
	}
	if format == "xml" {
		v, err := xmljson.Convert(doc)
		if err != nil {
			return nil, &PayloadError{Msg: "payload is not valid XML: " + err.Error()}
		}
		return v, nil
	}
	v, err := jsonata.DecodeJSON(doc)
	if err != nil {
		return nil, &PayloadError{Msg: "payload is not valid JSON: " + err.Error()}
	}
	return v, nil
}
