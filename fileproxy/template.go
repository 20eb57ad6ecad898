package fileproxy

import (
	"strings"

	"github.com/mailgun/raymond/v2"

	"github.com/erpstream/erpstream/connector"
)

// Templates render in two passes: Handlebars over the download's context (params and the answers
// of earlier steps), then {{env.KEY}} references from the org's environment. Env references are
// escaped before the first pass, so secrets never pass through the template engine; braces in the
// context's values (a document id, a partner's answer) are masked during both passes, so data can
// never become an env reference.
const brace = "\x00erpstream-brace\x00"

// render fills one template.
func render(tmpl string, ctx map[string]any, env *connector.Env) (string, error) {
	if tmpl == "" {
		return "", nil
	}
	tpl, err := raymond.Parse(escapeEnv(tmpl))
	if err != nil {
		return "", err
	}
	out, err := tpl.Exec(ctx)
	if err != nil {
		return "", err
	}
	out, err = env.Resolve(out)
	if err != nil {
		return "", err
	}
	return strings.ReplaceAll(out, brace, "{{"), nil
}

// templateContext prepares values for the template engine: strings are emitted as they are (no
// HTML escaping: templates build URLs, headers and JSON bodies), with "{{" masked.
func templateContext(v any) any {
	switch x := v.(type) {
	case string:
		return raymond.SafeString(strings.ReplaceAll(x, "{{", brace))
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = templateContext(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = templateContext(e)
		}
		return out
	case map[string]string:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = templateContext(e)
		}
		return out
	}
	return v
}
