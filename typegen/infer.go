package typegen

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// Annotations are a use case's developer-provided types (the API's TypeAnnotations): dot paths
// ("vendors[].id") to a type name.
type Annotations struct {
	Request  map[string]string `json:"request,omitempty"`
	Response map[string]string `json:"response,omitempty"`
}

// UseCase is one managed call's types.
type UseCase struct {
	Slug, Name string
	Request    *Descriptor
	Response   *Descriptor
}

var placeholder = regexp.MustCompile(`\{\{\s*([^{}\s]+)\s*\}\}`)

// Infer derives a managed call's request and response types from its configuration: the
// request from the payload paths its path, query parameters and headers fill and the inputs its
// request_mapping reads; the response from what its response_mapping builds (unknown without
// one). Warnings say what could not be derived.
func Infer(slug, name string, configuration json.RawMessage) (*UseCase, []string) {
	var cfg struct {
		Operation struct {
			Method      string            `json:"method"`
			Path        string            `json:"path"`
			Headers     map[string]string `json:"headers"`
			QueryParams map[string]string `json:"query_params"`
		} `json:"operation"`
		RequestMapping  string `json:"request_mapping"`
		ResponseMapping string `json:"response_mapping"`
	}
	var warnings []string
	_ = json.Unmarshal(configuration, &cfg)
	uc := &UseCase{Slug: slug, Name: name, Request: object(), Response: &Descriptor{Kind: KindUnknown, Source: "response"}}
	templates := []string{cfg.Operation.Path}
	for _, group := range []map[string]string{cfg.Operation.QueryParams, cfg.Operation.Headers} {
		keys := make([]string, 0, len(group))
		for k := range group {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			templates = append(templates, group[k])
		}
	}
	for _, t := range templates {
		for _, m := range placeholder.FindAllStringSubmatch(t, -1) {
			if strings.HasPrefix(m[1], "env.") {
				continue
			}
			// Placeholders are required (a missing one is MISSING_REQUIRED_PARAM) and written as text.
			set(uc.Request, m[1], &Descriptor{Kind: KindUnion, Variants: []*Descriptor{{Kind: KindString}, {Kind: KindNumber}}}, true)
		}
	}
	if cfg.RequestMapping != "" {
		_, inputs, err := jsonata.Analyze(cfg.RequestMapping)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: request_mapping does not compile: %v", slug, err))
		}
		for _, p := range inputs {
			set(uc.Request, p, &Descriptor{Kind: KindUnknown, Source: p, Optional: true}, false)
		}
	}
	if cfg.ResponseMapping != "" {
		shape, _, err := jsonata.Analyze(cfg.ResponseMapping)
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("%s: response_mapping does not compile: %v", slug, err))
		} else {
			uc.Response = fromShape(shape)
			markUnknownOptional(uc.Response)
		}
	}
	return uc, warnings
}

// markUnknownOptional: an object property read from the partner's answer may be missing (a
// JSONata path that selects nothing leaves the key out).
func markUnknownOptional(d *Descriptor) {
	if d == nil {
		return
	}
	for _, p := range d.Properties {
		if p.Kind == KindUnknown {
			p.Optional = true
		}
		markUnknownOptional(p)
	}
	markUnknownOptional(d.Items)
	for _, v := range d.Variants {
		markUnknownOptional(v)
	}
}

// Annotate applies annotations; an unknown type name is a warning and left out.
func (uc *UseCase) Annotate(a *Annotations) []string {
	if a == nil {
		return nil
	}
	var warnings []string
	apply := func(root *Descriptor, side string, m map[string]string) *Descriptor {
		for _, path := range sortedKeys(m) {
			leaf, ok := parseTypeName(m[path])
			if !ok {
				warnings = append(warnings, fmt.Sprintf("%s: %s annotation %q: unknown type %q (string, number, boolean, null, object, unknown, or one of them followed by [])",
					uc.Slug, side, path, m[path]))
				continue
			}
			if path == "" || path == "$" {
				root = leaf
				continue
			}
			if root.Kind != KindObject {
				root = object()
			}
			set(root, path, leaf, true)
		}
		return root
	}
	uc.Request = apply(uc.Request, "request", a.Request)
	uc.Response = apply(uc.Response, "response", a.Response)
	return warnings
}

func parseTypeName(s string) (*Descriptor, bool) {
	s = strings.TrimSpace(s)
	if inner, isArray := strings.CutSuffix(s, "[]"); isArray {
		items, ok := parseTypeName(inner)
		return &Descriptor{Kind: KindArray, Items: items}, ok
	}
	switch s {
	case KindString, KindNumber, KindBoolean, KindNull, KindUnknown:
		return &Descriptor{Kind: s}, true
	case KindObject:
		return object(), true
	}
	return nil, false
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
