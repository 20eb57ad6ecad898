package httpapi

import (
	"encoding/json"
	"io"
)

func newDecoder(r io.Reader) *json.Decoder {
	d := json.NewDecoder(r)
	d.UseNumber()
	return d
}
