package secureproxy_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/internal/auth"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/quota"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/secureproxy"
)

const integrationID = "11111111-1111-4111-8111-111111111111"

func serve(t *testing.T, proxies secureproxy.Proxies, outbound *quota.Concurrency) func(body string) (int, map[string]any) {
	t.Helper()
	reg := registrytest.Start(t, kafkatest.New(t))
	ctx := context.Background()
	if err := reg.PutIntegration(ctx, &registry.Integration{ID: integrationID, OrgID: "org-a", Name: "P"}); err != nil {
		t.Fatal(err)
	}
	if err := reg.PutUseCase(ctx, &registry.UseCase{ID: "22222222-2222-4222-8222-222222222222", OrgID: "org-a", IntegrationID: integrationID,
		Name: "S", Slug: "static", Type: registry.TypeSecureProxy, Enabled: true, Configuration: json.RawMessage(`{"vpc_mode":"static_ip"}`)}); err != nil {
		t.Fatal(err)
	}
	out, _ := egress.New(egress.Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	tokens := &auth.StaticTokens{}
	tokens.Add("a", auth.Principal{OrgID: "org-a", Permissions: auth.AllPermissions})
	tokens.Add("b", auth.Principal{OrgID: "org-b", Permissions: auth.AllPermissions})
	e := httpapi.NewEngine(kafkatest.Quiet())
	(&secureproxy.Service{Registry: reg, Egress: out, Proxies: proxies, Outbound: outbound, Log: kafkatest.Quiet()}).
		Register(e.Group("/", httpapi.RequireAuth(tokens)))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return func(body string) (int, map[string]any) {
		tok := "a"
		if strings.HasPrefix(body, "b:") {
			tok, body = "b", body[2:]
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/secure-proxy", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return resp.StatusCode, m
	}
}

// A mode whose forward proxy is configured but unreachable is 503 SECURE_PROXY_UNAVAILABLE.
func TestUnreachableModeProxyIs503(t *testing.T) {
	post := serve(t, secureproxy.Proxies{StaticIP: "http://127.0.0.1:1"}, nil)
	status, body := post(`{"integration_id":"` + integrationID + `","use_case_slug":"static","url":"http://127.0.0.1:9/x","method":"GET"}`)
	if status != http.StatusServiceUnavailable || body["code"] != secureproxy.CodeUnavailable {
		t.Errorf("%d %v, want 503 %s", status, body, secureproxy.CodeUnavailable)
	}
}

// Another org naming this org's integration and use case gets 404; an org with all its outbound
// slots taken gets 429 until one is free (slots are per org: quota.TestConcurrencyIsPerOrg).
func TestTenantsAndOutboundSlots(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	var once sync.Once
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			<-release
		}
	}))
	defer slow.Close()
	defer once.Do(func() { close(release) })
	post := serve(t, secureproxy.Proxies{}, quota.NewConcurrency(1))
	req := func(path string) string {
		return `{"integration_id":"` + integrationID + `","use_case_slug":"static","url":"` + slow.URL + path + `","method":"GET"}`
	}
	if status, body := post("b:" + req("/fast")); status != http.StatusNotFound {
		t.Errorf("other org: %d %v, want 404", status, body)
	}
	done := make(chan int, 1)
	go func() { status, _ := post(req("/slow")); done <- status }()
	select {
	case <-arrived: // the slow call holds the org's one slot
	case <-time.After(5 * time.Second):
		t.Fatal("the slow call did not reach the upstream")
	}
	if status, body := post(req("/fast")); status != http.StatusTooManyRequests || body["code"] != secureproxy.CodeTooManyOutbound {
		t.Errorf("second concurrent call of the org: %d %v, want 429 %s", status, body, secureproxy.CodeTooManyOutbound)
	}
	once.Do(func() { close(release) })
	if status := <-done; status != http.StatusOK {
		t.Errorf("slow call: %d", status)
	}
	if status, body := post(req("/fast")); status != http.StatusOK {
		t.Errorf("after the slot was freed: %d %v", status, body)
	}
}
