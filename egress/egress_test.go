package egress

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeResolver answers names from a table; a name with several answer lists answers them in turn.
type fakeResolver struct {
	mu      sync.Mutex
	answers map[string][][]string
	calls   map[string]int
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	lists, ok := r.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	n := r.calls[host]
	r.calls[host] = n + 1
	list := lists[min(n, len(lists)-1)]
	var out []netip.Addr
	for _, a := range list {
		out = append(out, netip.MustParseAddr(a))
	}
	return out, nil
}

func newResolver(answers map[string][][]string) *fakeResolver {
	return &fakeResolver{answers: answers, calls: map[string]int{}}
}

func mustClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get(t *testing.T, c *Client, rawURL string, p Policy) (*Response, error) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, &Error{Kind: KindInvalidURL, Err: err}
	}
	return c.Do(context.Background(), req, p)
}

// Every target below must be refused before a connection is made, with the kind given.
func TestHostileTargetsAreRefused(t *testing.T) {
	res := newResolver(map[string][][]string{
		"internal.example":    {{"10.0.0.5"}},
		"metadata.example":    {{"169.254.169.254"}},
		"mixed.example":       {{"93.184.216.34", "127.0.0.1"}},
		"v6local.example":     {{"::1"}},
		"mapped.example":      {{"::ffff:10.1.2.3"}},
		"cgnat.example":       {{"100.64.1.1"}},
		"nat64.example":       {{"64:ff9b::a9fe:a9fe"}},
		"localhost":           {{"127.0.0.1", "::1"}},
		"localhost.":          {{"127.0.0.1"}},
		"ula.example":         {{"fd12:3456::1"}},
		"sixtofour.example":   {{"2002:7f00:1::1"}},
		"unspecified.example": {{"0.0.0.0"}},
	})
	c := mustClient(t, Config{Resolver: res})
	blocked := []string{
		// IPv4 loopback in every literal form
		"http://127.0.0.1/", "http://127.1/", "http://127.0.1/", "http://2130706433/", "http://0x7f000001/", "http://0x7f.1/",
		"http://0x7f.0x0.0x0.0x1/", "http://0177.0.0.1/", "http://017700000001/", "http://127.255.255.254/", "http://127.0.0.1.:8080/",
		// unspecified, private, CGNAT, link-local, metadata
		"http://0.0.0.0/", "http://0/", "http://10.0.0.1/", "http://10.255.255.255/", "http://172.16.0.1/", "http://172.31.255.1/",
		"http://192.168.0.1/", "http://192.168.1.1:8443/", "http://100.64.0.1/", "http://100.127.255.254/", "http://169.254.169.254/latest/meta-data/",
		"http://169.254.0.1/", "http://0xa9fea9fe/", "http://2852039166/", "http://0251.0376.0251.0376/",
		// multicast, broadcast, reserved, documentation, benchmarking
		"http://224.0.0.1/", "http://239.255.255.250/", "http://255.255.255.255/", "http://240.0.0.1/", "http://192.0.2.1/",
		"http://198.51.100.7/", "http://203.0.113.9/", "http://198.18.0.1/", "http://192.0.0.8/",
		// IPv6: loopback, unspecified, mapped and compatible forms, ULA, link-local, multicast, NAT64, 6to4, Teredo
		"http://[::1]/", "http://[::]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[::ffff:169.254.169.254]/",
		"http://[::127.0.0.1]/", "http://[0:0:0:0:0:ffff:a00:1]/", "http://[fc00::1]/", "http://[fd00:ec2::254]/", "http://[fe80::1]/",
		"http://[fe80::1%25eth0]/", "http://[ff02::1]/", "http://[64:ff9b::7f00:1]/", "http://[64:ff9b::a9fe:a9fe]/", "http://[2002:7f00:1::]/",
		"http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
		// names that resolve to blocked addresses (one blocked answer among public ones is enough)
		"http://internal.example/", "http://metadata.example/", "http://mixed.example/", "http://v6local.example/", "http://mapped.example/",
		"http://cgnat.example/", "http://nat64.example/", "http://localhost/", "http://localhost./", "http://ula.example/",
		"http://sixtofour.example/", "http://unspecified.example/", "https://localhost:443/", "http://LocalHost./",
		"http://api.localhost/", "http://x.y.localhost./",
	}
	invalid := []string{
		"ftp://example.com/", "file:///etc/passwd", "gopher://127.0.0.1:70/", "http://user:pass@example.com/", "http://user@example.com/",
		"javascript:alert(1)", "http:///nohost", "dict://127.0.0.1:11211/",
	}
	if len(blocked)+len(invalid) < 50 {
		t.Fatalf("only %d targets", len(blocked)+len(invalid))
	}
	for _, u := range blocked {
		if _, err := get(t, c, u, Policy{}); KindOf(err) != KindBlocked {
			t.Errorf("%s: %v (kind %d), want blocked", u, err, KindOf(err))
		}
	}
	for _, u := range invalid {
		if _, err := get(t, c, u, Policy{}); KindOf(err) != KindInvalidURL {
			t.Errorf("%s: %v (kind %d), want an invalid URL", u, err, KindOf(err))
		}
	}
}

func TestLegacyIPv4Forms(t *testing.T) {
	for in, want := range map[string]string{"2130706433": "127.0.0.1", "0x7f.1": "127.0.0.1", "0177.0.0.1": "127.0.0.1", "127.1": "127.0.0.1",
		"10.1.258": "10.1.1.2", "0": "0.0.0.0", "0x0A000001": "10.0.0.1", "8.8.8.8": "8.8.8.8"} {
		got, ok := hostAddr(in)
		if !ok || got.String() != want {
			t.Errorf("%s → %v %v, want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"example.com", "1.2.3.4.5", "256.1.1.1", "1.2.65536", "09.1.1.1", "1..1", ""} {
		if a, ok := hostAddr(in); ok {
			t.Errorf("%q parsed as %v", in, a)
		}
	}
}

func stub(t *testing.T, h http.HandlerFunc) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, strings.TrimPrefix(srv.URL, "http://127.0.0.1")
}

// The operator's allowance opens exactly its range: loopback stubs are reached, the rest of
// loopback and every other blocked range stay closed.
func TestAllowCIDRsOpenOnlyTheirRange(t *testing.T) {
	_, port := stub(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	c := mustClient(t, Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	resp, err := get(t, c, "http://127.0.0.1"+port+"/x", Policy{})
	if err != nil || resp.StatusCode != 200 || string(resp.Body) != "ok" {
		t.Fatalf("allowed stub: %v %+v", err, resp)
	}
	for _, u := range []string{"http://127.0.0.2" + port + "/", "http://[::1]" + port + "/", "http://169.254.169.254/", "http://10.0.0.1/"} {
		if _, err := get(t, c, u, Policy{}); KindOf(err) != KindBlocked {
			t.Errorf("%s: %v, want blocked", u, err)
		}
	}
	// A policy's Only narrows further: the allowed stub itself is outside it.
	if _, err := get(t, c, "http://127.0.0.1"+port+"/", Policy{Only: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}); KindOf(err) != KindNotAllowed {
		t.Errorf("outside Only: %v, want not allowed", err)
	}
	// Deny closes a range a policy's Allow opened; the operator's allowance is not overridden.
	deny := Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Deny: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	if _, err := get(t, c, "http://127.0.0.2"+port+"/", deny); KindOf(err) != KindBlocked {
		t.Errorf("denied range: %v, want blocked", err)
	}
	if _, err := get(t, c, "http://127.0.0.1"+port+"/", deny); err != nil {
		t.Errorf("operator-allowed address under Deny: %v", err)
	}
	// A policy's Allow opens one more range for that request only.
	wide := Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	if _, err := get(t, c, "http://127.0.0.2"+port+"/", wide); KindOf(err) == KindBlocked {
		t.Errorf("policy Allow ignored: %v", err)
	}
	if _, err := get(t, c, "http://127.0.0.2"+port+"/", Policy{}); KindOf(err) != KindBlocked {
		t.Errorf("a policy's Allow leaked into the default pool: %v", err)
	}
}

// A name is resolved once per connection and the connection goes to the checked address: a
// resolver that answers an allowed address first and a blocked one next cannot redirect it.
func TestRebindingCannotSwitchTheCheckedAddress(t *testing.T) {
	var hits atomic.Int32
	_, port := stub(t, func(w http.ResponseWriter, _ *http.Request) { hits.Add(1); _, _ = io.WriteString(w, "stub") })
	res := newResolver(map[string][][]string{"rebind.example": {{"127.0.0.1"}, {"10.0.0.1"}, {"10.0.0.1"}}})
	c := mustClient(t, Config{Resolver: res, AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	resp, err := get(t, c, "http://rebind.example"+port+"/", Policy{})
	if err != nil || string(resp.Body) != "stub" {
		t.Fatalf("first request: %v %+v", err, resp)
	}
	if res.calls["rebind.example"] != 1 {
		t.Errorf("resolved %d times for one connection", res.calls["rebind.example"])
	}
	// The pooled connection is to the checked address; a new connection resolves again and is refused.
	c.transport(Policy{}).CloseIdleConnections()
	if _, err := get(t, c, "http://rebind.example"+port+"/", Policy{}); KindOf(err) != KindBlocked {
		t.Errorf("rebound name: %v, want blocked", err)
	}
	if hits.Load() != 1 {
		t.Errorf("stub hit %d times", hits.Load())
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	_, port := stub(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusFound)
	})
	c := mustClient(t, Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	resp, err := get(t, c, "http://127.0.0.1"+port+"/", Policy{})
	if err != nil || resp.StatusCode != http.StatusFound || resp.Header.Get("Location") == "" {
		t.Fatalf("%v %+v, want the 302 itself", err, resp)
	}
	hc := c.HTTPClient(Policy{})
	r, err := hc.Get("http://127.0.0.1" + port + "/")
	if err != nil || r.StatusCode != http.StatusFound {
		t.Fatalf("HTTPClient followed or failed: %v %v", err, r)
	}
	r.Body.Close()
}

func TestBodiesAreCappedAndSlowUpstreamsTimeOut(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	_, port := stub(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			_, _ = w.Write(make([]byte, 2048))
		case "/hang":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		default:
			_, _ = io.Copy(io.Discard, r.Body)
		}
	})
	c := mustClient(t, Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, MaxResponseBytes: 1024, MaxRequestBytes: 1024,
		Timeout: 300 * time.Millisecond})
	base := "http://127.0.0.1" + port
	if _, err := get(t, c, base+"/big", Policy{}); KindOf(err) != KindTooLarge {
		t.Errorf("big response: %v, want too large", err)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/", strings.NewReader(strings.Repeat("x", 2048)))
	if _, err := c.Do(context.Background(), req, Policy{}); KindOf(err) != KindTooLarge {
		t.Errorf("big request: %v, want too large", err)
	}
	streamed, _ := http.NewRequest(http.MethodPost, base+"/", io.NopCloser(strings.NewReader(strings.Repeat("x", 4096))))
	streamed.ContentLength = -1
	if _, err := c.Do(context.Background(), streamed, Policy{}); KindOf(err) != KindTooLarge {
		t.Errorf("big streamed request: %v, want too large", err)
	}
	started := time.Now()
	if _, err := get(t, c, base+"/hang", Policy{}); KindOf(err) != KindTimeout {
		t.Errorf("hanging upstream: %v, want a timeout", err)
	}
	if d := time.Since(started); d > 5*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

func TestHopByHopHeadersAreStrippedBothWays(t *testing.T) {
	var got http.Header
	_, port := stub(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Clone()
		w.Header().Set("Connection", "X-Internal")
		w.Header().Set("X-Internal", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Public", "yes")
	})
	c := mustClient(t, Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1"+port+"/", nil)
	req.Header.Set("Connection", "X-Drop")
	req.Header.Set("X-Drop", "1")
	req.Header.Set("Proxy-Authorization", "Basic c2VjcmV0")
	req.Header.Set("X-Keep", "1")
	resp, err := c.Do(context.Background(), req, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Get("X-Drop") != "" || got.Get("Proxy-Authorization") != "" || got.Get("X-Keep") != "1" {
		t.Errorf("upstream received %v", got)
	}
	if resp.Header.Get("X-Internal") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Public") != "yes" {
		t.Errorf("answer headers %v", resp.Header)
	}
}

// A forward proxy gets a CONNECT to the checked address, never the name (it must not resolve it
// again); an unreachable proxy is its own kind.
func TestForwardProxyTunnelsToTheCheckedAddress(t *testing.T) {
	_, port := stub(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "via proxy") })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	targets := make(chan string, 4)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func(conn net.Conn) {
				defer conn.Close()
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				targets <- req.Host
				up, err := net.Dial("tcp", req.Host)
				if err != nil {
					_, _ = io.WriteString(conn, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
					return
				}
				defer up.Close()
				_, _ = io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
				go func() { _, _ = io.Copy(up, br) }()
				_, _ = io.Copy(conn, up)
			}(conn)
		}
	}()
	res := newResolver(map[string][][]string{"partner.example": {{"127.0.0.1"}}})
	c := mustClient(t, Config{Resolver: res, Proxy: "http://" + ln.Addr().String(), AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	resp, err := get(t, c, "http://partner.example"+port+"/", Policy{})
	if err != nil || string(resp.Body) != "via proxy" {
		t.Fatalf("%v %+v", err, resp)
	}
	if target := <-targets; target != "127.0.0.1"+port {
		t.Errorf("CONNECT %s, want the checked address", target)
	}
	if _, err := get(t, c, "http://10.0.0.1/", Policy{}); KindOf(err) != KindBlocked {
		t.Errorf("blocked target through the proxy: %v", err)
	}
	down := mustClient(t, Config{Resolver: res, Proxy: "http://127.0.0.1:1", AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if _, err := get(t, down, "http://partner.example"+port+"/", Policy{}); KindOf(err) != KindProxyUnavailable {
		t.Errorf("unreachable proxy: %v, want proxy unavailable", err)
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := ParseCIDRs(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,")
	if err != nil || len(got) != 3 || got[1].String() != "192.168.1.7/32" {
		t.Fatalf("%v %v", got, err)
	}
	if _, err := ParseCIDRs("10.0.0.0/33"); err == nil {
		t.Error("10.0.0.0/33 accepted")
	}
}

// Any host string parses without panicking, and every IPv4 form a host parses to is what the
// canonical dotted form parses to.
func FuzzHostAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1", "0x7f.1", "2130706433", "0177.0.0.1", "127.1", "1.2.3", "::1", "fe80::1%eth0", "a.b", "0x", "00", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		a, ok := hostAddr(host)
		if !ok || !a.Is4() {
			return
		}
		again, ok := hostAddr(a.String())
		if !ok || again != a {
			t.Fatalf("%q → %v, whose canonical form parses to %v", host, a, again)
		}
	})
}

func TestOpenStreamsWithinTheCap(t *testing.T) {
	_, port := stub(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(make([]byte, 3000)) })
	c := mustClient(t, Config{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1"+port+"/", nil)
	s, err := c.Open(context.Background(), req, Policy{}, 4096)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(s.Body)
	s.Body.Close()
	if err != nil || len(b) != 3000 {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	s, _ = c.Open(context.Background(), req, Policy{}, 1000)
	_, err = io.ReadAll(s.Body)
	s.Body.Close()
	if KindOf(err) != KindTooLarge {
		t.Errorf("over the cap: %v", err)
	}
	blocked, _ := http.NewRequest(http.MethodGet, "http://10.0.0.1/", nil)
	if _, err := c.Open(context.Background(), blocked, Policy{}, 10); KindOf(err) != KindBlocked {
		t.Errorf("blocked: %v", err)
	}
}
