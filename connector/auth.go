package connector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/erpstream/erpstream/egress"
)

// Auth is connector_config.auth (the API's ManagedCallAuth). Secrets (client_secret, api_key,
// token) are {{env.KEY}} references; the configuration API refuses literal ones.
type Auth struct {
	Type         string            `json:"type"`
	TokenURL     string            `json:"token_url"`
	ClientID     string            `json:"client_id"`
	ClientSecret string            `json:"client_secret"`
	Scope        string            `json:"scope"`
	Audience     string            `json:"audience"`
	Resource     string            `json:"resource"`
	BodyParams   map[string]string `json:"body_params"`
	Headers      map[string]string `json:"headers"`
	QueryParams  map[string]string `json:"query_params"`
	APIKeyHeader string            `json:"api_key_header"`
	APIKey       string            `json:"api_key"`
	Token        string            `json:"token"`
}

// Auth types.
const (
	AuthOAuth2ClientCredentials = "oauth2_client_credentials"
	AuthAPIKey                  = "api_key"
	AuthBearer                  = "bearer"
)

// ErrTokenFailure is a failed OAuth2 token request (OAUTH2_TOKEN_FAILURE); its message names the
// token server's host and status, never a credential.
var ErrTokenFailure = errors.New("oauth2 token request failed")

// ErrInvalidAuth is an auth configuration erpstream cannot apply.
var ErrInvalidAuth = errors.New("invalid connector auth")

// Scope is whose credentials these are: tokens are cached per org and integration, never shared.
type Scope struct{ OrgID, IntegrationID string }

// Authorizer applies connector auth to outbound requests.
type Authorizer struct {
	egress *egress.Client
	tokens *tokenCache
}

// NewAuthorizer fetches OAuth2 tokens through out.
func NewAuthorizer(out *egress.Client) *Authorizer {
	return &Authorizer{egress: out, tokens: newTokenCache(time.Now)}
}

// ParseAuth reads connector_config.auth from an integration's connector_config (nil: no auth).
func ParseAuth(connectorConfig json.RawMessage) (*Auth, error) {
	if len(connectorConfig) == 0 {
		return nil, nil
	}
	var cc struct {
		Auth *Auth `json:"auth"`
	}
	if err := json.Unmarshal(connectorConfig, &cc); err != nil {
		return nil, fmt.Errorf("%w: connector_config is not an object", ErrInvalidAuth)
	}
	if cc.Auth == nil || cc.Auth.Type == "" {
		return nil, nil
	}
	switch cc.Auth.Type {
	case AuthOAuth2ClientCredentials, AuthAPIKey, AuthBearer:
	default:
		return nil, fmt.Errorf("%w: connector_config.auth.type %q", ErrInvalidAuth, cc.Auth.Type)
	}
	return cc.Auth, nil
}

// Apply sets req's credentials. With OAuth2 it returns retry: after a 401 from the partner, call
// it once to drop the cached token and get the header for a fresh one.
func (a *Authorizer) Apply(ctx context.Context, req *http.Request, env *Env, scope Scope, auth *Auth) (retry func(context.Context) error, err error) {
	if auth == nil {
		return nil, nil
	}
	switch auth.Type {
	case AuthAPIKey:
		key, err := env.Resolve(auth.APIKey)
		if err != nil {
			return nil, err
		}
		header := auth.APIKeyHeader
		if header == "" {
			header = "X-API-Key"
		}
		req.Header.Set(header, key)
		return nil, nil
	case AuthBearer:
		token, err := env.Resolve(auth.Token)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		return nil, nil
	case AuthOAuth2ClientCredentials:
		cc, headers, key, err := a.clientCredentials(env, scope, auth)
		if err != nil {
			return nil, err
		}
		fetch := func(ctx context.Context) (*oauth2.Token, error) { return a.fetchToken(ctx, cc, headers) }
		token, err := a.tokens.get(ctx, key, fetch)
		if err != nil {
			return nil, err
		}
		env.remember(token)
		req.Header.Set("Authorization", "Bearer "+token)
		return func(ctx context.Context) error {
			a.tokens.invalidate(key, token)
			token, err := a.tokens.get(ctx, key, fetch)
			if err != nil {
				return err
			}
			env.remember(token)
			req.Header.Set("Authorization", "Bearer "+token)
			return nil
		}, nil
	}
	return nil, fmt.Errorf("%w: connector_config.auth.type %q", ErrInvalidAuth, auth.Type)
}

// TokenRequest is an OAuth2 token request with every value resolved: client credentials, or the
// password grant when Username is set.
type TokenRequest struct {
	TokenURL, ClientID, ClientSecret, Scope, Audience, Resource string
	Username, Password                                          string
	BodyParams, Headers, QueryParams                            map[string]string
}

// Token returns a cached or fresh access token for scope's tenant.
func (a *Authorizer) Token(ctx context.Context, scope Scope, r TokenRequest) (string, error) {
	cc, headers, key, err := tokenConfig(scope, r)
	if err != nil {
		return "", err
	}
	return a.tokens.get(ctx, key, func(ctx context.Context) (*oauth2.Token, error) { return a.fetchToken(ctx, cc, headers) })
}

// clientCredentials resolves connector auth's {{env.KEY}} references into a token request.
func (a *Authorizer) clientCredentials(env *Env, scope Scope, auth *Auth) (*clientcredentials.Config, map[string]string, string, error) {
	r := TokenRequest{TokenURL: auth.TokenURL, ClientID: auth.ClientID, ClientSecret: auth.ClientSecret, Scope: auth.Scope,
		Audience: auth.Audience, Resource: auth.Resource}
	for _, f := range []*string{&r.TokenURL, &r.ClientID, &r.ClientSecret, &r.Scope, &r.Audience, &r.Resource} {
		v, err := env.Resolve(*f)
		if err != nil {
			return nil, nil, "", err
		}
		*f = v
	}
	maps := make([]map[string]string, 3)
	for i, m := range []map[string]string{auth.BodyParams, auth.Headers, auth.QueryParams} {
		maps[i] = make(map[string]string, len(m))
		for k, v := range m {
			rv, err := env.Resolve(v)
			if err != nil {
				return nil, nil, "", err
			}
			maps[i][k] = rv
		}
	}
	r.BodyParams, r.Headers, r.QueryParams = maps[0], maps[1], maps[2]
	return tokenConfig(scope, r)
}

// tokenConfig builds the OAuth2 client configuration of a resolved request and its cache key:
// every value (the secret included, hashed) and the tenant, so a changed configuration or another
// org never shares a token. The password grant goes through the same client: x/oauth2 lets
// grant_type be overridden for exactly this kind of server.
func tokenConfig(scope Scope, r TokenRequest) (*clientcredentials.Config, map[string]string, string, error) {
	if r.TokenURL == "" || r.ClientID == "" {
		return nil, nil, "", fmt.Errorf("%w: oauth2 needs token_url and client_id", ErrInvalidAuth)
	}
	tokenURL, err := url.Parse(r.TokenURL)
	if err != nil {
		return nil, nil, "", fmt.Errorf("%w: token_url is not a URL", ErrInvalidAuth)
	}
	if len(r.QueryParams) > 0 {
		q := tokenURL.Query()
		for k, v := range r.QueryParams {
			q.Set(k, v)
		}
		tokenURL.RawQuery = q.Encode()
	}
	params := url.Values{}
	for k, v := range r.BodyParams {
		params.Set(k, v)
	}
	if r.Audience != "" {
		params.Set("audience", r.Audience)
	}
	if r.Resource != "" {
		params.Set("resource", r.Resource)
	}
	if r.Username != "" {
		params.Set("grant_type", "password")
		params.Set("username", r.Username)
		params.Set("password", r.Password)
	}
	cc := &clientcredentials.Config{ClientID: r.ClientID, ClientSecret: r.ClientSecret, TokenURL: tokenURL.String(),
		Scopes: strings.Fields(r.Scope), EndpointParams: params, AuthStyle: oauth2.AuthStyleInParams}
	key := cacheKey(scope.OrgID, scope.IntegrationID, cc.TokenURL, r.ClientID, r.ClientSecret, r.Scope, r.Audience, r.Resource,
		r.Username, r.Password, sortedPairs(r.BodyParams), sortedPairs(r.Headers))
	return cc, r.Headers, key, nil
}

// fetchToken asks the token server through the egress client.
func (a *Authorizer) fetchToken(ctx context.Context, cc *clientcredentials.Config, headers map[string]string) (*oauth2.Token, error) {
	hc := a.egress.HTTPClient(egress.Policy{Purpose: "oauth2_token"})
	if len(headers) > 0 {
		hc.Transport = withHeaders{base: hc.Transport, headers: headers}
	}
	host := ""
	if u, err := url.Parse(cc.TokenURL); err == nil {
		host = u.Host
	}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, hc))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			return nil, fmt.Errorf("%w: %s answered %d", ErrTokenFailure, host, re.Response.StatusCode)
		}
		if strings.Contains(err.Error(), "missing access_token") {
			return nil, fmt.Errorf("%w: %s answered without an access_token", ErrTokenFailure, host)
		}
		if k := egress.KindOf(err); k == egress.KindBlocked || k == egress.KindNotAllowed || k == egress.KindInvalidURL {
			return nil, fmt.Errorf("%w: %s is not a reachable address", ErrTokenFailure, host)
		}
		return nil, fmt.Errorf("%w: %s could not be reached", ErrTokenFailure, host)
	}
	if tok.AccessToken == "" {
		return nil, fmt.Errorf("%w: %s sent no access_token", ErrTokenFailure, host)
	}
	return tok, nil
}

type withHeaders struct {
	base    http.RoundTripper
	headers map[string]string
}

func (w withHeaders) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	for k, v := range w.headers {
		r.Header.Set(k, v)
	}
	return w.base.RoundTrip(r)
}

func sortedPairs(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "\x00" + m[k] + "\x00")
	}
	return b.String()
}
