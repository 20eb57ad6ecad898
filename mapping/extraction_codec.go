package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// An extraction is encoded so that a processor instance other than the one that evaluated the
// mapping can apply it (an org whose events are mapped on every instance, docs/scaling.md).
// Extractions hold JSONata values and the mapping's own envelopes behind `any`, and fields the
// JSON form of the simulation leaves out, so the encoding is its own: every exported field by
// its Go name (zero values left out), and a value behind an interface as a JSON string, number,
// boolean or null (undefined), or as an array whose first item names its type. A type the codec
// does not know is an error, never a silent loss: the event is then mapped where it is applied.
// It streams tokens both ways (jsontext): the applying instance decodes every spread event.

// codecVersion guards against instances of different versions: a decoder refuses another.
const codecVersion = 1

// Encoders and decoders are reused: each holds buffers larger than a contact's extraction.
var (
	encoders = sync.Pool{New: func() any { return &extractionEncoder{} }}
	decoders = sync.Pool{New: func() any { return &extractionDecoder{} }}
)

type extractionEncoder struct {
	b   bytes.Buffer
	enc jsontext.Encoder
}

type extractionDecoder struct {
	r   bytes.Reader
	dec jsontext.Decoder
}

// EncodeExtraction encodes an extraction for DecodeExtraction.
func EncodeExtraction(x *Extraction) ([]byte, error) {
	e := encoders.Get().(*extractionEncoder)
	defer encoders.Put(e)
	e.b.Reset()
	e.enc.Reset(&e.b, jsontext.AllowInvalidUTF8(true))
	enc := &e.enc
	err := errors.Join(enc.WriteToken(jsontext.BeginArray), enc.WriteToken(jsontext.Int(codecVersion)))
	if err == nil {
		err = encodeValue(enc, reflect.ValueOf(x).Elem())
	}
	if err == nil {
		err = enc.WriteToken(jsontext.EndArray)
	}
	if err != nil {
		return nil, fmt.Errorf("extraction: %w", err)
	}
	return bytes.Clone(bytes.TrimRight(e.b.Bytes(), "\n")), nil
}

// DecodeExtraction decodes what EncodeExtraction wrote.
func DecodeExtraction(b []byte) (*Extraction, error) {
	d := decoders.Get().(*extractionDecoder)
	defer decoders.Put(d)
	d.r.Reset(b)
	d.dec.Reset(&d.r, jsontext.AllowInvalidUTF8(true))
	dec := &d.dec
	x := &Extraction{}
	if err := expect(dec, '['); err != nil {
		return nil, fmt.Errorf("extraction: %w", err)
	}
	if v, err := dec.ReadToken(); err != nil || v.Kind() != '0' || v.Int() != codecVersion {
		return nil, errors.New("extraction: another encoding version")
	}
	if err := decodeValue(dec, reflect.ValueOf(x).Elem()); err != nil {
		return nil, fmt.Errorf("extraction: %w", err)
	}
	if err := expect(dec, ']'); err != nil {
		return nil, fmt.Errorf("extraction: %w", err)
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return nil, errors.New("extraction: data after the value")
	}
	return x, nil
}

// Type names of values behind interfaces.
const (
	tagNull             = "null"
	tagArray            = "array"
	tagObject           = "object"
	tagRaw              = "raw"
	tagInt              = "int"
	tagInt64            = "int64"
	tagRelation         = "relation"
	tagRelationRef      = "relation_ref"
	tagResolvedRelation = "resolved_relation"
	tagFileProxyURL     = "file_proxy_url"
	tagAttributes       = "attributes"
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

func float(enc *jsontext.Encoder, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("the number %v has no JSON form", f)
	}
	return enc.WriteToken(jsontext.Float(f))
}

// tagged writes [tag, value…] around what write writes.
func tagged(enc *jsontext.Encoder, tag string, write func() error) error {
	if err := errors.Join(enc.WriteToken(jsontext.BeginArray), enc.WriteToken(jsontext.String(tag))); err != nil {
		return err
	}
	if write != nil {
		if err := write(); err != nil {
			return err
		}
	}
	return enc.WriteToken(jsontext.EndArray)
}

func encodeDynamic(enc *jsontext.Encoder, v any) error {
	switch x := v.(type) {
	case nil:
		return enc.WriteToken(jsontext.Null)
	case string:
		return enc.WriteToken(jsontext.String(x))
	case bool:
		return enc.WriteToken(jsontext.Bool(x))
	case float64:
		return float(enc, x)
	case int:
		return tagged(enc, tagInt, func() error { return enc.WriteToken(jsontext.Int(int64(x))) })
	case int64:
		return tagged(enc, tagInt64, func() error { return enc.WriteToken(jsontext.Int(x)) })
	case json.RawMessage:
		return tagged(enc, tagRaw, func() error { return enc.WriteToken(jsontext.String(string(x))) })
	case *jsonata.Array:
		return tagged(enc, tagArray, func() error {
			for _, it := range x.Items {
				if err := encodeDynamic(enc, it); err != nil {
					return err
				}
			}
			return nil
		})
	case *jsonata.Object:
		return tagged(enc, tagObject, func() error {
			for _, k := range x.Keys() {
				val, _ := x.Get(k)
				if err := enc.WriteToken(jsontext.String(k)); err != nil {
					return err
				}
				if err := encodeDynamic(enc, val); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if v == jsonata.Null {
		return tagged(enc, tagNull, nil)
	}
	rv := reflect.ValueOf(v)
	tag, ok := tagOfType[rv.Type()]
	if !ok {
		return fmt.Errorf("a value of type %T cannot be encoded", v)
	}
	return tagged(enc, tag, func() error { return encodeValue(enc, rv) })
}

// structFields are a struct type's fields by name, or why the codec refuses the type (a field
// it could not carry).
type structFields struct {
	index map[string]int
	err   error
}

var fieldsOfType sync.Map // reflect.Type → *structFields

func fieldsOf(t reflect.Type) *structFields {
	if v, ok := fieldsOfType.Load(t); ok {
		return v.(*structFields)
	}
	sf := &structFields{index: map[string]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			sf.err = fmt.Errorf("%s has an unexported field %s", t, f.Name)
			break
		}
		sf.index[f.Name] = i
	}
	fieldsOfType.Store(t, sf)
	return sf
}

func encodeValue(enc *jsontext.Encoder, v reflect.Value) error {
	switch v.Kind() {
	case reflect.Interface:
		return encodeDynamic(enc, v.Interface())
	case reflect.Pointer:
		if v.IsNil() {
			return enc.WriteToken(jsontext.Null)
		}
		return encodeValue(enc, v.Elem())
	case reflect.Struct:
		if err := fieldsOf(v.Type()).err; err != nil {
			return err
		}
		if err := enc.WriteToken(jsontext.BeginObject); err != nil {
			return err
		}
		for i := range v.NumField() {
			f := v.Field(i)
			if f.IsZero() {
				continue
			}
			name := v.Type().Field(i).Name
			if err := enc.WriteToken(jsontext.String(name)); err != nil {
				return err
			}
			if err := encodeValue(enc, f); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return enc.WriteToken(jsontext.EndObject)
	case reflect.Slice:
		if v.IsNil() {
			return enc.WriteToken(jsontext.Null)
		}
		if err := enc.WriteToken(jsontext.BeginArray); err != nil {
			return err
		}
		for i := range v.Len() {
			if err := encodeValue(enc, v.Index(i)); err != nil {
				return err
			}
		}
		return enc.WriteToken(jsontext.EndArray)
	case reflect.Map:
		if v.IsNil() {
			return enc.WriteToken(jsontext.Null)
		}
		if v.Type().Key().Kind() != reflect.String {
			return fmt.Errorf("a map keyed by %s", v.Type().Key())
		}
		if err := enc.WriteToken(jsontext.BeginObject); err != nil {
			return err
		}
		keys := v.MapKeys() // in order, so one extraction always encodes alike
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			if err := enc.WriteToken(jsontext.String(k.String())); err != nil {
				return err
			}
			if err := encodeValue(enc, v.MapIndex(k)); err != nil {
				return err
			}
		}
		return enc.WriteToken(jsontext.EndObject)
	case reflect.String:
		return enc.WriteToken(jsontext.String(v.String()))
	case reflect.Bool:
		return enc.WriteToken(jsontext.Bool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return enc.WriteToken(jsontext.Int(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return enc.WriteToken(jsontext.Uint(v.Uint()))
	case reflect.Float32, reflect.Float64:
		return float(enc, v.Float())
	}
	return fmt.Errorf("a %s cannot be encoded", v.Type())
}

func expect(dec *jsontext.Decoder, kind jsontext.Kind) error {
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if tok.Kind() != kind {
		return fmt.Errorf("%v where %v belongs", tok.Kind(), kind)
	}
	return nil
}

func readString(dec *jsontext.Decoder) (string, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return "", err
	}
	if tok.Kind() != '"' {
		return "", fmt.Errorf("%v where a string belongs", tok.Kind())
	}
	return tok.String(), nil
}

func decodeDynamic(dec *jsontext.Decoder) (any, error) {
	tok, err := dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case 'n':
		return nil, nil
	case '"':
		return tok.String(), nil
	case 't', 'f':
		return tok.Bool(), nil
	case '0':
		return tok.Float(), nil
	case '[':
	default:
		return nil, fmt.Errorf("unexpected %v", tok.Kind())
	}
	tag, err := readString(dec)
	if err != nil {
		return nil, fmt.Errorf("a value's type: %w", err)
	}
	var v any
	switch tag {
	case tagNull:
		v = jsonata.Null
	case tagInt, tagInt64:
		n, err := dec.ReadToken()
		if err != nil || n.Kind() != '0' {
			return nil, fmt.Errorf("%s: not a number", tag)
		}
		if v = n.Int(); tag == tagInt {
			v = int(n.Int())
		}
	case tagRaw:
		s, err := readString(dec)
		if err != nil {
			return nil, err
		}
		v = json.RawMessage(s)
	case tagArray:
		var items []any
		for dec.PeekKind() != ']' {
			it, err := decodeDynamic(dec)
			if err != nil {
				return nil, err
			}
			items = append(items, it)
		}
		v = jsonata.NewArray(items...)
	case tagObject:
		o := jsonata.NewObject()
		for dec.PeekKind() != ']' {
			k, err := readString(dec)
			if err != nil {
				return nil, fmt.Errorf("object: %w", err)
			}
			val, err := decodeDynamic(dec)
			if err != nil {
				return nil, err
			}
			o.Set(k, val)
		}
		v = o
	default:
		t, ok := dynamicTypes[tag]
		if !ok {
			return nil, fmt.Errorf("unknown type %q", tag)
		}
		rv := reflect.New(t).Elem()
		if err := decodeValue(dec, rv); err != nil {
			return nil, fmt.Errorf("%s: %w", tag, err)
		}
		v = rv.Interface()
	}
	if err := expect(dec, ']'); err != nil {
		return nil, fmt.Errorf("%s: %w", tag, err)
	}
	return v, nil
}

func decodeValue(dec *jsontext.Decoder, v reflect.Value) error {
	if v.Kind() == reflect.Interface {
		d, err := decodeDynamic(dec)
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
	}
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		v.SetZero()
		return err
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := decodeValue(dec, p.Elem()); err != nil {
			return err
		}
		v.Set(p)
		return nil
	case reflect.Struct:
		sf := fieldsOf(v.Type())
		if sf.err != nil {
			return sf.err
		}
		if err := expect(dec, '{'); err != nil {
			return fmt.Errorf("%s: %w", v.Type(), err)
		}
		for dec.PeekKind() != '}' {
			name, err := dec.ReadValue() // valid until the next read: looked up without a copy
			if err != nil {
				return err
			}
			if name.Kind() != '"' || bytes.IndexByte(name, '\\') >= 0 {
				return fmt.Errorf("%s: a field name %s", v.Type(), name)
			}
			i, ok := sf.index[string(name[1:len(name)-1])]
			if !ok {
				return fmt.Errorf("%s has no field %s", v.Type(), name)
			}
			if err := decodeValue(dec, v.Field(i)); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		_, err := dec.ReadToken()
		return err
	case reflect.Slice:
		if err := expect(dec, '['); err != nil {
			return fmt.Errorf("%s: %w", v.Type(), err)
		}
		s := reflect.MakeSlice(v.Type(), 0, 4)
		for dec.PeekKind() != ']' {
			s = reflect.Append(s, reflect.Zero(v.Type().Elem()))
			if err := decodeValue(dec, s.Index(s.Len()-1)); err != nil {
				return err
			}
		}
		v.Set(s)
		_, err := dec.ReadToken()
		return err
	case reflect.Map:
		if err := expect(dec, '{'); err != nil {
			return fmt.Errorf("%s: %w", v.Type(), err)
		}
		m := reflect.MakeMap(v.Type())
		for dec.PeekKind() != '}' {
			k, err := readString(dec)
			if err != nil {
				return err
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			if err := decodeValue(dec, ev); err != nil {
				return err
			}
			m.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), ev)
		}
		v.Set(m)
		_, err := dec.ReadToken()
		return err
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	switch k := tok.Kind(); v.Kind() {
	case reflect.String:
		if k != '"' {
			return fmt.Errorf("%s: not a string", v.Type())
		}
		v.SetString(tok.String())
	case reflect.Bool:
		if k != 't' && k != 'f' {
			return fmt.Errorf("%s: not a boolean", v.Type())
		}
		v.SetBool(tok.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if k != '0' || v.OverflowInt(tok.Int()) {
			return fmt.Errorf("%s: not a number in range", v.Type())
		}
		v.SetInt(tok.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if k != '0' || v.OverflowUint(tok.Uint()) {
			return fmt.Errorf("%s: not a number in range", v.Type())
		}
		v.SetUint(tok.Uint())
	case reflect.Float32, reflect.Float64:
		if k != '0' {
			return fmt.Errorf("%s: not a number", v.Type())
		}
		v.SetFloat(tok.Float())
	default:
		return fmt.Errorf("a %s cannot be decoded", v.Type())
	}
	return nil
}
