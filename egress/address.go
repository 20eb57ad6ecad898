package egress

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"code.dny.dev/ssrf"
)

// The address rules. code.dny.dev/ssrf carries the IANA special-purpose registries (IPv4: private,
// loopback, link-local with the cloud metadata address, CGNAT, multicast, reserved, unspecified,
// documentation ranges; IPv6: everything outside global unicast, so ULA, link-local, IPv4-mapped
// and -compatible forms and NAT64 too, plus the registry's ranges inside it). erpstream adds the
// prefixes that embed IPv4 addresses in global unicast space and parses every IPv4 literal form
// before checking.
var extraDeniedV6 = []netip.Prefix{
	netip.MustParsePrefix("2002::/16"), // 6to4: embeds any IPv4 address
	netip.MustParsePrefix("2001::/32"), // Teredo
}

var guardian = ssrf.New(ssrf.WithAnyPort(), ssrf.WithDeniedV6Prefixes(extraDeniedV6...))

// Policy narrows or widens one request's destinations beyond the operator's configuration.
type Policy struct {
	// Purpose labels the request in metrics ("managed_call", "secure_proxy", "oauth2_token", …).
	Purpose string
	// Allow lists prefixes this request may reach although the rules block them (a secure_link
	// use case's allowed_ips).
	Allow []netip.Prefix
	// Only, when set, restricts this request to destinations inside these prefixes (a
	// secure_link use case's allowed_ips); an address outside is KindNotAllowed.
	Only []netip.Prefix
	// Deny lists prefixes blocked for this request even when Allow or Only contain them
	// (secure_link keeps loopback and link-local closed). The operator's allowance still wins.
	Deny []netip.Prefix
	// Proxy names a forward proxy (HTTP CONNECT) for this request, overriding Config.Proxy.
	Proxy string
}

func (p Policy) key() string {
	return fmt.Sprint(p.Allow, "|", p.Only, "|", p.Deny, "|", p.Proxy)
}

// check decides whether addr may be connected to under the operator's allowance and the policy.
func (c *Client) check(p *Policy, addr netip.Addr) error {
	a := addr.Unmap().WithZone("")
	if len(p.Only) > 0 && !containedIn(p.Only, a) {
		return &Error{Kind: KindNotAllowed, Err: fmt.Errorf("%s is outside the addresses this use case allows", a)}
	}
	if containedIn(c.allow, a) {
		return nil
	}
	if containedIn(p.Deny, a) {
		return &Error{Kind: KindBlocked, Err: fmt.Errorf("%s is a loopback or link-local address", a)}
	}
	if containedIn(p.Allow, a) {
		return nil
	}
	if err := guardian.SafeAddr(a); err != nil {
		return &Error{Kind: KindBlocked, Err: fmt.Errorf("%s is a private, loopback, link-local or reserved address", a)}
	}
	return nil
}

func containedIn(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseCIDRs reads a comma-separated list of CIDRs (ERPSTREAM_EGRESS_ALLOW_CIDRS); a bare address
// is its own /32 or /128.
func ParseCIDRs(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if !strings.Contains(part, "/") {
			a, err := netip.ParseAddr(part)
			if err != nil {
				return nil, fmt.Errorf("%q: not an address or CIDR", part)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(part)
		if err != nil {
			return nil, fmt.Errorf("%q: not a CIDR", part)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// hostAddr returns the address a URL host denotes when it is an IP literal in any form: canonical
// IPv4 and IPv6 (with or without zone), and the legacy IPv4 forms resolvers accept (decimal
// 2130706433, hex 0x7f.1, octal 0177.0.0.1, shortened 127.1).
func hostAddr(host string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(host); err == nil {
		return a, true
	}
	return legacyIPv4(host)
}

// legacyIPv4 parses inet_aton's forms: one to four parts, each decimal, 0x-hex or 0-octal; the
// last part fills the remaining bytes.
func legacyIPv4(host string) (netip.Addr, bool) {
	parts := strings.Split(strings.TrimSuffix(host, "."), ".")
	if len(parts) < 1 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		base, digits := 10, p
		switch {
		case strings.HasPrefix(strings.ToLower(p), "0x"):
			base, digits = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, digits = 8, p[1:]
		}
		if digits == "" && base == 16 {
			digits = "0"
		}
		v, err := strconv.ParseUint(digits, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (8 * (3 - i))
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(5-len(vals))) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

// CheckLiteral checks a URL as it is saved in configuration: its scheme and form, and when its
// host is an IP literal (any form) or a localhost name, that address. Names are checked on the
// connection only (they may resolve differently later).
func (c *Client) CheckLiteral(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return &Error{Kind: KindInvalidURL, Err: errors.New("not a URL")}
	}
	if err := c.checkURL(u); err != nil {
		return err
	}
	host := u.Hostname()
	name := strings.ToLower(strings.TrimSuffix(host, "."))
	if _, ok := hostAddr(host); !ok && name != "localhost" && !strings.HasSuffix(name, ".localhost") {
		return nil
	}
	addrs, err := c.resolve(context.Background(), host)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := c.check(&Policy{}, a); err != nil {
			return err
		}
	}
	return nil
}
