package httpapi

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// RateLimiter is a token bucket per org: PerMinute requests a minute, with bursts up to PerMinute.
// It counts in this process only: with N ingest/query replicas behind a load balancer an org may
// send up to N × PerMinute (see the README).
type RateLimiter struct {
	PerMinute int
	Now       func() time.Time
	// Key names whose bucket a request spends (default: the principal's org). Routes without a
	// bearer token key by client address.
	Key func(*gin.Context) string

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// Middleware answers 429 with Retry-After once an org's bucket is empty. It runs after RequireAuth.
func (l *RateLimiter) Middleware() gin.HandlerFunc {
	if l.Now == nil {
		l.Now = time.Now
	}
	return func(c *gin.Context) {
		if l.PerMinute <= 0 {
			c.Next()
			return
		}
		key := ""
		if l.Key != nil {
			key = l.Key(c)
		} else {
			key = Principal(c).OrgID
		}
		wait := l.take(key)
		if wait > 0 {
			c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			Abort(c, http.StatusTooManyRequests, "RATE_LIMITED",
				"more than "+strconv.Itoa(l.PerMinute)+" requests per minute; retry after the Retry-After seconds")
			return
		}
		c.Next()
	}
}

// take spends one token; it returns how long until one is available when none is.
func (l *RateLimiter) take(org string) time.Duration {
	now := l.Now()
	rate := float64(l.PerMinute) / 60 // tokens per second
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buckets == nil {
		l.buckets = map[string]*bucket{}
	}
	b, ok := l.buckets[org]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.evictLocked(now)
		}
		b = &bucket{tokens: float64(l.PerMinute), last: now}
		l.buckets[org] = b
	}
	b.tokens = math.Min(float64(l.PerMinute), b.tokens+now.Sub(b.last).Seconds()*rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / rate * float64(time.Second))
}

// maxBuckets bounds the buckets kept: keys by client address are chosen by the network.
const maxBuckets = 100_000

// evictLocked drops the buckets that have refilled (idle for a minute: they hold as many
// tokens as a new one would).
func (l *RateLimiter) evictLocked(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.last) >= time.Minute {
			delete(l.buckets, k)
		}
	}
}
