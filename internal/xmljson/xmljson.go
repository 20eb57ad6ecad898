// Package xmljson converts XML event payloads into JSON values by one deterministic rule,
// so that mappings address XML like JSON:
//
//   - the root element is the top-level key; child elements become keys;
//   - repeated sibling elements become an array, a single one a scalar or object;
//   - attributes become keys prefixed "@"; the text of an element that also has attributes or
//     children becomes "#text";
//   - every leaf value is a string (no number or boolean guessing); an empty element is "";
//     CDATA is text; namespace prefixes stay in key names ("ns:tag"); whitespace-only text
//     between elements is dropped.
//
// DTDs are refused (no entity expansion), and documents deeper than MaxDepth are rejected.
package xmljson

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// MaxDepth is the deepest element nesting accepted.
const MaxDepth = 256

// Convert parses an XML document into an engine value (an ordered object).
func Convert(data []byte) (any, error) {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	dec.Entity = nil // only the five predefined entities; an undefined one is an error
	type frame struct {
		name     string
		obj      *jsonata.Object
		text     strings.Builder
		children bool
	}
	var stack []*frame
	var root *jsonata.Object
	repeated := map[*jsonata.Array]bool{} // arrays made here from repeated elements
	for {
		// RawToken keeps namespace prefixes as written; element nesting is checked below.
		tok, err := dec.RawToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("malformed XML: %w", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			if bytes.HasPrefix(bytes.TrimSpace(t), []byte("DOCTYPE")) {
				return nil, errors.New("malformed XML: DOCTYPE declarations are not accepted")
			}
		case xml.StartElement:
			if root != nil && len(stack) == 0 {
				return nil, errors.New("malformed XML: more than one root element")
			}
			if len(stack) >= MaxDepth {
				return nil, fmt.Errorf("malformed XML: elements nested deeper than %d", MaxDepth)
			}
			if len(stack) > 0 {
				stack[len(stack)-1].children = true
			}
			f := &frame{name: qualified(t.Name), obj: jsonata.NewObject()}
			for _, a := range t.Attr {
				f.obj.Set("@"+qualified(a.Name), a.Value)
			}
			stack = append(stack, f)
		case xml.CharData:
			if len(stack) > 0 {
				stack[len(stack)-1].text.Write(t)
			} else if len(bytes.TrimSpace(t)) > 0 {
				return nil, errors.New("malformed XML: text outside the root element")
			}
		case xml.EndElement:
			if len(stack) == 0 || stack[len(stack)-1].name != qualified(t.Name) {
				return nil, fmt.Errorf("malformed XML: unexpected end element </%s>", qualified(t.Name))
			}
			f := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			var value any
			text := f.text.String()
			switch {
			case f.obj.Len() == 0 && !f.children:
				value = text // leaf: its text, "" when empty
			default:
				if strings.TrimSpace(text) != "" {
					f.obj.Set("#text", strings.TrimSpace(text))
				}
				value = f.obj
			}
			if len(stack) == 0 {
				root = jsonata.NewObject()
				root.Set(f.name, value)
				continue
			}
			parent := stack[len(stack)-1].obj
			if prev, ok := parent.Get(f.name); ok {
				if arr, isArr := prev.(*jsonata.Array); isArr && repeated[arr] {
					arr.Items = append(arr.Items, value)
				} else {
					arr := jsonata.NewArray(prev, value)
					repeated[arr] = true
					parent.Set(f.name, arr)
				}
			} else {
				parent.Set(f.name, value)
			}
		}
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("malformed XML: element <%s> is not closed", stack[len(stack)-1].name)
	}
	if root == nil {
		return nil, errors.New("malformed XML: no root element")
	}
	return root, nil
}

func qualified(n xml.Name) string {
	if n.Space != "" {
		return n.Space + ":" + n.Local
	}
	return n.Local
}
