package secureproxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"

	"github.com/erpstream/erpstream/egress"
	"github.com/erpstream/erpstream/internal/registry"
)

// VPC modes of a secure_proxy use case.
const (
	ModeStaticIP   = "static_ip"
	ModeSecureLink = "secure_link"
)

// Proxies are the deployment's forward proxies per mode (ERPSTREAM_SECURE_PROXY_STATIC_IP_PROXY,
// ERPSTREAM_SECURE_PROXY_SECURE_LINK_PROXY): the fixed-address NAT and the VPN side. Unset, a
// mode goes out directly through the egress client.
type Proxies struct {
	StaticIP, SecureLink string
}

// ErrInvalidConfig is a secure_proxy use case that cannot route (SECURE_PROXY_INVALID_CONFIG).
var ErrInvalidConfig = errors.New("invalid secure proxy configuration")

// secureLinkDenied stay closed in secure_link mode although private ranges are its point: the
// host itself and link-local (cloud metadata) are never a customer's network.
var secureLinkDenied = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("::/128"), netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("224.0.0.0/4"), netip.MustParsePrefix("ff00::/8"),
}

// Route is a secure_proxy use case's validated configuration: which hosts and addresses its
// requests may reach and which way they leave.
type Route struct {
	Mode    string
	domains []string
	ips     []netip.Prefix
	proxy   string
}

// ParseRoute validates a secure_proxy use case's configuration.
func ParseRoute(uc *registry.UseCase, proxies Proxies) (*Route, error) {
	var cfg struct {
		VPCMode        string   `json:"vpc_mode"`
		AllowedDomains []string `json:"allowed_domains"`
		AllowedIPs     []string `json:"allowed_ips"`
	}
	if len(uc.Configuration) == 0 || json.Unmarshal(uc.Configuration, &cfg) != nil {
		return nil, fmt.Errorf("%w: configuration is missing", ErrInvalidConfig)
	}
	r := &Route{Mode: cfg.VPCMode}
	for _, d := range cfg.AllowedDomains {
		norm, err := normalizeDomainPattern(d)
		if err != nil {
			return nil, fmt.Errorf("%w: allowed_domains: %v", ErrInvalidConfig, err)
		}
		r.domains = append(r.domains, norm)
	}
	for _, c := range cfg.AllowedIPs {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			a, aerr := netip.ParseAddr(strings.TrimSpace(c))
			if aerr != nil {
				return nil, fmt.Errorf("%w: allowed_ips: %q is not a CIDR", ErrInvalidConfig, c)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		r.ips = append(r.ips, p.Masked())
	}
	switch r.Mode {
	case ModeStaticIP:
		r.proxy = proxies.StaticIP
	case ModeSecureLink:
		if len(r.domains) == 0 || len(r.ips) == 0 {
			return nil, fmt.Errorf("%w: secure_link needs allowed_domains and allowed_ips", ErrInvalidConfig)
		}
		r.proxy = proxies.SecureLink
	default:
		return nil, fmt.Errorf("%w: vpc_mode %q", ErrInvalidConfig, r.Mode)
	}
	return r, nil
}

// HostAllowed checks a URL host against allowed_domains: an exact entry, or "*.suffix" matching
// names below suffix (not suffix itself). An empty list allows every host (static_ip only).
func (r *Route) HostAllowed(host string) bool {
	if len(r.domains) == 0 {
		return true
	}
	h, err := normalizeHost(host)
	if err != nil {
		return false
	}
	for _, d := range r.domains {
		if suffix, wild := strings.CutPrefix(d, "*."); wild {
			if strings.HasSuffix(h, "."+suffix) {
				return true
			}
		} else if h == d {
			return true
		}
	}
	return false
}

// Policy is the egress policy of this route's requests.
func (r *Route) Policy(purpose string) egress.Policy {
	p := egress.Policy{Purpose: purpose, Proxy: r.proxy}
	if r.Mode == ModeSecureLink {
		p.Only, p.Allow, p.Deny = r.ips, r.ips, secureLinkDenied
	}
	return p
}

// normalizeHost lower-cases, drops a trailing dot and turns an IDN into punycode.
func normalizeHost(host string) (string, error) {
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	if h == "" {
		return "", errors.New("empty host")
	}
	if strings.HasPrefix(h, "[") || strings.Contains(h, ":") {
		return strings.Trim(h, "[]"), nil // IPv6 literal
	}
	return idna.Lookup.ToASCII(h)
}

func normalizeDomainPattern(d string) (string, error) {
	wild := strings.HasPrefix(d, "*.")
	h, err := normalizeHost(strings.TrimPrefix(d, "*."))
	if err != nil {
		return "", fmt.Errorf("%q: %v", d, err)
	}
	if wild {
		if strings.Count(h, ".") < 1 {
			return "", fmt.Errorf("%q: a wildcard needs at least two labels after *.", d)
		}
		return "*." + h, nil
	}
	return h, nil
}
