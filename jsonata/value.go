package jsonata

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Values inside the engine:
//   undefined → Go nil          null   → Null
//   number    → float64         string → string       boolean → bool
//   array     → *Array (sequences are arrays with flags, as in jsonata-js)
//   object    → *Object (keys keep their insertion order)
//   function  → Callable

type nullType struct{}

// Null is JSON null (distinct from undefined, which is Go nil).
var Null = nullType{}

func (nullType) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// Array is a JSON array or a JSONata sequence.
type Array struct {
	Items         []any
	sequence      bool
	keepSingleton bool
	cons          bool
	outerWrapper  bool
	tupleStream   bool
}

func newSeq(items ...any) *Array { return &Array{Items: items, sequence: true} }

// NewArray wraps items as a JSON array.
func NewArray(items ...any) *Array { return &Array{Items: items} }

func (a *Array) push(v any) { a.Items = append(a.Items, v) }

// Len is the number of items.
func (a *Array) Len() int { return len(a.Items) }

// MarshalJSON writes the array; functions inside become null, as JSON.stringify does.
func (a *Array) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	if err := writeJSON(&b, a, false); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Object is a JSON object that keeps its key order. Small objects are searched linearly; an index
// is built once an object grows past indexAt keys.
type Object struct {
	keys []string
	vals []any
	idx  map[string]int
}

const indexAt = 12

// NewObject makes an empty object.
func NewObject() *Object { return &Object{} }

func newObjectCap(n int) *Object { return &Object{keys: make([]string, 0, n), vals: make([]any, 0, n)} }

func (o *Object) find(k string) int {
	if o.idx != nil {
		if i, ok := o.idx[k]; ok {
			return i
		}
		return -1
	}
	for i, key := range o.keys {
		if key == k {
			return i
		}
	}
	return -1
}

// Get returns a property.
func (o *Object) Get(k string) (any, bool) {
	if i := o.find(k); i >= 0 {
		return o.vals[i], true
	}
	return nil, false
}

func (o *Object) get(k string) any {
	if i := o.find(k); i >= 0 {
		return o.vals[i]
	}
	return nil
}

// Set adds or replaces a property; a new key goes last.
func (o *Object) Set(k string, v any) {
	if i := o.find(k); i >= 0 {
		o.vals[i] = v
		return
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
	if o.idx != nil {
		o.idx[k] = len(o.keys) - 1
	} else if len(o.keys) > indexAt {
		o.idx = make(map[string]int, len(o.keys)*2)
		for i, key := range o.keys {
			o.idx[key] = i
		}
	}
}

// Delete removes a property.
func (o *Object) Delete(k string) {
	i := o.find(k)
	if i < 0 {
		return
	}
	o.keys = append(o.keys[:i:i], o.keys[i+1:]...)
	o.vals = append(o.vals[:i:i], o.vals[i+1:]...)
	if o.idx != nil {
		o.idx = make(map[string]int, len(o.keys))
		for j, key := range o.keys {
			o.idx[key] = j
		}
	}
}

// Keys lists the keys in order.
func (o *Object) Keys() []string { return o.keys }

// Len is the number of properties.
func (o *Object) Len() int { return len(o.keys) }

// MarshalJSON writes the object in key order, leaving out undefined and function values.
func (o *Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	if err := writeJSON(&b, o, false); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Callable is a function value: a lambda, a built-in or a regex matcher.
type Callable interface {
	arity() int
	sig() *signature
}

func isFunction(v any) bool {
	_, ok := v.(Callable)
	return ok
}

func isSequence(v any) bool {
	a, ok := v.(*Array)
	return ok && a.sequence
}

// jsTypeOf mirrors JavaScript's typeof for engine values.
func jsTypeOf(v any) string {
	switch v.(type) {
	case nil:
		return "undefined"
	case float64:
		return "number"
	case string:
		return "string"
	case bool:
		return "boolean"
	case Callable:
		return "function"
	default:
		return "object"
	}
}

func isNumeric(v any) (bool, error) {
	f, ok := v.(float64)
	if !ok {
		return false, nil
	}
	if math.IsNaN(f) {
		return false, nil
	}
	if math.IsInf(f, 0) {
		return false, &Error{Code: "D1001", Value: f}
	}
	return true, nil
}

func isArrayOfStrings(v any) bool {
	a, ok := v.(*Array)
	if !ok {
		return false
	}
	for _, it := range a.Items {
		if _, ok := it.(string); !ok {
			return false
		}
	}
	return true
}

func isArrayOfNumbers(v any) (bool, error) {
	a, ok := v.(*Array)
	if !ok {
		return false, nil
	}
	for _, it := range a.Items {
		ok, err := isNumeric(it)
		if err != nil {
			return false, err
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

func deepEqual(l, r any) bool {
	switch lv := l.(type) {
	case nil:
		return r == nil
	case nullType:
		_, ok := r.(nullType)
		return ok
	case float64:
		rv, ok := r.(float64)
		return ok && lv == rv
	case string:
		rv, ok := r.(string)
		return ok && lv == rv
	case bool:
		rv, ok := r.(bool)
		return ok && lv == rv
	case *Array:
		rv, ok := r.(*Array)
		if !ok {
			return false
		}
		if lv == rv {
			return true
		}
		if len(lv.Items) != len(rv.Items) {
			return false
		}
		for i := range lv.Items {
			if !deepEqual(lv.Items[i], rv.Items[i]) {
				return false
			}
		}
		return true
	case *Object:
		rv, ok := r.(*Object)
		if !ok {
			return false
		}
		if lv == rv {
			return true
		}
		if len(lv.keys) != len(rv.keys) {
			return false
		}
		for i, k := range lv.keys {
			w, ok := rv.Get(k)
			if !ok || !deepEqual(lv.vals[i], w) {
				return false
			}
		}
		return true
	default:
		return l == r
	}
}

// strictEqual is JavaScript's === on engine values (objects and arrays by identity).
func strictEqual(l, r any) bool {
	switch lv := l.(type) {
	case *Array:
		rv, ok := r.(*Array)
		return ok && lv == rv
	case *Object:
		rv, ok := r.(*Object)
		return ok && lv == rv
	case float64, string, bool, nullType, nil:
		return l == r
	default:
		return false
	}
}

const maxDecodeDepth = 10000

func isRangeErr(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// FromGo converts values as encoding/json decodes them (map[string]any, []any, float64, …) into
// engine values. Map keys are sorted, since Go maps have no order.
func FromGo(v any) any {
	switch x := v.(type) {
	case nil:
		return Null
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		o := newObjectCap(len(keys))
		for _, k := range keys {
			o.Set(k, FromGo(x[k]))
		}
		return o
	case []any:
		a := &Array{Items: make([]any, len(x))}
		for i, e := range x {
			a.Items[i] = FromGo(e)
		}
		return a
	case json.Number:
		f, _ := x.Float64()
		return f
	case float32:
		return float64(x)
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case int32:
		return float64(x)
	case uint64:
		return float64(x)
	case uint32:
		return float64(x)
	case json.RawMessage:
		d, err := DecodeJSON(x)
		if err != nil {
			return nil
		}
		return d
	default:
		return v
	}
}

// ToGo converts an engine value into plain Go values (map[string]any, []any, float64, string,
// bool, nil for null). Undefined and functions become nil too; use MarshalJSON to keep key order.
func ToGo(v any) any {
	switch x := v.(type) {
	case nullType:
		return nil
	case *Object:
		m := make(map[string]any, len(x.keys))
		for i, k := range x.keys {
			if val := x.vals[i]; val != nil && !isFunction(val) {
				m[k] = ToGo(val)
			}
		}
		return m
	case *Array:
		out := make([]any, len(x.Items))
		for i, e := range x.Items {
			out[i] = ToGo(e)
		}
		return out
	case Callable:
		return nil
	default:
		return v
	}
}

// MarshalValue writes an engine value as JSON the way JSON.stringify does (undefined and
// functions are left out of objects and become null in arrays).
func MarshalValue(v any) ([]byte, error) {
	var b bytes.Buffer
	if err := writeJSON(&b, v, false); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// WriteValue writes an engine value as JSON into b, as MarshalValue does, without a buffer of its
// own (callers that write many values into one document).
func WriteValue(b *bytes.Buffer, v any) error { return writeJSON(b, v, false) }

// WriteString writes s as a JSON string, as WriteValue does, without boxing it in an interface.
func WriteString(b *bytes.Buffer, s string) { writeJSONString(b, s) }

func writeJSON(b *bytes.Buffer, v any, inArray bool) error {
	switch x := v.(type) {
	case nil, nullType, Callable:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			b.WriteString("null")
		} else {
			b.WriteString(formatNumber(x))
		}
	case string:
		writeJSONString(b, x)
	case *Array:
		b.WriteByte('[')
		for i, e := range x.Items {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeJSON(b, e, true); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case *Object:
		b.WriteByte('{')
		first := true
		for i, k := range x.keys {
			e := x.vals[i]
			if e == nil || isFunction(e) {
				continue
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			writeJSONString(b, k)
			b.WriteByte(':')
			if err := writeJSON(b, e, false); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		raw, err := json.Marshal(x)
		if err != nil {
			return err
		}
		b.Write(raw)
	}
	return nil
}

func writeJSONString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(b, `\u%04x`, r)
			} else {
				b.WriteRune(r)
			}
		}
	}
	b.WriteByte('"')
}

// formatNumber renders a number as JavaScript's Number.prototype.toString does.
func formatNumber(f float64) string {
	if f == 0 {
		return "0"
	}
	if math.IsNaN(f) {
		return "NaN"
	}
	if math.IsInf(f, 1) {
		return "Infinity"
	}
	if math.IsInf(f, -1) {
		return "-Infinity"
	}
	neg := f < 0
	if neg {
		f = -f
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, expStr, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expStr)
	n := exp + 1 // position of the decimal point relative to the digits
	k := len(digits)
	var s string
	switch {
	case k <= n && n <= 21:
		s = digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		s = digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		s = "0." + strings.Repeat("0", -n) + digits
	default:
		sign := "+"
		if n-1 < 0 {
			sign = "-"
		}
		ex := n - 1
		if ex < 0 {
			ex = -ex
		}
		if k == 1 {
			s = digits + "e" + sign + strconv.Itoa(ex)
		} else {
			s = digits[:1] + "." + digits[1:] + "e" + sign + strconv.Itoa(ex)
		}
	}
	if neg {
		return "-" + s
	}
	return s
}

// Boolean casts a value with JSONata's $boolean rules (undefined is false).
func Boolean(v any) bool { return toBoolean(v) == true }
