//go:build integration

// Integration tests of managed calls on the real services: a partner API and an OAuth2 token
// server run as stubs on 127.0.0.2 (the only address the operator allowance opens), erpstream
// calls them through the HTTP API, and the inbound event a call queues ends up as an entity in
// ClickHouse.
package managedcall_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/internal/secrets"
)

const (
	partnerSecret = "cs-very-secret-1f2e3d"
	plainKey      = "plain-key-value"
)

// partner is the stub partner API with its token server.
type partner struct {
	srv        *httptest.Server
	tokens     atomic.Int32
	refuseNext atomic.Bool // answer the next API call 401, as after a revoked token
	mu         sync.Mutex
	lastAuth   string
	lastQuery  string
	lastHeader http.Header
	lastBody   string
}

func startPartner(t *testing.T) *partner {
	t.Helper()
	p := &partner{}
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Listener = ln
	p.srv.Start()
	t.Cleanup(p.srv.Close)
	return p
}

func (p *partner) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/oauth/token" {
		_ = r.ParseForm()
		if r.PostForm.Get("client_secret") != partnerSecret || r.PostForm.Get("grant_type") != "client_credentials" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		time.Sleep(30 * time.Millisecond)
		n := p.tokens.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"access_token":"at-%d-secret","token_type":"Bearer","expires_in":3600}`, n)
		return
	}
	var body strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := r.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			break
		}
	}
	p.mu.Lock()
	p.lastAuth, p.lastQuery, p.lastHeader, p.lastBody = r.Header.Get("Authorization"), r.URL.RawQuery, r.Header.Clone(), body.String()
	p.mu.Unlock()
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer at-") {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if p.refuseNext.CompareAndSwap(true, false) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/customers/"):
		id := strings.TrimPrefix(r.URL.Path, "/customers/")
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"customerNumber":%q,"firstName":"Lea","lastName":"Meyer","address":{"city":"Köln"}}`, id)
	case r.URL.Path == "/orders":
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"order_id":"o-1","received":%s}`, body.String())
	case r.URL.Path == "/broken":
		w.WriteHeader(http.StatusInternalServerError)
		// A careless partner echoes the credentials it was sent.
		_, _ = fmt.Fprintf(w, `{"error":"boom","auth":%q}`, r.Header.Get("Authorization"))
	case r.URL.Path == "/slow":
		time.Sleep(3 * time.Second)
	case r.URL.Path == "/huge":
		_, _ = w.Write(make([]byte, 5<<20))
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func useCases() string {
	return `[
	 {"name":"Customers","slug":"customer","type":"inbound","enabled":true,
	  "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
	   {"attribute":"customer_number","field":"customerNumber"},{"attribute":"city","field":"$.address.city"}]}]}},
	 {"name":"Get customer","slug":"get-customer","type":"managed_call","enabled":true,"configuration":{
	  "operation":{"method":"GET","path":"/customers/{{customer.id}}","query_params":{"expand":"{{expand}}"},
	   "headers":{"X-Trace":"{{trace}}","X-Key":"{{env.PLAIN_KEY}}"}},
	  "response_mapping":"{\"name\": firstName & ' ' & lastName, \"city\": address.city}",
	  "inbound_use_case_slug":"customer"}},
	 {"name":"Create order","slug":"create-order","type":"managed_call","enabled":true,"configuration":{
	  "operation":{"method":"POST","path":"/orders"},"request_mapping":"{\"sku\": item, \"qty\": $number(qty)}"}},
	 {"name":"Broken","slug":"broken","type":"managed_call","enabled":true,"configuration":{"operation":{"method":"GET","path":"/broken"}}},
	 {"name":"Slow","slug":"slow","type":"managed_call","enabled":true,"configuration":{"operation":{"method":"GET","path":"/slow"}}},
	 {"name":"Huge","slug":"huge","type":"managed_call","enabled":true,"configuration":{"operation":{"method":"GET","path":"/huge"}}},
	 {"name":"Off","slug":"off","type":"managed_call","enabled":false,"configuration":{"operation":{"method":"GET","path":"/x"}}},
	 {"name":"VPN","slug":"vpn","type":"secure_proxy","enabled":true,"configuration":{"vpc_mode":"static_ip"}},
	 {"name":"Via proxy","slug":"via-proxy","type":"managed_call","enabled":true,"configuration":{
	  "operation":{"method":"GET","path":"/customers/P-1"},"secure_proxy":{"use_case_slug":"vpn"}}},
	 {"name":"Missing env","slug":"missing-env","type":"managed_call","enabled":true,"configuration":{
	  "operation":{"method":"GET","path":"/customers/1","headers":{"X-Key":"{{env.NOT_SET}}"}}}}]`
}

func TestIntegrationManagedCalls(t *testing.T) {
	p := startPartner(t)
	e := apptest.New(t)
	e.Configure = func(c *app.Config) {
		c.EgressAllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		c.EgressTimeout = time.Second
		c.OrgOutboundConcurrency = -1
		c.SecretsKey = secrets.NewKey()
	}
	e.Start()
	for _, v := range []string{`PUT /v1/environment/PARTNER_SECRET {"value":"` + partnerSecret + `","type":"SecretString"}`,
		`PUT /v1/environment/PLAIN_KEY {"value":"` + plainKey + `"}`} {
		parts := strings.SplitN(v, " ", 3)
		if status, body := e.Call(parts[0], parts[1], parts[2]); status != http.StatusOK {
			t.Fatalf("%s: %d %v", parts[1], status, body)
		}
	}
	id := e.CreateIntegration(`{"name":"Partner","integration_type":"connector","connector_config":{"base_url":"` + p.srv.URL + `",
	 "auth":{"type":"oauth2_client_credentials","token_url":"` + p.srv.URL + `/oauth/token","client_id":"erp","client_secret":"{{env.PARTNER_SECRET}}","scope":"customers"}},
	 "use_cases":` + useCases() + `}`)
	exec := func(slug, payload string) (int, map[string]any) {
		t.Helper()
		return e.Call("POST", "/v1/managed-call/"+slug+"/execute", `{"integration_id":"`+id+`","payload":`+payload+`,"correlation_id":"corr-`+slug+`"}`)
	}

	// A hundred concurrent first calls share one token request.
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if status, _ := exec("get-customer", fmt.Sprintf(`{"customer":{"id":"K-%d"},"expand":"all","trace":"t-%d"}`, i, i)); status != http.StatusOK {
				failures.Add(1)
			}
		}(i)
	}
	wg.Wait()
	if failures.Load() != 0 || p.tokens.Load() != 1 {
		t.Fatalf("100 concurrent calls: %d failed, %d token requests (want 0 and 1)", failures.Load(), p.tokens.Load())
	}

	status, body := exec("get-customer", `{"customer":{"id":"K 7/8"},"expand":"a&b","trace":"t-x"}`)
	data, _ := body["data"].(map[string]any)
	if status != http.StatusOK || body["success"] != true || data["name"] != "Lea Meyer" || data["city"] != "Köln" || body["inbound_queued"] != true {
		t.Fatalf("get-customer: %d %v", status, body)
	}
	p.mu.Lock()
	if p.lastQuery != "expand=a%26b" || p.lastHeader.Get("X-Trace") != "t-x" || p.lastHeader.Get("X-Key") != plainKey ||
		!strings.HasPrefix(p.lastAuth, "Bearer at-1") {
		t.Errorf("partner received query %q, headers %v", p.lastQuery, p.lastHeader)
	}
	p.mu.Unlock()
	inboundID, _ := body["inbound_event_id"].(string)
	if !strings.HasPrefix(inboundID, "evt_") {
		t.Fatalf("inbound_event_id %v", body["inbound_event_id"])
	}
	// The raw answer went through the inbound use case's mapping into ClickHouse.
	apptest.WaitFor(t, func() bool {
		return e.Scalar(`SELECT count() FROM entities FINAL WHERE org_id = 'dev-org' AND entity_schema = 'contact'
			AND visitParamExtractString(unique_identifiers, 'customer_number') = 'K 7/8'`) == 1
	})

	// After a 401 the token is fetched again and the call retried once.
	p.refuseNext.Store(true)
	if status, body := exec("get-customer", `{"customer":{"id":"K-9"},"expand":"x","trace":"t"}`); status != http.StatusOK || p.tokens.Load() != 2 {
		t.Errorf("after a 401: %d %v, %d token requests (want 2)", status, body, p.tokens.Load())
	}

	status, body = exec("create-order", `{"item":"SKU-1","qty":"3"}`)
	if received, _ := body["data"].(map[string]any)["received"].(map[string]any); status != http.StatusOK || received["sku"] != "SKU-1" || received["qty"] != 3.0 {
		t.Errorf("create-order: %d %v", status, body)
	}

	errCode := func(body map[string]any) string {
		inner, _ := body["error"].(map[string]any)
		if inner == nil || inner["code"] != body["code"] {
			t.Errorf("error body %v: want the code at the top and in error", body)
		}
		code, _ := body["code"].(string)
		return code
	}
	for _, tc := range []struct {
		slug, payload string
		status        int
		code          string
	}{
		{"get-customer", `{"expand":"x","trace":"t"}`, 400, "MISSING_REQUIRED_PARAM"},
		{"missing-env", `{}`, 400, "MISSING_ENVIRONMENT_VARIABLE"},
		{"broken", `{}`, 502, "EXTERNAL_API_ERROR"},
		{"slow", `{}`, 504, "EXTERNAL_API_TIMEOUT"},
		{"huge", `{}`, 502, "EXTERNAL_API_ERROR"},
		{"off", `{}`, 403, "USE_CASE_DISABLED"},
		{"customer", `{}`, 400, "USE_CASE_INVALID_TYPE"},
		{"nope", `{}`, 404, "USE_CASE_NOT_FOUND"},
	} {
		status, body := exec(tc.slug, tc.payload)
		if status != tc.status || errCode(body) != tc.code {
			t.Errorf("%s: %d %v, want %d %s", tc.slug, status, body, tc.status, tc.code)
		}
		raw, _ := json.Marshal(body)
		if strings.Contains(string(raw), "at-") || strings.Contains(string(raw), partnerSecret) {
			t.Errorf("%s: a credential in the answer: %s", tc.slug, raw)
		}
		if tc.slug == "broken" {
			details := body["error"].(map[string]any)["details"].(map[string]any)
			if details["status_code"] != 500.0 || !strings.Contains(details["body"].(string), "[redacted]") {
				t.Errorf("broken: details %v", details)
			}
		}
	}
	// Through a secure proxy use case: its route applies, and its allowed_domains once an operator
	// sets them.
	if status, body := exec("via-proxy", `{}`); status != http.StatusOK {
		t.Errorf("via-proxy: %d %v", status, body)
	}
	var vpnID string
	_, integ := e.Call("GET", "/v2/integrations/"+id, "")
	for _, u := range integ["use_cases"].([]any) {
		if u := u.(map[string]any); u["slug"] == "vpn" {
			vpnID = u["id"].(string)
		}
	}
	var out strings.Builder
	if err := app.AdminConfig(context.Background(), app.Config{Kafka: e.Kafka}, e.Log, []string{"secure-proxy", "set-allowlist", "--org", "dev-org",
		"--use-case", vpnID, "--domains", "other.example", "--ips", ""}, strings.NewReader(""), &out); err != nil {
		t.Fatalf("set-allowlist: %v %s", err, out.String())
	}
	apptest.WaitFor(t, func() bool {
		status, body := exec("via-proxy", `{}`)
		return status == http.StatusForbidden && body["code"] == "SECURE_PROXY_DOMAIN_NOT_ALLOWED"
	})

	// Another org cannot call this org's integration.
	if status, _ := e.CallAs("", "POST", "/v1/managed-call/get-customer/execute", `{"integration_id":"`+id+`"}`); status != http.StatusUnauthorized {
		t.Errorf("no token: %d", status)
	}

	// Every call that resolved its use case is in the managed_call lane (100 + 3 + the 5 refused
	// after that + the proxied ones); no secret reached ClickHouse or the logs.
	apptest.WaitFor(t, func() bool {
		return e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE org_id = 'dev-org' AND use_case_type = 'managed_call'
			AND NOT (detail LIKE '%"slug":"via-proxy"%')`) == 108
	})
	if n := e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE use_case_type = 'managed_call' AND code = 'HTTP_500' AND level = 'warning'`); n != 1 {
		t.Errorf("HTTP_500 warnings: %d", n)
	}
	status, body = e.Call("POST", "/v2/integrations/"+id+"/monitoring/events", `{"use_case_type":"managed_call","limit":5}`)
	if status != http.StatusOK || len(body["data"].([]any)) != 5 {
		t.Errorf("v2 events of the managed_call lane: %d %v", status, body)
	}
	for table, cols := range map[string]string{"monitoring_events": "concat(message, detail, code)", "raw_events": "payload",
		"entities": "attributes", "access_logs": "path"} {
		if n := e.Scalar(`SELECT count() FROM ` + table + ` WHERE position(` + cols + `, '` + partnerSecret + `') > 0
			OR position(` + cols + `, '-secret') > 0`); n != 0 {
			t.Errorf("%s: %d rows hold a secret or token", table, n)
		}
	}
	if logs := e.Logs(); strings.Contains(logs, partnerSecret) || strings.Contains(logs, "-secret\"") || strings.Contains(logs, "at-1-secret") {
		t.Errorf("a secret in the logs")
	}
}
