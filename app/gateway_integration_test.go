//go:build integration

package app_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
)

// gatewayRule is one location of deploy/gateway/nginx.conf.
type gatewayRule struct {
	pattern  *regexp.Regexp // nil: the prefix location "/"
	upstream string
}

// readGateway parses the location rules the compose gateway routes by.
func readGateway(t *testing.T) []gatewayRule {
	t.Helper()
	f, err := os.Open("../deploy/gateway/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	loc := regexp.MustCompile(`^\s*location\s+(~\s+(\S+)|/)\s*\{.*proxy_pass http://(\w+);`)
	var rules []gatewayRule
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := loc.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		r := gatewayRule{upstream: m[3]}
		if m[2] != "" {
			r.pattern = regexp.MustCompile(m[2])
		}
		rules = append(rules, r)
	}
	if len(rules) < 5 {
		t.Fatalf("only %d location rules in nginx.conf", len(rules))
	}
	return rules
}

// route picks a location the way nginx does: the first regex location that matches, else "/".
func route(rules []gatewayRule, path string) string {
	fallback := ""
	for _, r := range rules {
		if r.pattern == nil {
			fallback = r.upstream
			continue
		}
		if r.pattern.MatchString(path) {
			return r.upstream
		}
	}
	return fallback
}

// One base URL: the services run as separate processes (as in docker-compose), a reverse proxy
// routes by deploy/gateway/nginx.conf's rules, and every operation of GET /openapi.json reaches a
// service that serves it (its handler answers, not the "no such route" fallback).
func TestIntegrationGatewayRoutesEveryPublicRoute(t *testing.T) {
	e := apptest.New(t)
	e.Configure = func(c *app.Config) {
		c.SecretsKey = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
	}
	upstreams := map[string]string{}
	for _, svc := range []string{app.Ingest, app.Query, app.Outbound} {
		upstreams[svc] = e.StartOnly(svc)
	}
	e.StartOnly(app.Process)
	e.StartOnly(app.Project)
	upstreams["console"] = e.StartOnly(app.ConsoleServices...)
	rules := readGateway(t)
	proxies := map[string]*httputil.ReverseProxy{}
	for name, base := range upstreams {
		u, _ := url.Parse(base)
		proxies[name] = httputil.NewSingleHostReverseProxy(u)
	}
	gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := route(rules, r.URL.Path)
		p, ok := proxies[up]
		if !ok {
			http.Error(w, "gateway: no upstream "+up, http.StatusBadGateway)
			return
		}
		p.ServeHTTP(w, r)
	}))
	defer gateway.Close()

	resp, err := http.Get(gateway.URL + "/openapi.json")
	apptest.Must(t, err)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	apptest.Must(t, json.NewDecoder(resp.Body).Decode(&doc))
	resp.Body.Close()
	param := regexp.MustCompile(`\{[^}]+\}`)
	var ops []string
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "post", "put", "delete", "patch":
				ops = append(ops, strings.ToUpper(method)+" "+path)
			}
		}
	}
	sort.Strings(ops)
	if len(ops) < 50 {
		t.Fatalf("only %d operations documented", len(ops))
	}
	for _, op := range ops {
		method, path, _ := strings.Cut(op, " ")
		concrete := param.ReplaceAllString(path, "00000000-0000-4000-8000-000000000000")
		req, _ := http.NewRequest(method, gateway.URL+concrete, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer it-token")
		if path == "/metrics" {
			req.Header.Set("Authorization", "Bearer it-metrics")
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusBadGateway || strings.Contains(string(body), "no such route") {
			t.Errorf("%s through the gateway (to %s): %d %s", op, route(rules, concrete), resp.StatusCode, body)
		}
	}
	// The console is served by its own process behind the same base URL.
	login, err := http.Get(gateway.URL + "/console/login")
	apptest.Must(t, err)
	page, _ := io.ReadAll(login.Body)
	login.Body.Close()
	if login.StatusCode != http.StatusOK || !strings.Contains(string(page), `action="/console/login"`) {
		t.Errorf("GET /console/login through the gateway (to %s): %d %.200s", route(rules, "/console/login"), login.StatusCode, page)
	}
	t.Logf("%d documented operations reached their services through the gateway rules", len(ops))
}
