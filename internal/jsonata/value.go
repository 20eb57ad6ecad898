package jsonata

import (
	"bytes"
	"errors"

	engine "github.com/erpstream/erpstream/jsonata"
)

// The JSON value model erpstream works in: payloads are decoded into it, mappings evaluate over
// it, entity attributes are merged in it. It is the engine's own representation (objects keep
// their key order; an array doubles as a JSONata sequence inside the engine), so evaluation needs
// no conversion; code outside the engine reaches it through these names only.
//
//	null → Null     number → float64    string → string    boolean → bool
//	array → *Array  object → *Object    undefined (selects nothing) → Undefined / Go nil
type (
	// Object is a JSON object that keeps its key order.
	Object = engine.Object
	// Array is a JSON array.
	Array = engine.Array
)

// Null is JSON null, distinct from Undefined.
var Null = engine.Null

// NewObject makes an empty object.
func NewObject() *Object { return engine.NewObject() }

// NewArray wraps items as a JSON array.
func NewArray(items ...any) *Array { return engine.NewArray(items...) }

// DecodeJSON decodes one JSON document into the value model, bounding its nesting depth.
func DecodeJSON(data []byte) (any, error) { return engine.DecodeJSON(data) }

// DecodeObject decodes a JSON object (attributes, unique identifiers); empty input is an empty
// object, anything but an object (null included) is an error.
func DecodeObject(data []byte) (*Object, error) {
	if len(data) == 0 {
		return NewObject(), nil
	}
	v, err := DecodeJSON(data)
	if err != nil {
		return nil, err
	}
	o, ok := v.(*Object)
	if !ok {
		return nil, errors.New("not a JSON object")
	}
	return o, nil
}

// MarshalValue encodes a value as JSON, keeping object key order.
func MarshalValue(v any) ([]byte, error) { return engine.MarshalValue(v) }

// WriteValue appends a value's JSON encoding to b.
func WriteValue(b *bytes.Buffer, v any) error { return engine.WriteValue(b, v) }

// WriteString appends s as a JSON string to b.
func WriteString(b *bytes.Buffer, s string) { engine.WriteString(b, s) }

// Truthy is JSONata's boolean cast ($boolean): what a condition expression's result means.
func Truthy(v any) bool { return engine.Boolean(v) }

// Shape is what an expression builds, as far as its text tells (for generated client types).
type Shape = engine.Shape

var analysis = engine.New(MappingLimits)

// Analyze compiles src and returns the shape of its result and the input paths it reads.
func Analyze(src string) (*Shape, []string, error) {
	x, err := analysis.Compile(src)
	if err != nil {
		return nil, nil, err
	}
	return x.Shape(), x.Inputs(), nil
}
