//go:build integration

package app_test

import (
	"bytes"
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/auth"
)

// Every route, every permission: who may, who may not, and another org's ids (404, never 403).
func TestIntegrationRoutesAndPermissions(t *testing.T) {
	e := apptest.New(t)
	secret := []byte("integration-test-secret-0123456789")
	e.JWT = auth.JWTConfig{HS256Secret: secret}
	e.Start()
	token := func(org string, perms ...string) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"org_id": org, "permissions": perms,
			"exp": time.Now().Add(time.Hour).Unix(), "jti": org + "-" + strings.Join(perms, "+")}).SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	all := token("org-a", auth.AllPermissions...)
	// Fixtures of org-a, made with the all-permissions token.
	status, integ := e.CallAs(all, "POST", "/v2/integrations", apptest.IntegrationBody)
	if status != http.StatusCreated {
		t.Fatalf("fixture: %d %v", status, integ)
	}
	id := integ["id"].(string)
	uc := integ["use_cases"].([]any)[0].(map[string]any)["id"].(string)
	_, spare := e.CallAs(all, "POST", "/v1/integrations", `{"name":"spare"}`)
	spareID := spare["id"].(string)

	day := `"from":"` + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) + `","to":"` + time.Now().Add(time.Minute).UTC().Format(time.RFC3339) + `"`
	routes := []struct {
		method, path, body, perm string
		ok                       int
		otherOrg                 bool // the path or body names an org-a resource: another org must get 404
	}{
		{"GET", "/v1/integrations", "", auth.PermRead, 200, false},
		{"GET", "/v2/integrations", "", auth.PermRead, 200, false},
		{"POST", "/v1/integrations", `{"name":"n"}`, auth.PermWrite, 201, false},
		{"POST", "/v2/integrations", `{"name":"n2"}`, auth.PermWrite, 201, false},
		{"GET", "/v1/integrations/" + id, "", auth.PermRead, 200, true},
		{"GET", "/v2/integrations/" + id, "", auth.PermRead, 200, true},
		{"PUT", "/v1/integrations/" + id, `{"description":"d"}`, auth.PermWrite, 200, true},
		{"PUT", "/v2/integrations/" + id, `{"name":"SAP"}`, auth.PermWrite, 200, true},
		{"GET", "/v1/integrations/secure-proxies", "", auth.PermRead, 200, false},
		{"GET", "/v1/integrations/" + id + "/use-cases", "", auth.PermRead, 200, true},
		{"POST", "/v1/integrations/" + id + "/use-cases", `{"name":"o","type":"outbound","enabled":true}`, auth.PermWrite, 201, true},
		{"GET", "/v1/integrations/" + id + "/use-cases/" + uc, "", auth.PermRead, 200, true},
		{"PUT", "/v1/integrations/" + id + "/use-cases/" + uc, `{"change_description":"c"}`, auth.PermWrite, 200, true},
		{"GET", "/v1/integrations/" + id + "/use-cases/" + uc + "/history", "", auth.PermRead, 200, true},
		{"PUT", "/v1/integrations/" + id + "/app-mapping", `{"app_id":"a1","component_id":"55555555-5555-4555-8555-555555555555"}`, auth.PermWrite, 200, true},
		{"DELETE", "/v1/integrations/" + id + "/app-mapping", `{"app_id":"a1","component_id":"55555555-5555-4555-8555-555555555555"}`, auth.PermWrite, 200, true},
		{"GET", "/v1/environment", "", auth.PermRead, 200, false},
		{"PUT", "/v1/environment/K", `{"value":"v"}`, auth.PermWrite, 200, false},
		{"DELETE", "/v1/environment/K", "", auth.PermWrite, 200, false},
		{"POST", "/v3/erp/updates/events", `{"integration_id":"` + id + `","events":[` + apptest.CustomerEvent(1, "A", "p1") + `]}`, auth.PermEvents, 200, true},
		{"POST", "/v2/erp/updates/events", `{"integration_id":"` + id + `","events":[]}`, auth.PermEvents, 200, true},
		{"POST", "/v1/monitoring/stats", `{"integration_id":"` + id + `",` + day + `}`, auth.PermMonitoring, 200, true},
		{"POST", "/v1/monitoring/events", `{"integration_id":"` + id + `",` + day + `}`, auth.PermMonitoring, 200, true},
		{"POST", "/v2/erp/updates/mapping_simulation", `{"event_configuration":{"entities":[]},"payload":"{}"}`, auth.PermRead, 200, false},
		{"POST", "/v1/erp/updates/mapping_simulation", `{"mapping_configuration":{"version":"2.0","mapping":{"events":{"x":{"entities":[]}}}},"object_type":"x","payload":"{}"}`, auth.PermRead, 200, false},
		{"POST", "/v2/integrations/" + id + "/monitoring/events", `{}`, auth.PermMonitoring, 200, true},
		{"POST", "/v2/integrations/" + id + "/monitoring/stats", `{"group_by":"code"}`, auth.PermMonitoring, 200, true},
		{"POST", "/v2/integrations/" + id + "/monitoring/time-series", `{"from_date":"` + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) + `","interval":"5m"}`, auth.PermMonitoring, 200, true},
		{"GET", "/v2/integrations/" + id + "/monitoring/events/evt_01J0000000000000000000000X/associated", "", auth.PermMonitoring, 200, true},
		{"POST", "/v1/integrations/" + id + "/monitoring/inbound-events", `{}`, auth.PermMonitoring, 200, true},
		{"POST", "/v1/integrations/" + id + "/monitoring/outbound-events", `{}`, auth.PermMonitoring, 200, true},
		{"POST", "/v1/integrations/" + id + "/monitoring/stats", `{}`, auth.PermMonitoring, 200, true},
		{"POST", "/v1/integrations/" + id + "/monitoring/timeseries", `{"from_date":"` + time.Now().Add(-time.Hour).UTC().Format(time.RFC3339) + `","interval":"1h"}`, auth.PermMonitoring, 200, true},
		{"POST", "/v1/integrations/" + id + "/monitoring/access-logs", `{}`, auth.PermMonitoring, 200, true},
		{"POST", "/v1/integrations/" + id + "/events", `{}`, auth.PermMonitoring, 200, true},
		{"POST", "/v1/integrations/" + id + "/events/replay", `{"event_ids":["evt_01J0000000000000000000000X"]}`, auth.PermEvents, 200, true},
		{"DELETE", "/v1/integrations/" + id + "/use-cases/" + uc, "", auth.PermWrite, 200, true},
		{"DELETE", "/v1/integrations/" + spareID, "", auth.PermWrite, 200, true},
	}
	other := token("org-b", auth.AllPermissions...)
	for _, r := range routes {
		name := r.method + " " + r.path
		// Without a token: 401.
		if status, body := e.CallAs("", r.method, r.path, r.body); status != 401 || body["code"] != "UNAUTHORIZED" {
			t.Errorf("%s without a token: %d %v", name, status, body)
		}
		// With every permission but the one the route needs: 403.
		var lacking []string
		for _, p := range auth.AllPermissions {
			if p != r.perm && p != auth.PermAdmin {
				lacking = append(lacking, p)
			}
		}
		if status, body := e.CallAs(token("org-a", lacking...), r.method, r.path, r.body); status != 403 || body["code"] != "FORBIDDEN" {
			t.Errorf("%s without %s: %d %v", name, r.perm, status, body)
		}
		// Another org: 404 for ids it does not own.
		if r.otherOrg {
			if status, body := e.CallAs(other, r.method, r.path, r.body); status != 404 {
				t.Errorf("%s from another org: %d %v (want 404)", name, status, body)
			}
		}
		// With only the route's permission: allowed.
		if status, body := e.CallAs(token("org-a", r.perm), r.method, r.path, r.body); status != r.ok {
			t.Errorf("%s with %s: %d %v (want %d)", name, r.perm, status, body, r.ok)
		}
	}

	// A long-lived API token made by the admin command authenticates; its secret is stored hashed.
	var out bytes.Buffer
	cfg := app.Config{Kafka: e.Kafka, Log: e.Log}
	if err := app.AdminConfig(context.Background(), cfg, e.Log, []string{"token", "create", "--org", "org-a", "--name", "erp-prod", "--perm", "erp:read"},
		strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	apiToken := regexp.MustCompile(`token:\s+(erp_\S+)`).FindStringSubmatch(out.String())
	if apiToken == nil {
		t.Fatalf("no token printed: %s", out.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _ := e.CallAs(apiToken[1], "GET", "/v1/integrations", "")
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API token is not accepted: %d", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status, _ := e.CallAs(apiToken[1], "POST", "/v1/integrations", `{"name":"x"}`); status != 403 {
		t.Errorf("an erp:read API token wrote: %d", status)
	}
}
