package api

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Operation is one method and path (OpenAPI style: /v1/integrations/{integrationId}).
type Operation struct{ Method, Path string }

// addition is an operation erpstream serves beyond the ERP Integration API.
type addition struct {
	Operation
	Summary string
	// Public operations take no bearer token.
	Public bool
	// Optional operations exist only when configured (GET /metrics needs ERPSTREAM_METRICS_TOKEN).
	Optional bool
}

var additions = []addition{
	{Operation{"POST", "/v3/erp/updates/events/ndjson"}, "Stream events as NDJSON, one result line per input line", false, false},
	{Operation{"POST", "/v1/integrations/{integrationId}/events/replay/bulk"}, "Replay every stored event of a time range (resumable, NDJSON progress)", false, false},
	{Operation{"POST", "/v1/monitoring/stats"}, "Monitoring stats of an integration (the seed's call)", false, false},
	{Operation{"POST", "/v1/monitoring/events"}, "Monitoring events of an integration (the seed's call)", false, false},
	{Operation{"GET", "/v1/environment"}, "List the org's environment variables (secret values never shown)", false, false},
	{Operation{"PUT", "/v1/environment/{key}"}, "Set an environment variable (String or SecretString)", false, false},
	{Operation{"DELETE", "/v1/environment/{key}"}, "Delete an environment variable", false, false},
	{Operation{"GET", "/download"}, "Download a document through a signed file proxy link (when ERPSTREAM_SECRETS_KEY is set)", true, true},
	{Operation{"GET", "/livez"}, "Liveness: the process serves", true, false},
	{Operation{"GET", "/readyz"}, "Readiness: services started, Kafka and ClickHouse answer, consumers progress", true, false},
	{Operation{"GET", "/healthz"}, "The same as /readyz (the name of earlier versions)", true, false},
	{Operation{"GET", "/openapi.json"}, "This document", true, false},
	{Operation{"GET", "/metrics"}, "Prometheus metrics (with the metrics token; when ERPSTREAM_METRICS_TOKEN is set)", false, true},
	{Operation{"GET", "/v1/webhooks"}, "List the org's webhook definitions (where outbound mappings deliver)", false, false},
	{Operation{"GET", "/v1/webhooks/{webhookId}"}, "Read a webhook definition", false, false},
	{Operation{"PUT", "/v1/webhooks/{webhookId}"}, "Create or replace a webhook definition (url, headers, auth, signing_secret as {{env.KEY}})", false, false},
	{Operation{"DELETE", "/v1/webhooks/{webhookId}"}, "Delete a webhook definition", false, false},
	{Operation{"POST", "/v1/integrations/{integrationId}/outbound/redeliver"}, "Redeliver dead-lettered outbound deliveries by id or time range", false, false},
}

// notServed are the specification's operations erpstream does not serve (none today; the
// mechanism stays for operations a future spec version adds before erpstream serves them).
var notServed = map[Operation]bool{}

// FromGin turns a gin route ("/v1/integrations/:integrationId") into an OpenAPI path.
func FromGin(method, path string) Operation {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") || strings.HasPrefix(p, "*") {
			parts[i] = "{" + p[1:] + "}"
		}
	}
	return Operation{Method: method, Path: strings.Join(parts, "/")}
}

// Document is the OpenAPI document erpstream serves: the ERP Integration API v0.58.0 without the
// operations it does not serve, plus its own additions (tagged "erpstream"), and, as
// x-erpstream-routes, the routes this process has registered, so a test can hold the two together.
func Document(routes []Operation) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(Spec, &doc); err != nil {
		return nil, err
	}
	paths, _ := doc["paths"].(map[string]any)
	for path, item := range paths {
		ops, _ := item.(map[string]any)
		for method := range ops {
			if notServed[Operation{strings.ToUpper(method), path}] {
				delete(ops, method)
			}
		}
		if !hasOperation(ops) {
			delete(paths, path)
		}
	}
	for _, a := range additions {
		item, _ := paths[a.Path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[a.Path] = item
		}
		op := map[string]any{"summary": a.Summary, "tags": []string{"erpstream"}, "x-erpstream-addition": true,
			"responses": map[string]any{"200": map[string]any{"description": "OK"}}}
		if a.Public {
			op["security"] = []any{}
		}
		if a.Optional {
			op["x-erpstream-optional"] = true
		}
		if params := pathParams(a.Path); len(params) > 0 {
			op["parameters"] = params
		}
		item[strings.ToLower(a.Method)] = op
	}
	info, _ := doc["info"].(map[string]any)
	if info != nil {
		info["version"] = fmt.Sprint(info["version"]) + "+erpstream"
		info["description"] = "The ERP Integration API as erpstream serves it: the specification's operations and " +
			"erpstream's additions, tagged erpstream."
	}
	served := make([]string, 0, len(routes))
	for _, r := range routes {
		served = append(served, r.Method+" "+r.Path)
	}
	sort.Strings(served)
	doc["x-erpstream-routes"] = served
	return json.Marshal(doc)
}

func hasOperation(ops map[string]any) bool {
	for m := range ops {
		switch m {
		case "get", "put", "post", "delete", "patch", "head", "options":
			return true
		}
	}
	return false
}

func pathParams(path string) []any {
	var out []any
	for _, p := range strings.Split(path, "/") {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") {
			out = append(out, map[string]any{"name": p[1 : len(p)-1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
	}
	return out
}
