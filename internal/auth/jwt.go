package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// JWTConfig configures bearer JWTs. github.com/golang-jwt/jwt is the maintained Go JWT library;
// erpstream pins the accepted algorithms (no "none", no algorithm confusion).
type JWTConfig struct {
	HS256Secret []byte // ERPSTREAM_JWT_HS256_SECRET
	JWKSFile    string // ERPSTREAM_JWKS_FILE: RS256/ES256 public keys
	JWKSURL     string // ERPSTREAM_JWKS_URL: fetched at start and every 10 minutes
	Issuer      string // ERPSTREAM_JWT_ISSUER: required "iss" when set
	Audience    string // ERPSTREAM_JWT_AUDIENCE: required in "aud" when set
}

// JWTVerifier authenticates JWTs. Claims: the org as "org_id" (or "orgId"); permissions as a
// "permissions" array or a space-separated "scope"; the token id as "jti", else "sub".
type JWTVerifier struct {
	cfg  JWTConfig
	mu   sync.RWMutex
	keys map[string]any // kid -> public key
	http HTTPDoer

	refetchMu   sync.Mutex
	lastRefetch time.Time
}

// HTTPDoer sends the JWKS requests: erpstream passes its egress client (package egress), so the
// fetch gets the same address checks, timeouts and caps as every outbound request.
type HTTPDoer interface {
	Do(req *http.Request) (*http.Response, error)
}

// NewJWTVerifier loads the keys; with a JWKS URL it fetches them through client and refreshes
// them until ctx ends.
func NewJWTVerifier(ctx context.Context, cfg JWTConfig, client HTTPDoer) (*JWTVerifier, error) {
	if cfg.JWKSURL != "" && client == nil {
		return nil, errors.New("jwks url: no HTTP client")
	}
	v := &JWTVerifier{cfg: cfg, keys: map[string]any{}, http: client}
	if cfg.JWKSFile != "" {
		b, err := os.ReadFile(cfg.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("jwks file: %w", err)
		}
		if err := v.loadJWKS(b); err != nil {
			return nil, fmt.Errorf("jwks file %s: %w", cfg.JWKSFile, err)
		}
	}
	if cfg.JWKSURL != "" {
		if err := v.fetch(ctx); err != nil {
			return nil, err
		}
		go func() {
			t := time.NewTicker(10 * time.Minute)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					_ = v.fetch(ctx) // keep the last good keys on failure
				}
			}
		}()
	}
	return v, nil
}

func (v *JWTVerifier) fetch(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return fmt.Errorf("jwks url: %w", err)
	}
	resp, err := v.http.Do(req)
	if err != nil {
		return fmt.Errorf("jwks url: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks url: status %d", resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("jwks url: %w", err)
	}
	return v.loadJWKS(b)
}

// loadJWKS parses a key set with github.com/MicahParks/jwkset (a maintained JWK implementation
// that validates what it parses: curve points, key sizes, the x5c chain when present). Signing
// keys of RSA and of the P-256 curve are kept; a key that does not parse is skipped, so one odd
// key of an identity provider does not take the others down.
func (v *JWTVerifier) loadJWKS(b []byte) error {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(b, &set); err != nil {
		return err
	}
	keys := map[string]any{}
	for _, m := range set.Keys {
		if m.USE != "" && m.USE != jwkset.UseSig {
			continue
		}
		k, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			continue
		}
		switch pub := k.Key().(type) {
		case *rsa.PublicKey:
			keys[m.KID] = pub
		case *ecdsa.PublicKey:
			if pub.Curve == elliptic.P256() {
				keys[m.KID] = pub
			}
		}
	}
	if len(keys) == 0 {
		return errors.New("no usable RS256/ES256 signing keys")
	}
	v.mu.Lock()
	v.keys = keys
	v.mu.Unlock()
	return nil
}

// Enabled reports whether any JWT key is configured.
func (v *JWTVerifier) Enabled() bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.cfg.HS256Secret) > 0 || len(v.keys) > 0
}

type claims struct {
	jwt.RegisteredClaims
	OrgID       string `json:"org_id"`
	OrgIDCamel  string `json:"orgId"`
	Permissions []string
	Scope       string `json:"scope"`
}

func (c *claims) UnmarshalJSON(b []byte) error {
	type plain claims
	var p struct {
		plain
		Permissions json.RawMessage `json:"permissions"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*c = claims(p.plain)
	if len(p.Permissions) > 0 {
		var list []string
		if err := json.Unmarshal(p.Permissions, &list); err != nil {
			var s string
			if err := json.Unmarshal(p.Permissions, &s); err != nil {
				return errors.New("permissions: want an array of strings")
			}
			list = strings.Fields(s)
		}
		c.Permissions = list
	}
	return nil
}

// refetchEvery bounds how often an unknown key id makes the verifier fetch the JWKS again.
const refetchEvery = 30 * time.Second

// refetchForUnknownKey fetches the JWKS once more unless that happened within refetchEvery; it
// reports whether it fetched.
func (v *JWTVerifier) refetchForUnknownKey() bool {
	if v.cfg.JWKSURL == "" {
		return false
	}
	v.refetchMu.Lock()
	defer v.refetchMu.Unlock()
	if time.Since(v.lastRefetch) < refetchEvery {
		return false
	}
	v.lastRefetch = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return v.fetch(ctx) == nil
}

// Authenticate verifies a JWT and returns its principal.
func (v *JWTVerifier) Authenticate(token string) (*Principal, error) {
	opts := []jwt.ParserOption{jwt.WithValidMethods([]string{"HS256", "RS256", "ES256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(30 * time.Second)}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if v.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience))
	}
	var c claims
	_, err := jwt.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		switch t.Method.Alg() {
		case "HS256":
			if len(v.cfg.HS256Secret) == 0 {
				return nil, errors.New("HS256 is not configured")
			}
			return v.cfg.HS256Secret, nil
		default:
			kid, _ := t.Header["kid"].(string)
			v.mu.RLock()
			key, ok := v.keys[kid]
			v.mu.RUnlock()
			if !ok && v.refetchForUnknownKey() {
				// The identity provider may have rotated its keys: fetched again (at most every
				// refetchEvery), a token of the new key is not refused for minutes.
				v.mu.RLock()
				key, ok = v.keys[kid]
				v.mu.RUnlock()
			}
			if !ok {
				return nil, fmt.Errorf("unknown key id %q", kid)
			}
			return key, nil
		}
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	org := c.OrgID
	if org == "" {
		org = c.OrgIDCamel
	}
	if org == "" {
		return nil, fmt.Errorf("%w: no org_id claim", ErrInvalidToken)
	}
	perms := c.Permissions
	if len(perms) == 0 && c.Scope != "" {
		perms = strings.Fields(c.Scope)
	}
	id := c.ID
	if id == "" {
		id = c.Subject
	}
	return &Principal{OrgID: org, TokenID: id, Permissions: NormalizePermissions(perms)}, nil
}

// NormalizePermissions maps the newer permission names onto the four of the seed:
// integration:view → erp:read + erp:monitoring, integration:manage → erp:write,
// integration:consume → erp:events.
func NormalizePermissions(perms []string) []string {
	out := make([]string, 0, len(perms)+1)
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for _, p := range perms {
		switch p {
		case "integration:view":
			add(PermRead)
			add(PermMonitoring)
		case "integration:manage":
			add(PermWrite)
		case "integration:consume":
			add(PermEvents)
		default:
			add(p)
		}
	}
	return out
}
