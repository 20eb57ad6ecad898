package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// An extraction is encoded so that a processor instance other than the one that evaluated the
// mapping can apply it (an org whose events are mapped on every instance, docs/scaling.md).
// Extractions hold JSONata values and the mapping's own envelopes behind `any`, and fields the
// JSON form of the simulation leaves out, so the encoding is its own: every exported field by
// its Go name, and a value behind an interface as a JSON string, number, boolean or null
// (undefined), or as an array whose first item names its type. A type the codec does not know
// is an error, never a silent loss: the event is then mapped where it is applied.

// codecVersion guards against instances of different versions: a decoder refuses another.
const codecVersion = 1

// EncodeExtraction encodes an extraction for DecodeExtraction.
func EncodeExtraction(x *Extraction) ([]byte, error) {
	v, err := encodeValue(reflect.ValueOf(x).Elem())
	if err != nil {
		return nil, err
	}
	return json.Marshal([]any{codecVersion, v})
}

// DecodeExtraction decodes what EncodeExtraction wrote.
func DecodeExtraction(b []byte) (*Extraction, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var top []any
	if err := d.Decode(&top); err != nil {
		return nil, fmt.Errorf("extraction: %w", err)
	}
	if len(top) != 2 || top[0] != json.Number(strconv.Itoa(codecVersion)) {
		return nil, errors.New("extraction: another encoding version")
	}
	x := &Extraction{}
	if err := decodeValue(top[1], reflect.ValueOf(x).Elem()); err != nil {
		return nil, fmt.Errorf("extraction: %w", err)
	}
	return x, nil
}

// Type names of values behind interfaces.
const (
	tagNull             = "null"
	tagArray            = "array"
	tagObject           = "object"
	tagRaw              = "raw"
	tagRelation         = "relation"
	tagRelationRef      = "relation_ref"
	tagResolvedRelation = "resolved_relation"
	tagFileProxyURL     = "file_proxy_url"
	tagAttributes       = "attributes"
	tagInt              = "int"
	tagInt64            = "int64"
)

var dynamicTypes = map[string]reflect.Type{
	tagRelation:         reflect.TypeFor[*Relation](),
	tagRelationRef:      reflect.TypeFor[*RelationRef](),
	tagResolvedRelation: reflect.TypeFor[*ResolvedRelation](),
	tagFileProxyURL:     reflect.TypeFor[*FileProxyURL](),
	tagAttributes:       reflect.TypeFor[Attributes](),
}

var tagOfType = func() map[reflect.Type]string {
	m := map[reflect.Type]string{}
	for tag, t := range dynamicTypes {
		m[t] = tag
	}
	return m
}()

func encodeDynamic(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool:
		return x, nil
	case float64:
		return x, nil
	case int:
		return []any{tagInt, x}, nil
	case int64:
		return []any{tagInt64, x}, nil
	case json.RawMessage:
		return []any{tagRaw, string(x)}, nil
	case *jsonata.Array:
		items := make([]any, len(x.Items))
		for i, it := range x.Items {
			e, err := encodeDynamic(it)
			if err != nil {
				return nil, err
			}
			items[i] = e
		}
		return []any{tagArray, items}, nil
	case *jsonata.Object:
		kv := make([]any, 0, 2*x.Len())
		for _, k := range x.Keys() {
			val, _ := x.Get(k)
			e, err := encodeDynamic(val)
			if err != nil {
				return nil, err
			}
			kv = append(kv, k, e)
		}
		return []any{tagObject, kv}, nil
	}
	if v == jsonata.Null {
		return []any{tagNull}, nil
	}
	rv := reflect.ValueOf(v)
	tag, ok := tagOfType[rv.Type()]
	if !ok {
		return nil, fmt.Errorf("a value of type %T cannot be encoded", v)
	}
	e, err := encodeValue(rv)
	if err != nil {
		return nil, err
	}
	return []any{tag, e}, nil
}

func decodeDynamic(tree any) (any, error) {
	switch x := tree.(type) {
	case nil, string, bool:
		return x, nil
	case json.Number:
		return x.Float64()
	case []any:
		if len(x) == 0 {
			return nil, errors.New("an untagged array")
		}
		tag, _ := x[0].(string)
		if tag == tagNull {
			return jsonata.Null, nil
		}
		if len(x) != 2 {
			return nil, fmt.Errorf("%s: malformed", tag)
		}
		switch tag {
		case tagInt, tagInt64:
			n, _ := x[1].(json.Number)
			i, err := n.Int64()
			if tag == tagInt {
				return int(i), err
			}
			return i, err
		case tagRaw:
			s, ok := x[1].(string)
			if !ok {
				return nil, errors.New("raw: not a string")
			}
			return json.RawMessage(s), nil
		case tagArray:
			items, _ := x[1].([]any)
			out := make([]any, len(items))
			for i, it := range items {
				v, err := decodeDynamic(it)
				if err != nil {
					return nil, err
				}
				out[i] = v
			}
			return jsonata.NewArray(out...), nil
		case tagObject:
			kv, _ := x[1].([]any)
			o := jsonata.NewObject()
			for i := 0; i+1 < len(kv); i += 2 {
				k, ok := kv[i].(string)
				if !ok {
					return nil, errors.New("object: a key is not a string")
				}
				v, err := decodeDynamic(kv[i+1])
				if err != nil {
					return nil, err
				}
				o.Set(k, v)
			}
			return o, nil
		}
		t, ok := dynamicTypes[tag]
		if !ok {
			return nil, fmt.Errorf("unknown type %q", tag)
		}
		v := reflect.New(t).Elem()
		if err := decodeValue(x[1], v); err != nil {
			return nil, fmt.Errorf("%s: %w", tag, err)
		}
		return v.Interface(), nil
	}
	return nil, fmt.Errorf("unexpected %T", tree)
}

// exportedOnly says whether a struct type has only exported fields; the codec refuses one
// that has others, which it could not carry.
var exportedOnly sync.Map // reflect.Type → error

func checkFields(t reflect.Type) error {
	if v, ok := exportedOnly.Load(t); ok {
		err, _ := v.(error)
		return err
	}
	var err error
	for i := range t.NumField() {
		if !t.Field(i).IsExported() {
			err = fmt.Errorf("%s has an unexported field %s", t, t.Field(i).Name)
			break
		}
	}
	exportedOnly.Store(t, err)
	return err
}

func encodeValue(v reflect.Value) (any, error) {
	switch v.Kind() {
	case reflect.Interface:
		return encodeDynamic(v.Interface())
	case reflect.Pointer:
		if v.IsNil() {
			return nil, nil
		}
		return encodeValue(v.Elem())
	case reflect.Struct:
		if err := checkFields(v.Type()); err != nil {
			return nil, err
		}
		fields := map[string]any{}
		for i := range v.NumField() {
			f := v.Field(i)
			if f.IsZero() {
				continue
			}
			e, err := encodeValue(f)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", v.Type().Field(i).Name, err)
			}
			fields[v.Type().Field(i).Name] = e
		}
		return fields, nil
	case reflect.Slice:
		if v.IsNil() {
			return nil, nil
		}
		out := make([]any, v.Len())
		for i := range v.Len() {
			e, err := encodeValue(v.Index(i))
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case reflect.Map:
		if v.IsNil() {
			return nil, nil
		}
		if v.Type().Key().Kind() != reflect.String {
			return nil, fmt.Errorf("a map keyed by %s", v.Type().Key())
		}
		out := map[string]any{}
		for it := v.MapRange(); it.Next(); {
			e, err := encodeValue(it.Value())
			if err != nil {
				return nil, err
			}
			out[it.Key().String()] = e
		}
		return out, nil
	case reflect.String:
		return v.String(), nil
	case reflect.Bool:
		return v.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint(), nil
	case reflect.Float32, reflect.Float64:
		return v.Float(), nil
	}
	return nil, fmt.Errorf("a %s cannot be encoded", v.Type())
}

func decodeValue(tree any, v reflect.Value) error {
	if tree == nil && v.Kind() != reflect.Interface {
		v.SetZero()
		return nil
	}
	switch v.Kind() {
	case reflect.Interface:
		d, err := decodeDynamic(tree)
		if err != nil {
			return err
		}
		if d == nil {
			v.SetZero()
			return nil
		}
		dv := reflect.ValueOf(d)
		if !dv.Type().AssignableTo(v.Type()) {
			return fmt.Errorf("a %s is not a %s", dv.Type(), v.Type())
		}
		v.Set(dv)
		return nil
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := decodeValue(tree, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		fields, ok := tree.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", v.Type())
		}
		for name, ft := range fields {
			f := v.FieldByName(name)
			if !f.IsValid() {
				return fmt.Errorf("%s has no field %s", v.Type(), name)
			}
			if err := decodeValue(ft, f); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	case reflect.Slice:
		items, ok := tree.([]any)
		if !ok {
			return fmt.Errorf("%s: not an array", v.Type())
		}
		s := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, it := range items {
			if err := decodeValue(it, s.Index(i)); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	case reflect.Map:
		entries, ok := tree.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: not an object", v.Type())
		}
		m := reflect.MakeMapWithSize(v.Type(), len(entries))
		for k, et := range entries {
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := decodeValue(et, ev); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), ev)
		}
		v.Set(m)
		return nil
	case reflect.String:
		s, ok := tree.(string)
		if !ok {
			return fmt.Errorf("%s: not a string", v.Type())
		}
		v.SetString(s)
		return nil
	case reflect.Bool:
		b, ok := tree.(bool)
		if !ok {
			return fmt.Errorf("%s: not a boolean", v.Type())
		}
		v.SetBool(b)
		return nil
	}
	n, ok := tree.(json.Number)
	if !ok {
		return fmt.Errorf("%s: not a number", v.Type())
	}
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil || v.OverflowInt(i) {
			return fmt.Errorf("%s: %s out of range", v.Type(), n)
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(n.String(), 10, 64)
		if err != nil || v.OverflowUint(u) {
			return fmt.Errorf("%s: %s out of range", v.Type(), n)
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, err := n.Float64()
		if err != nil {
			return err
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("a %s cannot be decoded", v.Type())
	}
	return nil
}
