package fileproxy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/mailgun/raymond/v2"

	"github.com/erpstream/erpstream/connector"
	"github.com/erpstream/erpstream/internal/jsonata"
)

// Config is a file_proxy use case's configuration (FileProxyUseCaseConfiguration), compiled.
type Config struct {
	SecureProxy *struct {
		UseCaseSlug string `json:"use_case_slug"`
	} `json:"secure_proxy"`
	Auth   *Auth   `json:"auth"`
	Params []Param `json:"params"`
	Steps  []Step  `json:"steps"`
	Output struct {
		Body        string `json:"body"`
		Encoding    string `json:"encoding"`
		Filename    string `json:"filename"`
		ContentType string `json:"content_type"`
	} `json:"response"`

	body, filename, contentType jsonata.Expression
}

// Auth is FileProxyAuth: connector auth's OAuth2 fields plus the password grant's; every string
// is a template over the download's params.
type Auth struct {
	connector.Auth
	Username string `json:"username"`
	Password string `json:"password"`
}

// Param is one declared query parameter of the download link.
type Param struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
}

// Step is one request of the download (FileProxyStep).
type Step struct {
	URL          string            `json:"url"`
	Method       string            `json:"method"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	ResponseType string            `json:"response_type"`
}

// MaxSteps bounds a download's requests.
const MaxSteps = 10

// ConfigError names the configuration path at fault.
type ConfigError struct{ Path, Msg string }

func (e *ConfigError) Error() string { return "configuration." + e.Path + ": " + e.Msg }

// Compile validates a file_proxy configuration (at save time and before a download): auth type
// and its required strings, templates that parse (balanced {{ }}), at least one step with url,
// method and response_type, and the response's JSONata.
func Compile(raw json.RawMessage) (*Config, error) {
	cfg := &Config{}
	if len(raw) == 0 || json.Unmarshal(raw, cfg) != nil {
		return nil, &ConfigError{Path: "", Msg: "a FileProxyUseCaseConfiguration object is required"}
	}
	var templates [][2]string
	if a := cfg.Auth; a != nil {
		required := map[string]string{"token_url": a.TokenURL, "client_id": a.ClientID, "client_secret": a.ClientSecret}
		switch a.Type {
		case "oauth2_client_credentials":
		case "oauth2_password":
			required["username"], required["password"] = a.Username, a.Password
		default:
			return nil, &ConfigError{Path: "auth.type", Msg: "oauth2_client_credentials or oauth2_password"}
		}
		for _, k := range sortedNames(required) {
			if strings.TrimSpace(required[k]) == "" {
				return nil, &ConfigError{Path: "auth." + k, Msg: "required"}
			}
			templates = append(templates, [2]string{"auth." + k, required[k]})
		}
		for name, m := range map[string]map[string]string{"body_params": a.BodyParams, "headers": a.Headers, "query_params": a.QueryParams} {
			for _, k := range sortedNames(m) {
				templates = append(templates, [2]string{"auth." + name + "." + k, m[k]})
			}
		}
		templates = append(templates, [2]string{"auth.scope", a.Scope}, [2]string{"auth.audience", a.Audience}, [2]string{"auth.resource", a.Resource})
	}
	if len(cfg.Steps) == 0 {
		return nil, &ConfigError{Path: "steps", Msg: "at least one step is required"}
	}
	if len(cfg.Steps) > MaxSteps {
		return nil, &ConfigError{Path: "steps", Msg: fmt.Sprintf("at most %d steps", MaxSteps)}
	}
	for i, st := range cfg.Steps {
		p := fmt.Sprintf("steps[%d]", i)
		switch {
		case strings.TrimSpace(st.URL) == "":
			return nil, &ConfigError{Path: p + ".url", Msg: "required"}
		case st.Method != "GET" && st.Method != "POST":
			return nil, &ConfigError{Path: p + ".method", Msg: "GET or POST"}
		case st.ResponseType != "json" && st.ResponseType != "binary":
			return nil, &ConfigError{Path: p + ".response_type", Msg: "json or binary"}
		}
		templates = append(templates, [2]string{p + ".url", st.URL}, [2]string{p + ".body", st.Body})
		for _, k := range sortedNames(st.Headers) {
			templates = append(templates, [2]string{p + ".headers." + k, st.Headers[k]})
		}
	}
	for _, t := range templates {
		if t[1] == "" {
			continue
		}
		if _, err := raymond.Parse(escapeEnv(t[1])); err != nil {
			return nil, &ConfigError{Path: t[0], Msg: "not a valid template (unbalanced {{ }}?): " + err.Error()}
		}
	}
	for i, p := range cfg.Params {
		if p.Name == "" {
			return nil, &ConfigError{Path: fmt.Sprintf("params[%d].name", i), Msg: "required"}
		}
	}
	out := &cfg.Output
	if out.Encoding != "base64" && out.Encoding != "binary" {
		return nil, &ConfigError{Path: "response.encoding", Msg: "base64 or binary"}
	}
	var err error
	if strings.TrimSpace(out.Body) == "" {
		return nil, &ConfigError{Path: "response.body", Msg: "a JSONata expression is required"}
	}
	if cfg.body, err = jsonata.Default.Compile(out.Body); err != nil {
		return nil, &ConfigError{Path: "response.body", Msg: "JSONata does not compile: " + err.Error()}
	}
	if out.Filename != "" {
		if cfg.filename, err = jsonata.Default.Compile(out.Filename); err != nil {
			return nil, &ConfigError{Path: "response.filename", Msg: "JSONata does not compile: " + err.Error()}
		}
	}
	if out.ContentType != "" {
		if cfg.contentType, err = jsonata.Default.Compile(out.ContentType); err != nil {
			return nil, &ConfigError{Path: "response.content_type", Msg: "JSONata does not compile: " + err.Error()}
		}
	}
	return cfg, nil
}

// unescapedEnv finds {{env.KEY}} not written escaped; escapeEnv escapes it, so the template engine
// emits every env reference literally and only the second pass resolves it.
var unescapedEnv = regexp.MustCompile(`(^|[^\\])\{\{\s*env\.`)

// numericSegment is steps.0.body as handlebars.js accepts it; the Go engine wants steps.[0].body.
var numericSegment = regexp.MustCompile(`\.(\d+)([.}\s)])`)

// escapeEnv makes a template ready for the engine: env references escaped, numeric path segments
// bracketed.
func escapeEnv(tmpl string) string {
	for unescapedEnv.MatchString(tmpl) {
		tmpl = unescapedEnv.ReplaceAllString(tmpl, `${1}\{{env.`)
	}
	return mustache.ReplaceAllStringFunc(tmpl, func(m string) string {
		for numericSegment.MatchString(m) {
			m = numericSegment.ReplaceAllString(m, `.[$1]$2`)
		}
		return m
	})
}

var mustache = regexp.MustCompile(`\{\{[^{}]*\}\}`)

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
