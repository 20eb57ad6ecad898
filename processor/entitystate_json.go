package processor

import (
	"encoding/hex"
	"encoding/json"
	"slices"
	"strconv"

	"github.com/erpstream/erpstream/internal/envelope"
)

// appendJSON appends the state as its changelog record: the document json.Marshal writes (the
// same names, empty fields left out, map keys sorted) but for the HTML escaping of strings, which
// decoders read alike. The processor writes one per changed entity, and encoding/json's
// reflection over this struct was 6 % of its CPU; the fields every state has are written by hand,
// the nested ones that few states hold (relations, readings, relation refs, prices) by
// encoding/json.
func (s *entityState) appendJSON(b []byte) ([]byte, error) {
	b = append(b, '{')
	if s.Org != "" {
		b = envelope.AppendJSONString(append(b, `"o":`...), s.Org)
		b = append(b, ',')
	}
	b = envelope.AppendJSONString(append(b, `"s":`...), s.Schema)
	for _, f := range [...]struct {
		name string
		set  bool
	}{{`,"d":true`, s.Deleted}, {`,"p":true`, s.Placeholder}, {`,"x":true`, s.Phantom}} {
		if f.set {
			b = append(b, f.name...)
		}
	}
	b = strconv.AppendUint(append(b, `,"v":`...), s.Version, 10)
	var err error
	nested := func(name string, v any) {
		if err != nil {
			return
		}
		var raw []byte
		if raw, err = json.Marshal(v); err == nil {
			b = append(append(b, name...), raw...)
		}
	}
	if len(s.Relations) > 0 {
		nested(`,"r":`, s.Relations)
	}
	if s.Reading != nil {
		nested(`,"m":`, s.Reading)
	}
	if len(s.Keys) > 0 {
		b = s.Keys.appendJSON(append(b, `,"k":`...))
	}
	if len(s.Arrays) > 0 {
		nested(`,"a":`, s.Arrays)
	}
	if len(s.RelRefs) > 0 {
		nested(`,"rr":`, s.RelRefs)
	}
	if s.Price != nil {
		nested(`,"pr":`, s.Price)
	}
	if s.LastWrite != 0 {
		b = strconv.AppendUint(append(b, `,"h":`...), s.LastWrite, 10)
	}
	return append(b, '}'), err
}

// appendJSON appends the keys as {"attribute": ["hex key", …]}, attributes sorted (as
// encoding/json orders a map's keys), each attribute's keys in their order.
func (ks attrKeys) appendJSON(b []byte) []byte {
	attrs := make([]string, 0, 4)
	for _, k := range ks {
		if !slices.Contains(attrs, k.Attr) {
			attrs = append(attrs, k.Attr)
		}
	}
	slices.Sort(attrs)
	b = append(b, '{')
	for i, attr := range attrs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(envelope.AppendJSONString(b, attr), ':', '[')
		first := true
		for _, k := range ks {
			if k.Attr != attr {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			b = append(b, '"')
			b = hex.AppendEncode(b, k.Key[:])
			b = append(b, '"')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}
