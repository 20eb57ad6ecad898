package connector

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// tokenCache keeps OAuth2 access tokens until shortly before they expire. One fetch per key runs
// at a time: a hundred concurrent calls with an expired token wait for one token request.
type tokenCache struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*tokenEntry
}

type tokenEntry struct {
	lock    chan struct{} // held while fetching; waiting respects the caller's context
	token   string
	expires time.Time
}

// Token lifetimes: cached until expires_in minus a minute (half the lifetime for short ones),
// 300 s when the server sends no expires_in. maxTokens bounds the cache.
const (
	tokenMargin      = 60 * time.Second
	defaultTokenLife = 300 * time.Second
	maxTokens        = 10_000
)

func newTokenCache(now func() time.Time) *tokenCache {
	return &tokenCache{now: now, m: map[string]*tokenEntry{}}
}

func cacheKey(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x01")))
	return hex.EncodeToString(h[:])
}

func (c *tokenCache) entry(key string) *tokenEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		if len(c.m) >= maxTokens {
			now := c.now()
			for k, old := range c.m {
				if old.token == "" || now.After(old.expires) {
					delete(c.m, k)
				}
			}
		}
		e = &tokenEntry{lock: make(chan struct{}, 1)}
		if len(c.m) < maxTokens {
			c.m[key] = e
		}
	}
	return e
}

// get returns a valid cached token or fetches one, one fetch per key at a time.
func (c *tokenCache) get(ctx context.Context, key string, fetch func(context.Context) (*oauth2.Token, error)) (string, error) {
	e := c.entry(key)
	select {
	case e.lock <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-e.lock }()
	now := c.now()
	if e.token != "" && now.Before(e.expires) {
		return e.token, nil
	}
	tok, err := fetch(ctx)
	if err != nil {
		return "", err
	}
	life := defaultTokenLife
	if !tok.Expiry.IsZero() {
		if life = tok.Expiry.Sub(now); life > 2*tokenMargin {
			life -= tokenMargin
		} else {
			life /= 2
		}
	}
	e.token, e.expires = tok.AccessToken, now.Add(life)
	return e.token, nil
}

// invalidate drops key's token if it is still the one a partner refused.
func (c *tokenCache) invalidate(key, token string) {
	e := c.entry(key)
	e.lock <- struct{}{}
	if e.token == token {
		e.token = ""
	}
	<-e.lock
}
