package egress

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dial resolves addr's host once, checks every address it resolves to, and connects to a checked
// address: directly, or through a CONNECT tunnel naming that address (so the proxy does not
// resolve the name again).
func (c *Client) dial(ctx context.Context, p *Policy, network, addr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &Error{Kind: KindInvalidURL, Err: fmt.Errorf("address %q: %v", addr, err)}
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, &Error{Kind: KindInvalidURL, Err: fmt.Errorf("port %q", portText)}
	}
	addrs, err := c.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if err := c.check(p, a); err != nil {
			return nil, &Error{Kind: KindOf(err), Err: fmt.Errorf("%s resolves to %v", host, err)}
		}
	}
	proxy := p.Proxy
	if proxy == "" {
		proxy = c.cfg.Proxy
	}
	var lastErr error
	for _, a := range addrs {
		target := netip.AddrPortFrom(a.Unmap(), uint16(port)).String()
		var conn net.Conn
		if proxy != "" {
			conn, err = c.tunnel(ctx, proxy, target)
		} else {
			d := net.Dialer{Timeout: c.cfg.ConnectTimeout, Control: c.control(p)}
			conn, err = d.DialContext(ctx, "tcp", target)
		}
		if err == nil {
			return conn, nil
		}
		lastErr = err
		if KindOf(err) == KindProxyUnavailable || ctx.Err() != nil {
			break
		}
	}
	return nil, classify(ctx, fmt.Errorf("connecting to %s: %w", host, lastErr))
}

// control checks the address the socket is about to connect to, once more: whatever path led
// here, no connection reaches an address the rules block.
func (c *Client) control(p *Policy) func(network, address string, _ syscall.RawConn) error {
	return func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return &Error{Kind: KindBlocked, Err: fmt.Errorf("unparsable address %q", address)}
		}
		return c.check(p, ap.Addr())
	}
}

// maxAddrs bounds how many resolved addresses are checked and tried.
const maxAddrs = 16

func (c *Client) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, ok := hostAddr(host); ok {
		return []netip.Addr{a}, nil
	}
	// localhost and every name below it are loopback (RFC 6761), whatever a resolver answers for
	// "localhost." or "x.localhost".
	if name := strings.ToLower(strings.TrimSuffix(host, ".")); name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}, nil
	}
	addrs, err := c.cfg.Resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) && dnsErr.IsTimeout || ctx.Err() != nil {
			return nil, &Error{Kind: KindTimeout, Err: fmt.Errorf("resolving %s timed out", host)}
		}
		return nil, &Error{Kind: KindTransport, Err: fmt.Errorf("resolving %s: no address", host)}
	}
	if len(addrs) == 0 {
		return nil, &Error{Kind: KindTransport, Err: fmt.Errorf("resolving %s: no address", host)}
	}
	if len(addrs) > maxAddrs {
		addrs = addrs[:maxAddrs]
	}
	return addrs, nil
}

func proxyAddr(proxy string) (string, error) {
	u, err := url.Parse(proxy)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return "", fmt.Errorf("egress proxy %q: must be http://host:port (HTTP CONNECT)", proxy)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "3128")
	}
	return host, nil
}

// tunnel opens an HTTP CONNECT tunnel to target (an address already checked) through the proxy.
// The proxy is the operator's own configuration, so its address is not subject to the rules.
func (c *Client) tunnel(ctx context.Context, proxy, target string) (net.Conn, error) {
	paddr, err := proxyAddr(proxy)
	if err != nil {
		return nil, &Error{Kind: KindProxyUnavailable, Err: err}
	}
	d := net.Dialer{Timeout: c.cfg.ConnectTimeout}
	conn, err := d.DialContext(ctx, "tcp", paddr)
	if err != nil {
		return nil, &Error{Kind: KindProxyUnavailable, Err: fmt.Errorf("egress proxy %s unreachable", paddr)}
	}
	deadline := time.Now().Add(c.cfg.ConnectTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: target}, Host: target, Header: http.Header{}}
	var buf bytes.Buffer
	_ = req.Write(&buf) // a CONNECT request of an address cannot fail to encode
	if _, err := conn.Write(buf.Bytes()); err != nil {
		conn.Close()
		return nil, &Error{Kind: KindProxyUnavailable, Err: fmt.Errorf("egress proxy %s closed the connection", paddr)}
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, &Error{Kind: KindProxyUnavailable, Err: fmt.Errorf("egress proxy %s did not answer CONNECT", paddr)}
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		conn.Close()
		return nil, &Error{Kind: KindProxyUnavailable, Err: fmt.Errorf("egress proxy %s refused the tunnel (%d)", paddr, resp.StatusCode)}
	}
	if br.Buffered() > 0 {
		conn.Close()
		return nil, &Error{Kind: KindProxyUnavailable, Err: fmt.Errorf("egress proxy %s sent data before the tunnel opened", paddr)}
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
