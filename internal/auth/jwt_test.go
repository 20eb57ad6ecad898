package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpstream/erpstream/egress"
	"github.com/golang-jwt/jwt/v5"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestJWTs(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "use": "sig", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ecKey.X.FillBytes(make([]byte, 32))), "y": b64(ecKey.Y.FillBytes(make([]byte, 32)))},
	}})
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, jwks, 0o600); err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	v, err := NewJWTVerifier(context.Background(), JWTConfig{HS256Secret: secret, JWKSFile: file, Issuer: "https://idp.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	base := jwt.MapClaims{"iss": "https://idp.example", "exp": exp, "org_id": "org-a", "jti": "tok-1", "permissions": []string{"erp:read", "integration:consume"}}
	sign := func(method jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(method, c)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	with := func(k string, val any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for a, b := range base {
			c[a] = b
		}
		if val == nil {
			delete(c, k)
		} else {
			c[k] = val
		}
		return c
	}
	good := map[string]string{
		"HS256": sign(jwt.SigningMethodHS256, "", secret, base),
		"RS256": sign(jwt.SigningMethodRS256, "r1", rsaKey, base),
		"ES256": sign(jwt.SigningMethodES256, "e1", ecKey, base),
		"scope": sign(jwt.SigningMethodHS256, "", secret, with("permissions", nil)),
	}
	for name, tok := range good {
		p, err := v.Authenticate(tok)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.OrgID != "org-a" || p.TokenID != "tok-1" {
			t.Errorf("%s: principal %+v", name, p)
		}
		if name != "scope" && (!p.Has(PermRead) || !p.Has(PermEvents) || p.Has(PermWrite)) {
			t.Errorf("%s: permissions %v (integration:consume must map to erp:events)", name, p.Permissions)
		}
	}
	bad := map[string]string{
		"expired":         sign(jwt.SigningMethodHS256, "", secret, with("exp", time.Now().Add(-time.Hour).Unix())),
		"no expiry":       sign(jwt.SigningMethodHS256, "", secret, with("exp", nil)),
		"wrong issuer":    sign(jwt.SigningMethodHS256, "", secret, with("iss", "https://evil")),
		"no org":          sign(jwt.SigningMethodHS256, "", secret, with("org_id", nil)),
		"wrong secret":    sign(jwt.SigningMethodHS256, "", []byte("another-secret-another-secret-xx"), base),
		"unknown kid":     sign(jwt.SigningMethodRS256, "r9", rsaKey, base),
		"alg none":        sign(jwt.SigningMethodNone, "", jwt.UnsafeAllowNoneSignatureType, base),
		"HS384":           sign(jwt.SigningMethodHS384, "", secret, base),
		"garbage":         "not.a.jwt",
		"rsa key as hmac": sign(jwt.SigningMethodHS256, "r1", []byte(b64(rsaKey.N.Bytes())), base),
	}
	for name, tok := range bad {
		if p, err := v.Authenticate(tok); err == nil {
			t.Errorf("%s: accepted as %+v", name, p)
		}
	}
}

// A JWKS URL is fetched through the egress client: reached when the operator allows its address,
// refused (and the verifier not built) when the address is private and not allowed.
func TestJWKSURLIsFetchedThroughEgress(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ecKey.X.FillBytes(make([]byte, 32))), "y": b64(ecKey.Y.FillBytes(make([]byte, 32)))},
	}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	defer srv.Close()
	cfg := JWTConfig{JWKSURL: srv.URL + "/jwks.json"}
	allowed, _ := egress.New(egress.Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	v, err := NewJWTVerifier(context.Background(), cfg, allowed.HTTPClient(egress.Policy{Purpose: "jwks"}))
	if err != nil {
		t.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "org_id": "org-a", "jti": "t"})
	tok.Header["kid"] = "e1"
	signed, _ := tok.SignedString(ecKey)
	if p, err := v.Authenticate(signed); err != nil || p == nil || p.OrgID != "org-a" {
		t.Fatalf("token signed by the fetched key: %+v %v", p, err)
	}
	blocked, _ := egress.New(egress.Config{})
	if _, err := NewJWTVerifier(context.Background(), cfg, blocked.HTTPClient(egress.Policy{Purpose: "jwks"})); err == nil {
		t.Error("a JWKS URL on loopback was fetched without the operator's allowance")
	}
}

// A token signed by a key the verifier has not seen makes it fetch the JWKS again (an identity
// provider rotated its keys), at most once per refetchEvery.
func TestUnknownKeyIDRefetchesTheJWKS(t *testing.T) {
	jwk := func(kid string, k *ecdsa.PrivateKey) map[string]string {
		return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(k.X.FillBytes(make([]byte, 32))), "y": b64(k.Y.FillBytes(make([]byte, 32)))}
	}
	old, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rotated, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	var fetches atomic.Int32
	var keys atomic.Value
	keys.Store([]map[string]string{jwk("k1", old)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys.Load()})
	}))
	defer srv.Close()
	client, _ := egress.New(egress.Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	v, err := NewJWTVerifier(context.Background(), JWTConfig{JWKSURL: srv.URL}, client.HTTPClient(egress.Policy{Purpose: "jwks"}))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(kid string, k *ecdsa.PrivateKey) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix(), "org_id": "org-a", "jti": kid})
		tok.Header["kid"] = kid
		s, _ := tok.SignedString(k)
		return s
	}
	keys.Store([]map[string]string{jwk("k1", old), jwk("k2", rotated)})
	if p, err := v.Authenticate(sign("k2", rotated)); err != nil || p.OrgID != "org-a" {
		t.Fatalf("token of the rotated key: %v", err)
	}
	if fetches.Load() != 2 {
		t.Errorf("%d fetches, want the start and one refetch", fetches.Load())
	}
	if _, err := v.Authenticate(sign("k9", rotated)); err == nil || !strings.Contains(err.Error(), `unknown key id "k9"`) {
		t.Errorf("unknown key: %v", err)
	}
	if fetches.Load() != 2 {
		t.Errorf("%d fetches: a second unknown key within %s fetched again", fetches.Load(), refetchEvery)
	}
}
