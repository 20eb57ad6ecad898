// Package egress is the one way erpstream makes outbound HTTP requests: managed calls, the secure
// proxy, webhooks, file proxy steps, OAuth2 token and JWKS requests all go through a Client.
//
// Destinations are checked on the connection, not on the URL string: a host is resolved once,
// every resolved address is checked, and the connection goes to a checked address (no second
// lookup, so DNS rebinding cannot get through). Private, loopback, link-local (cloud metadata),
// CGNAT, multicast, reserved and unspecified addresses are blocked in every IPv4 and IPv6 form,
// unless the operator allows a range (ERPSTREAM_EGRESS_ALLOW_CIDRS) or a request's Policy does.
// Schemes are http and https without userinfo; redirects are not followed (the 3xx is the
// answer); request and response bodies are capped; every request has a connect and a total
// timeout; hop-by-hop headers are stripped both ways.
package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Config.
const (
	DefaultMaxBodyBytes   = 4 << 20
	DefaultTimeout        = 25 * time.Second
	DefaultConnectTimeout = 10 * time.Second
)

// Resolver looks up a host's addresses; net.DefaultResolver is one, tests pass their own.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Config of the egress client.
type Config struct {
	// AllowCIDRs are ranges reachable although the rules block them (ERPSTREAM_EGRESS_ALLOW_CIDRS):
	// self-hosted deployments reaching their own networks, tests reaching loopback stubs.
	AllowCIDRs []netip.Prefix
	// Proxy, when set, is a forward proxy (HTTP CONNECT, "http://host:port") every request
	// tunnels through, to the address checked here (ERPSTREAM_EGRESS_PROXY).
	Proxy string
	// MaxRequestBytes and MaxResponseBytes cap bodies (default 4 MB each).
	MaxRequestBytes, MaxResponseBytes int64
	// Timeout bounds a request from dial to the last body byte (default 25 s); ConnectTimeout
	// bounds the TCP connect and the TLS handshake (default 10 s).
	Timeout, ConnectTimeout time.Duration
	// Resolver (default net.DefaultResolver).
	Resolver Resolver
	// Metrics registers erpstream_egress_* (nil: not exported).
	Metrics prometheus.Registerer
}

// Kind classifies a failed request for callers' error codes.
type Kind int

// Kinds of failure.
const (
	KindInvalidURL       Kind = iota + 1 // scheme, userinfo, missing host
	KindBlocked                          // the destination address is not allowed
	KindTooLarge                         // a body over its cap
	KindTimeout                          // the connect or total timeout passed
	KindTransport                        // DNS, connect, TLS or protocol failure
	KindProxyUnavailable                 // the forward proxy could not be reached or refused
	KindNotAllowed                       // the address is outside the request's Policy.Only
)

// Error is a failed outbound request. Its message names the destination host, never a query
// string, header or body.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// KindOf returns err's Kind (KindTransport for errors not from this package).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return KindTimeout
	}
	return KindTransport
}

// Client makes checked outbound requests; safe for concurrent use.
type Client struct {
	cfg   Config
	allow []netip.Prefix

	mu         sync.Mutex
	transports map[string]*http.Transport // one pool per policy: a connection never serves another policy

	requests *prometheus.CounterVec
	seconds  *prometheus.HistogramVec
}

// maxPools bounds the per-policy connection pools; requests of further policies get a transport
// that keeps no idle connections.
const maxPools = 256

// New returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = DefaultMaxBodyBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.Proxy != "" {
		if _, err := proxyAddr(cfg.Proxy); err != nil {
			return nil, err
		}
	}
	c := &Client{cfg: cfg, allow: cfg.AllowCIDRs, transports: map[string]*http.Transport{},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpstream_egress_requests_total",
			Help: "Outbound HTTP requests by purpose and outcome (ok, http_4xx, http_5xx, blocked, timeout, too_large, transport, proxy)."},
			[]string{"purpose", "outcome"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "erpstream_egress_request_seconds",
			Help: "Outbound HTTP request duration by purpose.", Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10)}, []string{"purpose"}),
	}
	if cfg.Metrics != nil {
		if err := cfg.Metrics.Register(c.requests); err != nil {
			return nil, err
		}
		if err := cfg.Metrics.Register(c.seconds); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Response is an answered request with its body read (at most MaxResponseBytes).
type Response struct {
	StatusCode int
	Header     http.Header // hop-by-hop headers removed
	Body       []byte
}

// Do sends req under policy and reads the answer. Any HTTP status is an answer, not an error;
// errors are *Error.
func (c *Client) Do(ctx context.Context, req *http.Request, policy Policy) (*Response, error) {
	started := time.Now()
	resp, err := c.do(ctx, req, policy)
	purpose := policy.Purpose
	if purpose == "" {
		purpose = "other"
	}
	c.seconds.WithLabelValues(purpose).Observe(time.Since(started).Seconds())
	c.requests.WithLabelValues(purpose, outcome(resp, err)).Inc()
	return resp, err
}

func (c *Client) do(ctx context.Context, req *http.Request, policy Policy) (*Response, error) {
	if err := c.checkURL(req.URL); err != nil {
		return nil, err
	}
	if req.ContentLength > c.cfg.MaxRequestBytes {
		return nil, &Error{Kind: KindTooLarge, Err: fmt.Errorf("request body over %d bytes", c.cfg.MaxRequestBytes)}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	out := req.Clone(ctx)
	stripHopByHop(out.Header)
	if out.Body != nil && out.ContentLength <= 0 {
		out.Body = &cappedBody{r: out.Body, left: c.cfg.MaxRequestBytes}
	}
	resp, err := c.transport(policy).RoundTrip(out)
	if err != nil {
		return nil, classify(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxResponseBytes+1))
	if err != nil {
		return nil, classify(ctx, err)
	}
	if int64(len(body)) > c.cfg.MaxResponseBytes {
		return nil, &Error{Kind: KindTooLarge, Err: fmt.Errorf("response body of %s over %d bytes", req.URL.Host, c.cfg.MaxResponseBytes)}
	}
	stripHopByHop(resp.Header)
	return &Response{StatusCode: resp.StatusCode, Header: resp.Header, Body: body}, nil
}

// HTTPClient is a standard client over the same checks, for libraries that take one
// (golang.org/x/oauth2, JWKS fetching): redirects are not followed and response bodies past the
// cap fail the read.
func (c *Client) HTTPClient(policy Policy) *http.Client {
	return &http.Client{
		Transport:     roundTripper{c: c, policy: policy},
		Timeout:       c.cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type roundTripper struct {
	c      *Client
	policy Policy
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.c.Do(req.Context(), req, rt.policy)
	if err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: resp.StatusCode, Status: fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode)),
		Header: resp.Header, Body: io.NopCloser(bytesReader(resp.Body)), ContentLength: int64(len(resp.Body)), Request: req,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

func (c *Client) checkURL(u *url.URL) error {
	switch {
	case u == nil:
		return &Error{Kind: KindInvalidURL, Err: errors.New("no URL")}
	case u.Scheme != "http" && u.Scheme != "https":
		return &Error{Kind: KindInvalidURL, Err: fmt.Errorf("scheme %q: only http and https", u.Scheme)}
	case u.User != nil:
		return &Error{Kind: KindInvalidURL, Err: errors.New("credentials in the URL (userinfo) are not allowed")}
	case u.Hostname() == "":
		return &Error{Kind: KindInvalidURL, Err: errors.New("the URL has no host")}
	}
	return nil
}

// transport returns the connection pool of a policy.
func (c *Client) transport(p Policy) *http.Transport {
	key := p.key()
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.transports[key]; ok {
		return t
	}
	t := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return c.dial(ctx, &p, network, addr)
		},
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   c.cfg.ConnectTimeout,
		ResponseHeaderTimeout: c.cfg.Timeout,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       60 * time.Second,
	}
	if len(c.transports) >= maxPools {
		t.DisableKeepAlives = true
		return t
	}
	c.transports[key] = t
	return t
}

func outcome(resp *Response, err error) string {
	if err != nil {
		switch KindOf(err) {
		case KindBlocked, KindInvalidURL, KindNotAllowed:
			return "blocked"
		case KindTimeout:
			return "timeout"
		case KindTooLarge:
			return "too_large"
		case KindProxyUnavailable:
			return "proxy"
		default:
			return "transport"
		}
	}
	switch {
	case resp.StatusCode >= 500:
		return "http_5xx"
	case resp.StatusCode >= 400:
		return "http_4xx"
	}
	return "ok"
}

// classify turns a transport error into an *Error, keeping one this package made.
func classify(ctx context.Context, err error) error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ne net.Error
	if ctx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
		return &Error{Kind: KindTimeout, Err: errors.New("timed out")}
	}
	return &Error{Kind: KindTransport, Err: err}
}

// cappedBody fails a streamed request body past its cap instead of sending it on.
type cappedBody struct {
	r    io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, &Error{Kind: KindTooLarge, Err: errors.New("request body over the cap")}
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if b.left < 0 {
		return 0, &Error{Kind: KindTooLarge, Err: errors.New("request body over the cap")}
	}
	return n, err
}

func (b *cappedBody) Close() error { return b.r.Close() }

// Stream is an answered request whose body is read by the caller: at most max bytes (a longer
// body fails the read with KindTooLarge), within the client's timeout. Close releases it.
type Stream struct {
	StatusCode int
	Header     http.Header // hop-by-hop headers removed
	Body       io.ReadCloser
}

// Open sends req under policy and returns the answer with its body unread, for bodies too large to
// hold in memory (file downloads).
func (c *Client) Open(ctx context.Context, req *http.Request, policy Policy, max int64) (*Stream, error) {
	if err := c.checkURL(req.URL); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	out := req.Clone(ctx)
	stripHopByHop(out.Header)
	purpose := policy.Purpose
	if purpose == "" {
		purpose = "other"
	}
	started := time.Now()
	resp, err := c.transport(policy).RoundTrip(out)
	if err != nil {
		cancel()
		err = classify(ctx, err)
		c.requests.WithLabelValues(purpose, outcome(nil, err)).Inc()
		return nil, err
	}
	c.seconds.WithLabelValues(purpose).Observe(time.Since(started).Seconds())
	c.requests.WithLabelValues(purpose, outcome(&Response{StatusCode: resp.StatusCode}, nil)).Inc()
	stripHopByHop(resp.Header)
	return &Stream{StatusCode: resp.StatusCode, Header: resp.Header,
		Body: &cappedStream{r: resp.Body, left: max, cancel: cancel, ctx: ctx}}, nil
}

type cappedStream struct {
	r      io.ReadCloser
	left   int64
	cancel context.CancelFunc
	ctx    context.Context
}

func (s *cappedStream) Read(p []byte) (int, error) {
	if int64(len(p)) > s.left+1 {
		p = p[:s.left+1]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	if s.left < 0 {
		return n, &Error{Kind: KindTooLarge, Err: errors.New("response body over the cap")}
	}
	if err != nil && err != io.EOF {
		return n, classify(s.ctx, err)
	}
	return n, err
}

func (s *cappedStream) Close() error {
	s.cancel()
	return s.r.Close()
}
