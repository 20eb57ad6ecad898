package connector

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/internal/secrets"
	"golang.org/x/oauth2"
)

type fixture struct {
	reg   *registry.Registry
	box   *secrets.Box
	authz *Authorizer
}

func newFixture(t *testing.T, vars map[string]string, secretVars map[string]string) *fixture {
	t.Helper()
	reg := registrytest.Start(t, kafkatest.New(t))
	box, err := secrets.NewBox(secrets.NewKey())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for k, v := range vars {
		if err := reg.PutEnvVar(ctx, &registry.EnvVar{OrgID: "org-a", Key: k, Type: "String", Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range secretVars {
		sealed, _ := box.Seal(v, "org-a/"+k)
		if err := reg.PutEnvVar(ctx, &registry.EnvVar{OrgID: "org-a", Key: k, Type: "SecretString", Sealed: sealed}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := egress.New(egress.Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{reg: reg, box: box, authz: NewAuthorizer(out)}
}

func (f *fixture) env(org string) *Env { return NewEnv(f.reg.Snapshot(), f.box, org) }

// tokenServer answers client-credentials requests, counting them; each token is "tok-<n>".
func tokenServer(t *testing.T, expiresIn int) (*httptest.Server, *atomic.Int32, *sync.Map) {
	t.Helper()
	var n atomic.Int32
	var seen sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		seen.Store("form", r.PostForm.Encode())
		seen.Store("header", r.Header.Get("X-Tenant"))
		seen.Store("query", r.URL.RawQuery)
		if r.PostForm.Get("client_secret") != "s3cr3t-value" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client","secret_was":"` + r.PostForm.Get("client_secret") + `"}`))
			return
		}
		time.Sleep(20 * time.Millisecond) // long enough for concurrent callers to pile up
		id := n.Add(1)
		w.Header().Set("Content-Type", "application/json")
		body := map[string]any{"access_token": "tok-" + string(rune('0'+id)), "token_type": "Bearer"}
		if expiresIn > 0 {
			body["expires_in"] = expiresIn
		}
		_ = json.NewEncoder(w).Encode(body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n, &seen
}

func oauthAuth(tokenURL string) *Auth {
	return &Auth{Type: AuthOAuth2ClientCredentials, TokenURL: tokenURL, ClientID: "{{env.CLIENT_ID}}", ClientSecret: "{{env.CLIENT_SECRET}}",
		Scope: "read write", Audience: "api://partner", BodyParams: map[string]string{"tenant": "{{env.TENANT}}"},
		Headers: map[string]string{"X-Tenant": "{{env.TENANT}}"}, QueryParams: map[string]string{"api-version": "2"}}
}

// A hundred concurrent calls with no cached token fetch one token; all carry it.
func TestConcurrentCallsFetchOneToken(t *testing.T) {
	f := newFixture(t, map[string]string{"CLIENT_ID": "cid", "TENANT": "t1"}, map[string]string{"CLIENT_SECRET": "s3cr3t-value"})
	srv, fetches, seen := tokenServer(t, 3600)
	auth := oauthAuth(srv.URL + "/token")
	var wg sync.WaitGroup
	headers := make([]string, 100)
	errs := make([]error, 100)
	for i := range headers {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, "http://partner.example/", nil)
			_, errs[i] = f.authz.Apply(context.Background(), req, f.env("org-a"), Scope{OrgID: "org-a", IntegrationID: "i1"}, auth)
			headers[i] = req.Header.Get("Authorization")
		}(i)
	}
	wg.Wait()
	for i := range headers {
		if errs[i] != nil || headers[i] != "Bearer tok-1" {
			t.Fatalf("call %d: %q %v", i, headers[i], errs[i])
		}
	}
	if fetches.Load() != 1 {
		t.Errorf("%d token requests for 100 concurrent calls, want 1", fetches.Load())
	}
	form, _ := seen.Load("form")
	for _, want := range []string{"grant_type=client_credentials", "client_id=cid", "scope=read+write", "audience=api%3A%2F%2Fpartner", "tenant=t1"} {
		if !strings.Contains(form.(string), want) {
			t.Errorf("token request body %q lacks %s", form, want)
		}
	}
	if h, _ := seen.Load("header"); h != "t1" {
		t.Errorf("token request header X-Tenant = %v", h)
	}
	if q, _ := seen.Load("query"); q != "api-version=2" {
		t.Errorf("token request query = %v", q)
	}
	// Another org (or integration) never gets this token.
	req, _ := http.NewRequest(http.MethodGet, "http://partner.example/", nil)
	if _, err := f.authz.Apply(context.Background(), req, f.env("org-a"), Scope{OrgID: "org-a", IntegrationID: "i2"}, auth); err != nil ||
		req.Header.Get("Authorization") != "Bearer tok-2" || fetches.Load() != 2 {
		t.Errorf("other integration: %q %v (fetches %d)", req.Header.Get("Authorization"), err, fetches.Load())
	}
}

// After a 401 from the partner the token is dropped and fetched again, once.
func TestRetryAfter401FetchesAFreshToken(t *testing.T) {
	f := newFixture(t, map[string]string{"CLIENT_ID": "cid", "TENANT": "t1"}, map[string]string{"CLIENT_SECRET": "s3cr3t-value"})
	srv, fetches, _ := tokenServer(t, 0)
	auth := oauthAuth(srv.URL + "/token")
	req, _ := http.NewRequest(http.MethodGet, "http://partner.example/", nil)
	retry, err := f.authz.Apply(context.Background(), req, f.env("org-a"), Scope{OrgID: "org-a", IntegrationID: "i1"}, auth)
	if err != nil || retry == nil {
		t.Fatal(err)
	}
	if err := retry(context.Background()); err != nil || req.Header.Get("Authorization") != "Bearer tok-2" || fetches.Load() != 2 {
		t.Errorf("after retry: %q %v (fetches %d)", req.Header.Get("Authorization"), err, fetches.Load())
	}
}

// A refused token request is OAUTH2_TOKEN_FAILURE naming the host, never the secret the server
// echoed back; a missing variable names the key.
func TestTokenFailuresAndMissingVariables(t *testing.T) {
	f := newFixture(t, map[string]string{"CLIENT_ID": "cid", "TENANT": "t1"}, map[string]string{"CLIENT_SECRET": "wrong-secret"})
	srv, _, _ := tokenServer(t, 60)
	req, _ := http.NewRequest(http.MethodGet, "http://partner.example/", nil)
	_, err := f.authz.Apply(context.Background(), req, f.env("org-a"), Scope{OrgID: "org-a"}, oauthAuth(srv.URL+"/token"))
	if !errors.Is(err, ErrTokenFailure) || strings.Contains(err.Error(), "wrong-secret") || !strings.Contains(err.Error(), "401") {
		t.Errorf("refused token request: %v", err)
	}
	_, err = f.authz.Apply(context.Background(), req, f.env("org-b"), Scope{OrgID: "org-b"}, oauthAuth(srv.URL+"/token"))
	if !errors.Is(err, ErrMissingEnv) || !strings.Contains(err.Error(), "CLIENT_ID") {
		t.Errorf("other org's variables: %v, want a missing CLIENT_ID", err)
	}
	blocked := oauthAuth("http://169.254.169.254/token")
	f2 := newFixture(t, map[string]string{"CLIENT_ID": "cid", "TENANT": "t1"}, map[string]string{"CLIENT_SECRET": "s3cr3t-value"})
	if _, err := f2.authz.Apply(context.Background(), req, f2.env("org-a"), Scope{OrgID: "org-a"}, blocked); !errors.Is(err, ErrTokenFailure) {
		t.Errorf("token URL on the metadata address: %v", err)
	}
}

func TestAPIKeyAndBearerAndScrub(t *testing.T) {
	f := newFixture(t, nil, map[string]string{"KEY": "k-123456", "TOKEN": "b-abcdef"})
	env := f.env("org-a")
	req, _ := http.NewRequest(http.MethodGet, "http://partner.example/", nil)
	if _, err := f.authz.Apply(context.Background(), req, env, Scope{OrgID: "org-a"}, &Auth{Type: AuthAPIKey, APIKey: "{{env.KEY}}"}); err != nil ||
		req.Header.Get("X-API-Key") != "k-123456" {
		t.Errorf("api key: %v %v", err, req.Header)
	}
	if _, err := f.authz.Apply(context.Background(), req, env, Scope{OrgID: "org-a"}, &Auth{Type: AuthAPIKey, APIKeyHeader: "X-Key", APIKey: "{{env.KEY}}"}); err != nil ||
		req.Header.Get("X-Key") != "k-123456" {
		t.Errorf("api key header: %v %v", err, req.Header)
	}
	if _, err := f.authz.Apply(context.Background(), req, env, Scope{OrgID: "org-a"}, &Auth{Type: AuthBearer, Token: "{{ env.TOKEN }}"}); err != nil ||
		req.Header.Get("Authorization") != "Bearer b-abcdef" {
		t.Errorf("bearer: %v %v", err, req.Header)
	}
	if got := env.Scrub(`{"echo":"k-123456","t":"b-abcdef"}`); strings.Contains(got, "k-123456") || strings.Contains(got, "b-abcdef") {
		t.Errorf("scrubbed: %s", got)
	}
	if _, err := ParseAuth(json.RawMessage(`{"auth":{"type":"kerberos"}}`)); !errors.Is(err, ErrInvalidAuth) {
		t.Errorf("unknown auth type: %v", err)
	}
}

func TestTokenLifetimes(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newTokenCache(func() time.Time { return now })
	n := 0
	get := func(expiresIn time.Duration) string {
		tok, _ := c.get(context.Background(), "k", func(context.Context) (*oauth2.Token, error) {
			n++
			t := &oauth2.Token{AccessToken: "t" + string(rune('0'+n))}
			if expiresIn > 0 {
				t.Expiry = now.Add(expiresIn)
			}
			return t, nil
		})
		return tok
	}
	if get(time.Hour) != "t1" {
		t.Fatal("first fetch")
	}
	now = now.Add(58 * time.Minute)
	if get(time.Hour) != "t1" {
		t.Error("token dropped before expires_in minus a minute")
	}
	now = now.Add(90 * time.Second)
	if get(0) != "t2" {
		t.Error("token kept within the last minute")
	}
	now = now.Add(299 * time.Second)
	if get(0) != "t2" {
		t.Error("token without expires_in dropped before 300 s")
	}
	now = now.Add(2 * time.Second)
	if get(0) != "t3" {
		t.Error("token without expires_in kept past 300 s")
	}
}
