// Package connector prepares outbound requests to partner APIs for a tenant: it resolves
// {{env.KEY}} references from the org's environment at the moment of use (secrets are opened only
// then) and applies a connector's auth (OAuth2 client credentials with a token cache, API key,
// bearer token). The requests themselves go through package egress.
package connector

import (
	"errors"
	"fmt"
	"strings"

	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/secrets"
)

// ErrMissingEnv is a {{env.KEY}} reference to a variable the org does not have (or a secret that
// cannot be opened); the message names the key, never a value.
var ErrMissingEnv = errors.New("environment variable missing")

// Env resolves one org's {{env.KEY}} references and remembers the secret values it opened, so
// callers can scrub them from anything they answer or log.
type Env struct {
	snap    *registry.Snapshot
	box     *secrets.Box
	org     string
	opened  []string
	lookups int
}

// MaxEnvLookups bounds the references one call may resolve.
const MaxEnvLookups = 256

// NewEnv reads org's environment from snap; box opens SecretString values (nil: none can be).
func NewEnv(snap *registry.Snapshot, box *secrets.Box, org string) *Env {
	return &Env{snap: snap, box: box, org: org}
}

// Resolve replaces every {{env.KEY}} in s.
func (e *Env) Resolve(s string) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	out, err := secrets.Resolve(s, e.lookup)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrMissingEnv, err)
	}
	return out, nil
}

// Value is one variable's value; a missing one is ErrMissingEnv naming the key.
func (e *Env) Value(key string) (string, error) {
	v, ok := e.lookup(key)
	if !ok {
		return "", fmt.Errorf("%w: environment variable %q is not set", ErrMissingEnv, key)
	}
	return v, nil
}

func (e *Env) lookup(key string) (string, bool) {
	e.lookups++
	if e.lookups > MaxEnvLookups {
		return "", false
	}
	v, ok := e.snap.EnvVar(e.org, key)
	if !ok {
		return "", false
	}
	if v.Type != "SecretString" {
		return v.Value, true
	}
	plain, err := e.box.Open(v.Sealed, e.org+"/"+key)
	if err != nil {
		return "", false
	}
	if plain != "" {
		e.opened = append(e.opened, plain)
	}
	return plain, true
}

// remember marks a credential obtained for this call (an access token) for Scrub.
func (e *Env) remember(secret string) { e.opened = append(e.opened, secret) }

// Scrub replaces every secret value this Env opened with "[redacted]" (upstream error bodies may
// echo a credential back).
func (e *Env) Scrub(s string) string {
	for _, secret := range e.opened {
		if len(secret) >= 4 {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}
