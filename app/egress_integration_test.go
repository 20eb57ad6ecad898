//go:build integration

package app_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
)

// stubOn127002 is a partner stub on 127.0.0.2, the one address the operator allowance opens in
// these tests: every other loopback form stays blocked.
func stubOn127002(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

func egressEnv(t *testing.T) *apptest.Env {
	e := apptest.New(t)
	e.Configure = func(c *app.Config) {
		c.EgressAllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		c.EgressTimeout = time.Second
	}
	e.Start()
	return e
}

// setAllowlist sets a secure proxy use case's allowlists the way an operator does.
func setAllowlist(t *testing.T, e *apptest.Env, useCaseID, domains, ips string) {
	t.Helper()
	var out bytes.Buffer
	args := []string{"secure-proxy", "set-allowlist", "--org", "dev-org", "--use-case", useCaseID, "--domains", domains, "--ips", ips}
	if err := app.AdminConfig(context.Background(), app.Config{Kafka: e.Kafka}, e.Log, args, strings.NewReader(""), &out); err != nil {
		t.Fatalf("set-allowlist: %v %s", err, out.String())
	}
}

func useCaseIDs(t *testing.T, e *apptest.Env, integrationID string) map[string]string {
	t.Helper()
	status, body := e.Call("GET", "/v2/integrations/"+integrationID, "")
	if status != http.StatusOK {
		t.Fatalf("get integration: %d %v", status, body)
	}
	out := map[string]string{}
	for _, u := range body["use_cases"].([]any) {
		u := u.(map[string]any)
		out[u["slug"].(string)] = u["id"].(string)
	}
	return out
}

// The secure proxy on the real services: both modes, the allowlists, upstream errors as answers,
// binary bodies, caps, timeouts, redirects, and its monitoring lane.
func TestIntegrationSecureProxy(t *testing.T) {
	partner := stubOn127002(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/json":
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Partner", "yes")
			_, _ = w.Write([]byte(`{"method":"` + r.Method + `","auth":"` + r.Header.Get("Authorization") + `","got":` + string(orNull(body)) + `}`))
		case "/bin":
			_, _ = w.Write([]byte{0, 1, 2, 255})
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("no such thing"))
		case "/redirect":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
		case "/slow":
			time.Sleep(3 * time.Second)
		case "/huge":
			_, _ = w.Write(make([]byte, 5<<20))
		}
	})
	e := egressEnv(t)
	id := e.CreateIntegration(`{"name":"Proxy","use_cases":[
	 {"name":"Static","slug":"static","type":"secure_proxy","enabled":true,"configuration":{"vpc_mode":"static_ip"}},
	 {"name":"Link","slug":"link","type":"secure_proxy","enabled":true,"configuration":{"vpc_mode":"secure_link"}},
	 {"name":"Off","slug":"off","type":"secure_proxy","enabled":false,"configuration":{"vpc_mode":"static_ip"}},
	 {"name":"In","slug":"in","type":"inbound","enabled":true,"configuration":{"entities":[]}}]}`)
	ucs := useCaseIDs(t, e, id)
	proxy := func(slug, url, method, extra string) (int, map[string]any) {
		t.Helper()
		return e.Call("POST", "/v1/secure-proxy", `{"integration_id":"`+id+`","use_case_slug":"`+slug+`","url":"`+url+`","method":"`+method+`"`+extra+`}`)
	}
	status, body := proxy("static", partner.URL+"/json", "POST", `,"headers":{"X-Caller":"1"},"body":{"a":1}`)
	got, _ := body["body"].(map[string]any)
	if status != http.StatusOK || body["status_code"] != 200.0 || got["method"] != "POST" || got["auth"] != "" ||
		got["got"].(map[string]any)["a"] != 1.0 || body["headers"].(map[string]any)["X-Partner"] != "yes" {
		t.Fatalf("static_ip POST: %d %v (erpstream's Authorization must not be forwarded)", status, body)
	}
	if status, body := proxy("static", partner.URL+"/bin", "GET", `,"response_type":"binary"`); status != 200 ||
		body["body"] != base64.StdEncoding.EncodeToString([]byte{0, 1, 2, 255}) {
		t.Errorf("binary: %d %v", status, body)
	}
	if status, body := proxy("static", partner.URL+"/missing", "GET", ""); status != 200 || body["status_code"] != 404.0 || body["body"] != "no such thing" {
		t.Errorf("upstream 404: %d %v, want 200 with status_code 404", status, body)
	}
	if status, body := proxy("static", partner.URL+"/redirect", "GET", ""); status != 200 || body["status_code"] != 302.0 {
		t.Errorf("redirect: %d %v, want the 302 itself", status, body)
	}
	for _, tc := range []struct {
		slug, url string
		status    int
		code      string
	}{
		{"static", partner.URL + "/slow", 504, "SECURE_PROXY_TIMEOUT"},
		{"static", partner.URL + "/huge", 413, "PAYLOAD_TOO_LARGE"},
		{"static", "ftp://127.0.0.2/x", 400, "SECURE_PROXY_INVALID_URL"},
		{"static", "http://u:p@127.0.0.2/x", 400, "SECURE_PROXY_INVALID_URL"},
		{"off", partner.URL + "/json", 403, "SECURE_PROXY_DISABLED"},
		{"in", partner.URL + "/json", 400, "SECURE_PROXY_INVALID_TYPE"},
		{"nope", partner.URL + "/json", 404, "SECURE_PROXY_NOT_FOUND"},
		{"link", partner.URL + "/json", 400, "SECURE_PROXY_INVALID_CONFIG"}, // secure_link without allowlists
	} {
		if status, body := proxy(tc.slug, tc.url, "GET", ""); status != tc.status || body["code"] != tc.code {
			t.Errorf("%s %s: %d %v, want %d %s", tc.slug, tc.url, status, body, tc.status, tc.code)
		}
	}

	// secure_link: only allowed_domains, and only addresses inside allowed_ips.
	setAllowlist(t, e, ucs["link"], "127.0.0.2,10.9.9.9,*.partner.example", "127.0.0.2/32")
	apptest.WaitFor(t, func() bool {
		status, _ := proxy("link", partner.URL+"/json", "GET", "")
		return status == http.StatusOK
	})
	port := partner.URL[strings.LastIndex(partner.URL, ":"):]
	for _, tc := range []struct {
		url    string
		status int
		code   string
	}{
		{"http://127.0.0.3" + port + "/json", 403, "SECURE_PROXY_DOMAIN_NOT_ALLOWED"},
		{"http://10.9.9.9/json", 403, "SECURE_PROXY_IP_NOT_ALLOWED"},
		{"http://partner.example/json", 403, "SECURE_PROXY_DOMAIN_NOT_ALLOWED"}, // *.partner.example is below it, not it
	} {
		if status, body := proxy("link", tc.url, "GET", ""); status != tc.status || body["code"] != tc.code {
			t.Errorf("secure_link %s: %d %v, want %d %s", tc.url, status, body, tc.status, tc.code)
		}
	}
	// Another org cannot use this org's use case, whatever ids it sends.
	if status, _ := e.CallAs("", "POST", "/v1/secure-proxy", `{"integration_id":"`+id+`","use_case_slug":"static","url":"`+partner.URL+`/json","method":"GET"}`); status != http.StatusUnauthorized {
		t.Errorf("no token: %d", status)
	}
	apptest.WaitFor(t, func() bool {
		return e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE use_case_type = 'secure_proxy' AND code = 'HTTP_404' AND level = 'warning'`) == 1 &&
			e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE use_case_type = 'secure_proxy' AND code = 'SECURE_PROXY_IP_NOT_ALLOWED'`) == 1
	})
	if n := e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE use_case_type = 'secure_proxy' AND position(detail, '?') > 0`); n != 0 {
		t.Errorf("%d monitoring rows carry a query string", n)
	}
}

func orNull(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}

// hostileTargets are refused by both the managed call and the secure proxy: every loopback,
// private, link-local, metadata and reserved form (IPv4 literal variants, IPv6 and its mapped,
// compatible and NAT64 forms, names that resolve to them), odd schemes and userinfo.
var hostileTargets = []string{
	"http://127.0.0.1/", "http://127.1/", "http://127.0.1/", "http://2130706433/", "http://0x7f000001/", "http://0x7f.1/",
	"http://0177.0.0.1/", "http://017700000001/", "http://127.255.255.254/", "http://127.0.0.3/", "http://0.0.0.0/", "http://0/",
	"http://10.0.0.1/", "http://10.255.255.255/", "http://172.16.0.1/", "http://172.31.255.1/", "http://192.168.0.1/",
	"http://192.168.1.1:8443/", "http://100.64.0.1/", "http://169.254.169.254/latest/meta-data/", "http://169.254.0.1/",
	"http://0xa9fea9fe/", "http://2852039166/", "http://0251.0376.0251.0376/", "http://224.0.0.1/", "http://255.255.255.255/",
	"http://240.0.0.1/", "http://192.0.2.1/", "http://198.18.0.1/", "http://[::1]/", "http://[::]/", "http://[::ffff:127.0.0.1]/",
	"http://[::ffff:7f00:1]/", "http://[::ffff:169.254.169.254]/", "http://[::127.0.0.1]/", "http://[::ffff:a00:1]/",
	"http://[fc00::1]/", "http://[fd00:ec2::254]/", "http://[fe80::1]/", "http://[ff02::1]/", "http://[64:ff9b::7f00:1]/",
	"http://[64:ff9b::a9fe:a9fe]/", "http://[2002:7f00:1::]/", "http://localhost/", "http://localhost./",
	"https://localhost:443/", "http://LOCALHOST/", "http://api.localhost/", "http://[0:0:0:0:0:0:0:1]/",
	"ftp://127.0.0.2/", "file:///etc/passwd", "gopher://127.0.0.2:70/", "http://user:pass@127.0.0.2/", "dict://127.0.0.2:11211/",
}

// Every hostile target, through the managed call (as the connector's base_url) and the secure
// proxy (static_ip): refused with the documented code, nothing reached, nothing leaked.
func TestIntegrationHostileTargetsAreRefusedByBothRoutes(t *testing.T) {
	if len(hostileTargets) < 50 {
		t.Fatalf("%d targets, want at least 50", len(hostileTargets))
	}
	e := egressEnv(t)
	id := e.CreateIntegration(`{"name":"Hostile","integration_type":"connector","connector_config":{"base_url":"{{env.TARGET}}"},"use_cases":[
	 {"name":"Call","slug":"call","type":"managed_call","enabled":true,"configuration":{"operation":{"method":"GET","path":"/"}}},
	 {"name":"Proxy","slug":"proxy","type":"secure_proxy","enabled":true,"configuration":{"vpc_mode":"static_ip"}}]}`)
	for _, target := range hostileTargets {
		if status, body := e.Call("PUT", "/v1/environment/TARGET", `{"value":"`+target+`"}`); status != http.StatusOK {
			t.Fatalf("env: %d %v", status, body)
		}
		apptest.WaitFor(t, func() bool {
			_, body := e.Call("GET", "/v1/environment", "")
			for _, v := range body["variables"].([]any) {
				if v := v.(map[string]any); v["key"] == "TARGET" && v["value"] == target {
					return true
				}
			}
			return false
		})
		status, body := e.Call("POST", "/v1/managed-call/call/execute", `{"integration_id":"`+id+`","payload":{}}`)
		if status != http.StatusBadRequest || body["code"] != "SSRF_BLOCKED" {
			t.Errorf("managed call to %s: %d %v, want 400 SSRF_BLOCKED", target, status, body)
		}
		status, body = e.Call("POST", "/v1/secure-proxy", `{"integration_id":"`+id+`","use_case_slug":"proxy","url":"`+target+`","method":"GET"}`)
		code, _ := body["code"].(string)
		if !(status == http.StatusForbidden && code == "SECURE_PROXY_IP_BLOCKED") && !(status == http.StatusBadRequest && code == "SECURE_PROXY_INVALID_URL") {
			t.Errorf("secure proxy to %s: %d %v, want 403 SECURE_PROXY_IP_BLOCKED or 400 SECURE_PROXY_INVALID_URL", target, status, body)
		}
		if msg, _ := body["message"].(string); strings.Contains(msg, "resolves to 127") || strings.Contains(msg, "dial tcp") {
			t.Errorf("secure proxy to %s: the answer tells what the name resolved to: %q", target, msg)
		}
	}
}
