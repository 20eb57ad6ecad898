package processor

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/erpstream/erpstream/internal/jsonata"

	"github.com/erpstream/erpstream/mapping"
)

// Lookup keys: 128-bit hashes of (org, schema, attribute, value), the index entries of an entity's
// searchable attribute values.

// lookupKey identifies one (org, schema, attribute, value).
type lookupKey [16]byte

func keyOf(org, schema, attribute, value string) lookupKey {
	h := fnv.New128a()
	for _, s := range []string{org, schema, attribute, value} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var k lookupKey
	copy(k[:], h.Sum(nil))
	return k
}

// attrKey is one indexed value of an entity's attribute.
type attrKey struct {
	Attr string
	Key  lookupKey
}

// attrKeys marshal as {"attribute": ["hex key", …]}.
type attrKeys []attrKey

func (ks attrKeys) MarshalJSON() ([]byte, error) { return ks.appendJSON(nil), nil }

func (ks *attrKeys) UnmarshalJSON(b []byte) error {
	var m map[string][]string
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	out := make(attrKeys, 0, len(m))
	for attr, list := range m {
		for _, h := range list {
			var k attrKey
			if len(h) != hex.EncodedLen(len(k.Key)) {
				return fmt.Errorf("lookup key %q: not 32 hex digits", h)
			}
			if n, err := hex.Decode(k.Key[:], []byte(h)); err != nil || n != len(k.Key) {
				return fmt.Errorf("lookup key %q: not 32 hex digits", h)
			}
			k.Attr = attr
			out = append(out, k)
		}
	}
	*ks = out
	return nil
}

// UnmarshalJSONFrom is UnmarshalJSON for the v2 decoder the store reads states with
// (envelope.Decode): it reads the keys in place instead of through a map, a third of the time
// a stored state took to decode. It reads what UnmarshalJSON reads, a repeated attribute's last
// list winning as a map's last entry does.
func (ks *attrKeys) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch tok.Kind() {
	case 'n':
		*ks = attrKeys{}
		return nil
	case '{':
	default:
		return fmt.Errorf("lookup keys: a JSON %v, not an object", tok.Kind())
	}
	out := make(attrKeys, 0, 4)
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return err
		}
		attr := name.String()
		out = slices.DeleteFunc(out, func(k attrKey) bool { return k.Attr == attr })
		if out, err = appendAttrKeys(dec, out, attr); err != nil {
			return err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	*ks = out
	return nil
}

// appendAttrKeys reads one attribute's list of hex keys (or null, no keys).
func appendAttrKeys(dec *jsontext.Decoder, out attrKeys, attr string) (attrKeys, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case 'n':
		return out, nil
	case '[':
	default:
		return nil, fmt.Errorf("lookup keys of %q: a JSON %v, not an array", attr, tok.Kind())
	}
	for dec.PeekKind() != ']' {
		v, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		if v.Kind() != '"' {
			return nil, fmt.Errorf("lookup key %s: not a string", v)
		}
		digits := []byte(v[1 : len(v)-1])
		if slices.Contains(digits, '\\') { // never written so, but JSON allows it
			if digits, err = jsontext.AppendUnquote(nil, v); err != nil {
				return nil, err
			}
		}
		k := attrKey{Attr: attr}
		if len(digits) != hex.EncodedLen(len(k.Key)) { // hex.Decode writes past a short dst
			return nil, fmt.Errorf("lookup key %s: not 32 hex digits", v)
		}
		if n, err := hex.Decode(k.Key[:], digits); err != nil || n != len(k.Key) {
			return nil, fmt.Errorf("lookup key %s: not 32 hex digits", v)
		}
		out = append(out, k)
	}
	_, err = dec.ReadToken()
	return out, err
}

func (ks attrKeys) has(k lookupKey) bool {
	for _, x := range ks {
		if x.Key == k {
			return true
		}
	}
	return false
}

func (ks attrKeys) hasAll(keys []lookupKey) bool {
	for _, k := range keys {
		if !ks.has(k) {
			return false
		}
	}
	return true
}

// lookupValues are the string forms a value is found by: a scalar's, or each element's of an
// array (the email/phone key of repeatable elements). Relations and null are not looked up.
func lookupValues(v any) []string {
	switch x := v.(type) {
	case nil, *mapping.Relation, *mapping.ResolvedRelation, *mapping.RelationRef, *mapping.ResolvedRelationRef, json.RawMessage:
		return nil
	case string:
		return []string{x}
	case *jsonata.Array:
		var out []string
		for _, el := range x.Items {
			if o, ok := el.(*jsonata.Object); ok {
				for _, typ := range []string{"email", "phone"} {
					if s, ok := o.Get(typ); ok {
						out = append(out, lookupValues(s)...)
					}
				}
				continue
			}
			out = append(out, lookupValues(el)...)
		}
		return out
	case *jsonata.Object:
		return nil
	}
	if v == jsonata.Null {
		return nil
	}
	b, err := jsonata.MarshalValue(v)
	if err != nil {
		return nil
	}
	return []string{string(b)}
}

// lookupValue is the single string form of a unique-id value.
func lookupValue(v any) string {
	if vs := lookupValues(v); len(vs) > 0 {
		return vs[0]
	}
	return ""
}
