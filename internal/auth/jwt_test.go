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
	"os"
	"path/filepath"
	"testing"
	"time"

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
	v, err := NewJWTVerifier(context.Background(), JWTConfig{HS256Secret: secret, JWKSFile: file, Issuer: "https://idp.example"})
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
