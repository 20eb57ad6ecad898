// Package auth turns a bearer token into a principal: the org it acts for and what it may do.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

// Permission names of the ERP Integration API.
const (
	PermRead       = "erp:read"
	PermWrite      = "erp:write"
	PermEvents     = "erp:events"
	PermMonitoring = "erp:monitoring"
	PermAdmin      = "erp:admin"
)

// AllPermissions is what a dev-mode token carries.
var AllPermissions = []string{PermRead, PermWrite, PermEvents, PermMonitoring, PermAdmin}

// Principal is who is calling.
type Principal struct {
	OrgID       string
	TokenID     string
	Permissions []string
}

// Has reports whether the principal holds perm.
func (p *Principal) Has(perm string) bool {
	for _, q := range p.Permissions {
		if q == perm {
			return true
		}
	}
	return false
}

// ErrInvalidToken is returned for a token no authenticator knows.
var ErrInvalidToken = errors.New("invalid token")

// StaticTokens maps fixed tokens to principals. Tokens are kept as SHA-256 digests and compared
// in constant time, so neither memory dumps nor timing reveal them.
type StaticTokens struct {
	entries []staticEntry
}

type staticEntry struct {
	digest    [32]byte
	principal Principal
}

// Add registers a token.
func (s *StaticTokens) Add(token string, p Principal) {
	s.entries = append(s.entries, staticEntry{digest: sha256.Sum256([]byte(token)), principal: p})
}

// Authenticate resolves a token.
func (s *StaticTokens) Authenticate(token string) (*Principal, error) {
	d := sha256.Sum256([]byte(token))
	var found *Principal
	for i := range s.entries {
		if subtle.ConstantTimeCompare(d[:], s.entries[i].digest[:]) == 1 {
			p := s.entries[i].principal
			found = &p
		}
	}
	if found == nil {
		return nil, ErrInvalidToken
	}
	return found, nil
}

// ParseStaticTokens reads "token=org[:perm+perm...]" entries separated by commas
// (ERPSTREAM_API_TOKENS). Without permissions a token gets all of them.
func ParseStaticTokens(spec string, into *StaticTokens) error {
	for _, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		token, rest, ok := strings.Cut(entry, "=")
		if !ok || token == "" || rest == "" {
			return fmt.Errorf("token entry %q: want token=org[:perm+perm]", redact(entry))
		}
		org, perms, _ := strings.Cut(rest, ":")
		p := Principal{OrgID: org, TokenID: tokenID(token), Permissions: AllPermissions}
		if perms != "" {
			// The newer integration:* names work here as they do in JWTs and API tokens.
			p.Permissions = NormalizePermissions(strings.Split(perms, "+"))
		}
		into.Add(token, p)
	}
	return nil
}

// tokenID names a token in logs without revealing it.
func tokenID(token string) string {
	d := sha256.Sum256([]byte(token))
	return fmt.Sprintf("tok_%x", d[:6])
}

// DevPrincipal is the dev-mode identity: org dev-org with every permission.
func DevPrincipal(token string) Principal {
	return Principal{OrgID: "dev-org", TokenID: tokenID(token), Permissions: AllPermissions}
}

func redact(entry string) string {
	if i := strings.IndexByte(entry, '='); i >= 0 {
		return "***" + entry[i:]
	}
	return "***"
}

// Chain tries authenticators in order; the first that knows the token decides.
type Chain []interface {
	Authenticate(token string) (*Principal, error)
}

// Authenticate implements the middleware's Authenticator. When no authenticator accepts the
// token, the most specific reason one gave (an expired JWT, an unknown key id) is returned, for
// the log; the answer never carries it.
func (c Chain) Authenticate(token string) (*Principal, error) {
	reason := ErrInvalidToken
	for _, a := range c {
		p, err := a.Authenticate(token)
		if err == nil {
			return p, nil
		}
		if err.Error() != ErrInvalidToken.Error() {
			reason = err
		}
	}
	return nil, reason
}

// HashToken is how API tokens are stored: hex SHA-256 of the token.
func HashToken(token string) string {
	d := sha256.Sum256([]byte(token))
	return fmt.Sprintf("%x", d[:])
}
