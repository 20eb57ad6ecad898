// Package typegen derives the types of a connector integration's managed calls from their
// configuration (placeholders and JSONata mappings), merges developers' annotations, compares them
// with the last committed version to suggest a semver bump, and writes a TypeScript package with a
// typed client over the managed-call route.
package typegen

import (
	"sort"
	"strings"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// Descriptor is the API's TypeDescriptor.
type Descriptor struct {
	Kind       string                 `json:"kind"`
	Properties map[string]*Descriptor `json:"properties,omitempty"`
	Items      *Descriptor            `json:"items,omitempty"`
	Source     string                 `json:"source,omitempty"`
	Variants   []*Descriptor          `json:"variants,omitempty"`
	// Optional marks a property a caller may leave out (or an answer may lack); kept with
	// committed versions, not part of the API's shape.
	Optional bool `json:"optional,omitempty"`
}

// Kinds of descriptor.
const (
	KindObject  = "object"
	KindArray   = "array"
	KindString  = "string"
	KindNumber  = "number"
	KindBoolean = "boolean"
	KindNull    = "null"
	KindUnknown = "unknown"
	KindUnion   = "union"
)

func object() *Descriptor { return &Descriptor{Kind: KindObject, Properties: map[string]*Descriptor{}} }

func fromShape(s *jsonata.Shape) *Descriptor {
	if s == nil {
		return &Descriptor{Kind: KindUnknown}
	}
	d := &Descriptor{Kind: s.Kind, Source: s.Source}
	switch s.Kind {
	case KindObject:
		d.Properties = map[string]*Descriptor{}
		for k, v := range s.Properties {
			d.Properties[k] = fromShape(v)
		}
	case KindArray:
		d.Items = fromShape(s.Items)
	case KindUnion:
		for _, v := range s.Variants {
			d.Variants = append(d.Variants, fromShape(v))
		}
	}
	return d
}

// segments splits a dot path; "items[]" addresses each item of the array items.
func segments(path string) []string { return strings.Split(path, ".") }

// set puts leaf at path inside root (an object), creating objects and arrays on the way; replace
// decides whether an existing leaf is overwritten.
func set(root *Descriptor, path string, leaf *Descriptor, replace bool) {
	cur := root
	parts := segments(path)
	for i, part := range parts {
		name, isArray := strings.CutSuffix(part, "[]")
		if name == "" {
			return
		}
		if cur.Kind != KindObject {
			cur.Kind, cur.Properties, cur.Source, cur.Variants = KindObject, map[string]*Descriptor{}, "", nil
		}
		if cur.Properties == nil {
			cur.Properties = map[string]*Descriptor{}
		}
		last := i == len(parts)-1
		next, exists := cur.Properties[name]
		switch {
		case last && !isArray:
			if !exists || replace {
				if exists {
					leaf.Optional = next.Optional
				}
				cur.Properties[name] = leaf
			}
			return
		case !exists:
			next = object()
			if isArray {
				next = &Descriptor{Kind: KindArray, Items: object()}
			}
			cur.Properties[name] = next
		}
		if isArray {
			if next.Kind != KindArray {
				next.Kind, next.Items, next.Properties = KindArray, object(), nil
			}
			if last {
				if !exists || replace {
					next.Items = leaf
				}
				return
			}
			cur = next.Items
			continue
		}
		cur = next
	}
}

func sortedNames(m map[string]*Descriptor) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
