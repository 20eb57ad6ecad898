package mapping

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"

	"github.com/erpstream/erpstream/internal/jsonata"
)

// FileProxyURL is an extracted file_proxy_url attribute: the pipeline turns it
// into a download URL of the file proxy with the event's org and integration; the simulation,
// which has no integration, leaves the attribute out.
type FileProxyURL struct {
	UseCaseSlug string
	UseCaseID   string
	Params      []FileProxyParam
}

// FileProxyParam is one query parameter, in declaration order.
type FileProxyParam struct {
	Name  string
	Value string
}

// URL builds <base>/download?orgId=…&integrationId=…&useCaseSlug=… (or useCaseId=…) followed by
// the params, every value URL-encoded.
func (f *FileProxyURL) URL(base, org, integrationID string) string {
	var q strings.Builder
	add := func(name, value string) {
		if q.Len() > 0 {
			q.WriteByte('&')
		}
		q.WriteString(url.QueryEscape(name))
		q.WriteByte('=')
		q.WriteString(url.QueryEscape(value))
	}
	add("orgId", org)
	add("integrationId", integrationID)
	if f.UseCaseSlug != "" {
		add("useCaseSlug", f.UseCaseSlug)
	} else {
		add("useCaseId", f.UseCaseID)
	}
	for _, p := range f.Params {
		add(p.Name, p.Value)
	}
	return strings.TrimRight(base, "/") + "/download?" + q.String()
}

type compiledFileProxy struct {
	useCaseSlug string
	useCaseID   string
	params      []*compiledField // attribute = parameter name
}

var useCaseSlugPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func compileFileProxy(path string, raw json.RawMessage, eng jsonata.Engine) (*compiledFileProxy, error) {
	var fc struct {
		UseCaseSlug string          `json:"use_case_slug"`
		UseCaseID   string          `json:"use_case_id"`
		Params      json.RawMessage `json:"params"`
	}
	if err := json.Unmarshal(raw, &fc); err != nil {
		return nil, &ConfigError{Path: path, Msg: "an object {use_case_slug | use_case_id, params} is required"}
	}
	if (fc.UseCaseSlug == "") == (fc.UseCaseID == "") {
		return nil, &ConfigError{Path: path, Msg: "exactly one of use_case_slug and use_case_id is required"}
	}
	if fc.UseCaseSlug != "" && !useCaseSlugPattern.MatchString(fc.UseCaseSlug) {
		return nil, &ConfigError{Path: path + ".use_case_slug", Msg: "must match ^[a-z0-9][a-z0-9_-]*$"}
	}
	cp := &compiledFileProxy{useCaseSlug: fc.UseCaseSlug, useCaseID: fc.UseCaseID}
	if len(fc.Params) == 0 || string(fc.Params) == "null" {
		return cp, nil
	}
	// Parameters keep their declaration order, so the object is read token by token.
	dec := json.NewDecoder(bytes.NewReader(fc.Params))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, &ConfigError{Path: path + ".params", Msg: "an object {name: {field | constant | jsonataExpression}} is required"}
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, &ConfigError{Path: path + ".params", Msg: err.Error()}
		}
		name := t.(string)
		var src FieldConfig
		if err := dec.Decode(&src); err != nil {
			return nil, &ConfigError{Path: path + ".params." + name, Msg: "an object {field | constant | jsonataExpression} is required"}
		}
		pf, err := compileField(path+".params."+name, FieldConfig{Attribute: name, Field: src.Field, Constant: src.Constant,
			JSONataExpression: src.JSONataExpression}, eng)
		if err != nil {
			return nil, err
		}
		cp.params = append(cp.params, pf)
	}
	return cp, nil
}

func (cp *compiledFileProxy) extract(ctx context.Context, path string, item any, env *jsonata.Env) (*FileProxyURL, *Error) {
	out := &FileProxyURL{UseCaseSlug: cp.useCaseSlug, UseCaseID: cp.useCaseID}
	for _, p := range cp.params {
		v, ok, err := p.value(ctx, path+".params."+p.attribute, item, env)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue // an undefined parameter is left out
		}
		s, isString := v.(string)
		if !isString {
			s = display(v)
		}
		out.Params = append(out.Params, FileProxyParam{Name: p.attribute, Value: s})
	}
	return out, nil
}

// withoutFileProxyURLs drops file_proxy_url attributes: the simulation has no integration to
// build them for.
func withoutFileProxyURLs(attrs Attributes) Attributes {
	out := attrs[:0:0]
	for _, a := range attrs {
		if _, ok := a.Value.(*FileProxyURL); !ok {
			out = append(out, a)
		}
	}
	if len(out) == len(attrs) {
		return attrs
	}
	return out
}

// ResolveFileProxyURLs replaces file_proxy_url attributes by their URLs, signed by sign (nil:
// unsigned, which the download route refuses).
func ResolveFileProxyURLs(attrs Attributes, base, org, integrationID string, sign func(org, link string) string) {
	for i, a := range attrs {
		if f, ok := a.Value.(*FileProxyURL); ok {
			link := f.URL(base, org, integrationID)
			if sign != nil {
				link = sign(org, link)
			}
			attrs[i].Value = link
		}
	}
}
