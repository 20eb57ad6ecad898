package configapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"github.com/erpstream/erpstream/api"
)

// Configurations are validated against the spec's own component schemas, with
// github.com/santhosh-tekuri/jsonschema (a maintained, complete JSON Schema implementation), so the
// API accepts exactly what the contract describes and names the offending field when it does not.
// Keys the schemas do not know are accepted and ignored (the spec leaves objects open; epilot's own
// examples carry extra keys such as "condition").

var schemaNames = []string{
	"InboundIntegrationEventConfiguration", "OutboundIntegrationEventConfiguration", "FileProxyUseCaseConfiguration",
	"ManagedCallOperationConfig", "SecureProxyUseCaseConfiguration", "IntegrationEditableFields",
}

// configurationSchema names the configuration schema of each use-case type.
var configurationSchema = map[string]string{
	"inbound":      "InboundIntegrationEventConfiguration",
	"outbound":     "OutboundIntegrationEventConfiguration",
	"file_proxy":   "FileProxyUseCaseConfiguration",
	"managed_call": "ManagedCallOperationConfig",
	"secure_proxy": "SecureProxyUseCaseConfiguration",
}

var (
	schemasOnce sync.Once
	schemas     map[string]*jsonschema.Schema
	schemasErr  error
)

func compiledSchemas() (map[string]*jsonschema.Schema, error) {
	schemasOnce.Do(func() {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(api.Spec))
		if err != nil {
			schemasErr = fmt.Errorf("openapi spec: %w", err)
			return
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft7)
		if err := c.AddResource("erp-integration.json", doc); err != nil {
			schemasErr = err
			return
		}
		schemas = map[string]*jsonschema.Schema{}
		for _, n := range schemaNames {
			s, err := c.Compile("erp-integration.json#/components/schemas/" + n)
			if err != nil {
				schemasErr = fmt.Errorf("schema %s: %w", n, err)
				return
			}
			schemas[n] = s
		}
	})
	return schemas, schemasErr
}

// validateAgainst checks raw against a component schema; the message names the field path under
// prefix (e.g. "configuration.mappings[0].delivery: missing property 'webhook_id'").
func validateAgainst(schemaName, prefix string, raw json.RawMessage) string {
	set, err := compiledSchemas()
	if err != nil {
		return "schema unavailable: " + err.Error()
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return prefix + ": not valid JSON"
	}
	verr, ok := set[schemaName].Validate(doc).(*jsonschema.ValidationError)
	if !ok || verr == nil {
		return ""
	}
	// Report the deepest failure: it names the field the user has to fix.
	leaf := deepest(verr)
	return pointerPath(prefix, "/"+strings.Join(leaf.InstanceLocation, "/")) + ": " + leaf.ErrorKind.LocalizedString(printer)
}

var printer = message.NewPrinter(language.English)

func deepest(e *jsonschema.ValidationError) *jsonschema.ValidationError {
	best := e
	for _, c := range e.Causes {
		if d := deepest(c); len(d.InstanceLocation) > len(best.InstanceLocation) || len(best.Causes) > 0 && len(d.Causes) == 0 && len(d.InstanceLocation) == len(best.InstanceLocation) {
			best = d
		}
	}
	return best
}

// pointerPath turns a JSON pointer into the field path style of error messages.
func pointerPath(prefix, ptr string) string {
	var sb strings.Builder
	sb.WriteString(prefix)
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		if tok[0] >= '0' && tok[0] <= '9' {
			sb.WriteString("[" + tok + "]")
		} else {
			sb.WriteString("." + tok)
		}
	}
	return sb.String()
}
