package managedcall

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/erpstream/erpstream/connector"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/registry"
)

// operation is a managed_call use case's configuration (ManagedCallOperationConfig), compiled.
type operation struct {
	Operation struct {
		Method      string            `json:"method"`
		Path        string            `json:"path"`
		Headers     map[string]string `json:"headers"`
		QueryParams map[string]string `json:"query_params"`
	} `json:"operation"`
	RequestMapping     string `json:"request_mapping"`
	ResponseMapping    string `json:"response_mapping"`
	InboundUseCaseSlug string `json:"inbound_use_case_slug"`
	// SecureProxy routes the call through a secure_proxy use case of the same integration (beyond
	// the spec, as file proxy configurations do).
	SecureProxy *struct {
		UseCaseSlug string `json:"use_case_slug"`
	} `json:"secure_proxy"`

	request, response jsonata.Expression
}

var methods = map[string]bool{"GET": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true}

// operations caches compiled operations per use case version; maxOperations bounds it.
type operations struct {
	mu sync.Mutex
	m  map[string]*operation
}

const maxOperations = 10_000

func (o *operations) get(uc *registry.UseCase) (*operation, error) {
	key := uc.OrgID + "/" + uc.ID + "/" + strconv.FormatInt(uc.Version, 10) + "/" + uc.UpdatedAt.String()
	o.mu.Lock()
	op, ok := o.m[key]
	o.mu.Unlock()
	if ok {
		return op, nil
	}
	op, err := compile(uc.Configuration)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	if o.m == nil || len(o.m) >= maxOperations {
		o.m = map[string]*operation{}
	}
	o.m[key] = op
	o.mu.Unlock()
	return op, nil
}

func compile(raw json.RawMessage) (*operation, error) {
	op := &operation{}
	if len(raw) == 0 || json.Unmarshal(raw, op) != nil {
		return nil, fmt.Errorf("configuration: missing or not a ManagedCallOperationConfig")
	}
	if !methods[op.Operation.Method] {
		return nil, fmt.Errorf("configuration.operation.method: one of GET, POST, PUT, PATCH, DELETE")
	}
	var err error
	if op.RequestMapping != "" {
		if op.request, err = jsonata.Default.Compile(op.RequestMapping); err != nil {
			return nil, fmt.Errorf("configuration.request_mapping: %v", err)
		}
	}
	if op.ResponseMapping != "" {
		if op.response, err = jsonata.Default.Compile(op.ResponseMapping); err != nil {
			return nil, fmt.Errorf("configuration.response_mapping: %v", err)
		}
	}
	return op, nil
}

// placeholder is {{name}}: a payload path (dot-separated) or, where allowed, env.KEY.
var placeholder = regexp.MustCompile(`\{\{\s*([^{}\s]+)\s*\}\}`)

// missingParam is a placeholder the payload does not fill (MISSING_REQUIRED_PARAM).
type missingParam struct{ name string }

func (m *missingParam) Error() string { return "payload." + m.name + " is required by the operation" }

// fill replaces placeholders in one pass (a value that contains "{{…}}" is not expanded again):
// payload paths always, env.KEY only when env is given. escape encodes payload values.
func fill(tmpl string, payload map[string]any, env *connector.Env, escape func(string) string) (string, error) {
	var failure error
	out := placeholder.ReplaceAllStringFunc(tmpl, func(m string) string {
		name := placeholder.FindStringSubmatch(m)[1]
		if key, isEnv := strings.CutPrefix(name, "env."); isEnv && env != nil {
			v, err := env.Value(key)
			if err != nil && failure == nil {
				failure = err
			}
			return v
		}
		v, ok := lookupPath(payload, name)
		if !ok {
			if failure == nil {
				failure = &missingParam{name: name}
			}
			return ""
		}
		return escape(v)
	})
	if failure != nil {
		return "", failure
	}
	return out, nil
}

// lookupPath follows a dot path through the payload; strings stay as they are, other values
// are written as JSON.
func lookupPath(payload map[string]any, path string) (string, bool) {
	var cur any = payload
	for _, part := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = obj[part]; !ok || cur == nil {
			return "", false
		}
	}
	switch v := cur.(type) {
	case string:
		return v, true
	case json.Number:
		return v.String(), true
	default:
		b, _ := json.Marshal(v)
		return string(b), true
	}
}

func identity(s string) string { return s }

// target builds the partner URL: base_url + path with placeholders (path-escaped), and the
// query parameters (query-escaped).
func (op *operation) target(base string, payload map[string]any) (*url.URL, error) {
	path, err := fill(op.Operation.Path, payload, nil, url.PathEscape)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(strings.TrimSuffix(base, "/") + "/" + strings.TrimPrefix(path, "/"))
	if err != nil {
		return nil, fmt.Errorf("base_url and path do not form a URL")
	}
	if len(op.Operation.QueryParams) > 0 {
		q := u.Query()
		for k, tmpl := range op.Operation.QueryParams {
			v, err := fill(tmpl, payload, nil, identity)
			if err != nil {
				return nil, err
			}
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
	}
	return u, nil
}
